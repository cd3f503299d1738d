"""logit_stats against the float64 reference and PyTorch's own float32 error."""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops, reference
from _trees import DEVICES, DTYPES, make_tree_inputs
from _compare import assert_close_vs_torch, assert_equal, run_under_isas

SHAPES = [  # (kind, B, N, V)
    ("chain", 1, 1, 7),
    ("random", 1, 7, 111),
    ("star", 3, 16, 32000),
    ("deep", 2, 5, 152064),
    ("wide", 16, 128, 257),
    ("random", 4, 127, 1031),
]


def torch_f32_stats(x: torch.Tensor):
    """The same statistics computed by PyTorch ops in float32."""
    x = x.float()
    lse = torch.logsumexp(x, -1)
    logp = torch.log_softmax(x, -1)
    p = logp.exp()
    ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)
    return lse, ent


def check_stats(got, x, candidates=None, parents=None):
    want = reference.logit_stats_ref(x.cpu(), None if candidates is None else candidates.cpu(),
                                     None if parents is None else parents.cpu())
    lse32, ent32 = torch_f32_stats(x.cpu())
    assert_equal("argmax", got.argmax, want.argmax)
    assert_equal("max_logit", got.max_logit, want.max_logit)
    assert_equal("margin", got.margin, want.margin)
    assert_close_vs_torch("logsumexp", got.logsumexp, want.logsumexp, lse32)
    assert_close_vs_torch("entropy", got.entropy, want.entropy, ent32)
    if candidates is not None:
        par = parents.cpu().clamp(min=0)
        logp = torch.log_softmax(x.cpu().float(), -1)
        lp32 = logp[torch.arange(par.shape[0])[:, None], par, candidates.cpu()]
        lp32[:, 0] = 0
        assert_close_vs_torch("cand_logprob", got.cand_logprob, want.cand_logprob, lp32)
    else:
        assert (got.cand_logprob == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("kind,B,N,V", SHAPES)
def test_random_trees(kind, B, N, V, dtype, device, gen):
    cand, par, x = make_tree_inputs(kind, B, N, V, dtype, gen)
    got = ops.logit_stats(x.to(device), cand.to(device), par.to(device))
    check_stats(got, x, cand, par)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
def test_without_tree_and_special_values(dtype, device, gen):
    x = (torch.randn(3, 4, 5000, generator=gen) * 5).to(dtype)
    x[0, 0, ::3] = -float("inf")  # masked vocabulary
    x[0, 1] = -float("inf")  # fully masked row
    x[1, 0] = torch.randint(0, 3, (5000,), generator=gen).to(dtype)  # many ties
    x[1, 1, 4999] = 50  # max in the last element
    got = ops.logit_stats(x.to(device))
    check_stats(got, x)
    assert got.logsumexp[0, 1] == -float("inf") and got.entropy[0, 1] == 0


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device, gen):
    base = torch.randn(6, 9, 3001, generator=gen)
    views = {
        "row_slice": base[:, :, :2999],  # strided rows, contiguous within a row
        "batch_step": base[::2, 1:8],
        "transposed": base.transpose(0, 1),  # [N, B, V] viewed as [B', N', V]
        "elem_step": base[:, :, ::3],  # non-unit stride in V: handled by a copy
    }
    for name, x in views.items():
        got = ops.logit_stats(x.to(device))
        want = reference.logit_stats_ref(x)
        assert_equal(f"{name} argmax", got.argmax, want.argmax)
        torch.testing.assert_close(got.logsumexp.cpu(), want.logsumexp, rtol=1e-5, atol=1e-5, msg=name)


def test_all_isa_builds_agree(tmp_path):
    """The AVX-512, AVX2 and portable builds of the row kernel give the same answers."""
    results = run_under_isas(
        tmp_path,
        "import torch, cospec_ext, sys\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x = torch.randn(3, 5, 40013, generator=g) * 4\n"
        "x[0, 0, ::7] = -float('inf')\n"
        "outs = []\n"
        "for dt in (torch.float32, torch.float16, torch.bfloat16):\n"
        "    outs += list(cospec_ext.ops.logit_stats(x.to(dt)))\n"
        "torch.save(outs, sys.argv[1])\n",
    )
    for isa in ("avx2", "base"):
        for a, b in zip(results["avx512"], results[isa]):
            if a.dtype == torch.int64:
                assert_equal(f"{isa} argmax", b, a)
            else:
                torch.testing.assert_close(b, a, rtol=2e-6, atol=2e-6, equal_nan=True, msg=isa)
