"""The compiled native forward's time by query count: what a verification of n tree nodes
costs against a one-token step (the adaptive depth measures the same per depth).

    python bench/forward_buckets.py [--calls 30] [--threads 2]

The issue-3 bench pair's 8-layer target and its first-2-layers draft (bench/test_bench_decode.py),
batch 1, 40 cached tokens; query counts pad to the forward's buckets (1, 2, 4, 8, then multiples
of 8). Prints the median ms of `calls` calls after 3 warm-up calls (compiles on first use).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cospec_ext.engine.adapter import as_adapter
from cospec_ext.engine.kv import KVCache, KVView
from cospec_ext.engine.native import NativeAdapter, query_bucket
from test_bench_decode import DRAFT_LAYERS, build_target, first_layers


def times(model, counts, calls: int, past: int = 40, S: int = 256) -> dict:
    ad = NativeAdapter(as_adapter(model), compile=True)
    cache = KVCache(ad.num_layers, 1, ad.num_kv_heads, S, ad.head_dim, ad.dtype, ad.device, rows=1)
    out = {}
    for n in counts:
        tok = torch.randint(0, 100, (1, n))
        pos = torch.arange(past, past + n)[None]
        mask = torch.ones(1, 1, n, past + n, dtype=torch.bool)

        def call():
            return ad.forward(tok, pos, mask, KVView(cache, past + n, uniform_start=past))

        for _ in range(3):
            call()
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            call()
            ts.append(time.perf_counter() - t0)
        out[n] = statistics.median(ts) * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    target = build_target(0)
    draft = first_layers(target, DRAFT_LAYERS)
    counts = (1, 2, 3, 4, 5, 8)
    print(f"compiled forward, batch 1, median ms of {args.calls} calls")
    print("  model         " + " ".join(f"{f'n={n} ({query_bucket(n)})':>11}" for n in counts))
    with torch.inference_mode():
        for name, m in (("bench target", target), ("bench draft", draft)):
            t = times(m, counts, args.calls)
            print(f"  {name:<13} " + " ".join(f"{t[n]:>11.2f}" for n in counts))


if __name__ == "__main__":
    main()
