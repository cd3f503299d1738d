"""cospec::tree_attention against SDPA (torch's CPU flash kernel) at the shapes of the demo
target's compiled forward: 6 query heads, 2 K/V heads, D = 64, a static cache of 128 slots of
which `--open` are open to every query (the committed prefix and the tree), batch x queries =
(1, 1) a decode step, (1, 8) a batch-1 verification, (1, 24) a carried prefill, (8, 1) a batch-8
step, (8, 8) a batch-8 verification.

    python bench/ops/attention_speed.py [--threads 2] [--open 50] [--calls 400] [--repeats 7]

Per shape: median over `repeats` of the mean of `calls` back-to-back calls, the two ops
interleaved repeat by repeat; us per call (one layer) and SDPA / tree_attention. Both results are
checked equal to float32 rounding first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import cospec_ext  # noqa: F401

SHAPES = [(1, 1), (1, 8), (1, 24), (8, 1), (8, 8)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--open", type=int, default=50, help="slots open to every query")
    ap.add_argument("--slots", type=int, default=128)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    S = args.slots
    print(f"attention of Hq=6 / Hk=2 heads, D=64, {S} slots ({args.open} open), {args.threads} threads; "
          f"us per call, medians of {args.repeats} x {args.calls} calls")
    print(f"{'batch':>5} {'queries':>7} {'SDPA':>8} {'tree_attention':>15} {'SDPA / tree_attention':>22}")
    with torch.inference_mode():
        for B, n in SHAPES:
            q = torch.randn(B, 6, n, 64, generator=g)
            k, v = torch.randn(B, 2, S, 64, generator=g), torch.randn(B, 2, S, 64, generator=g)
            m = torch.zeros(B, 1, n, S, dtype=torch.bool)
            m[..., :args.open] = True
            fns = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.125, enable_gqa=True),
                   "tree": lambda: torch.ops.cospec.tree_attention(q, k, v, m, 0.125)}
            torch.testing.assert_close(fns["tree"](), fns["sdpa"](), rtol=1e-4, atol=1e-5)
            for f in fns.values():
                for _ in range(50):
                    f()
            ts = {k_: [] for k_ in fns}
            for _ in range(args.repeats):
                for name, f in fns.items():
                    t0 = time.perf_counter()
                    for _ in range(args.calls):
                        f()
                    ts[name].append((time.perf_counter() - t0) / args.calls * 1e6)
            a, b = statistics.median(ts["sdpa"]), statistics.median(ts["tree"])
            print(f"{B:>5} {n:>7} {a:>8.1f} {b:>15.1f} {a / b:>22.2f}")


if __name__ == "__main__":
    main()
