"""mode="cospec": the engine's walk equals a plain Python reference of the CoSpec walk
(cospec_ext.reference.cospec_decode_ref: no caches, full recompute), with arbiters that
always accept, never accept (then cospec equals spd) and a logistic stand-in that reads
features; the trace records the consulted decisions."""

import math

import pytest
import torch

import cospec_ext
from cospec_ext.engine import ConstantArbiter, LogisticArbiter
from cospec_ext.reference import cospec_decode_ref
from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

K, MAX_NEW = 4, 20


def _rows(ids, mask):
    return [ids[b, mask[b].bool()].tolist() for b in range(ids.shape[0])]


def _gen_part(seqs, P, b):
    row = seqs[b, P:].tolist()
    return row[: row.index(EOS) + 1] if EOS in row else row


def _engine_vs_ref(target, draft, arbiter, ref_fn, seed, threshold=0.5):
    ids, mask = prompts(4, seed)
    out = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=arbiter, threshold=threshold,
                            tree=f"chain:{K};fixed", max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD)
    for b, prompt in enumerate(_rows(ids, mask)):
        ref = cospec_decode_ref(target, draft, prompt, K, MAX_NEW, (EOS,), ref_fn, threshold)
        got = _gen_part(out.sequences, ids.shape[1], b)
        assert got == ref, f"row {b}: engine {got} vs reference {ref}"
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_always_accept_equals_reference(arch):
    target = tiny(arch, 3, seed=21)
    draft = tiny(arch, 1, seed=22)  # disagrees often, so the arbiter is consulted
    for seed in range(2):
        out = _engine_vs_ref(target, draft, ConstantArbiter(1.0), lambda t, d: 1.0, seed)
        assert out.stats.arbiter_consulted > 0 and out.stats.arbiter_accepted == out.stats.arbiter_consulted
        assert out.stats.mean_accept_len == pytest.approx(K + 1, abs=0.6)  # ends of rows may be cut


def test_never_accept_equals_spd_and_generate():
    target = tiny("llama", 3, seed=23)
    draft = first_layers(target, 1)
    ids, mask = prompts(4, 3)
    never = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=ConstantArbiter(0.0),
                              tree=f"chain:{K};fixed", max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD)
    spd = cospec_ext.decode(target, draft, ids, mask, mode="spd", tree=f"chain:{K};fixed", max_new_tokens=MAX_NEW,
                            eos_token_id=EOS, pad_token_id=PAD)
    assert torch.equal(never.sequences, spd.sequences)
    assert torch.equal(never.sequences, generate_greedy(target, ids, mask, MAX_NEW))
    assert never.stats.arbiter_accepted == 0 and never.stats.arbiter_consulted > 0


def test_feature_reading_arbiter_equals_reference():
    target = tiny("llama", 3, seed=24)
    draft = tiny("llama", 1, seed=25)
    w_t, w_d, bias = 1.0, 1.5, 4.0  # accepts candidates both models find plausible
    arb = LogisticArbiter(["t_logp_cand", "d_logp_cand"], [w_t, w_d], bias)
    ref_fn = lambda t, d: 1 / (1 + math.exp(-(w_t * t + w_d * d + bias)))  # noqa: E731
    accepted = consulted = 0
    for seed in range(3):
        out = _engine_vs_ref(target, draft, arb, ref_fn, seed)
        accepted += out.stats.arbiter_accepted
        consulted += out.stats.arbiter_consulted
    assert 0 < accepted < consulted, f"the stand-in should accept some mismatches, not all: {accepted}/{consulted}"


def test_cospec_on_trees_runs_and_respects_always_accept():
    target = tiny("llama", 3, seed=26)
    draft = tiny("llama", 1, seed=27)
    ids, mask = prompts(3, 4)
    # static: every node above the leaves has children, so each round walks to depth 2;
    # dynamic: the walk may end at a node the tree did not expand (depth <= 3).
    for tree, lo, hi in (("static:-1,0,0,1,2;fixed", 3, 3), ("tree:3,2;fixed", 2.5, 4)):
        out = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=ConstantArbiter(1.0), tree=tree,
                                max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD)
        assert lo <= out.stats.mean_accept_len <= hi, (tree, out.stats.mean_accept_len)
        assert out.sequences.shape[0] == 3


def test_trace_records_consulted_decisions():
    target = tiny("llama", 3, seed=28)
    draft = tiny("llama", 1, seed=29)
    ids, mask = prompts(3, 5)
    arb = LogisticArbiter(["d_logp_cand"], [1.0], 1.0)
    run = lambda: cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=arb,  # noqa: E731
                                    sample_arbiter=True, seed=5, tree="chain:3;fixed", max_new_tokens=MAX_NEW,
                                    eos_token_id=EOS, pad_token_id=PAD, return_trace=True)
    a, b = run(), run()
    assert torch.equal(a.sequences, b.sequences), "sample_arbiter with a seed must be reproducible"
    names = a.trace.feature_names
    total = 0
    for row in range(3):
        feats, acts, probs = a.trace.decisions(row)
        total += feats.shape[0]
        assert feats.shape[1] == len(names) and acts.dtype == torch.bool and probs.shape == acts.shape
        x = feats[:, names.index("d_logp_cand")]
        torch.testing.assert_close(probs, torch.sigmoid(x + 1.0))
        # the target's log-prob of a consulted candidate is below its top choice's (it was not the argmax)
        assert bool((feats[:, names.index("t_logp_cand")] < feats[:, names.index("t_logp_top")] + 1e-6).all())
        assert bool((feats[:, names.index("t_rank")] > 0).all())
    assert total == a.stats.arbiter_consulted > 0
    step = a.trace.steps[0]
    assert step["path"].shape == step["candidates"].shape and step["features"].shape[-1] == len(names)


def test_sampled_decisions_do_not_depend_on_the_batch():
    """With rollout ids, a row's sample_arbiter decisions are the same alone or in a batch
    (what makes data-parallel RL rollouts match a single-process run)."""
    target = tiny("llama", 3, seed=30)
    draft = tiny("llama", 1, seed=31)
    ids, mask = prompts(4, 9)
    arb = LogisticArbiter(["d_logp_cand", "kl_dt"], [1.0, -0.5], 1.0)
    kw = dict(mode="cospec", arbiter=arb, sample_arbiter=True, seed=11, tree="chain:3;fixed", max_new_tokens=MAX_NEW,
              eos_token_id=EOS, pad_token_id=PAD)
    full = cospec_ext.decode(target, draft, ids, mask, rollout_ids=torch.tensor([10, 11, 12, 13]), **kw)
    for b in (1, 3):
        P = int(mask[b].sum())
        one = cospec_ext.decode(target, draft, ids[b:b + 1, -P:], None, rollout_ids=torch.tensor([10 + b]), **kw)
        assert _gen_part(one.sequences, P, 0) == _gen_part(full.sequences, ids.shape[1], b)
