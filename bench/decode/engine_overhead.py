"""The engine's own time per verification round (everything but model forwards), eager and
compiled, on the shipped demo pair (default batch 1).

    python bench/decode/engine_overhead.py [--n 16] [--repeats 5] [--threads 2] [--batch 1] [--trees T,...]
                                           [--packed-rows-min R]

Runs SpecEngine directly (decode's setup) over held-out problems, greedy; per call
(wall - target forward s - draft forward s) / rounds; a forward's time includes the native
adapter's input padding. Reports the median over repeats of the per-call medians, the share
of wall time, and the draft forwards per round (what the rounds did: chain:4;fixed drafts
every round, 4 forwards; the adaptive chain:4 drafts as deep as pays on this host, and
remembers that between calls, engine/adaptive.py), and the target's and the draft's forward
milliseconds per round (their prefills included, spread over the call's rounds).
--packed-rows-min sets engine/native.py PACKED_ROWS_MIN for this process (a huge value: no
projection runs through linear_packed, as before it existed; graphs are compiled per process).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cospec_ext.engine.adapter import as_adapter
from cospec_ext.engine.decode import _native
from cospec_ext.engine.loop import SpecEngine
from cospec_ext.engine.tree import parse_tree
from compile_speed import demo_pair


def one(tgt, drf, ids, mask, tree, max_new, eos, pad_id):
    pad = (mask == 0).sum(1)
    spec = parse_tree(tree)
    t0 = time.perf_counter()
    with torch.inference_mode():
        eng = SpecEngine(tgt, drf if spec.depth else None, ids, pad, spec, max_new, 0.0, [eos], pad_id)
        eng.run(ids)
    wall = time.perf_counter() - t0
    fwd = eng.target.seconds + (eng.draft_runner.seconds if eng.draft_runner else 0.0)
    dfwd = eng.draft_runner.forwards if eng.draft_runner else 0
    r = max(eng.rounds, 1)
    return ((wall - fwd) / r, (wall - fwd) / wall, dfwd / r, eng.target.seconds / r,
            (eng.draft_runner.seconds if eng.draft_runner else 0.0) / r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="rows per call")
    ap.add_argument("--trees", default="chain:1;fixed,chain:4;fixed,chain:4,chain:5;fixed", help="comma-separated")
    ap.add_argument("--packed-rows-min", type=int, default=None, help="override core.PACKED_ROWS_MIN")
    args = ap.parse_args()
    if args.packed_rows_min is not None:
        from cospec_ext.engine import core

        core.PACKED_ROWS_MIN = args.packed_rows_min
    torch.set_num_threads(args.threads)
    from cospec_ext.task.arith import generate
    from cospec_ext.task.tasks import ArithTask

    target, draft = demo_pair()
    task, probs = ArithTask(), generate(args.n, seed=5, split="validation")
    chunks = [task.encode([p["question"] for p in probs[i:i + args.batch]]) for i in range(0, args.n, args.batch)]
    pairs = {"eager": (as_adapter(target), as_adapter(draft)),
             "compiled": (_native(as_adapter(target)), _native(as_adapter(draft)))}
    print(f"engine time per round, batch {args.batch}, {args.n} held-out problems, {args.repeats} interleaved repeats")
    print(f"  {'tree':<14} {'path':<9} {'ms/round':>9} {'share of wall':>13} {'draft fwd/round':>15}"
          f" {'target fwd ms/round':>19} {'draft fwd ms/round':>18}")
    for tree in args.trees.split(","):
        for ids, mask in chunks:  # warm-up (compiles)
            for tgt, drf in pairs.values():
                one(tgt, drf, ids, mask, tree, 64, task.eos_id, task.pad_id)
        per = {k: [] for k in pairs}
        share = {k: [] for k in pairs}
        dfr = {k: [] for k in pairs}
        tms = {k: [] for k in pairs}
        dms = {k: [] for k in pairs}
        for _ in range(args.repeats):
            for k, (tgt, drf) in pairs.items():
                r = [one(tgt, drf, ids, mask, tree, 64, task.eos_id, task.pad_id) for ids, mask in chunks]
                per[k].append(statistics.median(x[0] for x in r))
                share[k].append(statistics.median(x[1] for x in r))
                dfr[k].append(statistics.median(x[2] for x in r))
                tms[k].append(statistics.median(x[3] for x in r))
                dms[k].append(statistics.median(x[4] for x in r))
        for k in pairs:
            print(f"  {tree:<14} {k:<9} {statistics.median(per[k]) * 1e3:>9.3f} {statistics.median(share[k]):>13.2f}"
                  f" {statistics.median(dfr[k]):>15.2f} {statistics.median(tms[k]) * 1e3:>19.3f}"
                  f" {statistics.median(dms[k]) * 1e3:>18.3f}")


if __name__ == "__main__":
    main()
