"""decode(stop_strings=..., tokenizer=...) equals generate(stop_strings=..., tokenizer=...,
do_sample=False) token for token, in target mode and spd (a chain and a dynamic tree).

The stop strings are cut out of the greedy continuations themselves (the tail of one piece and
the head of the next, a whole piece, three pieces, a single character, and one spanning the
prompt and the first new token), at positions spread over the output, so most matches complete
in the middle of a round that committed several tokens; the test checks that many do."""

import pytest
import torch

import cospec_ext
from _models import EOS, PAD, first_layers, prompts, tiny
from _tok import VOCAB, piece_tokenizer

MAX_NEW, ROWS = 24, 24


@pytest.fixture(scope="module")
def setup():
    target = tiny("llama", 4, seed=64, vocab=len(VOCAB))
    target.generation_config.eos_token_id = None  # long continuations: rows end by stop strings
    draft = first_layers(target, 3)  # agrees often: rounds commit ~2 tokens
    tok = piece_tokenizer()
    ids, mask = prompts(ROWS, seed=1, vocab=12, min_len=2, max_len=7)  # tokens 4..11: the characters a..h
    rows = [ids[b, mask[b].bool()][None] for b in range(ROWS)]  # [1, P_b] each
    stops = []
    for b, row in enumerate(rows):
        new = _generate(target, row).tolist()[0][row.shape[1]:]
        piece = [tok.decode([t]) for t in new]
        j = 3 + (b * 5) % 17  # the token that completes the string
        kind = b % 4
        if b == 0:  # spans the prompt's last character and the first new token
            s = tok.decode(row[0, -1:]) + piece[0][:1]
        elif kind == 0:
            s = piece[j - 1][-1:] + piece[j]
        elif kind == 1:
            s = piece[j - 1][-1:] + piece[j][:1]
        elif kind == 2:
            s = "".join(piece[j - 2:j + 1])
        else:
            s = piece[j][:1]
        stops.append(s)
    return target, draft, tok, ids, mask, rows, stops


def _generate(target, ids, mask=None, **kw):
    with torch.no_grad():
        return target.generate(input_ids=ids, attention_mask=mask if mask is not None else torch.ones_like(ids),
                               do_sample=False, max_new_tokens=MAX_NEW, pad_token_id=PAD, **kw)


def _decode(target, draft, ids, mask=None, **kw):
    chunks: dict[int, list[list[int]]] = {}
    kw.setdefault("eos_token_id", [])
    out = cospec_ext.decode(target, draft, ids, mask, max_new_tokens=MAX_NEW, pad_token_id=PAD,
                            streamer=lambda r, t: chunks.setdefault(r, []).append(t), **kw)
    return out, chunks


@pytest.mark.parametrize("mode,tree", [("target", "chain:1"), ("spd", "chain:4;fixed"), ("spd", "tree:3,2;fixed")])
def test_stop_strings_equal_generate(setup, mode, tree):
    target, draft, tok, _, _, rows, stops = setup
    mid_round = 0
    for b, (row, s) in enumerate(zip(rows, stops)):
        want = _generate(target, row, stop_strings=[s], tokenizer=tok)
        out, chunks = _decode(target, draft, row, mode=mode, tree=tree, stop_strings=[s], tokenizer=tok)
        assert out.sequences.tolist() == want.tolist(), f"row {b} stop {s!r}"
        n = out.stats.new_tokens[0]
        assert n < MAX_NEW, f"row {b}: the stop string {s!r} was never completed"
        assert sum(chunks[0], []) == out.sequences[0, row.shape[1]:].tolist()  # streaming sees the cut
        _, free = _decode(target, draft, row, mode=mode, tree=tree)  # the same rounds, no stop strings
        ends = torch.tensor([len(c) for c in free[0]]).cumsum(0).tolist()
        mid_round += n not in ends
    if mode == "spd":
        assert mid_round >= 6, f"only {mid_round} of {ROWS} stops completed in the middle of a round"
    else:
        assert mid_round == 0


@pytest.mark.parametrize("mode,tree", [("target", "chain:1"), ("spd", "chain:4;fixed")])
def test_stop_strings_batched(setup, mode, tree):
    """One list for a left-padded batch (as generate() takes it): rows stop at different rounds.
    With an EOS: without one, generate() keeps extending a batch's stopped rows (it pads rows
    only when an EOS criterion is set) until every row has stopped; decode pads them."""
    target, draft, tok, ids, mask, _, stops = setup
    some = [s for s in stops[1:] if len(s) > 1][:4]
    want = _generate(target, ids, mask, stop_strings=some, tokenizer=tok, eos_token_id=EOS)
    out, _ = _decode(target, draft, ids, mask, mode=mode, tree=tree, stop_strings=some, tokenizer=tok,
                     eos_token_id=EOS)
    assert out.sequences.tolist() == want.tolist()
    P, n = ids.shape[1], out.stats.new_tokens
    by_stop = [b for b in range(ROWS) if n[b] < MAX_NEW and int(out.sequences[b, P + n[b] - 1]) != EOS]
    assert len(by_stop) >= 5 and len({n[b] for b in by_stop}) > 3, f"rows ended by a stop string: {by_stop}"


def test_stop_string_arguments(setup):
    target, draft, tok, _, _, rows, _ = setup
    kw = dict(max_new_tokens=4, eos_token_id=[], pad_token_id=PAD)
    with pytest.raises(ValueError, match="`tokenizer`"):
        cospec_ext.decode(target, draft, rows[0], stop_strings=["ab"], **kw)
    for bad in ([], [""], 5, ["ab", 3]):
        with pytest.raises(ValueError, match="`stop_strings`"):
            cospec_ext.decode(target, draft, rows[0], stop_strings=bad, tokenizer=tok, **kw)
    with pytest.raises(TypeError, match="`tokenizer`"):
        cospec_ext.decode(target, draft, rows[0], stop_strings="ab", tokenizer=object(), **kw)
    plain = piece_tokenizer()
    plain.backend_tokenizer.decoder = None  # pieces join with spaces: transformers cannot map the vocabulary
    with pytest.raises(ValueError, match="`stop_strings`.*`tokenizer`"):
        cospec_ext.decode(target, draft, rows[0], stop_strings="ab", tokenizer=plain, **kw)
    out = cospec_ext.decode(target, draft, rows[0], stop_strings="ab", tokenizer=tok, **kw)  # one string
    assert out.sequences.shape[0] == 1
