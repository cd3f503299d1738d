"""decode(streamer=...): what is streamed per row, concatenated, is that row's new tokens in
out.sequences up to and including its end (EOS, stop string or max_new_tokens), in every mode
and tree, at batch 1 and > 1; transformers' streamers receive what generate() gives them."""

import io
import threading
from contextlib import redirect_stdout

import pytest
import torch
from transformers import TextIteratorStreamer, TextStreamer

import cospec_ext
from cospec_ext.engine import ConstantArbiter
from _models import EOS, PAD, first_layers, prompts, tiny
from _tok import VOCAB, piece_tokenizer

MAX_NEW = 16


@pytest.fixture(scope="module")
def pair():
    target = tiny("llama", 3, seed=41)
    return target, first_layers(target, 1)


def _streamed(target, draft, ids, mask, **kw):
    got: dict[int, list[int]] = {}
    calls = []

    def fn(row, tokens):
        assert isinstance(row, int) and isinstance(tokens, list) and tokens and all(type(t) is int for t in tokens)
        calls.append(row)
        got.setdefault(row, []).extend(tokens)

    out = cospec_ext.decode(target, draft, ids, mask, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD,
                            streamer=fn, **kw)
    P = ids.shape[1]
    for b in range(ids.shape[0]):
        n = out.stats.new_tokens[b]
        want = out.sequences[b, P:P + n].tolist()
        assert got.get(b, []) == want, f"row {b}: streamed {got.get(b)} vs sequences {want}"
        assert n == MAX_NEW or want[-1] == EOS, f"row {b} ended early without EOS"
    return out, calls


CASES = [("target", "chain:1", 1), ("target", "chain:1", 5), ("draft", "chain:1", 4), ("spd", "chain:4;fixed", 1),
         ("spd", "chain:4;fixed", 6), ("spd", "static:-1,0,0,1,1;fixed", 5), ("spd", "tree:3,2;fixed", 1),
         ("spd", "tree:3,2;fixed", 6), ("spd", "chain:3", 4), ("cospec", "chain:4;fixed", 1),
         ("cospec", "tree:3,2;fixed", 5), ("cospec", "static:-1,0,0,1,1;fixed", 3)]


@pytest.mark.parametrize("mode,tree,batch", CASES)
def test_streamed_chunks_concatenate_to_the_output(pair, mode, tree, batch):
    target, draft = pair
    ids, mask = prompts(batch, seed=batch + 10)
    kw = dict(arbiter=ConstantArbiter(1.0)) if mode == "cospec" else {}
    out, calls = _streamed(target if mode != "draft" else None, draft, ids, mask, mode=mode, tree=tree, **kw)
    if mode == "spd" and tree.endswith(";fixed"):
        assert len(calls) < sum(out.stats.new_tokens), "some round should commit several tokens"
    if batch > 1:
        assert any(n < MAX_NEW for n in out.stats.new_tokens), "some row should end by EOS"


def test_streamed_when_sampling(pair):
    target, draft = pair
    ids, mask = prompts(4, seed=3)
    _streamed(target, draft, ids, mask, mode="spd", tree="tree:3,2;fixed", temperature=0.9, top_p=0.9, seed=1)


class _Recorder:
    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value):
        assert not self.ended
        self.puts.append(value.clone())

    def end(self):
        self.ended += 1


@pytest.mark.parametrize("mode", ["target", "spd"])
def test_transformers_streamer_gets_the_prompt_then_the_tokens(pair, mode):
    target, draft = pair
    ids, _ = prompts(1, seed=8)
    rec = _Recorder()
    out = cospec_ext.decode(target, draft, ids, mode=mode, tree="chain:4;fixed", max_new_tokens=MAX_NEW,
                            eos_token_id=EOS, pad_token_id=PAD, streamer=rec)
    assert rec.ended == 1
    assert torch.equal(rec.puts[0], ids) and rec.puts[0].device.type == "cpu"  # generate() puts input_ids first
    assert all(p.dim() == 2 and p.shape[0] == 1 and p.dtype == torch.int64 for p in rec.puts[1:])
    assert torch.cat(rec.puts[1:], dim=1).equal(out.sequences[:, ids.shape[1]:ids.shape[1] + out.stats.new_tokens[0]])
    ref = _Recorder()
    target.generate(input_ids=ids, do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD,
                    streamer=ref)
    assert torch.equal(ref.puts[0], rec.puts[0]) and ref.ended == 1
    assert torch.cat([p.view(1, -1) for p in ref.puts[1:]], 1).equal(torch.cat(rec.puts[1:], 1))


@pytest.fixture(scope="module")
def text_pair():
    target = tiny("llama", 3, seed=44, vocab=len(VOCAB))
    return target, first_layers(target, 2), piece_tokenizer()


@pytest.mark.parametrize("skip_prompt", [False, True])
def test_text_streamer_prints_what_generate_prints(text_pair, skip_prompt):
    target, draft, tok = text_pair
    ids = tok("abcabdeh", return_tensors="pt").input_ids  # [1, P]
    printed = []
    for run in ("generate", "decode"):
        buf = io.StringIO()
        st = TextStreamer(tok, skip_prompt=skip_prompt)
        with redirect_stdout(buf):
            if run == "generate":
                target.generate(input_ids=ids, do_sample=False, max_new_tokens=20, eos_token_id=EOS, pad_token_id=PAD,
                                streamer=st)
            else:
                cospec_ext.decode(target, draft, ids, tree="chain:4;fixed", max_new_tokens=20, eos_token_id=EOS,
                                  pad_token_id=PAD, streamer=st)
        printed.append(buf.getvalue())
    assert printed[0] == printed[1] and len(printed[1]) > 10, printed


def test_text_iterator_streamer(text_pair):
    target, draft, tok = text_pair
    ids = tok("hgfe", return_tensors="pt").input_ids
    st = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=60)
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("out", cospec_ext.decode(
        target, draft, ids, tree="tree:3,2;fixed", max_new_tokens=20, eos_token_id=EOS, pad_token_id=PAD, streamer=st)))
    th.start()
    text = "".join(st)
    th.join()
    assert text == tok.decode(res["out"].sequences[0, ids.shape[1]:], skip_special_tokens=True)


def test_bad_streamers_raise(pair):
    target, draft = pair
    ids, mask = prompts(2, seed=1)
    common = dict(max_new_tokens=4, eos_token_id=EOS, pad_token_id=PAD)

    class PutOnly:
        def put(self, value):
            pass

    for bad in (5, "stdout", PutOnly()):
        with pytest.raises(TypeError, match="`streamer`"):
            cospec_ext.decode(target, draft, ids, mask, streamer=bad, **common)
    with pytest.raises(ValueError, match="`streamer`.*batch size 1"):
        cospec_ext.decode(target, draft, ids, mask, streamer=_Recorder(), **common)
