"""arbiter_score (fused MLP) against the float64 reference and PyTorch's float32 error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cospec_ext import ops, reference
from _trees import DEVICES, DTYPES
from _compare import assert_close_vs_torch, run_under_isas


def make_weights(Fdim, H1, H2, gen):
    w = {
        "w1": torch.randn(H1, Fdim, generator=gen) / Fdim**0.5,
        "b1": torch.randn(H1, generator=gen) * 0.1,
        "w2": torch.randn(H2, H1, generator=gen) / H1**0.5 if H2 else None,
        "b2": torch.randn(H2, generator=gen) * 0.1 if H2 else None,
    }
    w["w_out"] = torch.randn(H2 or H1, generator=gen) / (H2 or H1) ** 0.5
    w["b_out"] = torch.randn(1, generator=gen)
    return w


def torch_f32(x, w, act):
    f = F.gelu if act == "gelu" else F.relu
    h = f(F.linear(x.float(), w["w1"], w["b1"]))
    if w["w2"] is not None:
        h = f(F.linear(h, w["w2"], w["b2"]))
    return h @ w["w_out"] + w["b_out"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("act", ["gelu", "relu"])
@pytest.mark.parametrize("M,Fdim,H1,H2", [(0, 8, 16, 0), (1, 1, 1, 0), (7, 13, 64, 33), (1000, 32, 128, 64), (5, 24, 1024, 0), (3, 17, 50, 1024)])
def test_random(M, Fdim, H1, H2, act, dtype, device, gen):
    w = make_weights(Fdim, H1, H2, gen)
    x = torch.randn(M, Fdim, generator=gen).to(dtype)
    wd = {k: (v.to(device) if v is not None else None) for k, v in w.items()}
    got = ops.arbiter_score(x.to(device), wd["w1"], wd["b1"], wd["w2"], wd["b2"], w_out=wd["w_out"],
                            b_out=wd["b_out"], activation=act)
    assert got.dtype == torch.float32 and got.shape == (M,)
    want = reference.arbiter_score_ref(x, **w, activation=act)
    assert_close_vs_torch("score", got, want, torch_f32(x, w, act), atol=1e-5)


def test_non_contiguous_features(gen):
    w = make_weights(12, 32, 16, gen)
    wide = torch.randn(40, 30, generator=gen)
    for x in (wide[:, 3:15], wide[::3, :12], wide[:12, :24:2]):
        got = ops.arbiter_score(x, **{k: v for k, v in w.items() if k not in ("w_out", "b_out")},
                                w_out=w["w_out"], b_out=w["b_out"])
        want = reference.arbiter_score_ref(x, **w)
        assert_close_vs_torch("score", got, want, torch_f32(x, w, "gelu"))


def test_all_isa_builds_agree(tmp_path):
    """The AVX-512, AVX2 and portable builds of the CPU kernel give the same scores (up to
    float32 rounding: their FMA use and lane order in the output dot product differ)."""
    results = run_under_isas(
        tmp_path,
        "import torch, cospec_ext, sys\n"
        "g = torch.Generator().manual_seed(0)\n"
        "outs = []\n"
        "for M, F, H1, H2 in ((1000, 32, 128, 64), (37, 13, 50, 33), (9, 40, 1024, 0), (5, 7, 3, 1024)):\n"
        "    x = torch.randn(M, F, generator=g) * 2\n"
        "    w1, b1 = torch.randn(H1, F, generator=g) / F**0.5, torch.randn(H1, generator=g) * 0.1\n"
        "    w2 = torch.randn(H2, H1, generator=g) / H1**0.5 if H2 else None\n"
        "    b2 = torch.randn(H2, generator=g) * 0.1 if H2 else None\n"
        "    wo, bo = torch.randn(H2 or H1, generator=g) / (H2 or H1)**0.5, torch.randn(1, generator=g)\n"
        "    for dt in (torch.float32, torch.float16, torch.bfloat16):\n"
        "        for act in ('gelu', 'relu'):\n"
        "            outs.append(cospec_ext.ops.arbiter_score(x.to(dt), w1, b1, w2, b2, w_out=wo,\n"
        "                                                     b_out=bo, activation=act))\n"
        "torch.save(outs, sys.argv[1])\n",
    )
    for isa in ("avx2", "base"):
        for i, (a, b) in enumerate(zip(results["avx512"], results[isa])):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=5e-6, msg=f"{isa}, case {i}")
