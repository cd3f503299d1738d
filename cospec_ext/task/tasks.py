"""Tasks the arbiter is trained on: prompts with a verifiable final answer.

A task gives problems (dicts with `question` and `final`), turns questions into
left-padded prompt ids, and checks a generated continuation. `ArithTask` is the embedded
synthetic arithmetic task (character tokenizer, shipped models); `Gsm8kTask` reads a
GSM8K-format JSONL file for real model pairs (the target's tokenizer and chat template).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_TARGET = ASSETS / "models" / "target"
DEFAULT_DRAFT = ASSETS / "models" / "draft"
# The draft tree of the demo, the arbiter's training and validation: chosen on validation
# prompts for the shipped pair (`bench/task/pair_candidate.py`: spd / target-only compiled at
# batch 1, chain:4 2.10x, chain:5 2.29x, chain:6 2.27x with eager prefills; with the compiled
# short prefill, 2026-12-07: chain:5 2.53x, chain:6 2.65x, chain:7 2.81x at batch 1 and 1.41x,
# 1.30x, 1.37x at batch 8); a chain of 7 verifies 8 tokens, the query bucket chain:6 pads to
# (engine/native.py), so chain:6 is never the better choice.
DEFAULT_TREE = "chain:7;fixed"
DEFAULT_ARBITER = ASSETS / "arbiter"


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (input_ids int64 [B, P], attention_mask int64 [B, P]), padded on the left."""
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), pad_id, dtype=torch.int64)
    mask = torch.zeros(len(rows), P, dtype=torch.int64)
    for b, r in enumerate(rows):
        ids[b, P - len(r):] = torch.tensor(r, dtype=torch.int64)
        mask[b, P - len(r):] = 1
    return ids, mask


class ArithTask:
    """The embedded step-by-step arithmetic task (cospec_ext.task)."""

    name = "arith"
    eos_id, pad_id = 2, 0

    def problems(self, n: int, seed: int, split: str) -> list[dict]:
        from cospec_ext.task import generate

        return generate(n, seed=seed, split=split)

    def encode(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from cospec_ext.task.tokenizer import encode_prompt

        return left_pad([encode_prompt(q) for q in questions], self.pad_id)

    def text(self, ids: list[int]) -> str:
        from cospec_ext.task.tokenizer import decode

        return decode(ids)

    def is_correct(self, ids: list[int], final: str) -> bool:
        from cospec_ext.task import is_correct

        return is_correct(self.text(ids), final)


class Gsm8kTask:
    """GSM8K-format JSONL (`question`, `answer` with the final answer after `####`).

    Records are split by a hash of the question (80% train, 10% validation, 10% test);
    prompts go through the tokenizer's chat template when it has one."""

    name = "gsm8k"

    def __init__(self, path: str | os.PathLike, tokenizer_dir: str | os.PathLike):
        from transformers import AutoTokenizer

        from cospec_ext.task.gsm8k import load_gsm8k

        self.records = load_gsm8k(path)
        if not self.records:
            raise ValueError(f"{path}: no GSM8K records")
        self.tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        self.eos_id = self.tok.eos_token_id
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id

    @staticmethod
    def _split(question: str) -> str:
        h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % 10
        return "train" if h < 8 else ("validation" if h == 8 else "test")

    def problems(self, n: int, seed: int, split: str) -> list[dict]:
        pool = [r for r in self.records if self._split(r["question"]) == split] or self.records
        g = torch.Generator().manual_seed(seed)
        return [pool[int(i)] for i in torch.randint(len(pool), (n,), generator=g)]

    def encode(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from cospec_ext.cli_decode import encode_prompt

        return left_pad([encode_prompt(self.tok, q)[0].tolist() for q in questions], self.pad_id)

    def text(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def is_correct(self, ids: list[int], final: str) -> bool:
        from cospec_ext.task.gsm8k import gsm8k_is_correct

        return gsm8k_is_correct(self.text(ids), final)


def make_task(name: str, data: str | None = None, tokenizer_dir: str | None = None):
    if name == "arith":
        return ArithTask()
    if name == "gsm8k":
        if not data:
            raise ValueError("--task gsm8k needs --data FILE (GSM8K-format JSONL)")
        return Gsm8kTask(data, tokenizer_dir or DEFAULT_TARGET)
    raise ValueError(f"unknown task {name!r} (expected 'arith' or 'gsm8k')")
