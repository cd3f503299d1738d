"""bfloat16 weights in the compiled native forward: cospec::linear_rows for every projection
(engine/native.py `_linear`) against inductor's per-row reduction at <= 2 rows (`F.linear`
there, swapped in while tracing), the choice bench/ops/gemv_speed.py --dtype bfloat16 favours
at one row on its own.

    python bench/ops/bf16_forward.py [--calls 30] [--threads 2]

Two copies of a random L8 d512 Llama (43 MB of bf16 weights), one compiled under each
setting, batch 1, 40 cached tokens; per token count (1, 2, 5) the median ms of `calls`
interleaved rounds (both settings, every count) after 3 warm-up calls each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import cospec_ext.engine.native as nat
from cospec_ext.engine.adapter import as_adapter
from cospec_ext.engine.kv import KVCache, KVView
from forward_buckets import llama

COUNTS, PAST, S = (1, 2, 5), 40, 256


def per_row_linear(per_row_max: int):
    """engine/native.py's `_linear`, but bf16 projections of <= per_row_max rows as `F.linear`
    (inductor's per-row reduction inside a graph)."""
    own = nat._linear

    def linear(x, lin):
        rows = x.numel() // x.shape[-1]
        if rows <= per_row_max and lin.weight.dtype == torch.bfloat16:
            return F.linear(x, lin.weight, lin.bias)
        return own(x, lin)

    return linear


def compiled(per_row_max: int, seed: int) -> dict:
    """{n: a call of the compiled forward over n tokens}, traced with bf16 projections of
    <= per_row_max rows as inductor's per-row reduction (0: linear_rows everywhere)."""
    m = llama(8, 512, 1376, seed).to(torch.bfloat16).requires_grad_(False)
    ad = nat.NativeAdapter(as_adapter(m), compile=True)
    cache = KVCache(ad.num_layers, 1, ad.num_kv_heads, S, ad.head_dim, ad.dtype, ad.device, rows=1)
    old, nat._linear = nat._linear, per_row_linear(per_row_max)  # looked up while tracing
    fns = {"model": m}
    try:
        for n in COUNTS:
            tok, pos = torch.randint(0, 100, (1, n)), torch.arange(PAST, PAST + n)[None]
            mask = torch.ones(1, 1, n, PAST + n, dtype=torch.bool)
            fns[n] = (lambda tok=tok, pos=pos, mask=mask, n=n:
                      ad.forward(tok, pos, mask, KVView(cache, PAST + n, uniform_start=PAST)))
            for _ in range(3):
                fns[n]()
    finally:
        nat._linear = old
    return fns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        paths = {"linear_rows": compiled(0, 0), "per-row <= 2": compiled(2, 0)}
        ts = {(p, n): [] for p in paths for n in COUNTS}
        for _ in range(args.calls):
            for p, fns in paths.items():
                for n in COUNTS:
                    t0 = time.perf_counter()
                    fns[n]()
                    ts[(p, n)].append(time.perf_counter() - t0)
    print(f"bf16 L8 d512 Llama (43 MB), batch 1, {args.threads} threads, median ms of {args.calls} interleaved rounds")
    for n in COUNTS:
        a, b = (statistics.median(ts[(p, n)]) * 1e3 for p in paths)
        print(f"  {n} tokens: linear_rows {a:.2f} ms, per-row reduction at <= 2 rows {b:.2f} ms, per-row / linear_rows {b / a:.2f}")


if __name__ == "__main__":
    main()
