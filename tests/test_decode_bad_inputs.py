"""decode rejects bad input with a clear exception naming what is wrong."""

import pytest
import torch

import cospec_ext
from cospec_ext.engine import ConstantArbiter, LogisticArbiter, TreeSpec, parse_tree
from _models import prompts, tiny


@pytest.fixture(scope="module")
def pair():
    return tiny("llama", 2, seed=41), tiny("llama", 1, seed=42)


def _dec(t, d, ids, mask=None, **kw):
    return cospec_ext.decode(t, d, ids, mask, max_new_tokens=kw.pop("max_new_tokens", 8), **kw)


def test_vocabularies_differ(pair):
    ids, mask = prompts(2, 0)
    with pytest.raises(ValueError, match="vocabularies differ"):
        _dec(pair[0], tiny("llama", 1, seed=1, vocab=72), ids, mask)


def test_dtypes_or_devices_differ(pair):
    ids, mask = prompts(2, 0)
    with pytest.raises(ValueError, match="different dtypes"):
        _dec(pair[0], tiny("llama", 1, seed=1).to(torch.bfloat16), ids, mask)
    with pytest.raises(ValueError, match="different devices"):
        _dec(pair[0], tiny("llama", 1, seed=1).to("meta"), ids, mask)
    with pytest.raises(ValueError, match="input_ids.*on meta"):
        _dec(pair[0], pair[1], ids.to("meta"), None)


def test_too_long_for_positions(pair):
    short = tiny("llama", 1, seed=43, max_pos=32)
    ids, mask = prompts(2, 0, min_len=9, max_len=9)
    with pytest.raises(ValueError, match="exceeds the target model's 32 positions"):
        _dec(short, None, ids, mask, mode="target", max_new_tokens=30)
    with pytest.raises(ValueError, match="exceeds the draft model's 32 positions"):
        _dec(pair[0], short, ids, mask, max_new_tokens=22)


def test_empty_or_malformed_prompt(pair):
    t, d = pair
    with pytest.raises(ValueError, match="empty"):
        _dec(t, d, torch.zeros(1, 0, dtype=torch.long))
    ids, mask = prompts(2, 0)
    mask[1] = 0
    with pytest.raises(ValueError, match="empty prompt"):
        _dec(t, d, ids, mask)
    right = torch.tensor([[1, 1, 0]])
    with pytest.raises(ValueError, match="left-padded"):
        _dec(t, d, torch.tensor([[5, 6, 0]]), right)
    with pytest.raises(ValueError, match=r"outside \[0, 64\)"):
        _dec(t, d, torch.tensor([[5, 64]]))
    with pytest.raises(ValueError, match="int64"):
        _dec(t, d, torch.tensor([[5.0, 6.0]]))
    with pytest.raises(ValueError, match="attention_mask.*must be"):
        _dec(t, d, torch.tensor([[5, 6]]), torch.tensor([[1, 1, 1]]))


@pytest.mark.parametrize("spec", ["chain:x", "chain:-1", "tree:3", "tree:3,0", "tree:2,2,9", "static:0,1",
                                  "static:-1,2", "static:-1,0,1,0", "chain:4;bogus", "star:3", ""])
def test_malformed_tree_spec(pair, spec):
    ids, mask = prompts(1, 0)
    with pytest.raises(ValueError, match="tree"):
        _dec(pair[0], pair[1], ids, mask, tree=spec)


def test_tree_spec_objects():
    assert parse_tree("chain:3").static_parents == (-1, 0, 1, 2)
    assert parse_tree("tree:3,2,5;fixed;conf=0.1") == TreeSpec(depth=3, topk=2, budget=5, adaptive=False,
                                                                min_confidence=0.1)
    with pytest.raises(ValueError, match="depth"):
        TreeSpec(depth=-1)
    with pytest.raises(TypeError, match="tree"):
        parse_tree(4)


def test_arbiter_errors(pair):
    t, d = pair
    ids, mask = prompts(2, 0)
    with pytest.raises(ValueError, match="needs an `arbiter`"):
        _dec(t, d, ids, mask, mode="cospec")
    with pytest.raises(ValueError, match="only used with mode='cospec'"):
        _dec(t, d, ids, mask, mode="spd", arbiter=ConstantArbiter(1.0))
    bad = LogisticArbiter(["t_logp_cand", "d_logp_cand"], [1.0, 1.0])
    bad.in_features = 5
    with pytest.raises(ValueError, match="feature width does not match"):
        _dec(t, d, ids, mask, mode="cospec", arbiter=bad)
    with pytest.raises(ValueError, match="subset"):
        _dec(t, d, ids, mask, mode="cospec", arbiter=ConstantArbiter(1.0, feature_names=["nope"]))
    with pytest.raises(TypeError, match="predict_proba"):
        _dec(t, d, ids, mask, mode="cospec", arbiter=object())
    with pytest.raises(ValueError, match="threshold"):
        _dec(t, d, ids, mask, mode="cospec", arbiter=ConstantArbiter(1.0), threshold=1.5)


def test_bad_options(pair):
    t, d = pair
    ids, mask = prompts(2, 0)
    with pytest.raises(ValueError, match="mode"):
        _dec(t, d, ids, mask, mode="fast")
    with pytest.raises(ValueError, match="max_new_tokens"):
        _dec(t, d, ids, mask, max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        _dec(t, d, ids, mask, temperature=-1.0)
    with pytest.raises(ValueError, match="needs a `draft`"):
        _dec(t, None, ids, mask, mode="spd")
    with pytest.raises(TypeError, match="transformers causal LM or a ModelAdapter"):
        _dec(t, object(), ids, mask)
