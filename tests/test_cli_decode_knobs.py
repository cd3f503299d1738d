"""`cospec decode --stream / --stop / --top-k --top-p --min-p` on tiny models saved to disk with
the in-memory piece tokenizer (tests/_tok.py)."""

import pytest

from cospec_ext.cli import main
from _models import first_layers, tiny
from _tok import VOCAB, piece_tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    target = tiny("llama", 3, seed=52, vocab=len(VOCAB))
    target.generation_config.eos_token_id = None  # twelve tokens every time
    tok = piece_tokenizer()
    for name, m in (("target", target), ("draft", first_layers(target, 2))):
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return ["decode", "--target", str(root / "target"), "--draft", str(root / "draft"), "--mode", "spd",
            "--tree", "chain:3;fixed", "--prompt", "abcgh", "--max-new-tokens", "12", "--no-chat-template"]


def _text(capsys, argv):
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("mode=spd "), lines
    return lines[0]


def test_stream_prints_the_same_text(base, capsys):
    assert _text(capsys, base + ["--stream"]) == _text(capsys, base)


def test_stop_cuts_after_the_completing_token(base, capsys):
    full = _text(capsys, base)
    stop = full[5:7]
    text = _text(capsys, base + ["--stop", stop, "--stop", "hhhhhhhh", "--stream"])
    # the text ends within the token that completes the first occurrence of `stop`
    first = full.index(stop) + len(stop)
    assert full.startswith(text) and first <= len(text) < len(full) and stop in text[first - len(stop):], (text, full)


def test_sampling_knobs(base, capsys):
    assert main(base + ["--temperature", "0.8", "--top-k", "5", "--top-p", "0.9", "--min-p", "0.05", "--seed", "1"]) == 0
    assert "new_tokens=12" in capsys.readouterr().out
    assert main(base + ["--temperature", "1", "--top-p", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "cospec decode: error: `top_p`" in err and "Traceback" not in err
