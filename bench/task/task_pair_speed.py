"""Speed of spd over target-only with the demo's trained pair, by batch size.

    python bench/task/task_pair_speed.py [--n 64] [--threads 2]
64 validation problems of the embedded task, greedy; for each batch size the tokens/s of
decode(mode="target") and of decode(mode="spd") with a few trees, measured in the same run.
"""

import argparse
import os
import sys

import torch
from cospec_ext.task.arith import generate
from cospec_ext.task.evaluate import run_method
from cospec_ext.task.tasks import ArithTask

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "decode"))
from compile_speed import demo_pair  # noqa: E402  (bench/decode/compile_speed.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t, d = demo_pair()
    task, probs = ArithTask(), generate(args.n, seed=5, split="validation")
    for bs in (1, 8, 64):
        rt, _ = run_method("target", t, d, task, probs, mode="target", batch=bs)
        cols = [f"B{bs:<3} target {rt.tokens_per_s:7.0f} tok/s"]
        for tree in ("chain:4", "chain:6", "tree:4,2"):
            r, _ = run_method("spd", t, d, task, probs, mode="spd", tree=tree, batch=bs)
            cols.append(f"{tree} {r.tokens_per_s / rt.tokens_per_s:.2f}x (accept len {r.mean_accept_len:.2f})")
        print(" | ".join(cols))


if __name__ == "__main__":
    main()
