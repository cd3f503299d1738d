"""Running a decoding method over a problem set and scoring it (used by `cospec demo`).

Per method: per-problem correctness, accuracy with a 95% Wilson interval, mean accepted
length (tokens committed per verification round per row), target forwards per generated
token (row-forwards: a row's prefill plus its verification rounds, over its tokens; 1.0 for
target-only decoding), tokens/s over the whole set, and the speedup over target-only
measured in the same run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..engine import decode


@dataclass
class MethodResult:
    name: str
    correct: list[bool]
    new_tokens: int = 0
    row_rounds: int = 0
    committed: float = 0.0
    wall: float = 0.0
    compile_s: float = 0.0  # part of `wall` spent building graphs (decode(compile=True))
    consulted: int = 0
    accepted: int = 0
    speedup: float | None = None
    uses_target: bool = True  # False for draft-only decoding: no target forwards at all
    params: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / max(self.n, 1)

    def ci(self) -> tuple[float, float]:
        return wilson(sum(self.correct), self.n)

    @property
    def mean_accept_len(self) -> float | None:
        return self.committed / self.row_rounds if self.row_rounds else None

    @property
    def target_forwards_per_token(self) -> float | None:
        if not self.uses_target:
            return 0.0
        return (self.row_rounds + self.n) / self.new_tokens if self.new_tokens and self.row_rounds else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.new_tokens / self.wall if self.wall else None

    def as_dict(self) -> dict:
        lo, hi = self.ci()
        return {"accuracy": self.accuracy, "ci_low": lo, "ci_high": hi, "n": self.n,
                "mean_accept_len": self.mean_accept_len, "target_forwards_per_token": self.target_forwards_per_token,
                "tokens_per_s": self.tokens_per_s, "speedup": self.speedup, "arbiter_consulted": self.consulted,
                "arbiter_accepted": self.accepted, **({"params": self.params} if self.params else {})}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def paired_diff(a: list[bool], b: list[bool], z: float = 1.96) -> dict:
    """Mean of a_i - b_i over paired problems with a normal 95% interval."""
    d = torch.tensor([float(x) - float(y) for x, y in zip(a, b)], dtype=torch.float64)
    n = d.numel()
    mean = float(d.mean())
    se = float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("inf")
    return {"diff": mean, "ci_low": mean - z * se, "ci_high": mean + z * se, "n": n}


def run_method(name, target, draft, task, problems, *, mode, arbiter=None, threshold=None, tree="chain:4",
               batch=50, max_new_tokens=64, return_trace=False, params=None, compile=False):
    """Decodes every problem (in batches) with one method -> (MethodResult, per-batch outputs
    when return_trace). compile: through `decode(compile=True)` (the compiled static-shape
    forward; graph-building seconds land in MethodResult.compile_s as well as in wall)."""
    res, outs = MethodResult(name, [], params=params or {}, uses_target=mode != "draft"), []
    for i in range(0, len(problems), batch):
        chunk = problems[i:i + batch]
        ids, mask = task.encode([p["question"] for p in chunk])
        t0 = time.perf_counter()
        out = decode(target, draft, ids, mask, mode=mode, arbiter=arbiter, threshold=threshold, tree=tree,
                     max_new_tokens=max_new_tokens, eos_token_id=task.eos_id, pad_token_id=task.pad_id,
                     return_trace=return_trace, compile=compile)
        res.wall += time.perf_counter() - t0
        res.compile_s += out.stats.compile_s
        P = ids.shape[1]
        for b, p in enumerate(chunk):
            gen = out.sequences[b, P:P + out.stats.new_tokens[b]].tolist()
            res.correct.append(task.is_correct(gen, p["final"]))
        s = out.stats
        res.new_tokens += sum(s.new_tokens)
        res.row_rounds += s.row_rounds
        res.committed += s.mean_accept_len * s.row_rounds
        res.consulted += s.arbiter_consulted
        res.accepted += s.arbiter_accepted
        if return_trace:
            outs.append((chunk, ids, out))
    return res, outs
