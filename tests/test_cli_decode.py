"""`cospec decode` end to end on tiny models saved to disk with a character tokenizer."""

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from cospec_ext.cli import main
from _models import first_layers, tiny

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 +-*=#;.,?!"


def _tokenizer():
    vocab = {"<pad>": 0, "<bos>": 1, "<unk>": 2, "<eos>": 3}
    vocab.update({c: 4 + i for i, c in enumerate(CHARS)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    target = tiny("llama", 2, seed=51)
    tok = _tokenizer()
    for name, m in (("target", target), ("draft", first_layers(target, 1))):
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


@pytest.mark.parametrize("mode", ["target", "spd"])
def test_cli_decode_prints_text_and_stats(model_dirs, capsys, mode):
    rc = main(["decode", "--target", str(model_dirs / "target"), "--draft", str(model_dirs / "draft"),
               "--mode", mode, "--tree", "chain:3", "--prompt", "12+7=", "--max-new-tokens", "12"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].strip()
    assert lines[1].startswith(f"mode={mode} ") and "new_tokens=12" in lines[1]


def test_cli_decode_same_text_for_target_and_spd(model_dirs, capsys):
    texts = []
    for mode in ("target", "spd"):
        main(["decode", "--target", str(model_dirs / "target"), "--draft", str(model_dirs / "draft"), "--mode", mode,
              "--prompt", "abc", "--max-new-tokens", "10"])
        texts.append(capsys.readouterr().out.splitlines()[0])
    assert texts[0] == texts[1]


def test_cli_decode_compile_same_text(model_dirs, capsys):
    texts = []
    for extra in ([], ["--compile"]):
        assert main(["decode", "--target", str(model_dirs / "target"), "--draft", str(model_dirs / "draft"),
                     "--mode", "spd", "--tree", "chain:2;fixed", "--prompt", "abc", "--max-new-tokens", "8", *extra]) == 0
        texts.append(capsys.readouterr().out.splitlines())
    assert texts[0][0] == texts[1][0]
    assert "compiled (compile" in texts[1][1] and "compiled" not in texts[0][1]


def _one_line_error(capsys, argv, *must):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    # one line of ours (transformers may have printed its weight-loading progress before it)
    err = "\n".join(ln for ln in err.splitlines() if ln.strip() and "Loading weights" not in ln)
    assert len(err.splitlines()) == 1 and err.startswith("cospec decode: error: "), err
    for m in must:
        assert m in err, err
    return err


def test_cli_decode_user_mistakes_are_one_line_errors(model_dirs, capsys, tmp_path):
    t, d = str(model_dirs / "target"), str(model_dirs / "draft")
    base = ["decode", "--prompt", "1+1=", "--max-new-tokens", "4"]
    _one_line_error(capsys, base + ["--target", "/no/such/dir", "--draft", d], "--target", "/no/such/dir")
    _one_line_error(capsys, base + ["--target", t, "--draft", str(tmp_path)], "--draft", str(tmp_path))
    _one_line_error(capsys, base + ["--target", t, "--draft", d, "--mode", "cospec"], "--arbiter")
    _one_line_error(capsys, base + ["--target", t, "--draft", d, "--mode", "cospec", "--arbiter", "/no/arb"],
                    "--arbiter", "/no/arb")
    _one_line_error(capsys, base + ["--target", t, "--mode", "spd"], "--draft")
    _one_line_error(capsys, base + ["--target", t, "--draft", d, "--tree", "chain:x"], "tree")
    _one_line_error(capsys, base + ["--target", t, "--draft", d, "--temperature", "-1"], "temperature")


def test_cli_decode_help_lines(capsys):
    with pytest.raises(SystemExit):
        main(["decode", "--help"])
    out = capsys.readouterr().out
    assert "None" not in out  # --dtype lists real choices only
    for flag in ("--mode", "--prompt", "--temperature", "--seed", "--device", "--dtype"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(flag))
        assert len(line.split()) > 1 or flag in ("--mode",), line
