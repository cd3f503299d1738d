"""Timing of `cospec demo`: every method through `decode(compile=...)`, warmed up, interleaved.

What is timed is what a user would run: `decode(target, draft, ids, mask, mode=..., compile=True)`
per batch of problems (`--eager` for the transformers path). For one batch size:

1. warm-up: every method decodes every batch of the timing subsets once, untimed, so that
   every graph those shapes need is built (its compile time reported apart, never inside a
   speedup);
2. `repeats` timed passes; within a pass each batch of problems is decoded by every method in
   turn, the order rotating from batch to batch, so that drift in the machine's speed (seconds
   long on a shared CPU) falls on every method alike;
3. per method and pass: tokens/s = new tokens / wall seconds summed over the pass (a graph
   first built inside a timed pass, when the adaptive depth reaches a depth the warm-up did
   not, has its compile seconds, `stats.compile_s`, taken out of the wall and counted);
   speedup per pass = tokens/s / target-only's tokens/s in the same pass; reported: the
   median over passes of that paired ratio.
"""

from __future__ import annotations

import statistics
import time

from .evaluate import run_method


def run_named(name, kw, target, draft, task, problems, **common):
    """run_method for one entry of a methods table (name -> run_method keywords; a "target" or
    "draft" keyword overrides that model, e.g. target None for draft-only) -> (MethodResult, trace)."""
    kw = dict(kw)
    tgt, drf = kw.pop("target", target), kw.pop("draft", draft)
    return run_method(name, tgt, drf, task, problems, **kw, **common)


def _batches(subsets, batch):
    return [sub[i:i + batch] for sub in subsets for i in range(0, len(sub), batch)]


def warm_up(methods: dict, target, draft, task, subsets, *, batch: int, **common) -> dict:
    """Decode every batch once with every method, untimed -> {"wall_s", "compile_s"}: wall
    seconds of the whole warm-up and the part of it spent compiling graphs (or loading them
    from the inductor cache)."""
    t0, comp = time.perf_counter(), 0.0
    for chunk in _batches(subsets, batch):
        for name, kw in methods.items():
            comp += run_named(name, kw, target, draft, task, chunk, batch=batch, **common)[0].compile_s
    return {"wall_s": time.perf_counter() - t0, "compile_s": comp}


def timed(methods: dict, target, draft, task, subsets, repeats: int, *, batch: int, **common) -> dict:
    """Interleaved timed passes -> {"tokens_per_s": name -> [per pass], "speedup": name -> [per
    pass, over "target" in the same pass] (when "target" is among the methods),
    "late_compile_s": compile seconds inside timed calls (taken out of their wall)}."""
    names = list(methods)
    tps = {name: [] for name in names}
    late = 0.0
    k = 0  # rotation counter
    for _ in range(repeats):
        toks, secs = dict.fromkeys(names, 0), dict.fromkeys(names, 0.0)
        for chunk in _batches(subsets, batch):
            for name in names[k % len(names):] + names[:k % len(names)]:
                r = run_named(name, methods[name], target, draft, task, chunk, batch=batch, **common)[0]
                toks[name] += r.new_tokens
                secs[name] += r.wall - r.compile_s
                late += r.compile_s
            k += 1
        for name in names:
            tps[name].append(toks[name] / secs[name] if secs[name] > 0 else 0.0)
    out = {"tokens_per_s": tps, "late_compile_s": late}
    if "target" in tps:
        out["speedup"] = {n: [a / b if b else 0.0 for a, b in zip(tps[n], tps["target"])] for n in names}
    return out


def median_ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(median, min, max) over passes of a[i] / b[i] (paired per pass)."""
    r = sorted(x / y for x, y in zip(a, b) if y)
    return (statistics.median(r), r[0], r[-1]) if r else (float("nan"),) * 3
