"""`cospec demo`: every decoding method on a task's test problems, side by side.

For each test seed (`--seeds 0,1,2`, N problems each) with the target, draft and arbiter:
target-only, draft-only, SPD, CoSpec, the oracle (best branch at one mismatch, replayed)
and the training-free baselines (always accept the draft at a mismatch; accept when the
target's top probability is low; Medusa's typical acceptance; a KL-divergence judge).
Nothing is chosen on test data: the arbiter's threshold and each baseline's parameter come
from the `validation.json` stored beside the arbiter (`cospec train` chose them on
validation problems, whose seed and size it records); `--revalidate` chooses them again.

Prints per seed and pooled over the seeds: accuracy with a 95% Wilson interval, mean
accepted length, target forwards per token, and paired 95% intervals for CoSpec - target and
CoSpec - the best tuned heuristic (the baseline family most accurate on validation).
Accuracy comes from one pass over all N problems. Speed is timed as a user would run it:
every method through `decode(..., compile=True)` (`--eager`: the transformers path), at each
batch size of `--batches` (default 1, the latency case, and 8), after a warm-up that builds
every graph (compile seconds printed apart, never inside a speedup), as `--repeats` passes over
the first `--timing-n` problems of each seed with the methods interleaved call by call in a
rotating order (`timing.py`): a method's speedup is the median over passes of its tokens/s
over target-only's in the same pass, and CoSpec's speed relative to SPD's likewise. The
threshold sweep's CoSpec runs are timed in the same passes, the same way. Writes a PNG of
accuracy against speedup (one panel per batch size) and, with --json, everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from . import report, validation
from .evaluate import run_method
from .tasks import DEFAULT_TREE
from .timing import median_ratio, run_named, timed, warm_up


def _load(args, task_dirs):
    from transformers import AutoModelForCausalLM

    from ..engine import Arbiter

    for d in task_dirs:
        if not os.path.isdir(d):
            raise SystemExit(f"cospec demo: error: no model at {d} (train them with `cospec task train-models`)")
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()  # noqa
    try:
        arb = Arbiter.load(args.arbiter)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"cospec demo: error: --arbiter: {e}")
    return load(args.target), load(args.draft), arb


def _methods(target, draft, arb, threshold, rules):
    """name -> run_method keyword arguments."""
    # each plain model decodes without the other, as a user would call it (no adapter built for it)
    m = {"target": dict(mode="target", draft=None), "draft": dict(mode="draft", target=None), "spd": dict(mode="spd"),
         "cospec": dict(mode="cospec", arbiter=arb, threshold=threshold)}
    for h in rules.values():
        m[h.name] = dict(mode="cospec", arbiter=h)
    return m


def main(argv: list[str] | None = None) -> int:
    from .analysis import decision_agreement, target_path_analysis
    from .tasks import ASSETS, make_task

    ap = argparse.ArgumentParser(prog="cospec demo", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="test seeds, comma-separated (each draws --n test problems)")
    ap.add_argument("--seed", type=int, default=None, help="a single test seed (same as --seeds S)")
    ap.add_argument("--n", type=int, default=600, help="test problems per seed")
    ap.add_argument("--revalidate", action="store_true",
                    help="choose the threshold and the baselines' parameters again on validation problems "
                         "(written to the --json directory's validation.json, not beside the arbiter)")
    ap.add_argument("--val-n", type=int, default=validation.VAL_N, help="validation problems for --revalidate")
    ap.add_argument("--val-seed", type=int, default=validation.VAL_SEED, help="validation seed for --revalidate")
    ap.add_argument("--threshold", type=float, default=None, help="override the validated arbiter threshold")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timed passes (speed = their median)")
    ap.add_argument("--timing-n", type=int, default=64,
                    help="problems per seed in each timed pass (16 put spd at batch 8 anywhere from 1.26x to 1.46x "
                         "by seed; 64 per seed: 1.25-1.43x)")
    ap.add_argument("--batches", default="1,8", help="rows per decode call when timing, comma-separated "
                                                     "(speedups depend on it: 1 is latency)")
    ap.add_argument("--eager", action="store_true", help="time the transformers path instead of decode(compile=True)")
    ap.add_argument("--eval-batch", type=int, default=256, help="rows per decode call for the accuracy pass")
    ap.add_argument("--tree", default=DEFAULT_TREE, help="draft tree of spd, cospec and the baselines")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--task", choices=["arith", "gsm8k"], default="arith", help="the embedded task or GSM8K JSONL")
    ap.add_argument("--data", help="GSM8K-format JSONL for --task gsm8k")
    ap.add_argument("--target", default=str(ASSETS / "models" / "target"), help="target model directory")
    ap.add_argument("--draft", default=str(ASSETS / "models" / "draft"), help="draft model directory")
    ap.add_argument("--arbiter", default=str(ASSETS / "arbiter"), help="arbiter directory")
    ap.add_argument("--json", help="write every figure as JSON here")
    ap.add_argument("--plot", default="demo_out/cospec_accuracy_vs_speedup.png", help="PNG of accuracy vs speedup")
    args = ap.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else [int(s) for s in args.seeds.split(",") if s.strip()]
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--batches: comma-separated integers expected, got {args.batches!r}")
    if not seeds or args.n < 1 or args.repeats < 1 or args.timing_n < 1 or not batches or min(batches) < 1:
        ap.error("need at least one seed, --n >= 1, --repeats >= 1, --timing-n >= 1 and --batches of sizes >= 1")
    torch.set_num_threads(args.threads)
    try:
        task = make_task(args.task, args.data, args.target)
    except ValueError as e:
        ap.error(str(e))
    target, draft, arb = _load(args, (args.target, args.draft))
    choice = validation.load(args.arbiter)
    if args.revalidate or choice is None:
        why = "--revalidate" if args.revalidate else f"no {validation.FILE} beside the arbiter"
        print(f"choosing the threshold and baselines on validation ({why}) ...")
        choice = validation.choose(target, draft, task, arb, n=args.val_n, seed=args.val_seed, tree=args.tree,
                                   batch=args.eval_batch, max_new_tokens=args.max_new_tokens)
        if args.json:
            validation.save(os.path.dirname(os.path.abspath(args.json)), choice)
    threshold = args.threshold if args.threshold is not None else choice["threshold"]
    rules = validation.baseline_rules(choice)
    best = rules[choice["best_baseline"]].name if choice.get("best_baseline") else None
    print(f"cospec demo: seeds {seeds} x {args.n} test problems; threshold {threshold:g} and baselines chosen on "
          f"{choice['n']} validation problems (seed {choice['seed']}); tree {args.tree}; {args.threads} threads")
    methods = _methods(target, draft, arb, threshold, rules)
    acc_common = dict(tree=args.tree, batch=args.eval_batch, max_new_tokens=args.max_new_tokens)
    t_start = time.perf_counter()
    per_seed, correct, tests = {}, {name: [] for name in methods}, []
    agree_runs, oracle = [], []
    for seed in seeds:
        test = task.problems(args.n, seed=seed, split="test")
        tests.append(test)
        rows = {}
        for name, kw in methods.items():
            r, runs = run_named(name, kw, target, draft, task, test, return_trace=name == "cospec", **acc_common)
            rows[name] = r
            correct[name] += r.correct
            if name == "cospec":
                agree_runs += runs
        ana = target_path_analysis(target, draft, task, test, args.max_new_tokens)
        oracle += ana["oracle_correct"]
        table = {k: r.as_dict() for k, r in rows.items()}
        per_seed[seed] = {"methods": table, "analysis": {k: v for k, v in ana.items() if not k.endswith("_correct")},
                          "oracle": sum(ana["oracle_correct"]) / len(test),
                          **report.comparisons({k: r.correct for k, r in rows.items()}, best)}
        print(f"\nseed {seed}: " + report.diff_line("cospec - target", per_seed[seed]["cospec_minus_target"]) + "; " +
              (report.diff_line("cospec - " + best, per_seed[seed]["cospec_minus_best_heuristic"]) if best else ""))
    pooled = {name: report.pooled_row([per_seed[s]["methods"][name] for s in seeds], correct[name])
              for name in methods}
    pooled["oracle"] = report.pooled_row([], oracle)
    comp = report.comparisons(correct, best)
    sweep = []
    for t in sorted({0.1, 0.3, 0.5, 0.7, 0.9, threshold}):  # for the plot: the trade-off the threshold controls
        ok = correct["cospec"] if t == threshold else [
            c for test in tests for c in run_method("sweep", target, draft, task, test, mode="cospec", arbiter=arb,
                                                    threshold=t, **acc_common)[0].correct]
        sweep.append({"threshold": t, "accuracy": sum(ok) / len(ok), "speedup": {}})
    # timed: the methods and the sweep's other thresholds, in the same interleaved passes
    timed_methods = dict(methods)
    timed_methods.update({f"cospec@{s['threshold']:g}": dict(mode="cospec", arbiter=arb, threshold=s["threshold"])
                          for s in sweep if s["threshold"] != threshold})
    tcommon = dict(tree=args.tree, max_new_tokens=args.max_new_tokens, compile=not args.eager)
    subsets = [test[:args.timing_n] for test in tests]
    how = "eager (transformers)" if args.eager else "decode(compile=True)"
    speed = {}
    for batch in batches:
        print(f"\ntiming at batch {batch}, {how}: warm-up, then {args.repeats} interleaved passes x {len(tests)} "
              f"seeds x {min(args.timing_n, args.n)} problems x {len(timed_methods)} runs ...", flush=True)
        w = warm_up(timed_methods, target, draft, task, subsets, batch=batch, **tcommon)
        t = timed(timed_methods, target, draft, task, subsets, args.repeats, batch=batch, **tcommon)
        print(f"  warm-up {w['wall_s']:.1f} s ({w['compile_s']:.1f} s of it building graphs); graphs built inside "
              f"timed passes: {t['late_compile_s']:.1f} s (not timed)")
        for name in methods:
            pooled[name].setdefault("speed", {})[str(batch)] = {
                "tokens_per_s": statistics.median(t["tokens_per_s"][name]),
                "speedup": statistics.median(t["speedup"][name]), "speedup_repeats": t["speedup"][name]}
        for s in sweep:
            key = "cospec" if s["threshold"] == threshold else f"cospec@{s['threshold']:g}"
            s["speedup"][str(batch)] = statistics.median(t["speedup"][key])
        med, lo, hi = median_ratio(t["tokens_per_s"]["cospec"], t["tokens_per_s"]["spd"])
        speed[str(batch)] = {"warm_up": w, "late_compile_s": t["late_compile_s"],
                             "cospec_over_spd": {"median": med, "min": lo, "max": hi}}
    agree = decision_agreement(target, task, agree_runs, args.max_new_tokens)
    print(f"\npooled over seeds {seeds} ({len(correct['target'])} problems):")
    report.print_table(pooled)
    print()
    print(report.diff_line("cospec - target", comp["cospec_minus_target"]))
    if best:
        print(report.diff_line(f"cospec - best tuned heuristic ({best})", comp["cospec_minus_best_heuristic"]))
    for batch, sp in speed.items():
        r = sp["cospec_over_spd"]
        print(f"cospec speed / spd speed at batch {batch}: {r['median']:.3f} (median of {args.repeats} paired passes; "
              f"range {r['min']:.2f}-{r['max']:.2f})")
    print(f"arbiter vs oracle at {agree['consulted']} consulted mismatches: agreement {agree['agreement']:.3f} "
          f"(on the {agree['decisive']} decisive ones: {agree['agreement_decisive']:.3f})")
    print(f"oracle (best branch at one mismatch): {pooled['oracle']['accuracy']:.3f}; "
          f"headroom over target {pooled['oracle']['accuracy'] - pooled['target']['accuracy']:+.3f}")
    png = report.plot(args.plot, sweep, {k: v for k, v in pooled.items() if k != "oracle"})
    print(f"plot: {png}" if png else "plot: skipped (matplotlib not installed)")
    print(f"demo time: {time.perf_counter() - t_start:.0f} s (warm-ups building graphs: "
          f"{sum(sp['warm_up']['compile_s'] for sp in speed.values()):.0f} s)")
    if args.json:
        payload = {"seeds": seeds, "per_seed": per_seed, "pooled": pooled, "comparisons": comp, "agreement": agree,
                   "speed": speed, "batches": batches,
                   "compiled": not args.eager, "threshold_sweep": sweep, "validation": choice,
                   "threshold": threshold, "config": vars(args)}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1, default=str)
        print(f"json: {args.json}")
    return 0
