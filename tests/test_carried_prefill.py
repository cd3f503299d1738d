"""A compiled spd/cospec call whose prefill is short carries the target's prefill on its first
round's forward (engine/loop.py `_defers_prefill`, runner.forward_prefix_nodes): the prompt's
first P - 1 tokens and the first round's tree in one forward. Its output is the uncarried one's:
greedy spd equals generate() token for token over left-padded batches, chains and branching
trees, prompts on both sides of the row limit; cospec does not carry it (its first token stays
the target's) and equals its eager run."""

import pytest
import torch

import cospec_ext
from cospec_ext.engine import ConstantArbiter
from cospec_ext.engine.native import CARRIED_ROWS_MAX, batch_bucket
from cospec_ext.engine.tree import parse_tree
from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

MAX_NEW = 14


def _carried(B: int, P: int, tree: str) -> bool:
    """Whether the call's first round carries the prefill (a prompt of one token has none to carry)."""
    return P >= 2 and batch_bucket(B, B) * (P - 1 + parse_tree(tree).max_expanded) <= CARRIED_ROWS_MAX


@pytest.mark.parametrize("B,tree", [(1, "chain:4;fixed"), (1, "tree:2,2;fixed"), (2, "chain:3;fixed")])
def test_carried_prefill_equals_generate(B, tree):
    target = tiny("llama", layers=3, seed=31, max_pos=256)
    draft = first_layers(target, 1)  # its own cache: the first round drafts from the prompt's last token
    kw = dict(mode="spd", tree=tree, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD, compile=True)
    seen = set()
    for i, P in enumerate((2, 5, 11, 20, 30)):
        ids, mask = prompts(B, 40 + i, min_len=max(1, P - 3), max_len=P)  # [B, P], rows left-padded
        P = ids.shape[1]
        out = cospec_ext.decode(target, draft, ids, mask, **kw)
        ref = generate_greedy(target, ids, mask, MAX_NEW)
        diff = (out.sequences != ref).nonzero()
        assert out.sequences.shape == ref.shape and diff.numel() == 0, f"B={B} P={P} {tree}: first mismatch {diff[:1]}"
        carried = _carried(B, P, tree)
        seen.add(carried)
        # carried: no forward of its own for the prefill (one target forward per round)
        s = out.stats
        assert s.target_forwards == s.rounds + (0 if carried else 1), f"B={B} P={P}: {s}"
    assert seen == {True, False}, "the prompts should fall on both sides of the row limit"


def test_cospec_does_not_carry_the_prefill():
    """With an arbiter the first token stays the target's (its own prefill): an always-accepting
    arbiter's decisions and tokens are those of the eager run."""
    target = tiny("llama", layers=3, seed=32)
    draft = tiny("llama", layers=1, seed=33)  # another model: mismatches to consult
    ids, mask = prompts(1, 50, min_len=6, max_len=6)
    kw = dict(mode="cospec", arbiter=ConstantArbiter(1.0), tree="chain:3;fixed", max_new_tokens=MAX_NEW,
              eos_token_id=EOS, pad_token_id=PAD)
    eager = cospec_ext.decode(target, draft, ids, mask, **kw)
    comp = cospec_ext.decode(target, draft, ids, mask, compile=True, **kw)
    assert _carried(1, ids.shape[1], "chain:3;fixed") and comp.stats.target_forwards == comp.stats.rounds + 1
    assert comp.stats.arbiter_accepted > 0
    assert torch.equal(eager.sequences, comp.sequences)
    assert (eager.stats.arbiter_consulted, eager.stats.arbiter_accepted) == \
        (comp.stats.arbiter_consulted, comp.stats.arbiter_accepted)
