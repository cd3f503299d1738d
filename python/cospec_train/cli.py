"""`cospec train`: RL training of an arbiter for a target/draft pair.

    cospec train                                   # the embedded arithmetic task, shipped models
    cospec train --task gsm8k --data train.jsonl --target DIR --draft DIR --out runs/gsm8k
    torchrun --nproc-per-node 2 -m cospec_train --updates 60   # data-parallel (gloo on CPU, nccl on GPU)
A killed run resumes from its last checkpoint when started again with the same --out.
"""

from __future__ import annotations

import argparse
import os
import shutil

from .rl import RLConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = RLConfig()
    p.add_argument("--task", choices=["arith", "gsm8k"], default=d.task)
    p.add_argument("--data", help="GSM8K-format JSONL (question, answer with '#### final') for --task gsm8k")
    p.add_argument("--target", default=d.target, help="target model directory (default: the shipped one)")
    p.add_argument("--draft", default=d.draft, help="draft model directory (default: the shipped one)")
    p.add_argument("--out", default=d.out, help="run directory: checkpoint/, metrics.jsonl, arbiter/")
    p.add_argument("--export", help="also copy the final arbiter to this directory")
    for name in ("updates", "prompts", "group", "epochs", "max_new_tokens", "ckpt_every", "seed", "threads"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "clip", "entropy_coef", "speed_coef", "init_p"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--hidden", default=",".join(map(str, d.hidden)), help="hidden widths, e.g. 32,16")
    p.add_argument("--tree", default=d.tree)
    p.add_argument("--hidden-features", action="store_true",
                   help="the arbiter also reads both models' last hidden states (projected to --proj-dim)")
    p.add_argument("--proj-dim", type=int, default=d.proj_dim)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import torch
    import torch.distributed as dist

    from .rl import train

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    cfg = RLConfig(task=args.task, data=args.data, target=args.target, draft=args.draft, out=args.out,
                   updates=args.updates, prompts=args.prompts, group=args.group, epochs=args.epochs, lr=args.lr,
                   clip=args.clip, entropy_coef=args.entropy_coef, speed_coef=args.speed_coef, init_p=args.init_p,
                   hidden=tuple(int(h) for h in args.hidden.split(",")), tree=args.tree,
                   max_new_tokens=args.max_new_tokens, ckpt_every=args.ckpt_every, seed=args.seed,
                   threads=args.threads, hidden_features=args.hidden_features, proj_dim=args.proj_dim)
    try:
        arb = train(cfg, progress=not args.no_progress)
        rank = dist.get_rank() if dist.is_initialized() else 0
        if world > 1:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in arb.state_dict().items()},
                      os.path.join(cfg.out, f"arbiter_rank{rank}.safetensors"))
        if rank == 0:
            if args.export:
                shutil.copytree(os.path.join(cfg.out, "arbiter"), args.export, dirs_exist_ok=True)
            print(f"arbiter saved to {os.path.join(cfg.out, 'arbiter')}" + (f" and {args.export}" if args.export else ""))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cospec train", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))
