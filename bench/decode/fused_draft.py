"""A tiny draft's compiled forward as inductor's own loops (core.FUSED_BYTES) against the extern
kernels (cospec::linear_rows, SDPA) larger models use, on the shipped demo pair.

    python bench/decode/fused_draft.py [--n 32] [--repeats 7] [--threads 2] [--batch 1]

Two copies of the draft: one built as shipped (fused: at most FUSED_BYTES of weights), one with
FUSED_BYTES = 0 when its graphs were made (extern). Prints
1. the draft's 8-step chain graph (`NativeAdapter.forward_chain`, batch 1, the demo tree's
   chain:7) per variant: the median of 300 calls, interleaved in blocks of 20;
2. SPD through decode(compile=True) with either draft and compiled target-only, over
   validation-split problems (seed VAL_SEED + 7), timed as `cospec demo` times (task/timing.py:
   a warm-up, then `repeats` interleaved passes): the median ratio over target-only in the same
   pass and the median (and range) of fused / extern.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from cospec_ext.engine import core
from cospec_ext.engine.adapter import HFAdapter
from cospec_ext.engine.native import NativeAdapter, compiled_core
from cospec_ext.engine.runner import ModelRunner
from cospec_ext.task import validation
from cospec_ext.task.tasks import ASSETS, DEFAULT_TREE, make_task
from cospec_ext.task.timing import median_ratio, timed, warm_up


def chain_ms(drafts: dict, steps: int, calls: int = 300, block: int = 20) -> dict:
    """Median ms of one chain call of `steps` one-token forwards per draft, interleaved."""
    runs, ts = {}, {k: [] for k in drafts}
    ids = torch.randint(4, 30, (1, 12), generator=torch.Generator().manual_seed(0))  # [1, 12]
    with torch.inference_mode():
        for name, model in drafts.items():
            r = ModelRunner(NativeAdapter(HFAdapter(model)), 1, 96, 8, torch.zeros(1, dtype=torch.long))
            r.prefill(ids)
            slot = torch.tensor([ids.shape[1] - 1])
            args = (ids[:, -1:], slot, slot.clone(), torch.ones(1, 1, 1, dtype=torch.bool), steps)
            for _ in range(block):
                r.forward_chain(*args)  # builds the graph
            runs[name] = (r, args)
        for _ in range(calls // block):
            for name, (r, args) in runs.items():
                for _ in range(block):
                    t0 = time.perf_counter()
                    r.forward_chain(*args)
                    ts[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tdir, ddir = str(ASSETS / "models" / "target"), str(ASSETS / "models" / "draft")
    task = make_task("arith", None, tdir)
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()  # noqa
    target, fused, extern = load(tdir), load(ddir), load(ddir)
    keep = core.FUSED_BYTES
    core.FUSED_BYTES = 0  # the extern copy's core is made now, with the threshold off
    assert not compiled_core(extern).core.fused
    core.FUSED_BYTES = keep
    assert compiled_core(fused).core.fused, "the shipped draft is expected under FUSED_BYTES"
    depth = int(DEFAULT_TREE.split(":")[1].split(";")[0])  # chain:7 -> 8 forwards per round
    ms = chain_ms({"fused": fused, "extern": extern}, depth + 1)
    print(f"draft chain of {depth + 1} steps: fused {ms['fused']:.3f} ms, extern {ms['extern']:.3f} ms "
          f"({ms['extern'] / ms['fused']:.2f}x)", flush=True)

    probs = task.problems(args.n, seed=validation.VAL_SEED + 7, split="validation")
    common = dict(tree=DEFAULT_TREE, max_new_tokens=64, compile=True)
    methods = {"target": dict(mode="target", draft=None), "spd fused": dict(mode="spd", draft=fused),
               "spd extern": dict(mode="spd", draft=extern)}
    warm_up(methods, target, fused, task, [probs], batch=args.batch, **common)
    t = timed(methods, target, fused, task, [probs], args.repeats, batch=args.batch, **common)
    for v in methods:
        print(f"{v:<11} {statistics.median(t['tokens_per_s'][v]):7.1f} tok/s  "
              f"{statistics.median(t['speedup'][v]):.3f}x target-only")
    med, lo, hi = median_ratio(t["tokens_per_s"]["spd fused"], t["tokens_per_s"]["spd extern"])
    print(f"spd fused / extern at batch {args.batch}: {med:.3f} (median of {args.repeats} passes; {lo:.3f}-{hi:.3f})")

if __name__ == "__main__":
    main()
