"""linear_rows (y = x W^T + b for a handful of rows, W read once) against its float64
reference and F.linear: odd shapes, strided inputs, every dtype, the threaded range split,
every CPU instruction-set build, and its use in the native forward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cospec_ext import ops, reference
from _compare import assert_close_vs_torch, run_under_isas
from _trees import DEVICES

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check(x, w, b, name):
    """linear_rows(x, w, b) within 2x of F.linear's own error (same dtype) of the float64 reference."""
    got = ops.linear_rows(x, w, b)
    want = reference.linear_rows_ref(x, w, b)
    assert got.dtype == x.dtype and got.shape == want.shape, f"{name}: {got.dtype} {tuple(got.shape)}"
    assert_close_vs_torch(name, got, want, F.linear(x, w, b), atol=1e-5 * math.sqrt(x.shape[-1]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 2, 3, 5, 8, 9, 13, 16, 21])
def test_random_shapes(M, dtype, device, gen):
    for K, N in ((1, 3), (7, 1), (16, 24), (33, 121), (100, 250), (576, 97)):
        x = torch.randn(M, K, generator=gen).to(dtype).to(device)
        w = torch.randn(N, K, generator=gen).to(dtype).to(device)
        b = torch.randn(N, generator=gen).to(dtype).to(device)
        check(x, w, None, f"M={M} K={K} N={N} {dtype}")
        check(x, w, b, f"M={M} K={K} N={N} {dtype} bias")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_batched(dtype, device, gen):
    """x with leading dims and non-unit strides (a transpose, a slice of a wider buffer), W with
    a row stride (a slice of wider rows) and W transposed (no unit stride along K)."""
    K, N = 45, 70
    base = torch.randn(3, 2, K + 9, generator=gen).to(dtype).to(device)
    x = base[..., 4:4 + K]  # [3, 2, K], row stride K + 9
    wide = torch.randn(N, K + 5, generator=gen).to(dtype).to(device)
    w = wide[:, 3:3 + K]  # [N, K], row stride K + 5
    check(x, w, None, "sliced x, sliced W")
    xt = torch.randn(K, 5, generator=gen).to(dtype).to(device).T  # [5, K], unit stride along rows
    wt = torch.randn(K, N, generator=gen).to(dtype).to(device).T  # [N, K], stride (1, N)
    b = torch.randn(2 * N, generator=gen).to(dtype).to(device)[::2]  # strided bias
    check(xt, wt, b, "transposed x, transposed W, strided bias")
    check(x[:, :1], w, None, "one row of a batch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_threaded_split(dtype, gen):
    """Weights past the 256 KiB threshold are split over threads in ranges of a multiple of 8
    rows: N not a multiple of 8 or of any tile width, and ranges of a few rows."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for M, N, K in ((1, 2161, 129), (5, 1203, 300), (8, 121, 2200), (16, 1001, 513), (3, 9, 20000)):
            x = torch.randn(M, K, generator=gen).to(dtype)
            w = torch.randn(N, K, generator=gen).to(dtype)
            check(x, w, torch.randn(N, generator=gen).to(dtype), f"M={M} N={N} K={K} {dtype}")
    finally:
        torch.set_num_threads(before)


def test_special_values(gen):
    """inf and NaN propagate as in F.linear: a NaN in x spoils its row, an inf in W its column."""
    x = torch.randn(3, 40, generator=gen)
    w = torch.randn(10, 40, generator=gen)
    x[1, 7] = float("nan")
    w[4, 39] = float("inf")
    got, want = ops.linear_rows(x, w), F.linear(x, w)
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
    ok = want.isfinite()
    torch.testing.assert_close(got[ok], want[ok], rtol=1e-5, atol=1e-5)


def test_empty():
    for M, K, N in ((0, 5, 3), (4, 0, 3), (4, 5, 0)):
        x, w = torch.randn(M, K), torch.randn(N, K)
        b = torch.randn(N)
        assert torch.equal(ops.linear_rows(x, w, b), F.linear(x, w, b)), (M, K, N)


def test_instruction_sets(tmp_path):
    """Each CPU build (AVX-512, AVX2, portable) against the float64 reference."""
    script = """
import sys, torch
from cospec_ext import ops
g = torch.Generator().manual_seed(3)
out = []
for M, K, N in ((1, 37, 19), (4, 64, 33), (7, 130, 50), (12, 200, 121)):
    for dt in (torch.float32, torch.bfloat16):
        x, w, b = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g), torch.randn(N, generator=g)
        out += [x.to(dt), w.to(dt), b.to(dt), ops.linear_rows(x.to(dt), w.to(dt), b.to(dt))]
torch.save(out, sys.argv[1])
"""
    for isa, res in run_under_isas(tmp_path, script).items():
        for i in range(0, len(res), 4):
            x, w, b, y = res[i:i + 4]
            assert_close_vs_torch(f"{isa} case {i // 4}", y, reference.linear_rows_ref(x, w, b),
                                  F.linear(x, w, b), atol=1e-4)


def test_under_compile(gen):
    """The op inside a torch.compile(fullgraph=True) graph (as the native forward calls it)."""
    w, b = torch.randn(30, 17, generator=gen), torch.randn(30, generator=gen)

    def f(x):
        return torch.ops.cospec.linear_rows(x.relu(), w, b) * 2

    x = torch.randn(5, 17, generator=gen)
    got = torch.compile(f, fullgraph=True, dynamic=False)(x)
    torch.testing.assert_close(got, F.linear(x.relu(), w, b) * 2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 3, 8, 16, 24, 32, 33])
def test_native_linear(rows, gen):
    """engine/native.py's _linear on the CPU is linear_rows up to LINEAR_ROWS_MAX rows, F.linear above."""
    from cospec_ext.engine import native

    lin = torch.nn.Linear(48, 40)
    x = torch.randn(rows, 48, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(native._linear(x, lin), lin(x), rtol=1e-5, atol=1e-5)
        if rows <= native.LINEAR_ROWS_MAX:
            assert torch.equal(native._linear(x, lin), ops.linear_rows(x, lin.weight, lin.bias))


def test_bad_inputs():
    x, w = torch.randn(2, 5), torch.randn(3, 5)
    with pytest.raises(TypeError, match="`weight`"):
        ops.linear_rows(x, w.double())
    with pytest.raises(TypeError, match="`x`"):
        ops.linear_rows(x.long(), w.long())
    with pytest.raises(ValueError, match="`x`"):
        ops.linear_rows(torch.randn(2, 4), w)
    with pytest.raises(ValueError, match="`bias`"):
        ops.linear_rows(x, w, torch.randn(4))
    with pytest.raises(ValueError, match="`weight`"):
        ops.linear_rows(x, torch.randn(3, 5, 1))
    with pytest.raises(RuntimeError, match="`weight`"):  # the kernel's own checks
        torch.ops.cospec.linear_rows(x, torch.randn(3, 4))
    with pytest.raises(RuntimeError, match="`bias`"):
        torch.ops.cospec.linear_rows(x, w, torch.randn(2))
