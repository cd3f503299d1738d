"""tree_attention (attention of a few queries per row over a static KV cache under a boolean
mask, grouped K/V heads) against its float64 reference and SDPA: random shapes and masks
(fully masked rows give zeros), D not a multiple of the vector width, few and many query rows
per K/V head (the kernel's two score paths), cache views with strides, thread counts, every CPU
instruction-set build, bad inputs, under torch.compile, and the compiled forward of a model past
the fused size (which attends through it) equal to generate() at batch 1 and 2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cospec_ext
from cospec_ext import ops, reference
from _compare import run_under_isas
from _trees import DEVICES


def check(q, k, v, mask, name, scale=None):
    got = ops.tree_attention(q, k, v, mask, scale)
    want = reference.tree_attention_ref(q, k, v, mask, scale)
    assert got.shape == want.shape and got.dtype == torch.float32 and got.is_contiguous(), name
    torch.testing.assert_close(got.double().cpu(), want, rtol=1e-5, atol=2e-6, msg=name)
    return got


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,Hq,Hk,n,S,D", [(1, 6, 2, 1, 128, 64), (1, 6, 2, 8, 128, 64), (2, 4, 4, 5, 37, 24),
                                           (3, 6, 3, 1, 70, 72), (2, 8, 2, 24, 200, 16), (1, 1, 1, 3, 5, 1),
                                           (4, 2, 1, 7, 33, 130)])
def test_random(B, Hq, Hk, n, S, D, device, gen):
    q = torch.randn(B, Hq, n, D, generator=gen)
    k, v = torch.randn(B, Hk, S, D, generator=gen), torch.randn(B, Hk, S, D, generator=gen)
    mask = torch.rand(B, 1, n, S, generator=gen) < 0.4
    mask[0, 0, 0] = False  # one query with nothing open: zeros
    d = lambda t: t.to(device)  # noqa: E731
    got = check(d(q), d(k), d(v), d(mask), f"B={B} Hq={Hq} Hk={Hk} n={n} S={S} D={D}")
    assert torch.equal(got[0, :, 0].cpu(), torch.zeros(Hq, D))
    # where every query opens a slot: SDPA's math (enable_gqa), to float32 rounding
    mask[0, 0, 0, 0] = True
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=Hq != Hk)
    torch.testing.assert_close(ops.tree_attention(d(q), d(k), d(v), d(mask)).cpu(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_cache_views_and_scale(device, gen):
    """k, v as the engine passes them (cache[0, layer, :Bb], cache[1, layer, :Bb] of one
    [2, L, B0, H, S, D] buffer), q transposed from [B, n, H, D], a strided mask, a custom scale,
    and a tree's mask (each query opens the prefix and its ancestors)."""
    cache = torch.randn(2, 3, 5, 2, 40, 32, generator=gen).to(device)
    q = torch.randn(3, 9, 6, 32, generator=gen).transpose(1, 2).to(device)  # [3, 6, 9, 32], unit stride along D
    big = torch.rand(3, 1, 9, 80, generator=gen) < 0.5
    mask = big[..., ::2].to(device)  # [3, 1, 9, 40], stride 2 along S
    check(q, cache[0, 1, :3], cache[1, 1, :3], mask, "views", scale=0.3)
    from _trees import make_tree_inputs
    cand, par, _ = make_tree_inputs("random", 3, 9, 10, torch.float32, gen)
    anc = torch.eye(9, dtype=torch.bool).expand(3, 9, 9).clone()
    for i in range(1, 9):
        anc[:, i] |= anc.gather(1, par[:, i:i + 1, None].expand(3, 1, 9))[:, 0]
    tree = torch.zeros(3, 1, 9, 40, dtype=torch.bool)
    tree[..., :20] = True
    tree[:, 0, :, 20:29] = anc
    check(q, cache[0, 2, :3], cache[1, 2, :3], tree.to(device), "tree mask")


def test_threads_and_special_values(gen):
    """The pair split over threads does not change the result; huge scores do not overflow
    (the max is subtracted); NaN in a key propagates to the queries that read it."""
    q, k, v = torch.randn(8, 6, 8, 64, generator=gen), torch.randn(8, 2, 128, 64, generator=gen), torch.randn(
        8, 2, 128, 64, generator=gen)
    mask = torch.rand(8, 1, 8, 128, generator=gen) < 0.5
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.tree_attention(q, k, v, mask)
        torch.set_num_threads(max(2, threads))
        many = ops.tree_attention(q, k, v, mask)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    big = ops.tree_attention(q * 100, k, v, mask)  # scores ~1e3: float32 rounding of the scores
    assert torch.isfinite(big).all()              # is ~1e-4, amplified into the weights
    torch.testing.assert_close(big.double(), reference.tree_attention_ref(q * 100, k, v, mask), rtol=1e-3, atol=1e-3)
    k2 = k.clone()
    k2[0, 0, 3] = float("nan")
    m2 = mask.clone()
    m2[0, 0, :, 3] = True
    out = ops.tree_attention(q, k2, v, m2)
    assert torch.isnan(out[0, :3]).all() and not torch.isnan(out[1:]).any()


def test_instruction_sets(tmp_path):
    """Each CPU build (AVX-512, AVX2, portable) against the float64 reference."""
    script = """
import sys, torch
from cospec_ext import ops
g = torch.Generator().manual_seed(3)
out = []
for B, Hq, Hk, n, S, D in ((2, 6, 2, 8, 100, 64), (1, 4, 2, 1, 33, 20), (2, 2, 2, 5, 17, 72)):
    q, k, v = torch.randn(B, Hq, n, D, generator=g), torch.randn(B, Hk, S, D, generator=g), torch.randn(B, Hk, S, D, generator=g)
    m = torch.rand(B, 1, n, S, generator=g) < 0.5
    out += [q, k, v, m, ops.tree_attention(q, k, v, m)]
torch.save(out, sys.argv[1])
"""
    for isa, res in run_under_isas(tmp_path, script).items():
        for i in range(0, len(res), 5):
            q, k, v, m, o = res[i:i + 5]
            torch.testing.assert_close(o.double(), reference.tree_attention_ref(q, k, v, m), rtol=1e-5, atol=2e-6,
                                       msg=f"{isa} case {i // 5}")


def test_under_compile(gen):
    q, k, v = torch.randn(2, 6, 5, 64, generator=gen), torch.randn(2, 2, 50, 64, generator=gen), torch.randn(
        2, 2, 50, 64, generator=gen)
    mask = torch.rand(2, 1, 5, 50, generator=gen) < 0.5

    def f(q, k, v, mask):
        return torch.ops.cospec.tree_attention(q * 2, k, v, mask, 0.125).relu()

    got = torch.compile(f, fullgraph=True, dynamic=False)(q, k, v, mask)
    assert torch.equal(got, ops.tree_attention(q * 2, k, v, mask, 0.125).relu())


@pytest.mark.parametrize("B,mode", [(1, "target"), (2, "target"), (2, "spd")])
def test_compiled_forward_of_a_larger_model(B, mode):
    """A model past FUSED_BYTES attends through tree_attention in its compiled CPU forward
    (steps, verification trees, carried prefills, batch padding): greedy output equals
    generate()."""
    from cospec_ext.engine.core import FUSED_BYTES
    from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

    target = tiny("llama", layers=2, seed=8, hidden=256, max_pos=128)
    assert sum(p.numel() * 4 for p in target.parameters()) > FUSED_BYTES
    draft = first_layers(target, 1) if mode == "spd" else None
    for seed in (90, 91):
        ids, mask = prompts(B, seed, min_len=3, max_len=12)
        out = cospec_ext.decode(target, draft, ids, mask, mode=mode, tree="tree:2,2;fixed", max_new_tokens=12,
                                eos_token_id=EOS, pad_token_id=PAD, compile=True)
        ref = generate_greedy(target, ids, mask, 12)
        assert torch.equal(out.sequences, ref), f"B={B} {mode} seed={seed}"


def test_bad_inputs():
    q, k, v = torch.randn(1, 4, 2, 8), torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8)
    m = torch.ones(1, 1, 2, 10, dtype=torch.bool)
    with pytest.raises(TypeError, match="`q`"):
        ops.tree_attention(q.double(), k, v, m)
    with pytest.raises(TypeError, match="`mask`"):
        ops.tree_attention(q, k, v, m.float())
    with pytest.raises(ValueError, match="`k`"):
        ops.tree_attention(q, k[..., :4], v, m)
    with pytest.raises(ValueError, match="heads"):
        ops.tree_attention(torch.randn(1, 3, 2, 8), k, v, m)
    with pytest.raises(ValueError, match="`mask`"):
        ops.tree_attention(q, k, v, m[..., :9])
    with pytest.raises(ValueError, match="`scale`"):
        ops.tree_attention(q, k, v, m, float("nan"))
    with pytest.raises(RuntimeError, match="`mask`"):  # the kernel's own checks
        torch.ops.cospec.tree_attention(q, k, v, m[:, :, :1], 1.0)
    with pytest.raises(RuntimeError, match="unit stride"):
        torch.ops.cospec.tree_attention(q, k.transpose(2, 3).contiguous().transpose(2, 3), v, m, 1.0)
    with pytest.raises(RuntimeError, match="multiple"):
        torch.ops.cospec.tree_attention(torch.randn(1, 3, 2, 8), k, v, m, 1.0)
