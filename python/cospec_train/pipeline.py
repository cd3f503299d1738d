"""The arbiter's training pipeline: imitation, then RL, then choices on validation.

    stage imitate   mine counterfactual labels on `train_problems` train-split problems
                    (mine.py; cached in OUT/mined_train.*), fit the arbiter to them
                    (imitate.py) -> OUT/imitate/arbiter
    stage rl        the GRPO/PPO loop (rl.py), from a constant policy or from --init DIR
                    -> OUT/arbiter (OUT/rl/arbiter under stage all)
    stage validate  choose the threshold (and tune the baselines) on validation problems,
                    write validation.json beside the arbiter (validation.py)
    stage all       imitate -> rl from the imitation arbiter -> validate both; keep RL only
                    if it beats imitation on validation (accuracy at each one's best
                    threshold; ties keep imitation) -> OUT/arbiter (+ --export)
Every stage is deterministic for a seed and thread count, so `make arbiter` reproduces the
shipped arbiter bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass

import torch

from cospec_ext.engine import Arbiter
from cospec_ext.engine.features import HIDDEN_INPUTS, hidden_widths
from cospec_ext.task import validation

from .imitate import decisive_auc, fit
from .mine import load_mined, mine, save_mined, summary
from .rl import RLConfig, load_all


@dataclass
class ImitateConfig:
    train_problems: int = 80000  # train-split problems mined for labels
    val_problems: int = 2000  # validation-split problems mined to report AUC / agreement
    steps: int = 400
    lr: float = 3e-3
    # ~6k decisive labels: the hidden-state inputs overfit (train AUC 0.99). Validation AUC over three
    # initialisations (bench/task/arbiter_regularization.py): 1e-2 0.889, 0.3 0.912, 1.0 0.915, 3.0 0.923,
    # 10 0.917
    weight_decay: float = 3.0
    either_weight: float = 0.1
    batch: int = 256  # rows per decode call while mining and validating


def _log(out: str, rec: dict) -> None:
    with open(os.path.join(out, "pipeline.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")


def mined_set(cfg: RLConfig, icfg: ImitateConfig, task, target, draft, split: str, n: int, seed: int) -> dict:
    """Counterfactual labels of n problems of `split` (reused from OUT when already mined)."""
    path = os.path.join(cfg.out, f"mined_{split}")
    meta = {"task": cfg.task, "data": cfg.data, "target": cfg.target, "draft": cfg.draft, "split": split, "n": n,
            "seed": seed, "tree": cfg.tree, "max_new_tokens": cfg.max_new_tokens, "hidden": True}
    data = load_mined(path, meta)
    if data is None:
        t0 = time.perf_counter()
        probs = task.problems(n, seed=seed, split=split)
        data = mine(task, target, draft, probs, tree=cfg.tree, max_new_tokens=cfg.max_new_tokens, batch=icfg.batch,
                    hidden=True)
        save_mined(path, data, meta)
        print(f"  mined {split}: {summary(data)} ({time.perf_counter() - t0:.0f} s)")
    return data


def sizes_all(target, draft) -> tuple:
    """The widths of every hidden input (HIDDEN_INPUTS), as mined sets lay them out."""
    return hidden_widths(HIDDEN_INPUTS, target.config.hidden_size, draft.config.hidden_size)


def imitate(cfg: RLConfig, icfg: ImitateConfig, out_dir: str | None = None, models: tuple | None = None) -> Arbiter:
    """Stage imitate (module docstring) -> the fitted arbiter (reading cfg.features and
    cfg.hidden_inputs), saved in out_dir (default OUT/arbiter); models: (task, target, draft)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    os.makedirs(cfg.out, exist_ok=True)
    task, target, draft = models or load_all(cfg)
    train = mined_set(cfg, icfg, task, target, draft, "train", icfg.train_problems, cfg.seed)
    sa = sizes_all(target, draft)
    arb = fit(train, cfg.features, cfg.hidden, hidden_inputs=cfg.hidden_inputs, sizes_all=sa, proj_dim=cfg.proj_dim,
              steps=icfg.steps, lr=icfg.lr, weight_decay=icfg.weight_decay, either_weight=icfg.either_weight,
              seed=cfg.seed)
    rec = {"stage": "imitate", "train": summary(train), "train_fit": decisive_auc(arb, train, sa),
           "config": {**asdict(icfg), "features": list(cfg.features), "hidden_inputs": cfg.hidden_inputs}}
    if icfg.val_problems:
        val = mined_set(cfg, icfg, task, target, draft, "validation", icfg.val_problems, validation.VAL_SEED + 1)
        rec["validation"] = {**summary(val), **decisive_auc(arb, val, sa)}
        print(f"  imitation: decisive-mismatch AUC {rec['validation']['auc']:.3f} on validation "
              f"({rec['validation']['decisive']} decisive)")
    _log(cfg.out, rec)
    arb.save(out_dir or os.path.join(cfg.out, "arbiter"))
    return arb


def validate(cfg: RLConfig, arbiter_dir: str, batch: int = 64, n: int = validation.VAL_N,
             seed: int = validation.VAL_SEED, baselines: bool = True, sweep: list | None = None,
             models: tuple | None = None) -> dict:
    """Stage validate: validation.json beside the arbiter at arbiter_dir."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task, target, draft = models or load_all(cfg)
    choice = validation.choose(target, draft, task, Arbiter.load(arbiter_dir), n=n, seed=seed, tree=cfg.tree,
                               batch=batch, max_new_tokens=cfg.max_new_tokens, baselines=baselines, sweep=sweep)
    validation.save(arbiter_dir, choice)
    return choice


def run_all(cfg: RLConfig, icfg: ImitateConfig, val_n: int = validation.VAL_N) -> str:
    """Stage all (module docstring) -> the directory of the kept arbiter (OUT/arbiter)."""
    from .rl import train

    t0 = time.perf_counter()
    im_dir, rl_dir, final = (os.path.join(cfg.out, d) for d in ("imitate/arbiter", "rl/arbiter", "arbiter"))
    models = load_all(cfg)  # once for every stage
    print("stage imitate: mining counterfactual labels, fitting the arbiter")
    imitate(cfg, icfg, im_dir, models)
    print("stage rl: GRPO/PPO from the imitation arbiter")
    rl_cfg = RLConfig(**{**asdict(cfg), "init": im_dir, "out": os.path.join(cfg.out, "rl")})
    train(rl_cfg, progress=True, models=models)
    print("stage validate: each stage's best threshold on validation")
    v_im = validate(cfg, im_dir, icfg.batch, val_n, baselines=False, models=models)
    v_rl = validate(cfg, rl_dir, icfg.batch, val_n, baselines=False, models=models)
    keep = "rl" if v_rl["accuracy"] > v_im["accuracy"] else "imitate"
    print(f"  validation accuracy: imitation {v_im['accuracy']:.4f}, imitation + RL {v_rl['accuracy']:.4f} "
          f"-> keeping {keep}")
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(rl_dir if keep == "rl" else im_dir, final)
    choice = validate(cfg, final, icfg.batch, val_n, baselines=True, sweep=(v_rl if keep == "rl" else v_im)["sweep"],
                      models=models)
    choice["stages"] = {"kept": keep, "imitate": {"threshold": v_im["threshold"], "accuracy": v_im["accuracy"]},
                        "rl": {"threshold": v_rl["threshold"], "accuracy": v_rl["accuracy"]}}
    validation.save(final, choice)
    _log(cfg.out, {"stage": "all", "kept": keep, "seconds": time.perf_counter() - t0})
    return final
