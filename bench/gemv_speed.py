"""Projections over a handful of rows on the CPU: which path reads the weights once at the
memory bandwidth (engine/native.py `_linear` uses the winner, cospec::linear_rows).

    python bench/gemv_speed.py [--mats 20] [--repeats 7] [--threads 2] [--rows 1,2,4,5,8,16]
                               [--autotune] [--dtype float32|bfloat16]

y = x @ W^T summed over `mats` [1536, 576] weights (SmolLM2's MLP shape; 20 float32 = 71 MB,
past any L2 and most L3s), per call, by path, in one run (medians of interleaved repeats):

- `mkl`:        eager `F.linear` (MKL's sgemm / sgemv; oneDNN for bfloat16),
- `packed`:     `F.linear` compiled by inductor with `freezing` (weights prepacked for
                MKL / oneDNN's linear: the well-kept packed path),
- `autotune`:   (with --autotune) inductor's max-autotune C++ GEMM template (register-blocked
                micro-kernels; compiles for minutes),
- `per-row`:    the former `_linear`: one fused reduction per row, y[r] = (W * x[r]).sum(-1),
                compiled (reads W once per row),
- `linear_rows`: cospec::linear_rows (reads W once for every row), compiled like the others
                (the native forward's path: extern calls inside one graph).

Prints ms per call and GB/s of weight bytes (bytes of W / time) beside the copy bandwidth
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
    """(copy GB/s counting read + write, read GB/s of a sum) over `mb` MB of float32."""
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
    print(f"  {'rows':>4} " + " ".join(f"{n:>18}" for n in names) + f" {'mkl/ours':>9} {'ours/1row':>9}")
    one = None
    for r in [int(v) for v in args.rows.split(",")]:
        x = torch.randn(r, 576, generator=g).to(dt)
        with torch.no_grad():
            torch._dynamo.reset()
            fns = {"mkl": mkl, "packed": None, "per-row": compiled(per_row), "linear_rows": compiled(rows_op)}
            with ic.patch(freezing=True):
                fns["packed"] = compiled(mkl)
                fns["packed"](x)
            if args.autotune:
                fns["autotune"] = compiled(mkl, max_autotune=True, max_autotune_gemm_backends="CPP")
            ref = mkl(x.float() if dt != torch.float32 else x).float()
            for name in names:
                torch.testing.assert_close(fns[name](x).float(), ref, rtol=2e-2, atol=0.5)
            ts = {k: [] for k in names}
            for _ in range(args.repeats):
                for k in names:
                    t0 = time.perf_counter()
                    for _ in range(3):
                        fns[k](x)
                    ts[k].append((time.perf_counter() - t0) / 3)
        med = {k: statistics.median(v) for k, v in ts.items()}
        ratio = statistics.median(a / b for a, b in zip(ts["mkl"], ts["linear_rows"]))
        one = one or med["linear_rows"]
        cell = lambda k: f"{med[k] * 1e3:6.2f} ms {gb / med[k]:5.1f}GB/s"  # noqa: E731
        print(f"  {r:>4} " + " ".join(f"{cell(k):>18}" for k in names)
              + f" {ratio:>8.2f}x {med['linear_rows'] / one:>8.2f}x")


if __name__ == "__main__":
    main()
