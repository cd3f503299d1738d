"""Why the native forward computes small-row CPU projections as per-row reductions
(engine/native.py `_linear`): the time of y = x @ W^T over weights that do not fit in the
caches, for x with 1..8 rows, three ways, in one run:

- eager `F.linear` (MKL),
- the same under `torch.compile` (inductor calls MKL for the matrix product),
- `_linear` under `torch.compile` (one reduction per row, fused into one pass over W).

    python bench/gemv_speed.py [--mats 40] [--repeats 7] [--threads 2] [--cpp-threads 2]

`--cpp-threads`: the threads of inductor's kernels (engine/native.py: 1 for models under
PARALLEL_BYTES = 64 MB of weights, torch's thread count above; MKL uses `--threads`).

Weights: `mats` float32 [1536, 576] matrices (SmolLM2's MLP shape; 40 of them = 141 MB) read
once per call. Prints per rows: median ms per call and GB/s of weights read, and the ratio
MKL / _linear (medians of interleaved repeats).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cospec_ext.engine.native import _linear


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mats", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpp-threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import torch._inductor.config as ic

    ic.cpp_wrapper, ic.cpp.threads = True, args.cpp_threads  # as engine/native.py compiles on the CPU
    g = torch.Generator().manual_seed(0)
    lins = [torch.nn.Linear(576, 1536, bias=False) for _ in range(args.mats)]
    for m in lins:
        m.weight.requires_grad_(False).copy_(torch.randn(1536, 576, generator=g))
    gb = sum(m.weight.numel() for m in lins) * 4 / 1e9

    def mkl(x):
        return torch.cat([F.linear(x, m.weight) for m in lins], -1)

    def rows(x):
        return torch.cat([_linear(x, m) for m in lins], -1)

    print(f"{args.mats} float32 [1536, 576] weights ({gb * 1e3:.0f} MB), {args.threads} threads "
          f"({args.cpp_threads} in inductor's kernels), "
          f"median of {args.repeats} interleaved repeats")
    print(f"  {'rows':>4} {'eager F.linear':>16} {'compiled F.linear':>18} {'compiled _linear':>17} {'MKL/_linear':>11}")
    for r in (1, 2, 4, 8):
        x = torch.randn(r, 576, generator=g)
        fns = {"eager": mkl, "compiled": torch.compile(mkl, dynamic=False, fullgraph=True),
               "rows": torch.compile(rows, dynamic=False, fullgraph=True)}
        ref = mkl(x)
        for f in fns.values():
            torch.testing.assert_close(f(x), ref, rtol=1e-4, atol=1e-3)
        ts = {k: [] for k in fns}
        for _ in range(args.repeats):
            for k, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(3):
                    f(x)
                ts[k].append((time.perf_counter() - t0) / 3)
        med = {k: statistics.median(v) for k, v in ts.items()}
        ratio = statistics.median(a / b for a, b in zip(ts["eager"], ts["rows"]))
        cell = lambda k: f"{med[k] * 1e3:6.2f} ms {gb / med[k]:5.1f}GB/s"  # noqa: E731
        print(f"  {r:>4} {cell('eager'):>16} {cell('compiled'):>18} {cell('rows'):>17} {ratio:>10.2f}x")


if __name__ == "__main__":
    main()
