"""verify_tree: exact outputs on hand-built trees, and randomized agreement with the
reference walk (greedy, with an arbiter, and sampling)."""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops, reference
from _trees import DEVICES, DTYPES, make_tree_inputs
from _compare import assert_equal

FIELDS = ("path", "accept_len", "next_token", "consulted", "arbiter_accepted")


def one_hot_logits(argmaxes, V):
    """Logits [1, N, V] whose row i has its maximum at argmaxes[i]."""
    x = torch.zeros(1, len(argmaxes), V)
    for i, t in enumerate(argmaxes):
        x[0, i, t] = 5.0
    return x


# Tree used by the exact tests (V = 10):
#        0
#      /   \
#   1(5)   2(7)
#    |     /  \
#   3(2) 4(3) 5(9)
PARENTS = torch.tensor([[-1, 0, 0, 1, 2, 2]])
CANDS = torch.tensor([[0, 5, 7, 2, 3, 9]])


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_exact(device):
    x = one_hot_logits([7, 0, 9, 0, 0, 4], 10)  # root picks 7 -> node 2, node 2 picks 9 -> node 5
    out = ops.verify_tree(CANDS.to(device), PARENTS.to(device), x.to(device))
    assert out.path.tolist() == [[0, 2, 5, -1, -1, -1]]
    assert out.accept_len.tolist() == [2] and out.next_token.tolist() == [4]
    assert not out.consulted.any() and not out.arbiter_accepted.any()
    # the precomputed argmax gives the same walk without reading logits
    out2 = ops.verify_tree(CANDS.to(device), PARENTS.to(device), target_argmax=x.argmax(-1).to(device))
    assert out2.path.tolist() == out.path.tolist() and out2.next_token.tolist() == [4]


@pytest.mark.parametrize("device", DEVICES)
def test_arbiter_exact(device):
    x = one_hot_logits([1, 0, 3, 0, 6, 0], 10)  # root picks 1: no child has it
    accept = torch.tensor([[False, False, True, False, False, True]])
    out = ops.verify_tree(CANDS.to(device), PARENTS.to(device), x.to(device), accept.to(device))
    # children of 0 consulted in order: 1 (no), 2 (yes) -> move to 2; node 2 picks 3 = node 4
    assert out.path.tolist() == [[0, 2, 4, -1, -1, -1]]
    assert out.accept_len.tolist() == [2] and out.next_token.tolist() == [6]
    assert out.consulted.tolist() == [[False, True, True, False, False, False]]
    assert out.arbiter_accepted.tolist() == [[False, False, True, False, False, False]]
    # without accept_draft the same logits stop at the root: standard verification
    plain = ops.verify_tree(CANDS.to(device), PARENTS.to(device), x.to(device))
    assert plain.path.tolist() == [[0, -1, -1, -1, -1, -1]] and plain.next_token.tolist() == [1]


@pytest.mark.parametrize("device", DEVICES)
def test_duplicate_children_and_chain_extremes(device):
    # two children with the same token: the first one is taken
    par = torch.tensor([[-1, 0, 0, 2]])
    cand = torch.tensor([[0, 4, 4, 1]])
    out = ops.verify_tree(cand.to(device), par.to(device), one_hot_logits([4, 1, 1, 2], 6).to(device))
    assert out.path.tolist() == [[0, 1, -1, -1]] and out.next_token.tolist() == [1]
    # chain, all accepted: accept_len = k and next_token is the bonus token
    k = 5
    chain = torch.tensor([[-1] + list(range(k))])
    x = one_hot_logits([3, 1, 4, 1, 5, 2], 8)
    cand = torch.tensor([[0, 3, 1, 4, 1, 5]])
    out = ops.verify_tree(cand.to(device), chain.to(device), x.to(device))
    assert out.path.tolist() == [list(range(k + 1))] and out.accept_len.tolist() == [k]
    assert out.next_token.tolist() == [2]
    # chain, all rejected: only the correction token
    out = ops.verify_tree((cand + 1).to(device), chain.to(device), x.to(device))
    assert out.accept_len.tolist() == [0] and out.next_token.tolist() == [3]
    # N = 1: the root alone
    out = ops.verify_tree(cand[:, :1].to(device), chain[:, :1].to(device), x[:, :1].to(device))
    assert out.path.tolist() == [[0]] and out.next_token.tolist() == [3]


def check_against_reference(cand, par, x, device, accept=None, temperature=0.0, uniforms=None):
    dev = lambda t: None if t is None else t.to(device)  # noqa: E731
    got = ops.verify_tree(dev(cand), dev(par), dev(x), dev(accept), temperature, dev(uniforms))
    want = reference.verify_tree_ref(cand, par, x, accept, temperature, uniforms)
    for f in FIELDS:
        assert_equal(f, getattr(got, f), getattr(want, f))
    return got


CASES = [  # (kind, B, N, V)
    ("chain", 1, 1, 50),
    ("chain", 4, 9, 1000),
    ("star", 3, 17, 500),
    ("deep", 5, 64, 997),
    ("wide", 16, 128, 257),
    ("random", 2, 33, 152064),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("kind,B,N,V", CASES)
def test_greedy_random(kind, B, N, V, dtype, device, gen):
    for p_match in (1.0, 0.7, 0.0):  # all-accept, mixed, all-reject
        cand, par, x = make_tree_inputs(kind, B, N, V, dtype, gen, p_match=p_match)
        got = check_against_reference(cand, par, x, device)
        if p_match == 0.0 and V > 100:
            assert (got.accept_len <= 1).all()
        accept = torch.rand(B, N, generator=gen) < 0.3
        check_against_reference(cand, par, x, device, accept=accept)
        stats = ops.logit_stats(x.to(device))
        fused = ops.verify_tree(cand.to(device), par.to(device), target_argmax=stats.argmax, accept_draft=accept.to(device))
        want = reference.verify_tree_ref(cand, par, x, accept)
        for f in FIELDS:
            assert_equal(f"{f} (target_argmax)", getattr(fused, f), getattr(want, f))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("kind,B,N,V", [c for c in CASES if c[3] <= 1000])
@pytest.mark.parametrize("temperature", [0.6, 1.0])
def test_sampling_random(kind, B, N, V, dtype, temperature, device, gen):
    # Small-scale logits so that drafts are accepted often enough to walk deep.
    cand, par, x = make_tree_inputs(kind, B, N, V, dtype, gen, p_match=0.8, scale=1.5)
    for accept in (None, torch.rand(B, N, generator=gen) < 0.3):
        uniforms = torch.rand(B, N, generator=gen)
        check_against_reference(cand, par, x, device, accept, temperature, uniforms)


def test_non_contiguous_inputs(gen):
    cand, par, x = make_tree_inputs("random", 6, 20, 300, torch.float32, gen)
    wide = torch.zeros(6, 20, 400)
    wide[:, :, :300] = x
    xs = wide[:, :, :300]  # strided rows
    cand_t = cand.t().contiguous().t()  # column-major candidates
    got = ops.verify_tree(cand_t, par, xs)
    want = reference.verify_tree_ref(cand, par, x)
    for f in FIELDS:
        assert_equal(f, getattr(got, f), getattr(want, f))
