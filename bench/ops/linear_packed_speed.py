"""cospec::linear_packed against linear_rows and F.linear (MKL) over a forward's projections:
the demo target's 57 float32 matrices (8 layers of q, k, v, o, gate, up, down and the head;
48 MiB, past the caches) at M rows, what a forward over M tokens multiplies.

    python bench/ops/linear_packed_speed.py [--rows 8,16,24,32,48,64,120] [--repeats 25] [--threads 2]

Per row count: medians of `repeats` interleaved passes (one pass of each path in turn, after 5
warm-up passes) of the 57 products, and GFLOP/s = 2 M x (matrix parameters) / time. The
native forward (engine/native.py `_linear`) takes linear_rows below PACKED_ROWS_MIN rows and
linear_packed from there on; a batch-8 verification of a 6-node chain is 48 rows.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cospec_ext import ops

# (out, in) of the demo target's projections: 8 layers of q, k, v, o, gate, up, down, then the head
SHAPES = [(384, 384), (128, 384), (128, 384), (384, 384), (1024, 384), (1024, 384), (384, 1024)] * 8 + [(100, 384)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="8,16,24,32,48,64,120")
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(o, i, generator=g) for o, i in SHAPES]
    packed = [ops.pack_weight(w) for w in ws]
    params = sum(o * i for o, i in SHAPES)
    print(f"{len(SHAPES)} float32 projections, {params * 4 / 2**20:.1f} MiB, {args.threads} threads; "
          f"ms per pass (GFLOP/s), medians of {args.repeats} interleaved passes")
    print(f"{'rows':>5} {'F.linear':>16} {'linear_rows':>16} {'linear_packed':>16} {'packed / best other':>20}")
    for M in (int(r) for r in args.rows.split(",")):
        xs = {i: torch.randn(M, i, generator=g) for i in (384, 1024)}
        paths = {
            "F.linear": lambda: [F.linear(xs[i], w) for w, (o, i) in zip(ws, SHAPES)],
            "linear_rows": lambda: [torch.ops.cospec.linear_rows(xs[i], w, None) for w, (o, i) in zip(ws, SHAPES)],
            "linear_packed": lambda: [torch.ops.cospec.linear_packed(xs[i], p, o, None)
                                      for p, (o, i) in zip(packed, SHAPES)],
        }
        for f in paths.values():
            for _ in range(5):
                f()
        times = {k: [] for k in paths}
        for _ in range(args.repeats):
            for k, f in paths.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = " ".join(f"{med[k] * 1e3:8.2f} ({2 * M * params / med[k] / 1e9:4.0f})" for k in paths)
        best_other = min(med["F.linear"], med["linear_rows"])
        print(f"{M:>5} {cells} {med['linear_packed'] / best_other:>20.2f}")


if __name__ == "__main__":
    main()
