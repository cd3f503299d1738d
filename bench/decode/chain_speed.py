"""The draft's greedy chain as one compiled graph (Drafter.chain_round) against its per-level
forwards, on the shipped demo pair: SPD's tokens/s over compiled target-only, interleaved.

    python bench/decode/chain_speed.py [--batch 1] [--n 16] [--repeats 9] [--threads 2] [--all-buckets]

Validation-split problems (seed VAL_SEED + 7), tree chain:5;fixed, decode(compile=True). Each
variant decodes every problem once untimed (building its graphs; compile seconds printed),
then `repeats` passes in rotating order; per pass tokens/s = new tokens / (wall - compile s).
Prints each variant's median tokens/s, its median ratio over target-only in the same pass,
and the median (and each pass's) ratio chain / per-level. The chain variant follows the CPU
default (NativeAdapter.chains: chain while the live rows fill the cache's batch bucket);
--all-buckets chains at every bucket the rows shrink through (a chain graph per bucket).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from cospec_ext.engine import draft as draft_mod
from cospec_ext.engine.native import NativeAdapter
from cospec_ext.task import validation
from cospec_ext.task.evaluate import run_method
from cospec_ext.task.tasks import ASSETS, DEFAULT_TREE, make_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--all-buckets", action="store_true", help="chain at every batch bucket, not only the full one")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tdir, ddir = str(ASSETS / "models" / "target"), str(ASSETS / "models" / "draft")
    task = make_task("arith", None, tdir)
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()  # noqa
    target, draft = load(tdir), load(ddir)
    probs = task.problems(args.n, seed=validation.VAL_SEED + 7, split="validation")
    common = dict(tree=DEFAULT_TREE, max_new_tokens=64, compile=True, batch=args.batch)
    real_round, real_chains = draft_mod.Drafter.chain_round, NativeAdapter.chains

    def go(variant):
        if variant == "target":
            return run_method("target", target, draft, task, probs, mode="target", **common)[0]
        chain = variant == "chain"
        draft_mod.Drafter.chain_round = real_round if chain else (lambda self, *a, **k: None)
        NativeAdapter.chains = (lambda self, live, rows: True) if chain and args.all_buckets else real_chains
        return run_method(variant, target, draft, task, probs, mode="spd", **common)[0]

    variants = ["target", "per-level", "chain"]
    for v in variants:
        t0 = time.perf_counter()
        r = go(v)
        print(f"{v}: warm-up {time.perf_counter() - t0:.1f} s ({r.compile_s:.1f} s building graphs)", flush=True)
    tps = {v: [] for v in variants}
    for k in range(args.repeats):
        for v in variants[k % 3:] + variants[:k % 3]:
            r = go(v)
            tps[v].append(r.new_tokens / (r.wall - r.compile_s))
    for v in variants:
        ratio = statistics.median(a / b for a, b in zip(tps[v], tps["target"]))
        print(f"{v:<10} {statistics.median(tps[v]):7.1f} tok/s  {ratio:.3f}x target-only")
    rs = [a / b for a, b in zip(tps["chain"], tps["per-level"])]
    print(f"chain / per-level at batch {args.batch}: {statistics.median(rs):.3f} (median of {args.repeats} passes; "
          f"{', '.join(f'{x:.3f}' for x in rs)})")


if __name__ == "__main__":
    main()
