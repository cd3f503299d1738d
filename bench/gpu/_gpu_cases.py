"""Helpers of bench/gpu/gpu_check.py: random inputs, comparisons, allocator poisoning, timing."""

from __future__ import annotations

import os
import statistics

import torch

FAILS: list[str] = []
STUB = os.environ.get("COSPEC_GPU_STUB") == "1"  # CUDA stubbed on the CPU (bench/gpu/_gpu_stub.py)


def report(name: str, problem: str | None, note: str = "") -> None:
    """Prints PASS/FAIL for one case; `problem` is None when the case passed."""
    if problem is None:
        print(f"PASS {name}{'  (' + note + ')' if note else ''}", flush=True)
    else:
        print(f"FAIL {name}: {problem}", flush=True)
        FAILS.append(name)


def exact(name: str, got: torch.Tensor, want: torch.Tensor) -> str | None:
    got, want = got.cpu(), want.cpu()
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"{name}: {got.dtype}{list(got.shape)} vs {want.dtype}{list(want.shape)}"
    if got.is_floating_point():
        bad = (got != want) & ~(got.isnan() & want.isnan())
    else:
        bad = got != want
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        return f"{name}: {int(bad.sum())}/{bad.numel()} differ, first at {idx}: {got[idx].item()} vs {want[idx].item()}"
    return None


def close(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> str | None:
    got, want = got.cpu().double(), want.cpu().double()
    if got.shape != want.shape:
        return f"{name}: shape {list(got.shape)} vs {list(want.shape)}"
    fin = torch.isfinite(want)
    if not torch.equal(fin, torch.isfinite(got)) or not torch.equal(got[~fin].nan_to_num(0), want[~fin].nan_to_num(0)):
        return f"{name}: non-finite entries differ"
    err = (got - want).abs()[fin]
    bound = (atol + rtol * want.abs())[fin]
    if err.numel() and bool((err > bound).any()):
        i = int((err - bound).argmax())
        return f"{name}: max excess error {err[i].item():.3g} (bound {bound[i].item():.3g}), value {want[fin][i].item():.6g}"
    return None


def first_problem(*problems: str | None) -> str | None:
    return next((p for p in problems if p is not None), None)


def make_parents(B: int, N: int, gen: torch.Generator) -> torch.Tensor:
    """Random trees: parents[b, 0] = -1, parents[b, i] = randint(0, i)."""
    par = torch.empty(B, N, dtype=torch.int64)
    par[:, 0] = -1
    for i in range(1, N):
        par[:, i] = torch.randint(0, i, (B,), generator=gen)
    return par


def make_tree(B, N, V, dtype, gen, p_match=0.7, scale=3.0, pad=0):
    """(candidates, parents, logits) on the CPU; candidates often equal the parent's argmax.

    pad > 0 makes the logits a strided view [B, N, V] of a [B, N, V + pad] buffer, offset
    by one element (rows neither contiguous with each other nor 16-byte aligned).
    """
    par = make_parents(B, N, gen)
    full = (torch.randn(B, N, V + pad, generator=gen) * scale).to(dtype)
    x = full[:, :, 1 : V + 1] if pad else full
    amax = x.float().argmax(-1)
    cand = torch.randint(0, V, (B, N), generator=gen)
    parent_amax = torch.gather(amax, 1, par.clamp(min=0))
    cand = torch.where(torch.rand(B, N, generator=gen) < p_match, parent_amax, cand)
    cand[:, 0] = torch.randint(0, V, (B,), generator=gen)
    return cand, par, x


def poison(nbytes: list[int], copies: int = 3) -> None:
    """Leaves freed blocks of these sizes, filled with 0x7F bytes, in the CUDA caching
    allocator, so outputs the kernels allocate start as garbage rather than zeros."""
    held = [torch.full((n,), 0x7F, dtype=torch.uint8, device="cuda") for n in nbytes for _ in range(copies)]
    torch.cuda.synchronize()
    del held


def residual_ok(x_row: torch.Tensor, T: float, kid_tokens: list[int], u0: float, tok: int, tol: float) -> bool:
    """Is `tok` the inverse-CDF draw (float64 truth, CDF within tol) of the residual at a
    node whose children (tokens kid_tokens) were all rejected? The CPU kernel's sequential
    float32 cumsum over V drifts by ~1e-5, so for large V its draw may be a CDF neighbour of
    the GPU's (a double-precision scan); the GPU's draw is then checked against float64."""
    p = torch.softmax(x_row.double() / T, -1)
    q = p.clone()
    ex = sorted(set(t for t in kid_tokens if 0 <= t < q.numel()))
    q[ex] = 0.0
    if tok < 0 or tok >= q.numel() or tok in ex or q[tok] <= 0:
        return False
    cdf = torch.cumsum(q, 0)
    target = u0 * float(q.sum())
    return float(cdf[tok] - q[tok]) - tol <= target <= float(cdf[tok]) + tol


def gpu_time_us(fn, runs: int = 50, warmup: int = 5) -> float:
    """Median GPU time of fn() in microseconds. Each run is queued behind a ~100 us sleep
    kernel, so host-side launch overhead does not show up as idle GPU time. (Stubbed CUDA:
    2 runs, the table only proves the harness.)"""
    if STUB:
        runs, warmup = 2, 1
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(runs):
        torch.cuda._sleep(200_000)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        events.append((s, e))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events) * 1e3


def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth, bytes read + written per second (GB/s)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").fill_(1)
    dst = torch.empty_like(src)
    us = gpu_time_us(lambda: dst.copy_(src), runs=10, warmup=2)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (us * 1e-6) / 1e9
