"""Decode speed with a tensor-parallel target: run under torchrun, one process per rank.

    python -m torch.distributed.run --nproc-per-node 2 bench/gpu/tp_decode.py [--device cpu|cuda]
    python bench/gpu/tp_decode.py                      # TP 1 (one process), the baseline

A random-init Llama target (bench/gpu/gpu_decode.py's; default 4 layers, hidden 512: 8 heads /
2 K/V heads, vocab 2000) and its first layer as the draft, saved to a temporary directory by rank 0 and loaded with
transformers' tp_plan="auto" when there are several ranks. Times decode(mode="target") and
decode(mode="spd") on the same left-padded batch (medians of --reps interleaved calls) and
prints tokens/s on rank 0, with a check that spd equals target-only token for token.
(Reported, not targeted: on a 2-core CPU two ranks share the cores.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import transformers

import cospec_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from cospec_train.rl import tp_kwargs  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_decode import models  # noqa: E402  (the same random-init target and first-layer draft)

VOCAB = 2000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=512, help="heads: hidden / 64, K/V heads: hidden / 256")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where rank 0 saves the models (default: a temporary directory)")
    args = ap.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world) if args.device == "cpu" else 1)
    if args.device != "cpu":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo" if args.device == "cpu" else "nccl")
    root = args.dir or os.path.join(tempfile.gettempdir(), "cospec_tp_bench")
    if rank == 0:
        target, draft = models(torch.device("cpu"), torch.float32, args.layers, args.hidden, VOCAB, 1)
        target.save_pretrained(root + "/target")
        draft.save_pretrained(root + "/draft")
    if world > 1:
        dist.barrier()
    dev = torch.device(args.device if args.device == "cpu" else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    load = transformers.AutoModelForCausalLM.from_pretrained
    target = (load(root + "/target", **tp_kwargs(), dtype=torch.float32) if world > 1
              else load(root + "/target", dtype=torch.float32).to(dev)).eval()
    draft = load(root + "/draft", dtype=torch.float32).to(dev).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (args.batch, 32), generator=g).to(dev)
    mask = torch.ones_like(ids)
    mask[1:, :5] = 0
    kw = dict(max_new_tokens=args.new, eos_token_id=[], pad_token_id=0)
    runs = {"target": dict(mode="target"), "spd chain:4": dict(mode="spd", tree="chain:4")}
    times, outs = {k: [] for k in runs}, {}
    for rep in range(args.reps + 1):
        for name, m in runs.items():
            t0 = time.perf_counter()
            outs[name] = cospec_ext.decode(target, draft, ids, mask, **m, **kw)
            if rep:
                times[name].append(time.perf_counter() - t0)
    if rank == 0:
        same = torch.equal(outs["target"].sequences, outs["spd chain:4"].sequences)
        print(f"TP {world} ({args.device}): spd == target-only: {same}")
        for name in runs:
            t = statistics.median(times[name])
            print(f"  {name:<12} {args.batch * args.new / t:8.1f} tok/s  (median of {args.reps})")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
