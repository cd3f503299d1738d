"""The shipped arbiter against the best tuned heuristics on fresh validation problems.

    python bench/arbiter_vs_heuristics.py [--arbiter DIR] [--seeds 11 12] [--n 500]
Accuracy of target-only, the target-uncertainty rule and Medusa's typical acceptance at
their demo-selected parameters, and CoSpec at each arbiter threshold; tree chain:4;fixed,
batch 50, greedy. Validation split only (the test split is reserved for `cospec demo`).
"""

import argparse

import torch
from transformers import AutoModelForCausalLM

from cospec_ext.arbiter import Arbiter
from cospec_ext.task.arith import generate
from cospec_ext.task.evaluate import run_method
from cospec_ext.task.heuristics import TargetUncertain, TypicalAcceptance
from cospec_ext.task.tasks import DEFAULT_ARBITER, DEFAULT_DRAFT, DEFAULT_TARGET, ArithTask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arbiter", default=str(DEFAULT_ARBITER))
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t = AutoModelForCausalLM.from_pretrained(DEFAULT_TARGET).eval()
    d = AutoModelForCausalLM.from_pretrained(DEFAULT_DRAFT).eval()
    arb, task, tree = Arbiter.load(args.arbiter), ArithTask(), "chain:4;fixed"
    for seed in args.seeds:
        probs = generate(args.n, seed=seed, split="validation")
        rt, _ = run_method("target", t, d, task, probs, mode="target", batch=50)
        cols = [f"seed {seed}: target {rt.accuracy:.3f}"]
        for h in (TargetUncertain(0.6), TargetUncertain(0.7), TypicalAcceptance(0.2, 0.3), TypicalAcceptance(0.3, 0.3)):
            cols.append(f"{h.name} {run_method(h.name, t, d, task, probs, mode='cospec', arbiter=h, tree=tree, batch=50)[0].accuracy:.3f}")
        for th in (0.1, 0.3, 0.5, 0.7, 0.9):
            r, _ = run_method("cospec", t, d, task, probs, mode="cospec", arbiter=arb, threshold=th, tree=tree, batch=50)
            cols.append(f"cospec@{th} {r.accuracy:.3f}")
        print("\n  ".join(cols))


if __name__ == "__main__":
    main()
