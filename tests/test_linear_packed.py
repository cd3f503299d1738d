"""linear_packed (y = x W^T + b over W packed in 48-column panels) against its float64
reference and F.linear: panel tails, row-block tails, strided x, the threaded panel split, every
CPU instruction-set build, pack_weight's layout, and the native forward's packed copies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cospec_ext import ops, reference
from _compare import assert_close_vs_torch, run_under_isas
from _trees import DEVICES


def check(x, w, b, name):
    """linear_packed(x, pack_weight(w), N, b) within 2x of F.linear's own error of the float64
    reference (built from the panels by loops, not from w)."""
    packed = ops.pack_weight(w.cpu()).to(x.device)
    got = ops.linear_packed(x, packed, w.shape[0], b)
    want = reference.linear_packed_ref(x.cpu(), packed.cpu(), w.shape[0], None if b is None else b.cpu())
    assert got.dtype == torch.float32 and got.shape == want.shape, f"{name}: {got.dtype} {tuple(got.shape)}"
    assert_close_vs_torch(name, got, want, F.linear(x, w, b), atol=1e-5 * math.sqrt(x.shape[-1]))


def test_pack_layout(gen):
    """packed[p, k, c] = W[p * 48 + c, k], zeros past N."""
    w = torch.randn(50, 7, generator=gen)
    p = ops.pack_weight(w)
    assert p.shape == (2, 7, 48) and p.is_contiguous()
    assert torch.equal(p[0, 3, 5], w[5, 3]) and torch.equal(p[1, 6, 1], w[49, 6])
    assert torch.equal(p[1, :, 2:], torch.zeros(7, 46))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M", [1, 2, 7, 8, 9, 16, 17, 24, 48, 50, 67])
def test_random_shapes(M, device, gen):
    for K, N in ((1, 3), (7, 1), (16, 48), (33, 121), (100, 250), (384, 97)):
        x = torch.randn(M, K, generator=gen).to(device)
        w = torch.randn(N, K, generator=gen).to(device)
        b = torch.randn(N, generator=gen).to(device)
        check(x, w, None, f"M={M} K={K} N={N}")
        check(x, w, b, f"M={M} K={K} N={N} bias")


@pytest.mark.parametrize("device", DEVICES)
def test_strided_and_batched(device, gen):
    """x with leading dims and a row stride (a slice of a wider buffer), x transposed."""
    K, N = 45, 70
    base = torch.randn(3, 8, K + 9, generator=gen).to(device)
    w = torch.randn(N, K, generator=gen).to(device)
    check(base[..., 4:4 + K], w, None, "sliced x [3, 8, K]")
    xt = torch.randn(K, 20, generator=gen).to(device).T  # [20, K], unit stride along rows
    check(xt, w, torch.randn(N, generator=gen).to(device), "transposed x")


def test_threaded_split(gen):
    """Weights past 256 KiB (and products past 2 MFLOP) split their panels over threads: the
    result does not depend on the thread count."""
    x, w = torch.randn(40, 300, generator=gen), torch.randn(1000, 300, generator=gen)
    packed = ops.pack_weight(w)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.linear_packed(x, packed, 1000)
        torch.set_num_threads(max(2, threads))
        many = ops.linear_packed(x, packed, 1000)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    check(x, w, None, "threaded")


def test_instruction_sets(tmp_path):
    """Each CPU build (AVX-512, AVX2, portable) against the float64 reference."""
    script = """
import sys, torch
from cospec_ext import ops
g = torch.Generator().manual_seed(3)
out = []
for M, K, N in ((1, 37, 19), (9, 64, 49), (17, 130, 50), (50, 200, 121)):
    x, w, b = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g), torch.randn(N, generator=g)
    out += [x, w, b, ops.linear_packed(x, ops.pack_weight(w), N, b)]
torch.save(out, sys.argv[1])
"""
    for isa, res in run_under_isas(tmp_path, script).items():
        for i in range(0, len(res), 4):
            x, w, b, y = res[i:i + 4]
            assert_close_vs_torch(f"{isa} case {i // 4}", y, reference.linear_rows_ref(x, w, b),
                                  F.linear(x, w, b), atol=1e-4)


def test_special_values():
    """inf and nan in x reach exactly the outputs they touch; zero rows give the bias."""
    w = torch.ones(50, 4)
    x = torch.zeros(3, 4)
    x[1, 2] = float("inf")
    x[2, 0] = float("nan")
    b = torch.arange(50.0)
    y = ops.linear_packed(x, ops.pack_weight(w), 50, b)
    assert torch.equal(y[0], b) and torch.isinf(y[1]).all() and torch.isnan(y[2]).all()
    assert ops.linear_packed(torch.zeros(0, 4), ops.pack_weight(w), 50).shape == (0, 50)


def test_under_compile(gen):
    """The op inside a torch.compile(fullgraph=True) graph (as the native forward calls it)."""
    w, b = torch.randn(30, 17, generator=gen), torch.randn(30, generator=gen)
    packed = ops.pack_weight(w)

    def f(x):
        return torch.ops.cospec.linear_packed(x.relu(), packed, 30, b) * 2

    x = torch.randn(20, 17, generator=gen)
    got = torch.compile(f, fullgraph=True, dynamic=False)(x)
    torch.testing.assert_close(got, F.linear(x.relu(), w, b) * 2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [8, 16, 17, 24, 48, 120])
def test_native_linear(rows, gen):
    """engine/native.py's _linear with a packed copy: linear_rows below PACKED_ROWS_MIN rows,
    linear_packed from there on."""
    from cospec_ext.engine import native

    lin = torch.nn.Linear(48, 100)
    packed = ops.pack_weight(lin.weight)
    x = torch.randn(rows, 48, generator=gen)
    with torch.no_grad():
        y = native._linear(x, lin, packed)
        torch.testing.assert_close(y, lin(x), rtol=1e-5, atol=1e-5)
        want = (ops.linear_packed(x, packed, 100, lin.bias) if rows >= native.PACKED_ROWS_MIN
                else ops.linear_rows(x, lin.weight, lin.bias))
        assert torch.equal(y, want)


def test_native_core_repacks_changed_weights(gen):
    """The native core packs a CPU float32 model's projections once and repacks a weight that
    changed in place (its version counter) when an adapter is made (once per decode call), so a
    prefill over many rows follows the model's current weights."""
    from cospec_ext.engine.adapter import as_adapter
    from cospec_ext.engine.native import NativeAdapter, compiled_core
    from _models import tiny

    model = tiny("llama", seed=0)
    core = compiled_core(model).core
    assert core.fused  # a tiny model: also W^T copies for its fused compiled projections
    assert len(core._packed) == len(core._transposed) == 7 * model.config.num_hidden_layers + 1
    lin = model.model.layers[0].mlp.down_proj
    name = next(n for n, m, _ in core._packed if m is lin)
    name_t = next(n for n, m, _ in core._transposed if m is lin)
    with torch.no_grad():
        lin.weight.mul_(2.0)
    assert not torch.equal(getattr(core, name), ops.pack_weight(lin.weight))
    assert not torch.equal(getattr(core, name_t), lin.weight.t())
    NativeAdapter(as_adapter(model), compile=False)
    assert torch.equal(getattr(core, name), ops.pack_weight(lin.weight))
    assert torch.equal(getattr(core, name_t), lin.weight.t()) and getattr(core, name_t).is_contiguous()
    assert core.refresh_packed() == 0


def test_bad_inputs():
    x, w = torch.randn(2, 5), torch.randn(3, 5)
    p = ops.pack_weight(w)
    with pytest.raises(TypeError, match="`x`"):
        ops.linear_packed(x.double(), p, 3)
    with pytest.raises(TypeError, match="`packed`"):
        ops.linear_packed(x, p.double(), 3)
    with pytest.raises(ValueError, match="`packed`"):
        ops.linear_packed(torch.randn(2, 4), p, 3)
    with pytest.raises(ValueError, match="`packed`"):
        ops.linear_packed(x, p, 49)  # 49 rows need 2 panels
    with pytest.raises(ValueError, match="`n`"):
        ops.linear_packed(x, p, 0)
    with pytest.raises(ValueError, match="`bias`"):
        ops.linear_packed(x, p, 3, torch.randn(4))
    with pytest.raises(TypeError, match="`weight`"):
        ops.pack_weight(w.double())
    with pytest.raises(RuntimeError, match="`packed`"):  # the kernel's own checks
        torch.ops.cospec.linear_packed(x, torch.randn(1, 5, 47), 3)
    with pytest.raises(RuntimeError, match="`packed`"):
        torch.ops.cospec.linear_packed(x, p, 60)
    with pytest.raises(RuntimeError, match="`bias`"):
        torch.ops.cospec.linear_packed(x, p, 3, torch.randn(2))
