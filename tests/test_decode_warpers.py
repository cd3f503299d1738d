"""top_k / top_p / min_p: sampled output follows the *warped* target distribution, in target
mode and in spd over chain, static and dynamic trees (the method of test_decode_sampling.py).

The exact marginals of the 2nd and 3rd generated tokens are computed by enumerating every
prefix and warping each conditional with transformers' own TemperatureLogitsWarper,
TopKLogitsWarper, TopPLogitsWarper and MinPLogitsWarper (generate()'s order), so the reference
is independent of engine/warp.py. Tokens the warped distribution gives no mass must never be
drawn; the others pass Pearson's chi-square below its 0.999 quantile (df = support - 1)."""

import math

import pytest
import torch
from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

import cospec_ext
from cospec_ext import ops
from cospec_ext.engine.warp import GENERATE_DEFAULTS, Warper, resolve
from _models import EOS, PAD, first_layers, prompts, tiny

V, ROWS = 8, 4000
CHI2_999 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 6: 22.458, 7: 24.322}


def _hf_warp(logits, T, top_k, top_p, min_p):
    """float32 logits [R, V] -> warped scores [R, V] as generate(do_sample=True) builds them."""
    s = logits.float() / T
    if top_k:
        s = TopKLogitsWarper(top_k)(None, s)
    if top_p < 1.0:
        s = TopPLogitsWarper(top_p)(None, s)
    if min_p:
        s = MinPLogitsWarper(min_p)(None, s)
    return s


def _marginals(target, prompt, T, knobs):
    """Exact P(t2) and P(t3) under warped sampling, float64 [V] each."""
    def p(seqs):
        logits = target(input_ids=torch.tensor(seqs)).logits[:, -1]  # [R, V]
        keep = torch.isfinite(_hf_warp(logits, T, **knobs))
        return torch.softmax((logits.double() / T).masked_fill(~keep, -math.inf), -1)

    with torch.no_grad():
        p1 = p([prompt])[0]  # [V]
        p2 = p([prompt + [a] for a in range(V)])  # [t1, t2]
        p3 = p([prompt + [a, b] for a in range(V) for b in range(V)]).view(V, V, V)  # [t1, t2, t3]
    joint12 = p1[:, None] * p2
    return joint12.sum(0), (joint12[..., None] * p3).sum((0, 1))


def _check(tokens, p, what):
    counts = torch.bincount(tokens, minlength=V).double()
    support = p > 0
    assert counts[~support].sum() == 0, f"{what}: drew filtered tokens {(~support & (counts > 0)).nonzero()[:, 0].tolist()}"
    df = int(support.sum()) - 1
    if df == 0:
        return
    expected = p[support] * tokens.numel()
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_999[df], f"{what}: chi2 = {chi2:.1f} (df {df}, limit {CHI2_999[df]})"


CASES = [  # mode, tree, temperature, knobs
    ("spd", "chain:2;fixed", 1.0, dict(top_k=3)),
    ("spd", "static:-1,0,0,1;fixed", 0.6, dict(top_k=2)),
    ("spd", "tree:2,2;fixed", 1.4, dict(top_k=4)),
    ("spd", "chain:2;fixed", 0.7, dict(top_p=0.7)),
    ("spd", "static:-1,0,0,1;fixed", 1.0, dict(top_p=0.6)),
    ("spd", "tree:2,2;fixed", 1.0, dict(top_p=0.8)),
    ("spd", "chain:3;fixed", 1.3, dict(min_p=0.3)),
    ("spd", "static:-1,0,0,1;fixed", 1.0, dict(min_p=0.2)),
    ("spd", "tree:2,2;fixed", 0.8, dict(min_p=0.15)),
    ("spd", "tree:2,2;fixed", 1.2, dict(top_k=5, top_p=0.9, min_p=0.1)),
    ("target", "chain:1", 1.0, dict(top_p=0.7)),
    ("target", "chain:1", 0.8, dict(top_k=4, top_p=0.9, min_p=0.1)),
]


@pytest.mark.parametrize("mode,tree,T,knobs", CASES)
def test_sampled_tokens_follow_the_warped_target(mode, tree, T, knobs):
    target = tiny("llama", 2, seed=31, vocab=V, init=0.5)
    draft = tiny("llama", 1, seed=32, vocab=V, init=0.5)
    prompt = [1, 5, 6, 4]
    out = cospec_ext.decode(target, draft, torch.tensor([prompt] * ROWS), mode=mode, tree=tree, max_new_tokens=3,
                            temperature=T, seed=7, eos_token_id=[], pad_token_id=0, **knobs)
    full = dict(top_k=0, top_p=1.0, min_p=0.0)
    full.update(knobs)
    m2, m3 = _marginals(target, prompt, T, full)
    new = out.sequences[:, len(prompt):]
    assert new.shape == (ROWS, 3)
    _check(new[:, 1], m2, f"t2 {mode} {tree} T={T} {knobs}")
    _check(new[:, 2], m3, f"t3 {mode} {tree} T={T} {knobs}")
    if mode == "spd":
        assert 1.0 < out.stats.mean_accept_len, "the draft should be accepted sometimes"


def test_warper_equals_transformers_on_ties():
    """The kept set equals transformers' warpers' exactly, on rows with many tied logits."""
    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        n = int(torch.randint(2, 40, (1,), generator=g))
        x = (torch.randn(2, 3, n, generator=g) * 2).round()  # [2, 3, V], ties
        T = (0.5, 1.0, 1.7)[trial % 3]
        k = int(torch.randint(1, n + 3, (1,), generator=g))
        p = float(torch.rand(1, generator=g)) * 0.99 + 0.01
        m = float(torch.rand(1, generator=g)) * 0.6
        for kk, pp, mm in ((k, 1.0, 0.0), (0, p, 0.0), (0, 1.0, m), (k, p, m)):
            want = torch.isinf(_hf_warp(x.reshape(-1, n), T, kk, pp, mm)).reshape(x.shape)
            got = Warper(T, kk, pp, mm)(x)
            assert torch.equal(torch.isneginf(got), want), f"trial {trial} top_k={kk} top_p={pp} min_p={mm}"
            assert torch.equal(got[~want], x[~want]), "kept logits must be unchanged"


def test_verify_tree_never_takes_filtered_tokens():
    """-inf logits (filtered tokens): a child with one is never accepted and the residual never
    draws one (the special rows of test_special_rows.py cover the kernel's -inf arithmetic)."""
    g = torch.Generator().manual_seed(3)
    B, N, n = 64, 4, 30
    x = torch.randn(B, N, n, generator=g)
    x[..., ::2] = -math.inf  # even tokens filtered
    par = torch.tensor([[-1, 0, 0, 1]] * B)
    cand = torch.randint(0, n, (B, N), generator=g)
    for s in range(20):
        u = torch.rand(B, N, generator=torch.Generator().manual_seed(s))
        v = ops.verify_tree(cand, par, x, temperature=0.9, uniforms=u)
        assert (v.next_token % 2 == 1).all(), "the residual drew a filtered token"
        acc = [cand[b, v.path[b, 1:v.accept_len[b] + 1]] for b in range(B)]
        assert all((a % 2 == 1).all() for a in acc), "a filtered child was accepted"


def test_greedy_ignores_the_warpers():
    target = tiny("llama", 2, seed=3)
    draft = first_layers(target, 1)
    ids, mask = prompts(3, seed=5)
    common = dict(max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, tree="chain:3")
    want = cospec_ext.decode(target, draft, ids, mask, **common).sequences
    got = cospec_ext.decode(target, draft, ids, mask, top_k=1, top_p=0.01, min_p=0.99, **common).sequences
    assert torch.equal(got, want)


def test_defaults_come_from_the_generation_config():
    target = tiny("llama", 2, seed=3)  # vocabulary 64
    draft = first_layers(target, 1)
    ids, mask = prompts(3, seed=5)
    common = dict(max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, tree="chain:3", temperature=1.0, seed=2)
    # generate()'s default when the model sets nothing: top_k 50 (and top_p, min_p off)
    assert target.generation_config.top_k is None
    w = resolve(target, 1.0, None, None, None)
    assert (w.top_k, w.top_p, w.min_p) == (GENERATE_DEFAULTS["top_k"], 1.0, 0.0) == (50, 1.0, 0.0)
    assert resolve(target, 0.0, None, None, None) == Warper(0.0)  # greedy fills nothing
    plain = cospec_ext.decode(target, draft, ids, mask, **common).sequences
    assert torch.equal(plain, cospec_ext.decode(target, draft, ids, mask, top_k=50, **common).sequences)
    assert not torch.equal(plain, cospec_ext.decode(target, draft, ids, mask, top_k=0, **common).sequences)
    target.generation_config.top_k, target.generation_config.top_p, target.generation_config.min_p = 1, 0.9, 0.05
    try:
        w = resolve(target, 0.7, None, None, None)
        assert (w.top_k, w.top_p, w.min_p) == (1, 0.9, 0.05)
        assert resolve(target, 0.7, 7, 1.0, 0).top_k == 7  # given values win
        # top_k 1 from the config: sampling is greedy
        greedy = cospec_ext.decode(target, draft, ids, mask, **{**common, "temperature": 0.0}).sequences
        assert torch.equal(cospec_ext.decode(target, draft, ids, mask, **common).sequences, greedy)
    finally:
        target.generation_config.top_k = target.generation_config.top_p = target.generation_config.min_p = None


@pytest.mark.parametrize("name,value", [("top_k", -1), ("top_k", 2.5), ("top_k", True), ("top_k", "3"),
                                        ("top_p", 0.0), ("top_p", 1.5), ("top_p", -0.1), ("top_p", float("nan")),
                                        ("min_p", -0.1), ("min_p", 1.01), ("min_p", float("nan"))])
def test_bad_values_raise(name, value):
    target = tiny("llama", 1, seed=3)
    ids = torch.tensor([[5, 6, 7]])
    for T in (0.0, 1.0):
        with pytest.raises(ValueError, match=f"`{name}`"):
            cospec_ext.decode(target, None, ids, mode="target", max_new_tokens=2, temperature=T, **{name: value})
