"""The embedded demo task: arithmetic generator, char tokenizer, GSM8K I/O, shipped models."""

import json
import os
import random
import re

import pytest

from cospec_ext.task import arith, gsm8k
from cospec_ext.task.arith import extract_answer, generate, is_correct, make_problem, split_of

MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "cospec_ext", "assets", "models")


# ------------------------------------------------------------------------ generator
def test_generate_deterministic():
    a = generate(50, seed=3, split="train")
    b = generate(50, seed=3, split="train")
    c = generate(50, seed=4, split="train")
    assert a == b
    assert a != c
    r1, r2 = random.Random(7), random.Random(7)
    assert [make_problem(r1) for _ in range(20)] == [make_problem(r2) for _ in range(20)]


def test_splits_disjoint_and_hashed():
    sets = {s: {p["question"] for p in generate(300, seed=0, split=s)} for s in arith.SPLITS}
    assert all(len(v) == 300 for v in sets.values())  # unique within a split
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    # Membership depends only on the question text, whatever the seed or mixture.
    other = generate(100, seed=9, split="test", op_weights=(0, 1, 1), paren_prob=0.9)
    assert all(split_of(p["question"]) == "test" for p in other)
    with pytest.raises(ValueError):
        generate(1, split="dev")


def test_format_and_steps_recompute():
    for p in generate(300, seed=1, split="train"):
        q, ans, final = p["question"], p["answer"], p["final"]
        assert q.endswith("=") and re.fullmatch(r"[0-9+\-*()]+=", q)
        assert len(q) + len(ans) <= arith.MAX_CHARS
        body, sep, tail = ans.partition("####")
        assert sep and tail == final
        steps = body.split(";")
        assert 2 <= len(steps) <= 4
        assert len(re.findall(r"[-+*]", q)) == len(steps)
        # The question itself evaluates (Python precedence = ours) to the final answer.
        assert eval(q[:-1]) == int(final)  # noqa: S307 - digits and + - * ( ) only
        known = [int(x) for x in re.findall(r"\d+", q)]
        for st in steps:
            a, op, b, c = re.fullmatch(r"(\d+)([-+*])(\d+)=(\d+)", st).groups()
            a, b, c = int(a), int(b), int(c)
            assert arith.apply_op(op, a, b) == c
            assert 0 <= c <= arith.MAX_VALUE
            if op == "*":
                assert min(a, b) <= arith.MAX_SMALL_FACTOR
            assert a in known and b in known  # operands: question numbers or earlier results
            known.append(c)
        assert int(steps[-1].split("=")[1]) == int(final)
        assert arith.check_steps(ans)


def test_known_example():
    steps, value = arith.solve("12+7*3-5")
    assert arith.format_steps(steps, value) == "7*3=21;12+21=33;33-5=28####28"
    steps, value = arith.solve("(40-8)*3+1")
    assert arith.format_steps(steps, value) == "40-8=32;32*3=96;96+1=97####97"
    assert not arith.check_steps("7*3=22;12+22=34####34")
    assert not arith.check_steps("7*3=21####20")


def test_extract_and_is_correct():
    assert extract_answer("7*3=21;12+21=33####33") == "33"
    assert extract_answer("1####2;3####  45 ") == "45"
    assert extract_answer("45<eos><pad>") is None
    assert extract_answer("####12<eos>junk") == "12"
    assert extract_answer("no answer") is None
    assert is_correct("7*3=21####21", "21")
    assert is_correct("####021", 21)
    assert not is_correct("####22", "21")
    assert not is_correct("21", "21")
    assert not is_correct("####", "21")


# ------------------------------------------------------------------------ tokenizer
def test_tokenizer_roundtrip_and_save_load(tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from cospec_ext.task.tokenizer import (BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, build_tokenizer,
                                           encode_example, encode_prompt)

    tok = build_tokenizer()
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2) == (PAD_ID, BOS_ID, EOS_ID)
    assert len(tok) == VOCAB_SIZE
    p = generate(5, seed=0, split="test")[0]
    text = p["question"] + p["answer"]
    ids = tok(text)["input_ids"]
    assert ids[0] == BOS_ID and len(ids) == len(text) + 1 and EOS_ID not in ids
    assert ids == encode_prompt(text)
    assert tok.decode(ids, skip_special_tokens=True) == text
    full, start = encode_example(p["question"], p["answer"])
    assert full[-1] == EOS_ID and full[:start] == encode_prompt(p["question"])
    prose = "Tom had $1,000.50 (Mon)\nThen: 3 apples?"
    assert tok.decode(tok(prose)["input_ids"], skip_special_tokens=True) == prose
    batch = tok(["1+2=", "12*3-4="], padding=True)
    assert batch["input_ids"][0][:3] == [PAD_ID] * 3  # left padding
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tok2(text)["input_ids"] == ids
    assert tok2.decode(ids, skip_special_tokens=True) == text
    assert (tok2.pad_token_id, tok2.bos_token_id, tok2.eos_token_id) == (0, 1, 2)
    assert tok2.padding_side == "left"


# ------------------------------------------------------------------------ gsm8k
def test_gsm8k_loader_and_extraction(tmp_path):
    recs = [
        {"question": "Ann has 600 apples and buys 400 more. How many?",
         "answer": "600+400=<<600+400=1000>>1000\n#### 1,000"},
        {"question": "A toy costs $5. Two toys?", "answer": "2*5=<<2*5=10>>10 dollars.\n#### $10."},
        {"question": "Owes 3 more than 1?", "answer": "#### -2"},
        {"question": "Half of 5?", "answer": "#### 2.50"},
    ]
    path = tmp_path / "gsm.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    data = gsm8k.load_gsm8k(path)
    assert [d["final"] for d in data] == ["1000", "10", "-2", "2.5"]
    assert data[0]["question"] == recs[0]["question"] and data[0]["answer"] == recs[0]["answer"]
    assert len(gsm8k.load_gsm8k(path, limit=2)) == 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        gsm8k.load_gsm8k(bad)

    x = gsm8k.extract_gsm8k_answer
    assert x("so the total is\n#### 1,000.") == "1000"
    assert x("#### $1,234") == "1234"
    assert x("The answer is 12 apples, then 3,500.") == "3500"
    assert x("It costs $7.50.") == "7.5"
    assert x("#### 42\nand then 7") == "42"
    assert x("no digits here") is None
    assert gsm8k.normalize_number(" 1,000. ") == "1000"
    assert gsm8k.normalize_number("$18.00") == "18"
    assert gsm8k.gsm8k_is_correct("We get #### 1,000", "1000")
    assert not gsm8k.gsm8k_is_correct("We get 999", "1000")


# ------------------------------------------------------------------------ shipped models
@pytest.mark.skipif(not all(os.path.isfile(os.path.join(MODELS_DIR, m, "model.safetensors"))
                            for m in ("target", "draft")), reason="trained models not shipped")
def test_shipped_models_answer_offline():
    pytest.importorskip("transformers")
    import torch

    probs = generate(50, seed=0, split="test")
    threads = torch.get_num_threads()
    # One thread: these models are tiny, and on a busy 2-core box two OpenMP threads made
    # generate() ~100x slower (spin-waiting), 0.2 s -> 36 s.
    torch.set_num_threads(1)
    try:
        _check_models(probs)
    finally:
        torch.set_num_threads(threads)


def _check_models(probs):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name, bar in (("target", 0.3), ("draft", 0.1)):
        path = os.path.join(MODELS_DIR, name)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
        assert model.config.eos_token_id == 2 and model.config.pad_token_id == 0
        assert model.config.max_position_embeddings >= 128
        enc = tok([p["question"] for p in probs], return_tensors="pt", padding=True)  # [B, T] left padded
        with torch.no_grad():
            out = model.generate(**enc, do_sample=False, max_new_tokens=64, pad_token_id=0, eos_token_id=2)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        assert sum("####" in t for t in texts) >= 45, name
        acc = sum(is_correct(t, p["final"]) for t, p in zip(texts, probs)) / len(probs)
        assert acc >= bar, f"{name}: accuracy {acc:.2f} < {bar}"
