"""Bad input gets a clear Python exception naming the argument, never a crash.

Each case runs through the validated wrapper (ValueError / TypeError) and, where the
wrapper's value checks are skipped or bypassed, through the raw op, whose C++ checks
raise RuntimeError on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops

B, N, V = 2, 4, 10
CAND = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
PAR = torch.tensor([[-1, 0, 1, 2], [-1, 0, 0, 1]])
X = torch.randn(B, N, V)


def vt(**kw):
    args = dict(candidates=CAND, parents=PAR, target_logits=X)
    args.update(kw)
    return ops.verify_tree(**args)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: vt(candidates=CAND.float()), TypeError, "candidates"),
        (lambda: vt(candidates=CAND.int()), TypeError, "candidates"),
        (lambda: vt(parents=PAR[:, :3]), ValueError, "parents"),
        (lambda: vt(parents=PAR[0]), ValueError, "parents"),
        (lambda: vt(target_logits=X[:1]), ValueError, "target_logits"),
        (lambda: vt(target_logits=X.double()), TypeError, "target_logits"),
        (lambda: vt(target_logits=None), ValueError, "target_logits"),
        (lambda: vt(parents=torch.tensor([[-1, 0, 2, 2], [-1, 0, 0, 1]])), ValueError, r"parents`\[0, 2\]"),
        (lambda: vt(parents=torch.tensor([[-1, 0, 1, 2], [0, 0, 0, 1]])), ValueError, r"parents`\[1, 0\]"),
        (lambda: vt(candidates=torch.tensor([[0, 1, 2, 10], [4, 5, 6, 7]])), ValueError, r"candidates`\[0, 3\]"),
        (lambda: vt(candidates=torch.tensor([[0, 1, -2, 3], [4, 5, 6, 7]])), ValueError, "candidates"),
        (lambda: vt(accept_draft=torch.ones(B, N)), TypeError, "accept_draft"),
        (lambda: vt(accept_draft=torch.ones(B, 3, dtype=torch.bool)), ValueError, "accept_draft"),
        (lambda: vt(temperature=1.0), ValueError, "uniforms"),
        (lambda: vt(temperature=-1.0), ValueError, "temperature"),
        (lambda: vt(temperature=1.0, uniforms=torch.full((B, N), 1.5)), ValueError, "uniforms"),
        (lambda: vt(target_logits=None, target_argmax=torch.zeros(B, N)), TypeError, "target_argmax"),
        (lambda: vt(candidates=CAND[:1], parents=PAR, target_logits=X[:1]), ValueError, "parents"),
    ],
)
def test_verify_tree(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_verify_tree_raw_op_checks():
    """The C++ CPU kernel checks values itself (for C++ users and validate=False)."""
    bad_par = torch.tensor([[-1, 0, 3, 2], [-1, 0, 0, 1]])
    with pytest.raises(RuntimeError, match="parents"):
        torch.ops.cospec.verify_tree(CAND, bad_par, X, None, None, 0.0, None)
    with pytest.raises(RuntimeError, match="candidates"):
        torch.ops.cospec.verify_tree(CAND + 7, PAR, X, None, None, 0.0, None)
    with pytest.raises(RuntimeError, match="parents"):  # validate=False defers to the C++ checks
        ops.verify_tree(CAND, bad_par, X, validate=False)


def test_logit_stats():
    with pytest.raises(TypeError, match="logits"):
        ops.logit_stats(X.long())
    with pytest.raises(ValueError, match="logits"):
        ops.logit_stats(X[0])
    with pytest.raises(ValueError, match="logits"):
        ops.logit_stats(torch.zeros(B, N, 0))
    with pytest.raises(ValueError, match="together"):
        ops.logit_stats(X, CAND)
    with pytest.raises(ValueError, match="candidates"):
        ops.logit_stats(X, CAND[:, :2], PAR[:, :2])
    with pytest.raises(ValueError, match=r"candidates`\[1, 1\]"):
        ops.logit_stats(X, torch.tensor([[0, 1, 2, 3], [4, 99, 6, 7]]), PAR)
    with pytest.raises(RuntimeError, match="parents"):
        torch.ops.cospec.logit_stats(X, CAND, torch.tensor([[-1, 1, 1, 2], [-1, 0, 0, 1]]))


def test_arbiter_score():
    x = torch.randn(5, 8)
    w1, b1, wo, bo = torch.randn(16, 8), torch.randn(16), torch.randn(16), torch.randn(1)
    with pytest.raises(ValueError, match="w1"):
        ops.arbiter_score(torch.randn(5, 7), w1, b1, w_out=wo, b_out=bo)
    with pytest.raises(TypeError, match="w1"):
        ops.arbiter_score(x, w1.double(), b1, w_out=wo, b_out=bo)
    with pytest.raises(TypeError, match="features"):
        ops.arbiter_score(x.long(), w1, b1, w_out=wo, b_out=bo)
    with pytest.raises(ValueError, match="w_out"):
        ops.arbiter_score(x, w1, b1, w_out=torch.randn(15), b_out=bo)
    with pytest.raises(ValueError, match="w2"):
        ops.arbiter_score(x, w1, b1, torch.randn(4, 15), torch.randn(4), w_out=torch.randn(4), b_out=bo)
    with pytest.raises(ValueError, match="together"):
        ops.arbiter_score(x, w1, b1, torch.randn(4, 16), w_out=torch.randn(4), b_out=bo)
    with pytest.raises(ValueError, match="activation"):
        ops.arbiter_score(x, w1, b1, w_out=wo, b_out=bo, activation="tanh")
    with pytest.raises(ValueError, match="w1"):
        ops.arbiter_score(x, torch.randn(2000, 8), torch.randn(2000), w_out=torch.randn(2000), b_out=bo)
    with pytest.raises(RuntimeError, match="w1"):
        torch.ops.cospec.arbiter_score(x, torch.randn(16, 7), b1, None, None, wo, bo, "gelu")


def test_kv_rollback():
    cache = torch.zeros(2, 2, 3, 16, 4)  # [layers, B, H, S, D]
    base = torch.tensor([0, 5])
    path = torch.tensor([[0, 2, -1], [0, 1, 2]])
    with pytest.raises(ValueError, match="cache"):
        ops.kv_rollback(torch.zeros(2, 16, 4), base, path)
    with pytest.raises(TypeError, match="base_len"):
        ops.kv_rollback(cache, base.int(), path)
    with pytest.raises(TypeError, match="path"):
        ops.kv_rollback(cache, base, path.float())
    with pytest.raises(ValueError, match="batch"):
        ops.kv_rollback(cache, torch.tensor([0, 1, 2]), path)
    with pytest.raises(ValueError, match="batch"):
        ops.kv_rollback(cache, base, path[:1])
    with pytest.raises(ValueError, match=r"path`\[0, 1\] = 3"):
        ops.kv_rollback(cache, base, torch.tensor([[0, 3, -1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="strictly increasing"):
        ops.kv_rollback(cache, base, torch.tensor([[0, 2, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="after -1"):
        ops.kv_rollback(cache, base, torch.tensor([[0, -1, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match=r"base_len`\[1\]"):
        ops.kv_rollback(cache, torch.tensor([0, 14]), path)
    with pytest.raises(ValueError, match="base_len"):
        ops.kv_rollback(cache, torch.tensor([-1, 0]), path)
    with pytest.raises(ValueError, match="contiguous"):
        ops.kv_rollback(cache.transpose(-1, -2), base, path)
    with pytest.raises(RuntimeError, match="base_len"):
        torch.ops.cospec.kv_rollback(cache, torch.tensor([0, 14]), path)
    with pytest.raises(RuntimeError, match="strictly increasing"):
        torch.ops.cospec.kv_rollback(cache, base, torch.tensor([[0, 2, 1], [0, 1, 2]]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_wrong_device():
    with pytest.raises(ValueError, match="parents"):
        vt(parents=PAR.cuda())
    with pytest.raises(ValueError, match="path"):
        ops.kv_rollback(torch.zeros(2, 2, 3, 16, 4), torch.tensor([0, 5]), torch.zeros(2, 3, dtype=torch.long).cuda())


def test_wrong_device_meta():
    """Device mismatch without a GPU: a meta tensor stands in for the other device."""
    with pytest.raises(ValueError, match="parents"):
        vt(parents=PAR.to("meta"))
    with pytest.raises(ValueError, match="base_len"):
        ops.kv_rollback(torch.zeros(2, 2, 3, 16, 4), torch.tensor([0, 5], device="meta"), torch.zeros(2, 3, dtype=torch.long))
