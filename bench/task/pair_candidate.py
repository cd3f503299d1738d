"""A candidate demo pair (issue 21) on validation problems: what CoSpec needs of it.

    python bench/task/pair_candidate.py TARGET_DIR DRAFT_DIR [--n 400] [--trees chain:4,chain:8]
                                        [--batches 1] [--repeats 3]

Accuracy (`decode` target-only and draft-only, greedy) on `--n` validation problems (seed 1;
the uniform mixture), the oracle (the best branch at one mismatch, replayed:
task/analysis.py) and its headroom over the target, the per-token disagreement; then compiled
speed on 32 held-out problems (validation seed 5): target-only against spd with each tree,
medians of interleaved passes (bench/decode/compile_speed.py `run`), the ratio per pass.
Test seeds are not touched: they are for reporting the shipped pair.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "decode"))
from compile_speed import run, table  # noqa: E402

from cospec_ext.task.analysis import target_path_analysis  # noqa: E402
from cospec_ext.task.arith import generate  # noqa: E402
from cospec_ext.task.evaluate import run_method  # noqa: E402
from cospec_ext.task.tasks import ArithTask  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("draft")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--trees", default="chain:4,chain:8")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()  # noqa
    target, draft = load(args.target), load(args.draft)
    size = lambda m: sum(p.numel() * p.element_size() for p in m.parameters()) / 2**20  # noqa: E731
    print(f"target {size(target):.1f} MiB, draft {size(draft):.2f} MiB (float32)")
    task, probs = ArithTask(), generate(args.n, seed=1, split="validation")
    with torch.inference_mode():
        t, _ = run_method("target", target, None, task, probs, mode="target", batch=100)
        d, _ = run_method("draft", None, draft, task, probs, mode="draft", batch=100)
        ana = target_path_analysis(target, draft, task, probs)
    oracle = sum(ana["oracle_correct"]) / args.n
    print(f"validation (seed 1, n={args.n}): target {t.accuracy:.3f}, draft {d.accuracy:.3f}, oracle {oracle:.3f} "
          f"(headroom {100 * (oracle - t.accuracy):+.1f} points), disagreement per target token "
          f"{ana['disagreement_rate']:.3f}, draft-better mismatches {ana['draft_better']}, "
          f"target-better {ana['target_better']}", flush=True)
    held = generate(32, seed=5, split="validation")
    methods = {"generate": None, "target+compile": dict(mode="target", compile=True)}
    for tree in args.trees.split(","):
        methods[f"spd {tree}"] = dict(mode="spd", compile=True, tree=tree)
    for bs in (int(b) for b in args.batches.split(",")):
        chunks = [task.encode([p["question"] for p in held[i:i + bs]]) for i in range(0, len(held), bs)]
        res = run(target, draft, chunks, methods, "chain:4", 64, task.eos_id, task.pad_id, args.repeats)
        print(table(res, bs), flush=True)
        for m in methods:
            if m.startswith("spd"):
                r = [a / b for a, b in zip(res[m]["tps"], res["target+compile"]["tps"])]
                print(f"  {m} / target+compile: median {statistics.median(r):.2f} (min {min(r):.2f})", flush=True)


if __name__ == "__main__":
    main()
