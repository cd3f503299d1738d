"""`cospec train`: train an arbiter for a target/draft pair (imitation, RL, validation).

    cospec train --stage all --out runs/arbiter     # make arbiter: imitate -> rl -> validate
    cospec train --stage imitate --out runs/im      # counterfactual labels + supervised fit
    cospec train --stage rl --init runs/im/arbiter --out runs/rl    # RL from that start
    cospec train --stage validate --arbiter runs/rl/arbiter         # threshold + baselines
    cospec train --task gsm8k --data train.jsonl --target DIR --draft DIR --out runs/gsm8k
    torchrun --nproc-per-node 2 -m cospec_train --stage rl --updates 60   # data-parallel RL
A killed RL run resumes from its last checkpoint when started again with the same --out.
"""

from __future__ import annotations

import argparse
import os
import shutil

from cospec_ext.engine.features import HIDDEN_INPUTS

from .pipeline import ImitateConfig
from .rl import RLConfig

HELP = {
    "updates": "RL updates", "prompts": "prompts per RL update (all ranks together)",
    "group": "rollouts per prompt (GRPO group size)", "epochs": "PPO steps per RL update",
    "max_new_tokens": "answer length limit while decoding", "ckpt_every": "RL checkpoint every N updates",
    "seed": "seed of the training problems, initialisation and rollouts",
    "threads": "torch threads per process (fixed, so runs repeat exactly; 0: torch's default)",
    "tp": "--stage rl under torchrun: 1 = data parallel (each rank its share of the prompts); N > 1 = the "
          "target tensor-parallel over groups of N consecutive ranks (transformers' tp plan), the groups "
          "data-parallel (N = the number of processes: one group)",
    "lr": "RL learning rate (AdamW)", "clip": "PPO ratio clip", "entropy_coef": "RL entropy bonus",
    "speed_coef": "RL reward per accepted token per round, beside correctness",
    "init_p": "acceptance probability of the constant policy RL starts from without --init",
    "train_problems": "train-split problems mined for counterfactual labels (imitation)",
    "val_problems": "validation problems mined to report the imitation fit's AUC (0: skip)",
    "steps": "imitation: full-batch AdamW steps", "im_lr": "imitation learning rate",
    "weight_decay": "imitation weight decay", "either_weight": "imitation weight of mismatches where "
    "both branches end alike (label 1/2)", "batch": "rows per decode call while mining and validating",
    "val_n": "validation problems for choosing the threshold and the baselines' parameters",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    d, di = RLConfig(), ImitateConfig()
    p.add_argument("--stage", choices=["all", "imitate", "rl", "validate"], default="rl",
                   help="which stage to run (default rl; `make arbiter` runs all)")
    p.add_argument("--task", choices=["arith", "gsm8k"], default=d.task, help="the embedded task or a GSM8K JSONL")
    p.add_argument("--data", help="GSM8K-format JSONL (question, answer with '#### final') for --task gsm8k")
    p.add_argument("--target", default=d.target, help="target model directory (default: the shipped one)")
    p.add_argument("--draft", default=d.draft, help="draft model directory (default: the shipped one)")
    p.add_argument("--out", default=d.out, help="run directory: checkpoint/, metrics.jsonl, arbiter/, mined_*")
    p.add_argument("--export", help="also copy the final arbiter to this directory")
    p.add_argument("--init", help="--stage rl: start from this saved arbiter (e.g. the imitation stage's)")
    p.add_argument("--arbiter", help="--stage validate: the arbiter directory to validate (default OUT/arbiter)")
    for name in ("updates", "prompts", "group", "epochs", "max_new_tokens", "ckpt_every", "seed", "threads", "tp"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help=HELP[name])
    for name in ("lr", "clip", "entropy_coef", "speed_coef", "init_p"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name), help=HELP[name])
    for name in ("train_problems", "val_problems", "steps", "batch"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(di, name), help=HELP[name])
    p.add_argument("--im-lr", type=float, default=di.lr, help=HELP["im_lr"])
    for name in ("weight_decay", "either_weight"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(di, name), help=HELP[name])
    p.add_argument("--val-n", type=int, default=2000, help=HELP["val_n"])
    p.add_argument("--features", default="all",
                   help="arbiter input columns: 'all', 'parent' (those of format-1 arbiters) or a comma list "
                        "of cospec_ext.engine.FEATURE_NAMES")
    p.add_argument("--hidden", default=",".join(map(str, d.hidden)), help="MLP hidden widths, e.g. 32,16")
    p.add_argument("--tree", default=d.tree, help="draft tree used while mining, in RL and in validation")
    p.add_argument("--hidden-features", default=",".join(HIDDEN_INPUTS),
                   help="hidden states the arbiter reads, projected to --proj-dim: a comma list of t_parent, "
                        "d_parent (the target's and the draft's at the mismatch's parent), t_cand (the target's "
                        "after reading the draft's token), or 'none' (default: all three)")
    p.add_argument("--proj-dim", type=int, default=d.proj_dim, help="width the hidden states are projected to")
    p.add_argument("--credit", choices=["rollout", "counterfactual"], default=d.credit,
                   help="RL credit per decision: its rollout's group advantage, or its own from replaying both "
                        "branches")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _features(spec: str) -> tuple:
    from cospec_ext.engine.features import FEATURE_NAMES, PARENT_FEATURES

    if spec == "all":
        return FEATURE_NAMES
    if spec == "parent":
        return PARENT_FEATURES
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    bad = [n for n in names if n not in FEATURE_NAMES]
    if bad or not names:
        raise SystemExit(f"cospec train: error: --features: unknown {bad} (choose from {list(FEATURE_NAMES)})")
    return names


def run(args) -> int:
    import torch
    import torch.distributed as dist

    from . import pipeline
    from .rl import train

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    hin = None if args.hidden_features in ("", "none") else tuple(h.strip() for h in args.hidden_features.split(","))
    if hin and any(h not in HIDDEN_INPUTS for h in hin):
        raise SystemExit(f"cospec train: error: --hidden-features: choose from {list(HIDDEN_INPUTS)} or 'none'")
    cfg = RLConfig(task=args.task, data=args.data, target=args.target, draft=args.draft, out=args.out,
                   updates=args.updates, prompts=args.prompts, group=args.group, epochs=args.epochs, lr=args.lr,
                   clip=args.clip, entropy_coef=args.entropy_coef, speed_coef=args.speed_coef, init_p=args.init_p,
                   hidden=tuple(int(h) for h in args.hidden.split(",")), tree=args.tree,
                   max_new_tokens=args.max_new_tokens, ckpt_every=args.ckpt_every, seed=args.seed,
                   threads=args.threads, hidden_inputs=hin, proj_dim=args.proj_dim,
                   features=_features(args.features), init=args.init, credit=args.credit, tp=args.tp)
    icfg = ImitateConfig(train_problems=args.train_problems, val_problems=args.val_problems, steps=args.steps,
                         lr=args.im_lr,
                         weight_decay=args.weight_decay, either_weight=args.either_weight, batch=args.batch)
    if args.stage != "rl" and world > 1:
        raise SystemExit(f"cospec train: error: --stage {args.stage} runs in one process (only rl is data-parallel)")
    if args.stage == "validate":
        d = args.arbiter or os.path.join(cfg.out, "arbiter")
        print(f"validation.json written to {pipeline.validate(cfg, d, args.batch, args.val_n) and d}")
        return 0
    if args.stage == "imitate":
        pipeline.imitate(cfg, icfg)
        final = os.path.join(cfg.out, "arbiter")
    elif args.stage == "all":
        final = pipeline.run_all(cfg, icfg, args.val_n)
    else:
        try:
            arb = train(cfg, progress=not args.no_progress)
            rank = dist.get_rank() if dist.is_initialized() else 0
            if world > 1:
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in arb.state_dict().items()},
                          os.path.join(cfg.out, f"arbiter_rank{rank}.safetensors"))
            if rank != 0:
                return 0
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        final = os.path.join(cfg.out, "arbiter")
    if args.export:
        shutil.copytree(final, args.export, dirs_exist_ok=True)
    print(f"arbiter saved to {final}" + (f" and {args.export}" if args.export else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cospec train", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))
