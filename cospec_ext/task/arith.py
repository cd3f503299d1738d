"""Synthetic multi-step integer arithmetic: the embedded reasoning task of the demo.

A problem is a short integer expression over `+`, `-`, `*` (normal precedence, sometimes
one pair of parentheses) whose answer is written out one binary operation per step, in
the order a person evaluates it (innermost / highest precedence first, left to right),
followed by the final value after `####`:

    question: "12+7*3-5="
    answer:   "7*3=21;12+21=33;33-5=28####28"
    final:    "28"

Format (all ASCII, no spaces):
    question = <expr> "="                      (<expr>: 2-4 operators, operands 0-99)
    answer   = <step> (";" <step>)* "####" <final>
    step     = <int> <op> <int> "=" <int>      (one binary operation on earlier values)
    final    = the value of the last step

Constraints (a generated problem is rejected and redrawn otherwise):
    * every intermediate value lies in [0, 999] (no negative numbers ever appear);
    * every multiplication has one factor <= 12 (single-digit-ish times table, so the
      task is learnable by tiny models while still requiring carries).
The whole `question + answer` is at most ~60 characters (`MAX_CHARS` bounds it).

Splits: a question belongs to exactly one of train / validation / test, decided by a
hash of its text (`split_of`), so the same question can never appear in two splits,
whatever seed or mixture generated it.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Sequence

OPS = ("+", "-", "*")
SPLITS = ("train", "validation", "test")
# Share of hash buckets (out of 100) per split: train 0-79, validation 80-89, test 90-99.
_SPLIT_BUCKETS = {"train": (0, 80), "validation": (80, 90), "test": (90, 100)}
MAX_VALUE = 999      # bound on every intermediate value
MAX_SMALL_FACTOR = 12  # one factor of every product is <= this
MAX_CHARS = 64       # bound on len(question) + len(answer)
ANSWER_SEP = "####"

# Default mixture (the evaluation distribution): equal op weights, 2-4 operators.
DEFAULT_OP_WEIGHTS = (1.0, 1.0, 1.0)          # weights of OPS
DEFAULT_NOPS_WEIGHTS = {2: 1.0, 3: 1.0, 4: 1.0}  # number of operators -> weight
DEFAULT_PAREN_PROB = 0.3


# ---------------------------------------------------------------------------- parsing
def _tokenize(expr: str) -> list[str]:
    return re.findall(r"\d+|[-+*()]", expr)


def _parse(tokens: list[str]):
    """Recursive-descent parse of `tokens` into a tree: int | (op, left, right)."""
    pos = 0

    def atom():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            node = expr()
            assert tokens[pos] == ")", "unbalanced parentheses"
            pos += 1
            return node
        return int(tok)

    def term():
        nonlocal pos
        node = atom()
        while pos < len(tokens) and tokens[pos] == "*":
            pos += 1
            node = ("*", node, atom())
        return node

    def expr():
        nonlocal pos
        node = term()
        while pos < len(tokens) and tokens[pos] in "+-":
            op = tokens[pos]
            pos += 1
            node = (op, node, term())
        return node

    tree = expr()
    assert pos == len(tokens), f"trailing tokens in {tokens}"
    return tree


def apply_op(op: str, a: int, b: int) -> int:
    """a <op> b for op in OPS."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


def solve(expr: str) -> tuple[list[tuple[int, str, int, int]], int]:
    """Evaluate `expr` (no trailing '='). Returns (steps, value): steps are (a, op, b, a<op>b)
    in post-order (left subtree, right subtree, then the node), value the final result."""
    steps: list[tuple[int, str, int, int]] = []

    def ev(node):
        if isinstance(node, int):
            return node
        op, left, right = node
        a, b = ev(left), ev(right)
        c = apply_op(op, a, b)
        steps.append((a, op, b, c))
        return c

    value = ev(_parse(_tokenize(expr)))
    return steps, value


def format_steps(steps: Sequence[tuple[int, str, int, int]], value: int) -> str:
    """The answer text: "a op b=c;...;####value"."""
    return ";".join(f"{a}{op}{b}={c}" for a, op, b, c in steps) + ANSWER_SEP + str(value)


def _valid(steps) -> bool:
    for a, op, b, c in steps:
        if c < 0 or c > MAX_VALUE:
            return False
        if op == "*" and min(a, b) > MAX_SMALL_FACTOR:
            return False
    return True


# ---------------------------------------------------------------------------- generation
def _draw_expr(rng: random.Random, n_ops: int, op_weights, paren_prob: float) -> str:
    ops = rng.choices(OPS, weights=op_weights, k=n_ops)
    nums = []
    for i in range(n_ops + 1):
        # An operand next to '*' is usually small so that fewer draws get rejected.
        near_mul = (i > 0 and ops[i - 1] == "*") or (i < n_ops and ops[i] == "*")
        if near_mul and rng.random() < 0.7:
            nums.append(rng.randint(0, MAX_SMALL_FACTOR))
        else:
            nums.append(rng.randint(0, 99))
    parts = [str(n) for n in nums]
    if n_ops >= 2 and rng.random() < paren_prob:
        # Parenthesise operands lo..hi (at least two operands, never the whole expression).
        while True:
            lo = rng.randint(0, n_ops - 1)
            hi = rng.randint(lo + 1, n_ops)
            if not (lo == 0 and hi == n_ops):
                break
        parts[lo] = "(" + parts[lo]
        parts[hi] = parts[hi] + ")"
    out = parts[0]
    for op, p in zip(ops, parts[1:]):
        out += op + p
    return out


def make_problem(rng: random.Random, n_ops: int | None = None, op_weights=DEFAULT_OP_WEIGHTS,
                 nops_weights=None, paren_prob: float = DEFAULT_PAREN_PROB) -> dict:
    """Draw one problem from `rng` (a `random.Random`).

    n_ops: number of operators (default: drawn from `nops_weights`, {2,3,4} uniform);
    op_weights: weights of ("+", "-", "*"); paren_prob: chance of one pair of parentheses.
    Returns dict(question="12+7*3-5=", answer="7*3=21;...####28", final="28").
    """
    nops_weights = nops_weights or DEFAULT_NOPS_WEIGHTS
    while True:
        k = n_ops if n_ops is not None else rng.choices(list(nops_weights), weights=list(nops_weights.values()))[0]
        expr = _draw_expr(rng, k, op_weights, paren_prob)
        steps, value = solve(expr)
        if not _valid(steps):
            continue
        question = expr + "="
        answer = format_steps(steps, value)
        if len(question) + len(answer) > MAX_CHARS:
            continue
        return {"question": question, "answer": answer, "final": str(value)}


def split_of(question: str) -> str:
    """The split ("train" | "validation" | "test") a question belongs to (hash of its text)."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "little") % 100
    for name, (lo, hi) in _SPLIT_BUCKETS.items():
        if lo <= bucket < hi:
            return name
    raise AssertionError(bucket)


def generate(n: int, seed: int = 0, split: str = "train", unique: bool = True, **mixture) -> list[dict]:
    """`n` problems of `split`, deterministic in (n, seed, split, mixture).

    Problems are drawn from `random.Random(f"arith-{seed}-{split}")` and kept only if their
    question hashes into `split` (so splits are disjoint for any seeds). `unique` drops
    repeated questions. `mixture` is passed to `make_problem` (op_weights, nops_weights,
    paren_prob, n_ops). Returns a list of dict(question, answer, final).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"arith-{seed}-{split}")
    out: list[dict] = []
    seen: set[str] = set()
    while len(out) < n:
        p = make_problem(rng, **mixture)
        if split_of(p["question"]) != split:
            continue
        if unique:
            if p["question"] in seen:
                continue
            seen.add(p["question"])
        out.append(p)
    return out


# ---------------------------------------------------------------------------- checking
def extract_answer(text: str) -> str | None:
    """Text after the last `####`, stripped (None if there is no `####`).
    Anything after an end-of-text marker (newline or `<eos>`) is ignored."""
    if ANSWER_SEP not in text:
        return None
    tail = text.rsplit(ANSWER_SEP, 1)[1]
    tail = tail.split("<eos>", 1)[0].split("\n", 1)[0]
    return tail.strip()


def is_correct(generated_text: str, final: str | int) -> bool:
    """Exact match of the extracted final answer with `final` (as integers when both parse)."""
    got = extract_answer(generated_text)
    if got is None:
        return False
    want = str(final).strip()
    try:
        return int(got) == int(want)
    except ValueError:
        return got == want


def check_steps(answer: str) -> bool:
    """True iff every step "a op b=c" in `answer` is arithmetically right and the text after
    `####` equals the last step's result."""
    body, _, final = answer.partition(ANSWER_SEP)
    last = None
    for step in body.split(";"):
        m = re.fullmatch(r"(\d+)([-+*])(\d+)=(-?\d+)", step)
        if not m or apply_op(m.group(2), int(m.group(1)), int(m.group(3))) != int(m.group(4)):
            return False
        last = int(m.group(4))
    return last is not None and final.strip() == str(last)
