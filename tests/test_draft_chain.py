"""The draft's greedy chain in one call (NativeAdapter.forward_chain, Drafter.chain_round) equals
the level-by-level forwards it replaces: the same argmaxes, logits, hidden states and cache
writes, padding rows included, and the same decoding (tokens, arbiter decisions and features)."""

import pytest
import torch

import cospec_ext
from cospec_ext.engine import Arbiter
from cospec_ext.engine import draft as draft_mod
from cospec_ext.engine.adapter import HFAdapter
from cospec_ext.engine.features import FEATURE_NAMES
from cospec_ext.engine.kv import KVCache, KVView
from cospec_ext.engine.native import NativeAdapter
from _models import EOS, PAD, prompts, tiny


def _prefilled(nat, B, rows, P, S, seed):
    """A cache of `rows` rows and S slots whose first B rows hold P random tokens (slots [0, P))."""
    g = torch.Generator().manual_seed(seed)
    cache = KVCache(nat.num_layers, B, nat.num_kv_heads, S, nat.head_dim, nat.dtype, nat.device, rows=rows)
    ids = torch.randint(4, 64, (B, P), generator=g)
    causal = torch.ones(P, P, dtype=torch.bool).tril()[None, None].expand(B, 1, P, P)
    pos = torch.arange(P)[None].expand(B, P)
    nat.forward(ids, pos, causal, KVView(cache, P, uniform_start=0), logits_to_keep=1)
    return cache, torch.randint(4, 64, (B, 1), generator=g)


def _count_chain_rounds(monkeypatch, note) -> list:
    """Patches Drafter.chain_round to append note(drafter, its result) per call; returns the list."""
    calls = []
    real = draft_mod.Drafter.chain_round

    def counted(self, *a, **k):
        out = real(self, *a, **k)
        calls.append(note(self, out))
        return out

    monkeypatch.setattr(draft_mod.Drafter, "chain_round", counted)
    return calls


@pytest.mark.parametrize("compile", [False, True])
def test_forward_chain_equals_one_forward_per_node(compile):
    """steps forwards in one call == one forward per node, each fed the last argmax; B = 3 rows in
    a 4-row cache (a padding row in the compiled graph, which runs the 6 steps as graphs of
    native.CHAIN_GRAPH_STEPS = 4 and 2, the second fed where the first stopped); the cache's
    slots agree afterwards."""
    from cospec_ext.engine import native

    model = tiny("llama", layers=2, seed=41)
    nat = NativeAdapter(HFAdapter(model), compile=compile)
    B, rows, P, S, steps = 3, 4, 7, 128, 6
    assert native.CHAIN_GRAPH_STEPS == 4
    with torch.no_grad():
        ca, root = _prefilled(nat, B, rows, P, S, seed=1)
        cb, _ = _prefilled(nat, B, rows, P, S, seed=1)
        slot = torch.arange(S)
        base = (slot <= P)[None, None, None].expand(B, 1, 1, S)  # node 0 at slot P sees [0, P]
        toks, logits, hid = nat.forward_chain(root, torch.full((B, 1), P), base.contiguous(),
                                              KVView(ca, P + 1, uniform_start=P), steps)
        assert toks.shape == (B, steps) and logits.shape[:2] == (B, steps) and hid.shape[:2] == (B, steps)
        tok, ref_t, ref_l, ref_h = root, [], [], []
        for i in range(steps):
            m = (slot <= P + i)[None, None, None].expand(B, 1, 1, S).contiguous()
            lg, h = nat.forward(tok, torch.full((B, 1), P + i), m, KVView(cb, P + i + 1, uniform_start=P + i),
                                return_hidden=True)
            tok = lg.argmax(-1)
            ref_t.append(tok)
            ref_l.append(lg)
            ref_h.append(h)
    assert torch.equal(toks, torch.cat(ref_t, 1))
    torch.testing.assert_close(logits, torch.cat(ref_l, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hid, torch.cat(ref_h, 1), rtol=1e-5, atol=1e-5)
    written = slice(0, P + steps)
    torch.testing.assert_close(ca.data[:, :, :B, :, written], cb.data[:, :, :B, :, written], rtol=1e-5, atol=1e-5)
    assert not ca.data[:, :, :B, :, P + steps:].any(), "the chain wrote past its last node"


@pytest.mark.parametrize("batch", [1, 3])
def test_chain_round_equals_level_by_level(monkeypatch, batch):
    """decode(compile=True) with the chain in one call gives the same tokens, arbiter decisions and
    arbiter inputs (draft logits and hidden states at each node's parent) as the per-level
    forwards; at batch 3 with the chain forced on (a CPU cache of several rows does not chain by
    default: test_chain_policy) and run as graphs of 3 and 1 steps (native.CHAIN_GRAPH_STEPS)."""
    from cospec_ext.engine import native

    target, draft = tiny("llama", 2, seed=43), tiny("llama", 1, seed=44, hidden=16)
    arb = Arbiter(FEATURE_NAMES, hidden=(4,), hidden_sizes=(32, 16), proj_dim=3, hidden_inputs=("t_cand", "d_parent"))
    with torch.no_grad():
        arb.out.weight.normal_(generator=torch.Generator().manual_seed(0))
    ids, mask = prompts(batch, 9)
    if batch > 1:
        monkeypatch.setattr(NativeAdapter, "chains", lambda self, live, rows: True)
        monkeypatch.setattr(native, "CHAIN_GRAPH_STEPS", 3)
    kw = dict(mode="cospec", arbiter=arb, threshold=0.5, tree="chain:3;fixed", max_new_tokens=16,
              eos_token_id=EOS, pad_token_id=PAD, return_trace=True, compile=True)
    calls = _count_chain_rounds(monkeypatch, lambda drafter, out: out is not None)
    fused = cospec_ext.decode(target, draft, ids, mask, **kw)
    assert calls and all(calls), "the chain did not run in one call"
    monkeypatch.setattr(draft_mod.Drafter, "chain_round", lambda self, *a, **k: None)
    levels = cospec_ext.decode(target, draft, ids, mask, **kw)
    assert torch.equal(fused.sequences, levels.sequences)
    assert fused.stats.arbiter_consulted > 0
    assert (fused.stats.arbiter_consulted, fused.stats.arbiter_accepted) == \
        (levels.stats.arbiter_consulted, levels.stats.arbiter_accepted)
    assert len(fused.trace.steps) == len(levels.trace.steps)
    for x, y in zip(fused.trace.steps, levels.trace.steps):
        for key in ("candidates", "path", "features", "hidden", "probs"):
            if x[key] is None:
                assert y[key] is None
            else:
                torch.testing.assert_close(x[key], y[key], rtol=1e-5, atol=1e-5)


def test_chain_policy(monkeypatch):
    """Compiled on the CPU, a round chains exactly while the live rows fill the cache's batch
    bucket (one chain graph per cache, none per smaller bucket): every round of a batch-1 call,
    the rounds of a batch-3 call (4-row cache) while 3 rows live; eager, any batch chains."""
    from cospec_ext.engine.native import batch_bucket

    target, draft = tiny("llama", 2, seed=45), tiny("llama", 1, seed=46, hidden=16)
    def note(drafter, out):
        cache = drafter.runner.cache
        return out is not None, batch_bucket(cache.batch, cache.data.shape[2]) == cache.data.shape[2]

    calls = _count_chain_rounds(monkeypatch, note)
    kw = dict(mode="spd", tree="chain:3;fixed", max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, compile=True)
    for batch in (1, 3):
        calls.clear()
        ids, mask = prompts(batch, 8)
        cospec_ext.decode(target, draft, ids, mask, **kw)
        assert calls and all(chained == full for chained, full in calls), (batch, calls)
        assert any(chained for chained, _ in calls)
    compiled = NativeAdapter(HFAdapter(draft), compile=True)
    assert compiled.chains(1, 1) and compiled.chains(8, 8) and compiled.chains(5, 8)
    assert not compiled.chains(4, 8) and not compiled.chains(1, 8) and not compiled.chains(1, 2)
    eager = NativeAdapter(HFAdapter(draft), compile=False)
    assert eager.chains(1, 8) and eager.chains(3, 4)
