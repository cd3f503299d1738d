"""How the imitation arbiter's regularisation moves its validation AUC (validation data only).

    python bench/task/arbiter_regularization.py [--out runs/arbiter] [--train-problems 20000]

Fits the imitation arbiter (python/cospec_train/imitate.py) to the counterfactual labels of
`make arbiter` (OUT/mined_train, 20000 train problems; mined if absent, ~9 min on 2 cores)
under variants of its recipe (weight decay, hidden widths, projection width, steps, the weight
of "either" labels), each from three initialisation seeds, and prints the AUC at the decisive
mismatches of the mined validation set (OUT/mined_validation, 2000 problems) and on the train
labels themselves. The shipped recipe is "shipped" (ImitateConfig / RLConfig defaults).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from cospec_ext.engine.features import FEATURE_NAMES  # noqa: E402
from cospec_ext.task import validation  # noqa: E402
from cospec_train.imitate import decisive_auc, fit  # noqa: E402
from cospec_train.pipeline import ImitateConfig, mined_set, sizes_all  # noqa: E402
from cospec_train.rl import RLConfig, load_all  # noqa: E402

VARIANTS = {
    "shipped": {}, "weight decay 0.3": dict(weight_decay=0.3), "weight decay 1": dict(weight_decay=1.0),
    "weight decay 10": dict(weight_decay=10.0), "proj_dim 2": dict(proj_dim=2), "proj_dim 8": dict(proj_dim=8),
    "hidden (16,)": dict(hidden=(16,)), "hidden (64, 32)": dict(hidden=(64, 32)), "steps 200": dict(steps=200),
    "steps 800": dict(steps=800), "either weight 0": dict(either_weight=0.0),
    "either weight 0.3": dict(either_weight=0.3), "hidden inputs: target only": dict(hidden_inputs=("t_parent", "t_cand")),
    "weight decay 3, hidden (16,)": dict(weight_decay=3.0, hidden=(16,)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/arbiter", help="run directory holding (or to hold) the mined labels")
    ap.add_argument("--train-problems", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = RLConfig(out=args.out, threads=args.threads)
    icfg = ImitateConfig(train_problems=args.train_problems)
    task, target, draft = load_all(cfg)
    sa = sizes_all(target, draft)
    train = mined_set(cfg, icfg, task, target, draft, "train", icfg.train_problems, cfg.seed)
    val = mined_set(cfg, icfg, task, target, draft, "validation", icfg.val_problems, validation.VAL_SEED + 1)
    base = dict(features=FEATURE_NAMES, hidden=cfg.hidden, hidden_inputs=cfg.hidden_inputs, sizes_all=sa,
                proj_dim=cfg.proj_dim, steps=icfg.steps, lr=icfg.lr, weight_decay=icfg.weight_decay,
                either_weight=icfg.either_weight)
    print("| variant | validation AUC (seeds 0, 1, 2) | mean | train AUC mean | seconds |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, kw in VARIANTS.items():
        t0 = time.perf_counter()
        va, tr = [], []
        for seed in (0, 1, 2):
            arb = fit(train, **{**base, **kw, "seed": seed})
            va.append(decisive_auc(arb, val, sa)["auc"])
            tr.append(decisive_auc(arb, train, sa)["auc"])
        print(f"| {name} | {', '.join(f'{x:.4f}' for x in va)} | {statistics.mean(va):.4f} | "
              f"{statistics.mean(tr):.3f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
