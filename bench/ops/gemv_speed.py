"""Projections over a handful of rows on the CPU: which path reads the weights once at the
memory bandwidth (engine/native.py `_linear` uses the winner, cospec::linear_rows).

    python bench/ops/gemv_speed.py [--mats 20] [--repeats 7] [--threads 2] [--rows 1,2,4,5,8,16]
                               [--autotune] [--dtype float32|bfloat16]

y = x @ W^T summed over `mats` [1536, 576] weights (SmolLM2's MLP shape; 20 float32 = 71 MB,
past any L2 and most L3s), per call, by path, in one run (medians of repeats that interleave every row count and path):

- `mkl`:        eager `F.linear` (MKL's sgemm / sgemv; oneDNN for bfloat16),
- `packed`:     `F.linear` compiled by inductor with `freezing` (weights prepacked for
                MKL / oneDNN's linear: the well-kept packed path),
- `autotune`:   (with --autotune) inductor's max-autotune C++ GEMM template (register-blocked
                micro-kernels; compiles for minutes),
- `per-row`:    the former `_linear`: one fused reduction per row, y[r] = (W * x[r]).sum(-1),
                compiled (reads W once per row),
- `linear_rows`: cospec::linear_rows (reads W once for every row), compiled like the others
                (the native forward's path: extern calls inside one graph).

Prints ms per call and GB/s of weight bytes (bytes of W / time), the ratio of the fastest other
path to linear_rows (per repeat, then the median), beside the copy bandwidth
measured in the same run (STREAM convention: 2 x bytes / time of `dst.copy_(src)` over 512 MB)
and the read bandwidth (`src.sum()`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import cospec_ext  # noqa: F401  (registers torch.ops.cospec)


def bandwidth(threads: int, mb: int = 512, repeats: int = 5) -> tuple[float, float]:
    """(copy GB/s counting read + write, read GB/s of a sum) over `mb` MB of float32, each the
    best of `repeats`: the machine's floor for streaming bytes."""
    torch.set_num_threads(threads)
    src = torch.rand(mb * (1 << 20) // 4)
    dst = torch.empty_like(src)
    cp, rd = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        cp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        src.sum()
        rd.append(time.perf_counter() - t0)
    nbytes = src.numel() * 4
    return 2 * nbytes / min(cp) / 1e9, nbytes / min(rd) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mats", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="1,2,4,5,8,16")
    ap.add_argument("--autotune", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = ap.parse_args()
    dt = getattr(torch, args.dtype)
    import torch._inductor.config as ic

    ic.cpp_wrapper = True  # as engine/native.py compiles on the CPU
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(1536, 576, generator=g).to(dt) for _ in range(args.mats)]
    gb = sum(w.numel() * w.element_size() for w in ws) / 1e9
    copy_bw, read_bw = bandwidth(args.threads)
    torch.set_num_threads(args.threads)

    def mkl(x):
        return sum(F.linear(x, w) for w in ws)

    def per_row(x):
        return sum(torch.stack([(w * x[r]).sum(-1) for r in range(x.shape[0])]) for w in ws)

    def rows_op(x):
        return sum(torch.ops.cospec.linear_rows(x, w) for w in ws)

    def compiled(fn, **opts):
        return torch.compile(fn, dynamic=False, fullgraph=True, options=opts)

    print(f"{args.mats} {args.dtype} [1536, 576] weights ({gb * 1e3:.0f} MB), {args.threads} threads, "
          f"median ms of {args.repeats} interleaved repeats; copy bandwidth {copy_bw:.1f} GB/s, "
          f"read {read_bw:.1f} GB/s (same run)")
    names = ["mkl", "packed"] + (["autotune"] if args.autotune else []) + ["per-row", "linear_rows"]
    rows = [int(v) for v in args.rows.split(",")]
    xs = {r: torch.randn(r, 576, generator=g).to(dt) for r in rows}
    fns = {"mkl": mkl, "per-row": compiled(per_row), "linear_rows": compiled(rows_op)}
    with ic.patch(freezing=True):
        fns["packed"] = compiled(mkl)
    if args.autotune:
        fns["autotune"] = compiled(mkl, max_autotune=True, max_autotune_gemm_backends="CPP")
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 2 * len(rows))
    with torch.no_grad():
        for r, x in xs.items():  # compile every shape and check every path first (not timed)
            ref = sum(F.linear(x.float(), w.float()) for w in ws)
            atol = 0.5 if dt == torch.float32 else 0.02 * float(ref.abs().max())  # bf16 sums round
            for name in names:
                with ic.patch(freezing=name == "packed"):
                    got = fns[name](x)
                torch.testing.assert_close(got.float(), ref, rtol=2e-2, atol=atol)
        # repeats interleave every row count and path, so a slow spell weighs on all alike
        ts = {(r, k): [] for r in rows for k in names}
        for _ in range(args.repeats):
            for r, x in xs.items():
                for k in names:
                    t0 = time.perf_counter()
                    for _ in range(3):
                        fns[k](x)
                    ts[r, k].append((time.perf_counter() - t0) / 3)
    print(f"  {'rows':>4} " + " ".join(f"{n:>18}" for n in names) + f" {'best/ours':>9} {'ours/1row':>9}")
    for r in rows:
        med = {k: statistics.median(ts[r, k]) for k in names}
        # against the strongest other path of each repeat (per-row reductions at 1-2 rows, ...)
        best = statistics.median(min(ts[r, k][i] for k in names if k != "linear_rows") / ts[r, "linear_rows"][i]
                                 for i in range(args.repeats))
        per_one = statistics.median(a / b for a, b in zip(ts[r, "linear_rows"], ts[rows[0], "linear_rows"]))
        cell = lambda k: f"{med[k] * 1e3:6.2f} ms {gb / med[k]:5.1f}GB/s"  # noqa: E731
        print(f"  {r:>4} " + " ".join(f"{cell(k):>18}" for k in names) + f" {best:>8.2f}x {per_one:>8.2f}x")


if __name__ == "__main__":
    main()
