"""Self-drafts (the target's own first layers) share the target's cache of those layers
(engine/selfdraft.py), and the adaptive depth's per-depth costs (engine/adaptive.py)."""

import math

import pytest
import torch

import cospec_ext
from cospec_ext.engine import ConstantArbiter
from cospec_ext.engine.adaptive import DepthController
from cospec_ext.engine.adapter import HFAdapter
from cospec_ext.engine.kv import KVCache
from cospec_ext.engine.selfdraft import self_draft, shared_prefix_layers
from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

MAX_NEW = 12


def test_detects_a_self_draft_only():
    target = tiny("llama", layers=3, seed=1)
    ta = HFAdapter(target)
    assert shared_prefix_layers(ta, HFAdapter(self_draft(target, 2))) == 2
    assert shared_prefix_layers(ta, HFAdapter(first_layers(target, 2))) == 0  # equal weights, not the same modules
    assert shared_prefix_layers(ta, ta) == 0
    other = tiny("llama", layers=3, seed=2)
    assert shared_prefix_layers(HFAdapter(other), HFAdapter(self_draft(target, 2))) == 0
    with pytest.raises(ValueError, match="`layers` must be in"):
        self_draft(target, 3)  # all of them: not a draft


def test_prefix_view_follows_its_owner():
    """The view is the owner's first layers; rollback and row compaction are the owner's only
    (running them on the view too would move the shared layers twice)."""
    torch.manual_seed(0)
    owner = KVCache(3, 3, 2, 16, 4, torch.float32, torch.device("cpu"))
    owner.data.normal_()
    view = KVCache.prefix_of(owner, 2)
    assert view.data.data_ptr() == owner.data.data_ptr() and view.data.shape == (2, 2, 3, 2, 16, 4)
    before = owner.data.clone()
    view.rollback(torch.tensor([2, 3, 4]), torch.tensor([[0, 2, -1]] * 3))
    assert torch.equal(owner.data, before)
    owner.rollback(torch.tensor([2, 3, 4]), torch.tensor([[0, 2, -1]] * 3))
    assert torch.equal(owner.data[:, :, 0, :, 3], before[:, :, 0, :, 4])  # moved once
    rolled = owner.data.clone()
    owner.keep_rows([1, 2], 16)
    view.keep_rows([1, 2], 16)
    assert view.batch == 2 and view.active().shape[2] == 2
    assert torch.equal(owner.data[:, :, 0], rolled[:, :, 1])  # twice would have brought row 2 here
    assert torch.equal(owner.data[:, :, 1], rolled[:, :, 2])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("compile", [False, True])
def test_spd_with_a_self_draft_equals_generate(arch, compile):
    """Greedy spd with the shared cache equals generate() token for token (left padding, rows
    finishing apart, chains, dynamic and static trees), with no draft prefill."""
    target = tiny(arch, layers=3, seed=1)
    draft = self_draft(target, 1)
    ids, mask = prompts(3, 2)
    ref = generate_greedy(target, ids, mask, MAX_NEW)
    for tree in ("chain:4", "chain:2;fixed", "tree:2,2;fixed", "static:-1,0,0,1;fixed"):
        out = cospec_ext.decode(target, draft, ids, mask, mode="spd", tree=tree, max_new_tokens=MAX_NEW,
                                eos_token_id=EOS, pad_token_id=PAD, compile=compile)
        diff = (out.sequences != ref).nonzero()
        assert out.sequences.shape == ref.shape and diff.numel() == 0, f"{tree}: first mismatch {diff[:1]}"
        if tree.endswith(";fixed"):  # drafts every round (the adaptive depth may stop drafting)
            assert out.stats.mean_accept_len > 1.0


def test_shared_cache_holds_the_drafts_keys_and_values():
    """The shared-cache self-draft proposes, round after round, the same trees as a copy of it
    with a cache of its own (first_layers): its view of the target's cache holds the K/V it
    would have computed, after accepted paths off the first children (rollback) and rows
    finishing (compaction). It makes no prefill forward. cospec with an arbiter that accepts
    every drafted token also outputs the same tokens."""
    target = tiny("llama", layers=3, seed=1)
    shared_d, own_d = self_draft(target, 2), first_layers(target, 2)
    off_first = 0
    for tree, seed in (("tree:2,2;fixed", 4), ("tree:3,2,4;fixed", 5), ("chain:3;fixed", 6)):
        ids, mask = prompts(3, seed)
        kw = dict(mode="spd", tree=tree, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD,
                  return_trace=True)
        a = cospec_ext.decode(target, shared_d, ids, mask, **kw)
        b = cospec_ext.decode(target, own_d, ids, mask, **kw)
        assert torch.equal(a.sequences, b.sequences)
        assert len(a.trace.steps) == len(b.trace.steps)
        for sa, sb in zip(a.trace.steps, b.trace.steps):
            assert torch.equal(sa["candidates"], sb["candidates"]), f"{tree}: round {sa['step']} drafted otherwise"
            p = sa["path"]
            off_first += int(((p[:, 1:] >= 0) & (p[:, 1:] != torch.arange(1, p.shape[1]))).any(1).sum())
        assert a.stats.draft_forwards == b.stats.draft_forwards - 1  # the prefill
    assert off_first > 0  # some accepted paths needed the rollback to move K/V
    ids, mask = prompts(3, 4)
    kw = dict(mode="cospec", arbiter=ConstantArbiter(1.0), tree="chain:3;fixed", max_new_tokens=MAX_NEW,
              eos_token_id=EOS, pad_token_id=PAD)
    shared = cospec_ext.decode(target, shared_d, ids, mask, **kw)
    own = cospec_ext.decode(target, own_d, ids, mask, **kw)
    assert shared.stats.arbiter_accepted > 0 and torch.equal(shared.sequences, own.sequences)


def test_depth_follows_the_measured_cost_of_each_depth():
    """A deep tree whose verification costs three plain steps (timed twice: one slow round alone
    is not evidence) is not chosen; with flat costs it is."""
    c = DepthController(4, True, None)
    c.succ, c.trials = 7.0, 10.0  # a = 0.7
    c.observe_times(0, None, 1.0)
    c.observe_times(1, 0.1, 1.0)
    c.observe_times(1, 0.1, 1.0)
    assert c.choose() == 4  # depths 2-4 unmeasured: as cheap as depth 1
    c.observe_times(4, 0.1, 3.0)
    assert c.round_costs()[4] == pytest.approx(1.4)  # timed once: priced as depth 3, tried again
    assert c.choose() == 4
    c.observe_times(4, 0.1, 3.0)
    assert c.round_costs()[4] == pytest.approx(3.4)
    assert c.choose() == 3
    fixed = DepthController(4, True, 0.1)  # a given cost ignores the timings
    fixed.succ, fixed.trials = 7.0, 10.0
    fixed.observe_times(4, 0.1, 3.0)
    assert fixed.choose() == 4


def test_one_slow_forward_does_not_flip_the_depth():
    """A single outlier timing (here 50x) does not move a round's cost, the smallest of its last
    three timings (noise only adds time); three slow ones in a row do (the cost changed)."""
    c = DepthController(4, True, None)
    c.succ, c.trials = 7.0, 10.0
    c.observe_times(0, None, 1.0)
    c.observe_times(1, 0.1, 1.0)
    c.observe_times(0, None, 50.0)
    assert c.t_target[0] == pytest.approx(1.0)
    assert c.choose() == 4
    for t in (2.0, 2.5, 3.0):
        c.observe_times(0, None, t)
    assert c.t_target[0] == pytest.approx(2.0)


def test_one_slow_round_at_a_shallow_depth_does_not_stop_drafting():
    """The demo pair's failure (held-out set 11): the first depth-1 round after its graphs were
    built took 2.7x the steady round and depth 1 was never chosen again; under a cost of the
    largest T(k), k <= d, every depth stayed priced out and a draft accepted at 0.96 never
    drafted. Deeper rounds measured cheap bound the shallow one, and the state carries over."""
    c = DepthController(4, True, None)
    c.succ, c.trials = 9.6, 10.0  # a = 0.96
    c.observe_times(0, None, 0.40)
    c.observe_times(1, 0.127, 1.09)  # the one slow round: depth 1 priced as a plain step
    assert c.round_costs()[1] == pytest.approx((0.40 + 0.127) / 0.40)
    c.observe_times(1, 0.127, 1.09)  # slow twice, but deeper rounds measured cheaper bound it
    for _ in range(2):
        c.observe_times(4, 0.127, 0.65)
    assert c.round_costs()[1] == pytest.approx((0.65 + 0.127) / 0.40)
    assert c.choose() == 4
    d = DepthController(4, True, None)
    d.restore(c.state())
    assert d.choose() == 4


def test_a_slow_plain_step_does_not_make_drafting_look_cheap():
    """A plain step timed slower than a depth-1 round's verification (a cold graph) is a
    measurement, not a cost: T(0) is the unit, so a rarely accepted draft (a = 0.2) whose
    level costs 0.3 steps is switched off (it kept drafting when T(0) counted 2 units)."""
    c = DepthController(4, True, None)
    c.succ, c.trials = 2.0, 10.0  # a = 0.2: (1 + a) / 1.3 < 1, drafting does not pay
    c.observe_times(1, 0.3, 1.0)
    c.observe_times(0, None, 2.0)  # one slow plain step
    assert c.round_costs()[0] == 1.0 and c.round_costs()[1] == pytest.approx(1.3)
    assert c.choose() == 0
    c.observe(4, [4])  # a probe accepts every level: a = 5.6 / 12 = 0.47
    assert c.choose() > 0  # drafting pays whatever T(0) was measured


def test_an_expensive_draft_is_probed_less_often():
    """Drafting off (a useless draft): probes come after 8, 16, ... idle rounds for a cheap
    draft, and after at least extra / PROBE_BUDGET rounds for one whose round costs 1.6 steps."""
    from cospec_ext.engine.adaptive import PROBE_BUDGET

    def probes(t_draft):
        c = DepthController(4, True, None)
        c.succ, c.trials = 0.0, 10.0  # a = 0
        c.observe_times(0, None, 1.0)
        c.observe_times(1, t_draft, 1.0)
        return [i for i in range(60) if c.choose() == 1]

    assert probes(0.05) == [7, 23, 55]  # waits 8, 16, 32
    wait = int(-(-0.6 // PROBE_BUDGET))  # 30
    assert probes(0.6) == [wait - 1, 2 * wait - 1, 2 * wait + 32 - 1][:len(probes(0.6))]


def test_a_probe_waits_for_its_catch_up_cost():
    """A probe after k idle rounds catches up k + 1 positions: with that cost per position c
    (in plain steps) it waits base / (PROBE_BUDGET - c) rounds, and 4 * max_probe_every rounds
    when c alone exceeds the budget; the estimate comes from the prefill, then from the probes
    themselves."""
    from cospec_ext.engine.adaptive import LONG_WAIT_FACTOR, PROBE_BUDGET

    def controller(t_catch_per_pos):
        c = DepthController(4, True, None)
        c.succ, c.trials = 0.0, 10.0  # a = 0: drafting is off
        c.observe_times(0, None, 1.0)
        c.observe_times(1, 0.2, 1.0)
        c.observe_prefill(32 * t_catch_per_pos, 32)
        return c

    c = controller(0.01)
    base = c.round_costs()[1] - c.round_costs()[0]  # 0.2
    assert c.probe_wait(c.round_costs()) == math.ceil(base / (PROBE_BUDGET - 0.01) - 1e-9)  # 20 rounds, not 10
    first = next(i for i in range(200) if c.choose() == 1)
    assert first + 1 == 20
    c.observe_times(1, 0.2, 1.0, round_draft_s=21 * 0.03)  # the probe caught up 21 positions at 0.03 each
    assert c.t_catch == pytest.approx(0.013)  # EMA of 0.01 and 0.03 (clipped to 2x: 0.02)
    long_wait = LONG_WAIT_FACTOR * c.max_probe_every  # 256
    assert controller(PROBE_BUDGET).probe_wait(c.round_costs()) == long_wait
    dear = controller(0.05)
    assert [i for i in range(600) if dear.choose() == 1] == [long_wait - 1, 2 * long_wait - 1]
