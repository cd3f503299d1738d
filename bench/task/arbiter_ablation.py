"""Arbiter ablation on validation data: which features, and which training stages, help.

    python bench/task/arbiter_ablation.py [--out runs/ablation] [--train-problems 20000] [--json bench/out/ablation.json]

Every variant is trained on the same train-split data and judged on validation problems
only (test data is never touched here). For each: the threshold is chosen on validation
set A (the shipped arbiter's: seed 1, 2000 problems) and accuracy is reported on a fresh
validation set B (seed 2, 2000 problems), paired against target-only on B, together with
the AUC and oracle agreement at the decisive mismatches mined on B.
    features   parent-only (the 13 columns of format-1 arbiters) | + candidate and look-ahead
               columns | + hidden states (target at parent and candidate, draft at parent)
    stages     RL only (GRPO from a constant policy, the former recipe) | imitation only |
               imitation + RL (the RL stage started from the imitation arbiter)
Imitation variants share one mined label set (--train-problems train problems, default
`make arbiter`'s 20000, reused from the --out directory when it is there: copy
runs/arbiter/mined_train.* into it); "+ hidden states" is `make arbiter`'s imitation stage
(the pipeline's features, hidden inputs and projection width) and "imitation + RL" its RL stage; RL from a constant start gets 150
updates x 64 prompts x 8 rollouts (76800 rollouts), RL after imitation the 40 updates of
`make arbiter`; every variant's training wall time is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from cospec_ext.engine.features import FEATURE_NAMES, PARENT_FEATURES  # noqa: E402
from cospec_ext.task import validation  # noqa: E402
from cospec_ext.task.evaluate import paired_diff, run_method  # noqa: E402
from cospec_train.imitate import decisive_auc, fit  # noqa: E402
from cospec_train.pipeline import ImitateConfig, mined_set, sizes_all  # noqa: E402
from cospec_train.rl import RLConfig, load_all, train  # noqa: E402

ALL_HIDDEN = ("t_parent", "d_parent", "t_cand")


def markdown(res: dict) -> str:
    """The ablation JSON as a markdown table."""
    lines = ["| variant | threshold (set A) | accuracy (set B) | - target [95% CI] | AUC | agreement | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["rows"]:
        d = r["minus_target_b"]
        lines.append(f"| {r['variant']} | {r['threshold']:g} | {r['accuracy_b']:.4f} | {100 * d['diff']:+.1f} "
                     f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] | {r['auc']:.3f} | "
                     f"{r['agreement_decisive']:.3f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ablation", help="work directory (mined labels, RL runs under ablation_*)")
    ap.add_argument("--train-problems", type=int, default=20000, help="train problems mined for the imitation labels")
    ap.add_argument("--json", default="bench/out/ablation.json", help="results as JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--val-n", type=int, default=2000, help="problems in each validation set")
    ap.add_argument("--rl-only-updates", type=int, default=150, help="RL updates from a constant start")
    ap.add_argument("--rl-updates", type=int, default=40, help="RL updates after imitation")
    ap.add_argument("--markdown", metavar="JSON", help="only print the table of an earlier run's JSON")
    args = ap.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    torch.set_num_threads(args.threads)
    cfg = RLConfig(out=args.out, threads=args.threads, updates=args.rl_updates)
    icfg = ImitateConfig(train_problems=args.train_problems)
    models = task, target, draft = load_all(cfg)
    sa = sizes_all(target, draft)
    t0 = time.perf_counter()
    train_set = mined_set(cfg, icfg, task, target, draft, "train", icfg.train_problems, cfg.seed)
    mined_s = time.perf_counter() - t0
    val_b = mined_set(cfg, icfg, task, target, draft, "validation", args.val_n, 2)
    set_a = task.problems(args.val_n, seed=validation.VAL_SEED, split="validation")
    set_b = task.problems(args.val_n, seed=2, split="validation")
    common = dict(tree=cfg.tree, batch=icfg.batch, max_new_tokens=cfg.max_new_tokens)
    tgt_b, _ = run_method("target", target, draft, task, set_b, mode="target", **common)

    def judge(name, arb, seconds):
        sweep = validation.threshold_sweep(target, draft, task, set_a, arb, **common)
        thr = validation.pick_threshold(sweep)["threshold"]
        r, _ = run_method(name, target, draft, task, set_b, mode="cospec", arbiter=arb, threshold=thr, **common)
        arb.threshold = thr
        d = paired_diff(r.correct, tgt_b.correct)
        row = {"variant": name, "threshold": thr, "accuracy_b": r.accuracy, "minus_target_b": d,
               "mean_accept_len": r.mean_accept_len, "train_seconds": seconds, **decisive_auc(arb, val_b, sa)}
        print(f"{name:<34} thr {thr:.1f}  acc(B) {r.accuracy:.4f}  vs target {100 * d['diff']:+.1f} "
              f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]  AUC {row['auc']:.3f}  "
              f"agree {row['agreement_decisive']:.3f}  ({seconds:.0f} s)", flush=True)
        return row

    rows = []

    def imitation(feats, hin):
        t1 = time.perf_counter()
        arb = fit(train_set, feats, cfg.hidden, hidden_inputs=hin, sizes_all=sa, proj_dim=cfg.proj_dim,
                  steps=icfg.steps, lr=icfg.lr,
                  weight_decay=icfg.weight_decay, either_weight=icfg.either_weight, seed=cfg.seed)
        return arb, mined_s + time.perf_counter() - t1

    print(f"target-only on validation set B: {tgt_b.accuracy:.4f}")
    rows.append(judge("imitation, parent features", *imitation(PARENT_FEATURES, None)))
    rows.append(judge("imitation, + candidate features", *imitation(FEATURE_NAMES, None)))
    im, im_s = imitation(FEATURE_NAMES, ALL_HIDDEN)
    rows.append(judge("imitation, + hidden states", im, im_s))
    t1 = time.perf_counter()
    rl_only = train(replace(cfg, out=os.path.join(args.out, "ablation_rl_only"), updates=args.rl_only_updates),
                    progress=False, models=models)
    rows.append(judge("RL only (constant start)", rl_only, time.perf_counter() - t1))
    im_dir = im.save(os.path.join(args.out, "ablation_imitate", "arbiter"))
    t1 = time.perf_counter()
    both = train(replace(cfg, out=os.path.join(args.out, "ablation_im_rl"), init=im_dir), progress=False, models=models)
    rows.append(judge("imitation + RL", both, im_s + time.perf_counter() - t1))
    t1 = time.perf_counter()
    cf = train(replace(cfg, out=os.path.join(args.out, "ablation_im_rl_cf"), init=im_dir, credit="counterfactual"),
               progress=False, models=models)
    rows.append(judge("imitation + RL, counterfactual credit", cf, im_s + time.perf_counter() - t1))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"target_accuracy_b": tgt_b.accuracy, "val_n": args.val_n, "rows": rows}, f, indent=1)
    print(markdown({"rows": rows}))
    print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
