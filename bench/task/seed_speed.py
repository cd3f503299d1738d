"""spd and cospec over compiled target-only, per test seed, on the shipped demo pair: how much the
demo's speed figures move with the prompts timed.

    python bench/task/seed_speed.py --batch 1 --n 64 --repeats 3 --seeds 0,1,2,3,4,5

Per seed, the first `--n` test problems (as `cospec demo --timing-n`), the demo's protocol
(cospec_ext/task/timing.py): every method decodes every batch once untimed (building graphs),
then `--repeats` passes with the methods interleaved in rotating order; printed per seed: the
median over passes of each method's tokens/s over target-only's in the same pass, and spd's
per-pass ratios. Tree DEFAULT_TREE, the shipped arbiter at its validation threshold.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from transformers import AutoModelForCausalLM

from cospec_ext.engine import Arbiter
from cospec_ext.task import validation
from cospec_ext.task.tasks import ASSETS, DEFAULT_TREE, make_task
from cospec_ext.task.timing import timed, warm_up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--n", type=int, default=64, help="problems per seed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(x) for x in args.seeds.split(",")]
    tdir, ddir = str(ASSETS / "models" / "target"), str(ASSETS / "models" / "draft")
    task = make_task("arith", None, tdir)
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()  # noqa
    target, draft = load(tdir), load(ddir)
    arb = Arbiter.load(str(ASSETS / "arbiter"))
    thr = validation.load(str(ASSETS / "arbiter"))["threshold"]
    methods = {"target": dict(mode="target", draft=None), "spd": dict(mode="spd"),
               "cospec": dict(mode="cospec", arbiter=arb, threshold=thr)}
    common = dict(tree=DEFAULT_TREE, max_new_tokens=64, compile=True)
    subsets = {s: task.problems(600, seed=s, split="test")[:args.n] for s in seeds}
    warm_up(methods, target, draft, task, list(subsets.values()), batch=args.batch, **common)
    for s in seeds:
        t = timed(methods, target, draft, task, [subsets[s]], args.repeats, batch=args.batch, **common)
        sp = t["speedup"]
        print(f"batch {args.batch} seed {s} (first {args.n}): spd {statistics.median(sp['spd']):.3f}x "
              f"cospec {statistics.median(sp['cospec']):.3f}x  passes spd {[round(x, 2) for x in sp['spd']]}",
              flush=True)


if __name__ == "__main__":
    main()
