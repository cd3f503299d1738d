"""CoSpec's own cost per round against SPD's, on the embedded task (2 CPU cores).

    python bench/task/cospec_overhead.py [--n 40] [--repeats 4] [--batch 8]

Runs decode(mode="spd") and decode(mode="cospec") with the shipped arbiter at threshold 1
(it never accepts, so both make the same rounds and emit the same tokens: any difference
is the arbiter's work) on the first --n test problems (seed 0), interleaved per call, and
prints per method the median over repeats of the milliseconds spent in: the whole rounds
(SpecEngine._round), the models' forwards, the draft's catch-up and expansion, and the
arbiter's parts (node_features, the hidden-state gather, predict_proba); then "engine" =
rounds - forwards, and CoSpec's tokens/s over SPD's (median of the paired repeats).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch


def _wrap(obj, name, key, acc):
    f = getattr(obj, name)

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            acc[key] += time.perf_counter() - t0

    setattr(obj, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="test problems (seed 0)")
    ap.add_argument("--repeats", type=int, default=4, help="interleaved repeats")
    ap.add_argument("--batch", type=int, default=8, help="rows per decode call")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from cospec_ext.engine import Arbiter
    from cospec_ext.engine import draft as draft_mod
    from cospec_ext.engine import loop, runner
    from cospec_ext.task.evaluate import run_method
    from cospec_ext.task.tasks import DEFAULT_ARBITER, DEFAULT_DRAFT, DEFAULT_TARGET, make_task

    task = make_task("arith")
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()  # noqa
    target, draft = load(DEFAULT_TARGET), load(DEFAULT_DRAFT)
    arb = Arbiter.load(DEFAULT_ARBITER)
    acc = defaultdict(float)
    for obj, name, key in ((loop.SpecEngine, "_round", "rounds"), (runner.ModelRunner, "_run", "forwards"),
                           (draft_mod.Drafter, "catch_up", "draft catch-up"),
                           (draft_mod.Drafter, "_draft_static", "draft expansion"),
                           (loop, "node_features", "node_features"), (loop.SpecEngine, "_hidden", "hidden gather")):
        _wrap(obj, name, key, acc)
    _wrap(arb, "predict_proba", "predict_proba", acc)
    problems = task.problems(args.n, seed=0, split="test")
    methods = {"spd": dict(mode="spd"), "cospec": dict(mode="cospec", arbiter=arb, threshold=1.0)}
    runs = {m: [] for m in methods}
    tps = {m: [] for m in methods}
    for rep in range(args.repeats + 1):  # the first pass warms up
        toks = dict.fromkeys(methods, 0.0)
        secs = dict.fromkeys(methods, 0.0)
        parts = {m: defaultdict(float) for m in methods}
        for k, i in enumerate(range(0, len(problems), args.batch)):
            order = list(methods) if (rep + k) % 2 == 0 else list(methods)[::-1]
            for m in order:
                acc.clear()
                r, _ = run_method(m, target, draft, task, problems[i:i + args.batch], tree="chain:4;fixed",
                                  batch=args.batch, **methods[m])
                toks[m] += r.new_tokens
                secs[m] += r.wall
                for key, v in acc.items():
                    parts[m][key] += v
        if rep:
            for m in methods:
                runs[m].append(parts[m])
                tps[m].append(toks[m] / secs[m])
    keys = ["rounds", "forwards", "draft catch-up", "draft expansion", "node_features", "hidden gather",
            "predict_proba"]
    print(f"ms over {args.n} problems at batch {args.batch}, medians of {args.repeats} interleaved repeats "
          f"(cospec: the shipped arbiter at threshold 1, never accepting)")
    print(f"{'':<18}" + "".join(f"{m:>10}" for m in methods))
    for key in keys + ["engine"]:
        vals = []
        for m in methods:
            per = [(r["rounds"] - r["forwards"]) if key == "engine" else r.get(key, 0.0) for r in runs[m]]
            vals.append(statistics.median(per) * 1e3)
        print(f"{key:<18}" + "".join(f"{v:>10.1f}" for v in vals))
    ratios = sorted(a / b for a, b in zip(tps["cospec"], tps["spd"]))
    print(f"cospec tokens/s over spd's: {statistics.median(ratios):.3f} (repeats {ratios[0]:.3f}-{ratios[-1]:.3f})")


if __name__ == "__main__":
    main()
