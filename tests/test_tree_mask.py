"""tree_mask against its slot-by-slot reference, and against the engine's former torch
construction (prefix compare + scatter of the ancestor rows)."""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops, reference
from _trees import DEVICES, ancestors, make_parents
from _compare import assert_equal


def torch_mask(pad, root, anc, S):
    B, nq, n = anc.shape
    s = torch.arange(S)
    m = ((s >= pad.view(B, 1, 1, 1)) & (s < root.view(B, 1, 1, 1))).expand(B, 1, nq, S).clone()
    m.scatter_(3, (root.view(B, 1, 1, 1) + torch.arange(n)).expand(B, 1, nq, n), anc.view(B, 1, nq, n))
    return m


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,N,S,kind", [(1, 1, 8, "chain"), (1, 5, 40, "chain"), (3, 9, 64, "random"),
                                        (6, 17, 70, "wide"), (2, 33, 90, "deep")])
def test_random(B, N, S, kind, device, gen):
    anc = ancestors(make_parents(kind, B, N, gen))
    root = torch.randint(0, S - N + 1, (B,), generator=gen)
    pad = torch.minimum(torch.randint(0, S, (B,), generator=gen), root)
    pad[0] = 0
    for lo, hi in ((0, N), (N // 2, N)):  # every node, or one level range of queries over the first hi nodes
        a = anc[:, lo:hi, :hi]
        want = reference.tree_mask_ref(pad, root, a, S)
        assert_equal("torch construction", torch_mask(pad, root, a, S), want)
        out = torch.ones(B, 1, hi - lo, S, dtype=torch.bool, device=device)  # every entry is overwritten
        ops.tree_mask(out, pad.to(device), root.to(device), a.to(device))
        assert_equal("mask", out, want)


@pytest.mark.parametrize("device", DEVICES)
def test_shared_tree_and_strided_out(device, gen):
    """One tree for every row (anc [1, nq, n] and an expanded [B, nq, n]); `out` a view of a
    larger buffer (fewer queries and slots than allocated), whose other entries stay put."""
    B, N, S = 4, 6, 30
    anc1 = ancestors(make_parents("random", 1, N, gen))
    root, pad = torch.tensor([6, 9, 20, 3]), torch.tensor([0, 2, 5, 3])
    want = reference.tree_mask_ref(pad, root, anc1.expand(B, N, N), S)
    buf = torch.zeros(B + 1, 1, N + 3, S + 7, dtype=torch.bool, device=device)
    view = buf[:B, :, :N, :S]
    ops.tree_mask(view, pad.to(device), root.to(device), anc1.to(device))
    assert_equal("anc [1, nq, n]", view, want)
    outside = buf.clone()
    outside[:B, :, :N, :S] = False
    assert not bool(outside.any()), "entries outside the view were written"
    view.fill_(True)
    ops.tree_mask(view, pad.to(device), root.to(device), anc1.to(device).expand(B, N, N))
    assert_equal("expanded anc", view, want)
    if device == "cpu":  # a strided slot dim
        out_t = torch.zeros(B, 1, S, N, dtype=torch.bool).transpose(2, 3)
        ops.tree_mask(out_t, pad, root, anc1)
        assert_equal("strided slots", out_t, want)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs(device):
    d = lambda t: t.to(device)  # noqa: E731
    out = d(torch.zeros(2, 1, 3, 10, dtype=torch.bool))
    pad, root, anc = d(torch.tensor([0, 1])), d(torch.tensor([2, 7])), d(torch.ones(2, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="`out`"):
        ops.tree_mask(out.int(), pad, root, anc)
    with pytest.raises(TypeError, match="`anc`"):
        ops.tree_mask(out, pad, root, anc.long())
    with pytest.raises(ValueError, match="`anc`"):
        ops.tree_mask(out, pad, root, anc[:, :2])
    with pytest.raises(ValueError, match="`pad`"):
        ops.tree_mask(out, pad[:1], root, anc)
    with pytest.raises(ValueError, match="`root_slot`\\[1\\]"):
        ops.tree_mask(out, pad, d(torch.tensor([2, 8])), anc)
    with pytest.raises(RuntimeError, match="internal overlap"):
        ops.tree_mask(d(torch.zeros(1, 1, 1, 10, dtype=torch.bool)).expand(2, 1, 3, 10), pad, root, anc)
    if device == "cpu":
        with pytest.raises(RuntimeError, match="root_slot"):
            torch.ops.cospec.tree_mask(out, pad, torch.tensor([2, 8]), anc)
