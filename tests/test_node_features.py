"""cospec::node_features (the arbiter's fused feature kernel) against the node-by-node
float64 reference on random trees of every shape, dtypes, strided rows, one tree shared
by every row ([1, N] parents), a look-ahead cut by `levels`, and bad inputs."""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops
from cospec_ext.engine.features import FEATURE_NAMES
from cospec_ext.reference import node_features_ref
from _trees import DEVICES, DTYPES, make_tree_inputs

TOL = {torch.float32: dict(atol=2e-4, rtol=1e-4), torch.float16: dict(atol=2e-3, rtol=2e-3),
       torch.bfloat16: dict(atol=2e-3, rtol=2e-3)}


def _depth(parents: torch.Tensor) -> torch.Tensor:
    B, N = parents.shape
    depth = torch.zeros(B, N, dtype=torch.int64)
    for i in range(1, N):
        depth[:, i] = depth.gather(1, parents[:, i:i + 1])[:, 0] + 1
    return depth


def _inputs(kind, B, N, V, dtype, g):
    cand, par, x = make_tree_inputs(kind, B, N, V, dtype, g, p_match=0.6)
    d = (x.float() + 0.7 * torch.randn(B, N, V, generator=g)).to(dtype)  # a related draft
    rank = torch.randint(0, 3, (B, N), generator=g)
    ngen = torch.randint(0, 50, (B,), generator=g)
    return x, cand, par, _depth(par), rank, ngen, d


def test_columns_are_the_feature_names():
    assert ops.NODE_FEATURES == len(FEATURE_NAMES) == 20


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["chain", "star", "deep", "wide", "random"])
def test_matches_reference(kind, device):
    g = torch.Generator().manual_seed(11)
    for N in (1, 2, 5, 12):
        for V in (1, 7, 257):
            x, cand, par, depth, rank, ngen, d = _inputs(kind, 3, N, V, torch.float32, g)
            levels = int(depth.max())
            want = node_features_ref(x, cand, par, depth, rank, ngen, d, levels)
            dev = lambda t: t.to(device)  # noqa: E731
            got = ops.node_features(dev(x), dev(cand), dev(par), dev(depth), dev(rank), dev(ngen), dev(d), levels)
            assert got.dtype == torch.float32 and got.shape == (3, N, 20)
            torch.testing.assert_close(got.cpu(), want, **TOL[torch.float32])
            assert bool((got[:, 0] == 0).all()), "the root's row is zero"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_strided_rows_and_shared_tree(dtype, device):
    g = torch.Generator().manual_seed(12)
    x, cand, par, depth, rank, ngen, d = _inputs("deep", 4, 9, 300, dtype, g)
    par1, depth1, rank1 = par[:1], depth[:1], rank[:1]  # one tree for every row
    cand = torch.where(torch.rand(4, 9, generator=g) < 0.5, cand[:1].expand(4, 9), cand)
    wide = torch.randn(4, 9, 333, generator=g).to(dtype)
    wide[..., :300] = x  # rows strided in memory
    levels = int(depth.max())
    want = node_features_ref(x, cand, par1, depth1, rank1, ngen, d, levels)
    dev = lambda t: t.to(device)  # noqa: E731
    got = ops.node_features(dev(wide[..., :300]), dev(cand), dev(par1), dev(depth1), dev(rank1), dev(ngen), dev(d),
                            levels)
    torch.testing.assert_close(got.cpu(), want, **TOL[dtype])


def test_mixed_dtypes_compute_in_float32():
    g = torch.Generator().manual_seed(13)
    x, cand, par, depth, rank, ngen, d = _inputs("random", 2, 6, 50, torch.float32, g)
    got = ops.node_features(x.bfloat16(), cand, par, depth, rank, ngen, d, int(depth.max()))
    want = node_features_ref(x.bfloat16().float(), cand, par, depth, rank, ngen, d, int(depth.max()))
    torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_levels_cut_the_look_ahead():
    g = torch.Generator().manual_seed(14)
    x, cand, par, depth, rank, ngen, d = _inputs("chain", 2, 8, 40, torch.float32, g)
    for levels in (0, 1, 3):
        got = ops.node_features(x, cand, par, depth, rank, ngen, d, levels)
        torch.testing.assert_close(got, node_features_ref(x, cand, par, depth, rank, ngen, d, levels),
                                   **TOL[torch.float32])
        assert float(got[..., FEATURE_NAMES.index("la_len")].max()) <= levels


def test_bad_inputs_name_the_argument():
    g = torch.Generator().manual_seed(15)
    x, cand, par, depth, rank, ngen, d = _inputs("random", 2, 5, 30, torch.float32, g)
    args = dict(target_logits=x, candidates=cand, parents=par, depth=depth, rank=rank, n_generated=ngen,
                draft_parent_logits=d, levels=3)

    def call(**kw):
        return ops.node_features(**{**args, **kw})

    with pytest.raises(TypeError, match="target_logits"):
        call(target_logits=x.long())
    with pytest.raises(ValueError, match="draft_parent_logits"):
        call(draft_parent_logits=d[:, :, :10])
    with pytest.raises(TypeError, match="candidates"):
        call(candidates=cand.int())
    with pytest.raises(ValueError, match="parents"):
        call(parents=par[:, :4])
    with pytest.raises(ValueError, match="depth"):
        call(depth=torch.zeros(3, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="n_generated"):
        call(n_generated=ngen[:1])
    with pytest.raises(ValueError, match="levels"):
        call(levels=-1)
    bad = par.clone()
    bad[1, 3] = 3
    with pytest.raises(ValueError, match=r"`parents`\[1, 3\]"):
        call(parents=bad)
    badc = cand.clone()
    badc[0, 2] = 30
    with pytest.raises(ValueError, match=r"`candidates`\[0, 2\]"):
        call(candidates=badc)
    # the kernel itself (the wrapper's value checks skipped) still refuses bad trees on the CPU
    with pytest.raises(RuntimeError, match="parents"):
        ops.node_features(x, cand, bad, depth, rank, ngen, d, 3, validate=False)
    badc[0, 2], badc[1, 3] = 1, -1  # one tree shared by both rows: row 1's candidates are checked too
    with pytest.raises(RuntimeError, match=r"`candidates`\[1, 3\]"):
        ops.node_features(x, badc, par[:1], depth[:1], rank[:1], ngen, d, 3, validate=False)
    with pytest.raises(ValueError, match=r"`candidates`\[1, 3\]"):
        ops.node_features(x, badc, par[:1], depth[:1], rank[:1], ngen, d, 3)
