"""Sampling (temperature > 0) is lossless in distribution: the 2nd and 3rd generated
tokens (the first ones that go through verification) follow the target's exact marginal.

Test: 4000 rows of one prompt, vocabulary 8, fixed seed; the marginals are computed
exactly by enumerating the target's distributions over every prefix. Pearson's
chi-square statistic must stay below the 0.999 quantile of chi2(7) = 24.32 (a correct
sampler fails with probability 0.1% per check; the seed is fixed, so the test is
deterministic)."""

import pytest
import torch

import cospec_ext
from _models import tiny

V, ROWS, T = 8, 4000, 1.0
CHI2_999_DF7 = 24.322


def _marginals(target, prompt):
    """Exact P(t2) and P(t3) of target sampling at temperature T, float64 [V] each."""
    with torch.no_grad():
        p = lambda seqs: torch.softmax(target(input_ids=torch.tensor(seqs)).logits[:, -1].double() / T, -1)  # noqa
        p1 = p([prompt])[0]  # [V]
        p2 = p([prompt + [a] for a in range(V)])  # [V(t1), V(t2)]
        p3 = p([prompt + [a, b] for a in range(V) for b in range(V)]).view(V, V, V)  # [t1, t2, t3]
    joint12 = p1[:, None] * p2
    return joint12.sum(0), (joint12[..., None] * p3).sum((0, 1))


def _chi2(tokens, p):
    counts = torch.bincount(tokens, minlength=V).double()
    expected = p * tokens.numel()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("mode,tree,compile", [("target", "chain:1", False), ("spd", "chain:2;fixed", False),
                                               ("spd", "static:-1,0,0,1;fixed", False),
                                               ("spd", "tree:2,2;fixed", False), ("spd", "chain:3", False),
                                               ("spd", "tree:2,2;fixed", True)])
def test_sampled_tokens_follow_target(mode, tree, compile):
    target = tiny("llama", 2, seed=31, vocab=V, init=0.5)
    draft = tiny("llama", 1, seed=32, vocab=V, init=0.5)
    prompt = [1, 5, 6, 4]
    ids = torch.tensor([prompt] * ROWS)
    out = cospec_ext.decode(target, draft, ids, mode=mode, tree=tree, max_new_tokens=3, temperature=T, seed=7,
                            eos_token_id=[], pad_token_id=0, compile=compile)
    m2, m3 = _marginals(target, prompt)
    new = out.sequences[:, len(prompt):]
    assert new.shape == (ROWS, 3)
    s2, s3 = _chi2(new[:, 1], m2), _chi2(new[:, 2], m3)
    assert s2 < CHI2_999_DF7, f"{mode} {tree}: 2nd token chi2 = {s2:.1f} (df 7)"
    assert s3 < CHI2_999_DF7, f"{mode} {tree}: 3rd token chi2 = {s3:.1f} (df 7)"
    if tree.endswith(";fixed"):  # (an adaptive tree may well stop drafting with this draft)
        assert 1.0 < out.stats.mean_accept_len, "the draft should be accepted sometimes"


def test_seed_makes_sampling_reproducible():
    target = tiny("llama", 2, seed=33, vocab=V, init=0.5)
    draft = tiny("llama", 1, seed=34, vocab=V, init=0.5)
    ids = torch.tensor([[1, 5, 6]] * 8)
    run = lambda s: cospec_ext.decode(target, draft, ids, tree="chain:3", max_new_tokens=12,  # noqa: E731
                                      temperature=0.8, seed=s, eos_token_id=[]).sequences
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_carried_prefill_samples_follow_target():
    """A compiled batch-1 spd call carries the target's prefill on its first round's forward
    (tests/test_carried_prefill.py): its first token is then sampled by the verification too. The
    1st and 2nd tokens of 1500 such calls (seeds 0..1499) follow the target's exact marginals."""
    from cospec_ext.engine.native import CARRIED_ROWS_MAX

    target = tiny("llama", 2, seed=35, vocab=V, init=0.5)
    draft = tiny("llama", 1, seed=36, vocab=V, init=0.5)
    prompt = [1, 5, 6, 4]
    assert len(prompt) - 1 + 3 <= CARRIED_ROWS_MAX  # chain:2: 3 nodes
    ids = torch.tensor([prompt])
    new, forwards, rounds = [], 0, 0
    for s in range(1500):
        out = cospec_ext.decode(target, draft, ids, mode="spd", tree="chain:2;fixed", max_new_tokens=2,
                                temperature=T, seed=s, eos_token_id=[], pad_token_id=0, compile=True)
        new.append(out.sequences[0, len(prompt):])
        forwards, rounds = forwards + out.stats.target_forwards, rounds + out.stats.rounds
    assert forwards == rounds, "every call's first round should carry the prefill"
    new = torch.stack(new)  # [1500, 2]
    with torch.no_grad():
        p1 = torch.softmax(target(input_ids=ids).logits[0, -1].double() / T, -1)
    m2, _ = _marginals(target, prompt)
    s1, s2 = _chi2(new[:, 0], p1), _chi2(new[:, 1], m2)
    assert s1 < CHI2_999_DF7, f"1st token chi2 = {s1:.1f} (df 7)"
    assert s2 < CHI2_999_DF7, f"2nd token chi2 = {s2:.1f} (df 7)"
