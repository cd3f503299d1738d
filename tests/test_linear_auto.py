"""linear_auto (y = x W^T + b through linear_packed from packed_rows_min rows on, else
linear_rows, chosen when the op runs): the chosen kernel's exact output on both sides of the
threshold against the float64 reference, one compiled graph dynamic in the rows across the
threshold (no guard on them, no second graph), and a compiled prefill of a model past the
fused size whose rows cross PACKED_ROWS_MIN (the engine's carried prefill) equal to generate()."""

from __future__ import annotations

import math

import pytest
import torch

import cospec_ext
from cospec_ext import ops, reference
from _trees import DEVICES


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M", [1, 7, 16, 17, 24, 40])
def test_picks_by_rows(M, device, gen):
    for K, N, bias in ((33, 121, True), (384, 97, False), (16, 48, True)):
        x = torch.randn(M, K, generator=gen).to(device)
        w = torch.randn(N, K, generator=gen).to(device)
        b = torch.randn(N, generator=gen).to(device) if bias else None
        packed = ops.pack_weight(w.cpu()).to(device)
        want = reference.linear_rows_ref(x.cpu(), w.cpu(), None if b is None else b.cpu())
        for rows_min in (1, 17, 10**9):
            got = ops.linear_auto(x, w, packed, b, packed_rows_min=rows_min)
            kernel = (ops.linear_packed(x, packed, N, b) if M >= rows_min else ops.linear_rows(x, w, b))
            assert torch.equal(got, kernel), f"M={M} K={K} N={N} rows_min={rows_min}: not the chosen kernel's output"
            torch.testing.assert_close(got.double().cpu(), want, rtol=1e-5, atol=1e-5 * math.sqrt(K))
        # no packed copy (or 16-bit x): always linear_rows
        assert torch.equal(ops.linear_auto(x, w, None, b, packed_rows_min=1), ops.linear_rows(x, w, b))
        xh, wh = x.bfloat16(), w.bfloat16()
        assert torch.equal(ops.linear_auto(xh, wh, packed, None, packed_rows_min=1), ops.linear_rows(xh, wh))


def test_batched_x(gen):
    x, w = torch.randn(3, 8, 40, generator=gen), torch.randn(70, 40, generator=gen)
    got = ops.linear_auto(x, w, ops.pack_weight(w), packed_rows_min=17)  # 24 rows: packed
    assert got.shape == (3, 8, 70)
    assert torch.equal(got, ops.linear_packed(x, ops.pack_weight(w), 70))


def test_one_graph_dynamic_in_rows(gen):
    """Inside a graph whose row count is a symbol spanning the threshold (as the engine's prefill
    graphs, marked dynamic): no guard on the rows (mark_dynamic would raise), no recompile, and
    each call's output is the kernel its rows pick."""
    w, b = torch.randn(100, 64, generator=gen), torch.randn(100, generator=gen)
    packed = ops.pack_weight(w)

    def f(x):
        return torch.ops.cospec.linear_auto(x * 2, w, packed, b, 17).relu()

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    x0 = torch.randn(9, 64, generator=gen)
    torch._dynamo.mark_dynamic(x0, 0, min=9, max=32)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for M in (9, 16, 17, 23, 32):
            x = x0 if M == 9 else torch.randn(M, 64, generator=gen)
            kernel = ops.linear_packed(x * 2, packed, 100, b) if M >= 17 else ops.linear_rows(x * 2, w, b)
            assert torch.equal(compiled(x), kernel.relu()), f"M={M}"


def test_carried_prefill_with_packed_rows():
    """A model past FUSED_BYTES (extern projections with packed copies) decoding compiled spd with
    prompts whose carried prefill has fewer and more than PACKED_ROWS_MIN rows: greedy output
    equals generate()'s (the prefill graph's linear_auto took both kernels)."""
    from cospec_ext.engine.core import FUSED_BYTES, PACKED_ROWS_MIN
    from cospec_ext.engine.native import CARRIED_ROWS_MAX
    from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

    target = tiny("llama", layers=2, seed=5, hidden=256, max_pos=128)
    assert sum(p.numel() * 4 for p in target.parameters()) > FUSED_BYTES
    draft = first_layers(target, 1)
    tree, n_nodes = "chain:4;fixed", 5
    lens = (8, 20)  # carried rows P - 1 + 5: 12 (linear_rows) and 24 (linear_packed)
    assert lens[0] - 1 + n_nodes < PACKED_ROWS_MIN <= lens[1] - 1 + n_nodes <= CARRIED_ROWS_MAX
    for i, P in enumerate(lens):
        ids, mask = prompts(1, 70 + i, min_len=P, max_len=P)
        out = cospec_ext.decode(target, draft, ids, mask, mode="spd", tree=tree, max_new_tokens=10,
                                eos_token_id=EOS, pad_token_id=PAD, compile=True)
        ref = generate_greedy(target, ids, mask, 10)
        assert torch.equal(out.sequences, ref), f"P={P}"


def test_bad_inputs():
    x, w = torch.randn(20, 5), torch.randn(3, 5)
    p = ops.pack_weight(w)
    with pytest.raises(ValueError, match="`packed_rows_min`"):
        ops.linear_auto(x, w, p, packed_rows_min=0)
    with pytest.raises(ValueError, match="`packed`"):
        ops.linear_auto(x, w, ops.pack_weight(torch.randn(50, 5)), packed_rows_min=1)
    with pytest.raises(TypeError, match="`weight`"):
        ops.linear_auto(x, w.double(), p, packed_rows_min=1)
    with pytest.raises(ValueError, match="`x`"):
        ops.linear_auto(torch.randn(20, 4), w, p, packed_rows_min=1)
    with pytest.raises(ValueError, match="`bias`"):
        ops.linear_auto(x, w, p, torch.randn(4), packed_rows_min=1)
    with pytest.raises(RuntimeError, match="packed_rows_min"):  # the op's own checks
        torch.ops.cospec.linear_auto(x, w, p, None, 0)
    with pytest.raises(RuntimeError, match="`packed`"):  # linear_packed's, reached through it
        torch.ops.cospec.linear_auto(x, w, torch.randn(1, 5, 47), None, 1)
    with pytest.raises(RuntimeError, match="`x`"):
        torch.ops.cospec.linear_auto(torch.randn(2, 3, 5), w, p, None, 1)
