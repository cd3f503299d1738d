"""The adaptive depth across calls (engine/adaptive.PairMemory) and the draft's deferred
prefill: a greedy call starts from what the last call with the same models learned, a draft
remembered as useless is never run (not even prefilled), outputs stay equal to generate(), and
nothing is remembered where the output could depend on it (sampling)."""

import pytest
import torch

import cospec_ext
from cospec_ext.engine import adaptive, loop
from cospec_ext.engine.adaptive import MEMORY, DepthController, forget
from _models import EOS, PAD, generate_greedy, prompts, tiny


def _decode(target, draft, ids, mask, tree="chain:4", **kw):
    kw.setdefault("max_new_tokens", 16)
    return cospec_ext.decode(target, draft, ids, mask, mode="spd", tree=tree, eos_token_id=EOS, pad_token_id=PAD, **kw)


def _entries(target):
    return MEMORY._by_target.get(target, {})


def test_restore_keeps_timings_and_halves_the_evidence():
    c = DepthController(4, True, None)
    c.succ, c.trials = 0.2, 6.0  # a ~ 0.03: a useless draft
    c.observe_times(0, None, 1.0)
    c.observe_times(1, 0.2, 1.1)
    d = DepthController(4, True, None)
    d.restore(c.state())
    assert d.t_target == c.t_target and d.t_target is not c.t_target and d.t_draft == 0.2
    assert (d.succ, d.trials) == pytest.approx((0.6, 4.0))  # halfway back to the prior (1 of 2)
    assert d.choose() == 0  # a = 0.15 and a depth-1 round costs 1.3 steps: not tried at once
    for _ in range(3):  # calls that never draft move the evidence on toward the prior
        d.restore(d.state())
    assert d.accept_rate > 0.4 and d.choose() > 0  # so the draft is tried again (1.42 / 1.3 > 1)


def test_probes_keep_their_schedule_across_calls():
    """Calls shorter than the probe wait still probe: the idle rounds of one call count toward
    the next call's probe, which comes on the round an uninterrupted controller would probe."""
    def off():
        c = DepthController(4, True, None)
        c.succ, c.trials = 0.0, 10.0  # a = 0: drafting is off
        c.observe_times(0, None, 1.0)
        c.observe_times(1, 0.6, 1.0)  # a probe costs 0.6 steps: a wait of 30 rounds
        return c

    one = off()
    whole = [i for i in range(40) if one.choose() == 1]
    c, split = off(), []
    for call in range(4):  # four calls of ten rounds
        split += [10 * call + i for i in range(10) if c.choose() == 1]
        d = DepthController(4, True, None)
        d.restore(c.state())
        d.succ, d.trials = c.succ, c.trials  # (the evidence's halfway move aside)
        c = d
    assert whole == split and len(whole) == 1


def test_a_draft_remembered_as_useless_is_never_run_and_outputs_stay_exact():
    forget()
    target, useless = tiny("llama", layers=2, seed=3), tiny("llama", layers=1, seed=4)
    ids, mask = prompts(3, 6)
    ref = generate_greedy(target, ids, mask, 16)
    first = _decode(target, useless, ids, mask)
    assert torch.equal(first.sequences, ref) and first.stats.draft_forwards > 0
    (key, (ref_draft, st)), = _entries(target).items()
    assert ref_draft() is useless
    # make the remembered state unambiguous (timings here are noise): no success in 10 trials,
    # a level as dear as a target step
    st.update(succ=0.0, trials=20.0, t_draft=1.0, t_target={0: 1.0, 1: 1.0}, t_catch=1.0)
    second = _decode(target, useless, ids, mask)
    assert torch.equal(second.sequences, ref)
    assert second.stats.draft_forwards == 0  # not even its prefill ran
    other = tiny("llama", layers=1, seed=5)  # another draft: its own entry, drafts as before
    assert _decode(target, other, ids, mask).stats.draft_forwards > 0
    assert len(_entries(target)) == 2
    forget(useless)  # only that draft's entry goes
    assert [v[0]() for v in _entries(target).values()] == [other]


def test_sampling_never_reads_or_writes_the_memory():
    """At temperature > 0 the tree changes the draws, so the depth must not depend on earlier
    calls: the same seed gives the same tokens whatever was remembered."""
    forget()
    target, draft = tiny("llama", layers=2, seed=1), tiny("llama", layers=1, seed=2)
    ids, mask = prompts(2, 4)
    kw = dict(temperature=0.8, seed=11)
    a = _decode(target, draft, ids, mask, **kw).sequences
    assert not _entries(target)
    _decode(target, draft, ids, mask)  # greedy: remembered
    for st in [v[1] for v in _entries(target).values()]:
        st.update(succ=0.0, trials=20.0)
    b = _decode(target, draft, ids, mask, **kw).sequences
    assert torch.equal(a, b)


@pytest.mark.parametrize("compile", [False, True])
def test_deferred_prefill_after_rows_finished(compile):
    """Plain steps first (rows finish meanwhile, the batch is compacted), then the draft's first
    prefill covers the live rows' prompts: outputs equal generate()'s."""
    forget()
    target = tiny("llama", layers=2, seed=7)
    draft = tiny("llama", layers=1, seed=7)
    ids, mask = prompts(6, 8)
    free = generate_greedy(target, ids, mask, 30, eos=None)
    eos = int(free[0, ids.shape[1] + 2])  # a token row 0 emits early
    ref = generate_greedy(target, ids, mask, 30, eos=eos)
    calls = []
    real = DepthController.choose

    def late(self):  # depth 0 for the first 6 rounds, then the usual choice
        calls.append(1)
        return 0 if len(calls) <= 6 else max(real(self), 1)

    prefills = []
    real_prefill = loop.SpecEngine._prefill_draft

    def spy(self):
        prefills.append(self.rows.numel())
        real_prefill(self)

    orig = (DepthController.choose, loop.SpecEngine._prefill_draft)
    try:
        DepthController.choose, loop.SpecEngine._prefill_draft = late, spy
        out = cospec_ext.decode(target, draft, ids, mask, mode="spd", tree="chain:3", max_new_tokens=30,
                                eos_token_id=eos, pad_token_id=PAD, compile=compile)
    finally:
        DepthController.choose, loop.SpecEngine._prefill_draft = orig
    assert torch.equal(out.sequences, ref)
    assert len(prefills) == 1 and prefills[0] < 6, f"prefills over {prefills} rows (some rows should have finished)"


def test_idle_rounds_skip_most_evaluations_but_not_the_probes():
    """While drafting is off, three of four rounds skip the cost evaluation; probes still come
    at the rounds a full evaluation every round gives (8, 16, 32 idle rounds)."""
    c = DepthController(4, True, None)
    c.succ, c.trials = 0.0, 10.0
    c.observe_times(0, None, 1.0)
    c.observe_times(1, 0.05, 1.0)
    evals = []
    real = c.round_costs
    c.round_costs = lambda: evals.append(1) or real()
    assert [i for i in range(60) if c.choose() == 1] == [7, 23, 55]
    assert len(evals) < 60 / 2
