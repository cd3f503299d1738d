"""This machine's float32 matrix-product peak, the compute floor for forwards over many tokens.

    python bench/ops/cpu_peak.py [--threads 2] [--repeats 9]

GFLOP/s = 2 m n k / seconds of torch.mm (MKL/oneDNN) on float32 [m, k] x [k, n]: a large
square product (the machine's practical peak) and the demo target's shapes at 48 rows (a
batch-8 verification of a 6-node chain: its MLP's [48, 384] x [384, 1024] and [48, 1024] x
[1024, 384], an attention projection's [48, 384] x [384, 384]), medians of `repeats` timed
calls after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def gflops(m: int, k: int, n: int, repeats: int) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        torch.mm(a, b)
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        t.append(time.perf_counter() - t0)
    return 2 * m * n * k / statistics.median(t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for m, k, n in ((2048, 2048, 2048), (48, 384, 1024), (48, 1024, 384), (48, 384, 384)):
        print(f"[{m}, {k}] x [{k}, {n}]: {gflops(m, k, n, args.repeats):7.1f} GFLOP/s ({args.threads} threads)")


if __name__ == "__main__":
    main()
