"""Arbiter features at the candidate node and beyond the mismatch (engine/features.py)
against plain Python references: the look-ahead along first children on random trees,
the candidate-node statistics from a full forward of the target, and arbiter files of
format 1 (parent features only) still loading and deciding the same."""

import math

import pytest
import torch

import cospec_ext
from cospec_ext import ops
from cospec_ext.engine import Arbiter
from cospec_ext.engine.features import CANDIDATE_FEATURES, FEATURE_NAMES, PARENT_FEATURES
from _models import EOS, PAD, prompts, tiny
from _trees import make_tree_inputs


def _lookahead_ref(cand, parents, logits):
    """Per node: walk first children (smallest index) to the end of the tree."""
    B, N = cand.shape
    lsm = torch.log_softmax(logits.float(), -1)
    out = torch.zeros(4, B, N)
    for b in range(B):
        par = parents[b].tolist()
        for i in range(N):
            n = acc = 0
            run, tot, nxt, node = True, 0.0, 0.0, i
            while True:
                kids = [j for j in range(N) if par[j] == node]
                if not kids:
                    break
                c = kids[0]
                lp = float(lsm[b, node, cand[b, c]])
                nxt = lp if n == 0 else nxt
                n, tot = n + 1, tot + lp
                run = run and int(logits[b, node].float().argmax()) == int(cand[b, c])
                acc += run
                node = c
            out[:, b, i] = torch.tensor([n, acc, nxt, tot])
    return out


@pytest.mark.parametrize("kind", ["chain", "star", "deep", "wide", "random"])
def test_lookahead_matches_reference(kind):
    """The la_* columns of ops.node_features against a walk written out in Python."""
    g = torch.Generator().manual_seed(7)
    la = [FEATURE_NAMES.index(n) for n in ("la_len", "la_accept", "la_logp_next")]
    for N in (1, 2, 5, 12):
        cand, parents, logits = make_tree_inputs(kind, 3, N, 37, torch.float32, g, p_match=0.6)
        depth = torch.zeros(3, N, dtype=torch.int64)
        for i in range(1, N):
            depth[:, i] = depth.gather(1, parents[:, i:i + 1].clamp(min=0))[:, 0] + 1
        f = ops.node_features(logits, cand, parents, depth, torch.zeros_like(depth), torch.zeros(3, dtype=torch.int64),
                              logits, int(depth.max()))
        ref = _lookahead_ref(cand, parents, logits)  # [4, B, N]: len, accept, next, sum
        got = torch.stack([f[..., la[0]], f[..., la[1]], f[..., la[2]],
                           f[..., FEATURE_NAMES.index("la_logp_mean")] * f[..., la[0]].clamp(min=1)])
        torch.testing.assert_close(got[:, :, 1:], ref[:, :, 1:], atol=1e-4, rtol=1e-5)


def test_candidate_features_match_a_plain_forward():
    """In a cospec trace, a consulted node's tc_* columns are the target's statistics after
    reading prompt + accepted tokens + the candidate, and la_* follow the drafted chain."""
    target, draft = tiny("llama", 3, seed=31), tiny("llama", 1, seed=32)
    ids, mask = prompts(3, 5)
    out = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=cospec_ext.engine.ConstantArbiter(0.0),
                            tree="chain:4;fixed", max_new_tokens=16, eos_token_id=EOS, pad_token_id=PAD,
                            return_trace=True)
    P, col = ids.shape[1], {n: FEATURE_NAMES.index(n) for n in FEATURE_NAMES}
    checked = 0
    for st in out.trace.steps:
        for b, row in enumerate(st["rows"]):
            for i in st["consulted"][b].nonzero()[:, 0].tolist():
                gen = out.sequences[row, P:].tolist()
                prefix = ids[row, mask[row].bool()].tolist() + gen[:int(st["position"][b])] + \
                    st["candidates"][b, 1:i].tolist()
                with torch.no_grad():
                    lg = target(torch.tensor([prefix + [int(st["candidates"][b, i])]])).logits[0, -1]
                lsm = torch.log_softmax(lg, -1)
                f = st["features"][b, i]
                assert f[col["tc_logp_top"]] == pytest.approx(float(lsm.max()), abs=1e-4)
                assert f[col["tc_entropy"]] == pytest.approx(float(-(lsm.exp() * lsm).sum()), abs=1e-4)
                top2 = lg.topk(2).values
                assert f[col["tc_margin"]] == pytest.approx(float(top2[0] - top2[1]), abs=1e-4)
                N = st["candidates"].shape[1]
                assert f[col["la_len"]] == N - 1 - i  # a chain: everything below i
                if i + 1 < N:
                    nxt = int(st["candidates"][b, i + 1])
                    assert f[col["la_logp_next"]] == pytest.approx(float(lsm[nxt]), abs=1e-4)
                    assert f[col["la_accept"]] >= float(int(lg.argmax()) == nxt)
                checked += 1
    assert checked > 0


def test_format_1_arbiter_loads_and_decides_the_same(tmp_path):
    """A format-1 file (13 parent features, no hidden_inputs key) loads, reads the same columns,
    and its decisions do not depend on the columns added since."""
    import json

    torch.manual_seed(0)
    arb = Arbiter(PARENT_FEATURES, hidden=(8,))
    arb.save(tmp_path)
    cfg = json.loads((tmp_path / "arbiter.json").read_text())
    cfg.pop("hidden_inputs")
    cfg["version"] = 1
    (tmp_path / "arbiter.json").write_text(json.dumps(cfg))
    old = Arbiter.load(tmp_path)
    assert old.feature_names == PARENT_FEATURES and old.threshold == 0.5
    x = torch.randn(5, len(PARENT_FEATURES))
    torch.testing.assert_close(old.predict_proba(x), arb.predict_proba(x))
    target, draft = tiny("llama", 3, seed=33), tiny("llama", 1, seed=34)
    ids, mask = prompts(2, 6)
    a = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=str(tmp_path), tree="chain:3;fixed",
                          max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, return_trace=True)
    assert a.stats.arbiter_consulted > 0
    assert set(CANDIDATE_FEATURES) & set(old.feature_names) == set()


def test_validated_threshold_is_the_default(tmp_path):
    torch.manual_seed(1)
    Arbiter(hidden=(4,)).save(tmp_path)
    (tmp_path / "validation.json").write_text('{"threshold": 0.8, "seed": 1, "n": 2000}')
    arb = Arbiter.load(tmp_path)
    assert arb.threshold == 0.8 and arb.validation["n"] == 2000
    with pytest.raises(FileNotFoundError, match="/no/such/arbiter"):
        Arbiter.load("/no/such/arbiter")


def test_hidden_inputs_at_the_candidate():
    """An arbiter reading t_cand gets the target's hidden state at the node, of the target's width."""
    target, draft = tiny("llama", 2, seed=35), tiny("llama", 1, seed=36, hidden=16)
    arb = Arbiter(FEATURE_NAMES, hidden=(4,), hidden_sizes=(32, 16, 32), proj_dim=3,
                  hidden_inputs=("t_cand", "d_parent", "t_parent"))
    ids, mask = prompts(2, 7)
    out = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=arb, tree="chain:3;fixed",
                            max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD, return_trace=True)
    st = next(s for s in out.trace.steps if s["hidden"] is not None)
    assert st["hidden"].shape[-1] == 80
    bad = Arbiter(FEATURE_NAMES, hidden=(4,), hidden_sizes=(16, 16), hidden_inputs=("t_cand", "d_parent"))
    with pytest.raises(ValueError, match="widths"):
        cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=bad, max_new_tokens=4)
    with pytest.raises(ValueError, match="hidden input"):
        Arbiter(hidden=(4,), hidden_sizes=(8, 8), hidden_inputs=("t_cand", "nope"))
    assert math.isfinite(float(out.stats.mean_accept_len))


def test_hidden_from_the_head_hook_equals_output_hidden_states(monkeypatch):
    """The adapter reads the last hidden state at the LM head's input; transformers'
    output_hidden_states (the fallback) gives the same values, so decisions are unchanged."""
    from cospec_ext.engine import adapter as ad

    target, draft = tiny("llama", 2, seed=37), tiny("llama", 1, seed=38)
    arb = Arbiter(FEATURE_NAMES, hidden=(4,), hidden_sizes=(32, 32, 32), proj_dim=3,
                  hidden_inputs=("t_parent", "d_parent", "t_cand"))
    with torch.no_grad():
        arb.out.weight.normal_()
    ids, mask = prompts(3, 8)
    kw = dict(mode="cospec", arbiter=arb, tree="chain:3;fixed", max_new_tokens=12, eos_token_id=EOS,
              pad_token_id=PAD, return_trace=True)
    a = cospec_ext.decode(target, draft, ids, mask, **kw)
    init = ad.HFAdapter.__init__

    def no_hook(self, model):
        init(self, model)
        self._head = None

    monkeypatch.setattr(ad.HFAdapter, "__init__", no_hook)
    b = cospec_ext.decode(target, draft, ids, mask, **kw)
    assert torch.equal(a.sequences, b.sequences)
    steps = [(x, y) for x, y in zip(a.trace.steps, b.trace.steps) if x["hidden"] is not None]
    assert steps
    for x, y in steps:
        torch.testing.assert_close(x["hidden"], y["hidden"], rtol=0, atol=0)
        torch.testing.assert_close(x["probs"], y["probs"], rtol=0, atol=0)
