"""Choices made on validation data, never on test data, and stored beside the arbiter.

`choose` decodes `n` validation problems (a seeded draw from the validation split) with:
    target-only                       (its accuracy, for reference)
    CoSpec at every threshold in THRESHOLDS -> the threshold of highest accuracy
    every training-free baseline's grid (heuristics.candidates()) -> per family its best
                                      parameter; the family whose best is highest is the
                                      "best tuned heuristic" CoSpec is compared with
Ties go to the longer mean accepted length (faster), then to the first option, so the
choice is deterministic. The result is written as `validation.json` beside the arbiter
(`cospec train` does it once, `cospec demo --revalidate` again), with the split's seed and
size, so `Arbiter.load` picks up the threshold and `cospec demo` the baselines' parameters.
"""

from __future__ import annotations

import json
import os

from .evaluate import run_method
from .heuristics import candidates, from_params
from .tasks import DEFAULT_TREE

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
VAL_SEED, VAL_N = 1, 2000
FILE = "validation.json"


def _rank(r: dict) -> tuple:
    """What "best on validation" means everywhere: most accurate, ties to the longer accepted
    length; max() then keeps the first of equal entries, so every choice is deterministic."""
    return r["accuracy"], r["mean_accept_len"] or 0.0


def best_of(options, run) -> tuple[object, dict]:
    """The option whose run is best (_rank) -> (option, {accuracy, mean_accept_len})."""
    scored = []
    for o in options:
        r = run(o)
        scored.append((o, {"accuracy": r.accuracy, "mean_accept_len": r.mean_accept_len}))
    return max(scored, key=lambda x: _rank(x[1]))


def threshold_sweep(target, draft, task, problems, arbiter, thresholds=THRESHOLDS, **common) -> list[dict]:
    """CoSpec's validation accuracy and accepted length at each threshold."""
    out = []
    for t in thresholds:
        r, _ = run_method(f"cospec@{t}", target, draft, task, problems, mode="cospec", arbiter=arbiter, threshold=t,
                          **common)
        out.append({"threshold": t, "accuracy": r.accuracy, "mean_accept_len": r.mean_accept_len})
    return out


def pick_threshold(sweep: list[dict]) -> dict:
    """The best sweep entry (_rank; ties: the lower threshold)."""
    return max(sorted(sweep, key=lambda s: s["threshold"]), key=_rank)


def choose(target, draft, task, arbiter, *, n: int = VAL_N, seed: int = VAL_SEED, tree: str = DEFAULT_TREE,
           batch: int = 64, max_new_tokens: int = 64, thresholds=THRESHOLDS, baselines: bool = True,
           sweep: list[dict] | None = None, log=print) -> dict:
    """The arbiter's threshold and the baselines' parameters chosen on validation (module
    docstring); `sweep`: the arbiter's threshold sweep on the same problems, when already run."""
    problems = task.problems(n, seed=seed, split="validation")
    common = dict(tree=tree, batch=batch, max_new_tokens=max_new_tokens)
    tgt, _ = run_method("target", target, draft, task, problems, mode="target", **common)
    sweep = sweep or threshold_sweep(target, draft, task, problems, arbiter, thresholds, **common)
    best = pick_threshold(sweep)
    log(f"  validation ({n} problems, seed {seed}): target {tgt.accuracy:.3f}; cospec threshold "
        f"{best['threshold']:g} -> {best['accuracy']:.3f}")
    res = {"format": "cospec-validation", "version": 1, "task": getattr(task, "name", "?"), "split": "validation",
           "seed": seed, "n": n, "tree": tree, "max_new_tokens": max_new_tokens, "threshold": best["threshold"],
           "accuracy": best["accuracy"], "target_accuracy": tgt.accuracy, "sweep": sweep, "baselines": {}}
    if baselines:
        for family, grid in candidates().items():
            h, r = best_of(grid, lambda h: run_method(h.name, target, draft, task, problems, mode="cospec",
                                                        arbiter=h, **common)[0])
            res["baselines"][family] = {"name": h.name, "params": h.params, **r}
            log(f"  validation: {family} -> {h.name} ({r['accuracy']:.3f})")
        res["best_baseline"] = max(res["baselines"], key=lambda f: _rank(res["baselines"][f]))
    return res


def save(arbiter_dir: str, choice: dict) -> str:
    path = os.path.join(arbiter_dir, FILE)
    with open(path, "w") as f:
        json.dump(choice, f, indent=1)
    return path


def load(arbiter_dir: str) -> dict | None:
    path = os.path.join(arbiter_dir, FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def baseline_rules(choice: dict) -> dict:
    """family -> the rule with its validated parameters."""
    return {fam: from_params(fam, b["params"]) for fam, b in choice.get("baselines", {}).items()}
