"""`cospec demo`: every decoding method on the embedded arithmetic task, side by side.

On a freshly generated test split (seed S, N problems) with the shipped target, draft
and arbiter: target-only, draft-only, SPD, CoSpec, the oracle (best branch at a
mismatch, replayed), and training-free baselines (always accept the draft at a
mismatch; accept when the target's top probability is low; Medusa's typical acceptance;
a KL-divergence judge), each baseline's parameter chosen on the validation split, never
on the test split. Prints a table (accuracy with a 95% interval, mean accepted length,
target forwards per token, tokens/s, speedup over target-only measured in the same run),
writes a PNG of accuracy against speedup across arbiter thresholds, and with --json the
same table as JSON.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from .evaluate import paired_diff, run_method
from .heuristics import candidates

THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _load(args):
    from transformers import AutoModelForCausalLM

    from ..arbiter import Arbiter

    for d in (args.target, args.draft):
        if not os.path.isdir(d):
            raise SystemExit(f"cospec demo: no model at {d} (train them with `cospec task train-models`)")
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()  # noqa
    return load(args.target), load(args.draft), Arbiter.load(args.arbiter)


def _fmt(x, spec):
    return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0]))


def print_table(methods: dict, out=print) -> None:
    out(f"{'method':<34} {'accuracy':>8} {'95% CI':>15} {'acc.len':>7} {'fwd/tok':>7} {'tok/s':>8} {'speedup':>7}")
    for name, r in methods.items():
        ci = f"[{r['ci_low']:.3f},{r['ci_high']:.3f}]"
        out(f"{name:<34} {r['accuracy']:>8.3f} {ci:>15} {_fmt(r['mean_accept_len'], '7.2f')} "
            f"{_fmt(r['target_forwards_per_token'], '7.3f')} {_fmt(r['tokens_per_s'], '8.0f')} "
            f"{_fmt(r['speedup'], '6.2f') + ('x' if r['speedup'] is not None else ''):>7}")


def plot(path, sweep, points) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    xs, ys = [s["speedup"] for s in sweep], [s["accuracy"] for s in sweep]
    ax.plot(xs, ys, "o-", color="C3", label="CoSpec (arbiter thresholds)")
    for s in sweep:
        ax.annotate(f"{s['threshold']:g}", (s["speedup"], s["accuracy"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    for i, (name, r) in enumerate(points.items()):
        if r.get("speedup") is not None:
            ax.scatter([r["speedup"]], [r["accuracy"]], marker="s", color=f"C{i % 10}", label=name, zorder=3)
    ax.set_xlabel("speedup over target-only (tokens/s ratio)")
    ax.set_ylabel("accuracy (test split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from cospec_ext.task.arith import generate

    from .analysis import decision_agreement, target_path_analysis

    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
    ap = argparse.ArgumentParser(prog="cospec demo", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated test (and validation) problems")
    ap.add_argument("--n", type=int, default=500, help="test problems")
    ap.add_argument("--val-n", type=int, default=200, help="validation problems for the baselines' parameters")
    ap.add_argument("--json", help="write the table as JSON here")
    ap.add_argument("--plot", default="demo_out/cospec_accuracy_vs_speedup.png")
    ap.add_argument("--batch", type=int, default=8, help="rows per decode call (speedups depend on it: see README)")
    ap.add_argument("--tree", default="chain:4;fixed", help="draft tree of spd, cospec and the baselines (the shipped arbiter was trained on chain:4;fixed)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="the arbiter's threshold (default: the best of %s on the validation split)" % (THRESHOLDS,))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", default=os.path.join(here, "models", "target"))
    ap.add_argument("--draft", default=os.path.join(here, "models", "draft"))
    ap.add_argument("--arbiter", default=os.path.join(here, "arbiter"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from .tasks import ArithTask

    task = ArithTask()
    target, draft, arb = _load(args)
    common = dict(tree=args.tree, batch=args.batch, max_new_tokens=args.max_new_tokens)
    val = generate(args.val_n, seed=args.seed + 1, split="validation")
    test = generate(args.n, seed=args.seed, split="test")
    print(f"cospec demo: {len(test)} test problems (seed {args.seed}), {len(val)} validation problems; "
          f"tree {args.tree}, batch {args.batch}, {args.threads} threads")

    def best_on_validation(options, run):
        """The option whose run on the validation split is most accurate (ties: the longer
        accepted length, so the choice is deterministic) -> (option, accuracy)."""
        scored = []
        for o in options:
            r = run(o)
            scored.append(((r.accuracy, r.mean_accept_len or 0.0), o))
        key, o = max(scored, key=lambda x: x[0])  # max keeps the first of equal keys
        return o, key[0]

    # baselines' parameters and the arbiter's threshold: chosen on validation, never on test
    chosen = {}
    for family, grid in candidates().items():
        h, acc = best_on_validation(grid, lambda h: run_method(h.name, target, draft, task, val, mode="cospec",
                                                                arbiter=h, **common)[0])
        chosen[family] = h
        print(f"  validation: {family} -> {h.name} (accuracy {acc:.3f})")
    if args.threshold is None:
        args.threshold, acc = best_on_validation(THRESHOLDS, lambda t: run_method(
            f"cospec@{t}", target, draft, task, val, mode="cospec", arbiter=arb, threshold=t, **common)[0])
        print(f"  validation: cospec -> threshold {args.threshold:g} (accuracy {acc:.3f})")

    results = {}
    results["target"], _ = run_method("target", target, draft, task, test, mode="target", **common)
    results["draft"], _ = run_method("draft", None, draft, task, test, mode="draft", **common)
    results["spd"], _ = run_method("spd", target, draft, task, test, mode="spd", **common)
    results["cospec"], runs = run_method("cospec", target, draft, task, test, mode="cospec", arbiter=arb,
                                         threshold=args.threshold, return_trace=True,
                                         params={"threshold": args.threshold}, **common)
    for family, h in chosen.items():
        results[h.name], _ = run_method(h.name, target, draft, task, test, mode="cospec", arbiter=h, **common)
    base = results["target"].tokens_per_s
    for r in results.values():
        r.speedup = r.tokens_per_s / base if r.tokens_per_s and base else None
    sweep = []
    for t in THRESHOLDS:
        r = results["cospec"] if t == args.threshold else run_method(
            f"cospec@{t}", target, draft, task, test, mode="cospec", arbiter=arb, threshold=t, **common)[0]
        sweep.append({"threshold": t, "accuracy": r.accuracy, "speedup": r.tokens_per_s / base})

    print("replaying both branches at mismatches (oracle) ...")
    ana = target_path_analysis(target, draft, task, test, args.max_new_tokens)
    agree = decision_agreement(target, task, runs, args.max_new_tokens)
    table = {name: r.as_dict() for name, r in results.items()}
    from .evaluate import wilson

    k = sum(ana["oracle_correct"])
    lo, hi = wilson(k, len(test))
    table["oracle"] = {"accuracy": k / len(test), "ci_low": lo, "ci_high": hi, "n": len(test),
                       "mean_accept_len": None, "target_forwards_per_token": None, "tokens_per_s": None,
                       "speedup": None}
    diff = paired_diff(results["cospec"].correct, results["target"].correct)
    print()
    print_table(table)
    print(f"\ncospec - target accuracy: {diff['diff']:+.3f} (95% CI [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}], "
          f"paired, n={diff['n']})")
    print(f"draft/target disagreement: {ana['disagreement_rate']:.3f} of target tokens ({ana['mismatches']} "
          f"mismatches); draft branch right where the target is wrong: {ana['draft_better']} "
          f"({ana['draft_better_rate']:.3f}), the reverse: {ana['target_better']} ({ana['target_better_rate']:.3f})")
    print(f"arbiter vs oracle at {agree['consulted']} consulted mismatches: agreement {agree['agreement']:.3f} "
          f"(on the {agree['decisive']} decisive ones: {agree['agreement_decisive']:.3f})")
    png = plot(args.plot, sweep, {k: table[k] for k in table if k not in ("oracle",)})
    print(f"plot: {png}" if png else "plot: skipped (matplotlib not installed)")
    if args.json:
        ana_out = {k: v for k, v in ana.items() if not k.endswith("_correct")}
        payload = {"methods": table, "cospec_minus_target": diff, "analysis": ana_out, "agreement": agree,
                   "threshold_sweep": sweep, "config": {k: v for k, v in vars(args).items()},
                   "baseline_params": {f: h.name for f, h in chosen.items()}}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"json: {args.json}")
    return 0
