"""cospec_ext.Arbiter: the fused predict_proba equals the torch forward; save/load round trip
(safetensors + JSON); decode accepts a saved arbiter's path."""

import json

import pytest
import torch

import cospec_ext
from cospec_ext.engine import Arbiter
from cospec_ext.engine import FEATURE_NAMES
from _models import EOS, PAD, prompts, tiny


@pytest.mark.parametrize("hidden,act", [((32, 16), "gelu"), ((8,), "relu")])
def test_predict_proba_matches_forward(hidden, act):
    torch.manual_seed(0)
    arb = Arbiter(hidden=hidden, activation=act)
    x = torch.randn(257, len(FEATURE_NAMES)) * 3 + 1
    arb.set_normalization(x)
    torch.testing.assert_close(arb.predict_proba(x), torch.sigmoid(arb(x)), atol=2e-6, rtol=1e-5)


def test_predict_proba_follows_training_steps():
    """predict_proba caches its folded weights; an optimizer step, new normalisation or
    load_state_dict must be seen at once."""
    torch.manual_seed(1)
    arb = Arbiter(hidden_sizes=[6, 4], proj_dim=3)
    x, h = torch.randn(40, len(FEATURE_NAMES)), torch.randn(40, 10)
    opt = torch.optim.SGD(arb.parameters(), lr=0.5)
    for _ in range(3):
        before = arb.predict_proba(x, hidden=h)
        loss = arb(x, h).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        after = arb.predict_proba(x, hidden=h)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, torch.sigmoid(arb(x, h)).detach(), atol=2e-6, rtol=1e-5)
    arb.set_normalization(x * 2 + 1)
    torch.testing.assert_close(arb.predict_proba(x, hidden=h), torch.sigmoid(arb(x, h)).detach(), atol=2e-6,
                               rtol=1e-5)
    other = Arbiter(hidden_sizes=[6, 4], proj_dim=3)
    arb.load_state_dict(other.state_dict())
    torch.testing.assert_close(arb.predict_proba(x, hidden=h), other.predict_proba(x, hidden=h))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    arb = Arbiter(["t_logp_cand", "d_logp_cand", "depth"], hidden=(4, 3))
    arb.set_normalization(torch.randn(50, 3))
    arb.save(tmp_path / "arb")
    cfg = json.loads((tmp_path / "arb" / "arbiter.json").read_text())
    assert cfg["version"] == 2 and cfg["feature_names"] == ["t_logp_cand", "d_logp_cand", "depth"]
    back = Arbiter.load(tmp_path / "arb" / "arbiter.json")
    x = torch.randn(10, 3)
    torch.testing.assert_close(back.predict_proba(x), arb.predict_proba(x))
    with pytest.raises(FileNotFoundError, match="no saved arbiter"):
        Arbiter.load(tmp_path / "nothing")
    (tmp_path / "arb" / "arbiter.json").write_text(json.dumps({**cfg, "version": 99}))
    with pytest.raises(ValueError, match="format version"):
        Arbiter.load(tmp_path / "arb")


def test_bad_arbiter_config():
    with pytest.raises(ValueError, match="feature_names"):
        Arbiter(["nope"])
    with pytest.raises(ValueError, match="hidden"):
        Arbiter(hidden=(1, 2, 3))
    with pytest.raises(ValueError, match=r"\[M, 20\]"):
        Arbiter().predict_proba(torch.zeros(3, 5))


def test_decode_with_saved_arbiter_path(tmp_path):
    torch.manual_seed(2)
    arb = Arbiter(hidden=(8,))
    arb.save(tmp_path / "a")
    target, draft = tiny("llama", 2, seed=61), tiny("llama", 1, seed=62)
    ids, mask = prompts(2, 1)
    kw = dict(mode="cospec", tree="chain:3;fixed", max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD)
    a = cospec_ext.decode(target, draft, ids, mask, arbiter=str(tmp_path / "a"), **kw)
    b = cospec_ext.decode(target, draft, ids, mask, arbiter=arb, **kw)
    assert torch.equal(a.sequences, b.sequences) and a.stats.arbiter_consulted > 0


def test_hidden_state_arbiter(tmp_path):
    """An arbiter that also reads both models' last hidden states (projected, then the fused MLP)."""
    target, draft = tiny("llama", 2, seed=63, hidden=32), tiny("llama", 1, seed=64, hidden=16)
    torch.manual_seed(3)
    arb = Arbiter(hidden=(8,), hidden_sizes=(32, 16), proj_dim=4)
    with torch.no_grad():
        arb.out.weight.normal_()
    x, h = torch.randn(9, len(FEATURE_NAMES)), torch.randn(9, 48)
    torch.testing.assert_close(arb.predict_proba(x, hidden=h), torch.sigmoid(arb(x, h)), atol=2e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="needs `hidden`"):
        arb.predict_proba(x)
    arb.save(tmp_path / "h")
    back = Arbiter.load(tmp_path / "h")
    torch.testing.assert_close(back.predict_proba(x, hidden=h), arb.predict_proba(x, hidden=h))
    ids, mask = prompts(3, 2)
    kw = dict(mode="cospec", tree="chain:3;fixed", max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD,
              return_trace=True)
    out = cospec_ext.decode(target, draft, ids, mask, arbiter=back, **kw)
    f, a, p, hid = out.trace.decisions(0, with_hidden=True)
    assert out.stats.arbiter_consulted > 0 and hid.shape == (f.shape[0], 48)
    torch.testing.assert_close(p, back.predict_proba(f, hidden=hid))  # the trace reproduces the decisions
    with pytest.raises(ValueError, match="hidden states of widths"):
        cospec_ext.decode(target, tiny("llama", 1, seed=65, hidden=32), ids, mask, arbiter=back, **kw)
