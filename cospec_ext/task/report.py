"""Tables, paired comparisons and the plot of `cospec demo`."""

from __future__ import annotations

import os

from .evaluate import paired_diff, wilson


def _fmt(x, spec):
    return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0]))


def _speeds(r: dict) -> dict:
    """batch (str) -> {"tokens_per_s", "speedup", ...} of one method's row ({} when untimed)."""
    return r.get("speed") or {}


def print_table(methods: dict, out=print) -> None:
    """methods: name -> dict(accuracy, ci_low, ci_high, mean_accept_len, target_forwards_per_token,
    speed: {batch: {tokens_per_s, speedup}}) (None or absent prints as '-'); one tok/s and one
    speedup column per timed batch size."""
    batches = list(next((_speeds(r) for r in methods.values() if _speeds(r)), {}))
    head = "".join(f" {'tok/s b' + b:>9} {'x b' + b:>6}" for b in batches)
    out(f"{'method':<34} {'accuracy':>8} {'95% CI':>15} {'acc.len':>7} {'fwd/tok':>7}{head}")
    for name, r in methods.items():
        ci = f"[{r['ci_low']:.3f},{r['ci_high']:.3f}]"
        cols = ""
        for b in batches:
            sp = _speeds(r).get(b, {})
            x = sp.get("speedup")
            cols += f" {_fmt(sp.get('tokens_per_s'), '9.0f')} {(_fmt(x, '5.2f') + 'x') if x is not None else '-':>6}"
        out(f"{name:<34} {r['accuracy']:>8.3f} {ci:>15} {_fmt(r.get('mean_accept_len'), '7.2f')} "
            f"{_fmt(r.get('target_forwards_per_token'), '7.3f')}{cols}")


def pooled_row(rows: list[dict], correct: list[bool]) -> dict:
    """Accuracy (Wilson CI) over the pooled problems; accepted length and forwards per token
    weighted by each seed's problems."""
    k, n = sum(correct), len(correct)
    lo, hi = wilson(k, n)
    out = {"accuracy": k / max(n, 1), "ci_low": lo, "ci_high": hi, "n": n}
    for key in ("mean_accept_len", "target_forwards_per_token"):
        vals = [(r[key], r["n"]) for r in rows if r.get(key) is not None]
        out[key] = sum(v * w for v, w in vals) / sum(w for _, w in vals) if vals else None
    return out


def diff_line(label: str, d: dict) -> str:
    return (f"{label}: {100 * d['diff']:+.1f} points (paired 95% CI [{100 * d['ci_low']:+.1f}, "
            f"{100 * d['ci_high']:+.1f}], n={d['n']})")


def comparisons(correct: dict, best_baseline: str | None) -> dict:
    """Paired differences of CoSpec against target-only, SPD, the best tuned heuristic (chosen on
    validation) and every other baseline; correct: method -> list of bools over the same problems."""
    out = {"cospec_minus_target": paired_diff(correct["cospec"], correct["target"])}
    if best_baseline is not None:
        out["cospec_minus_best_heuristic"] = {**paired_diff(correct["cospec"], correct[best_baseline]),
                                              "heuristic": best_baseline}
    for name in correct:
        if name not in ("cospec", "target", "draft", "oracle") and name != best_baseline:
            out[f"cospec_minus_{name}"] = paired_diff(correct["cospec"], correct[name])
    return out


def plot(path, sweep, points) -> str | None:
    """Accuracy against speedup, one panel per timed batch size: one marker per method (legend
    only, so labels never overlap) and CoSpec at other thresholds (small dots coloured by
    threshold, timed in the same interleaved passes as the methods, so dot and marker agree at
    the chosen threshold)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    batches = list(next((_speeds(r) for r in points.values() if _speeds(r)), {}))
    if not batches:
        return None
    fig, axes = plt.subplots(1, len(batches), figsize=(5.2 * len(batches), 4.4), squeeze=False, sharey=True)
    markers = "sD^vP*Xo<>"
    for ax, b in zip(axes[0], batches):
        sc = ax.scatter([s["speedup"][b] for s in sweep], [s["accuracy"] for s in sweep],
                        c=[s["threshold"] for s in sweep], cmap="viridis", vmin=0, vmax=1, s=14, zorder=2)
        for i, (name, r) in enumerate(points.items()):
            x = _speeds(r).get(b, {}).get("speedup")
            if x is not None:
                ax.scatter([x], [r["accuracy"]], marker=markers[i % len(markers)], color=f"C{i % 10}",
                           label=name, zorder=3, s=36)
        ax.set_title(f"batch {b}", fontsize=9)
        ax.set_xlabel("speedup over target-only (median of passes)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (test, pooled over seeds)")
    fig.colorbar(sc, ax=axes[0][-1], pad=0.02).set_label("CoSpec threshold (dots)", fontsize=8)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.3, 1.0))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def markdown(payload: dict) -> str:
    """The demo's JSON (`cospec demo --json`) as markdown: the pooled table, each seed's paired
    differences, and the goal checks of the arbiter-accuracy issue."""
    pooled, comp = payload["pooled"], payload["comparisons"]
    batches = [str(b) for b in payload.get("batches", [])]
    how = "compiled" if payload.get("compiled") else "eager"
    lines = ["| method | accuracy [95% CI] | accepted len | " + " | ".join(f"speedup b{b}, {how}" for b in batches)
             + " |", "| --- | --- | ---: |" + " ---: |" * len(batches)]
    for name, r in pooled.items():
        sps = [_speeds(r).get(b, {}).get("speedup") for b in batches]
        sp = " | ".join(f"{x:.2f}x" if x is not None else "-" for x in sps)
        al = f"{r['mean_accept_len']:.2f}" if r.get("mean_accept_len") is not None else "-"
        lines.append(f"| {name} | {r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {al} | {sp} |")
    pct = lambda d: f"{100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"  # noqa: E731
    lines += ["", "| test seed (n) | CoSpec - target | CoSpec - best tuned heuristic |", "| --- | ---: | ---: |"]
    for seed, r in payload["per_seed"].items():
        lines.append(f"| {seed} ({r['cospec_minus_target']['n']}) | {pct(r['cospec_minus_target'])} | "
                     f"{pct(r['cospec_minus_best_heuristic']) if 'cospec_minus_best_heuristic' in r else '-'} |")
    lines.append(f"| pooled ({comp['cospec_minus_target']['n']}) | {pct(comp['cospec_minus_target'])} | "
                 f"{pct(comp['cospec_minus_best_heuristic']) if 'cospec_minus_best_heuristic' in comp else '-'} |")
    ag = payload["agreement"]
    ratio = "; ".join(f"batch {b}: {r['cospec_over_spd']['median']:.3f} (range {r['cospec_over_spd']['min']:.2f}-"
                      f"{r['cospec_over_spd']['max']:.2f})" for b, r in payload.get("speed", {}).items())
    lines += ["", f"Best tuned heuristic (chosen on validation): "
              f"{comp.get('cospec_minus_best_heuristic', {}).get('heuristic', '-')}; threshold "
              f"{payload['threshold']:g}. CoSpec speed / SPD speed (median of paired passes): {ratio}. "
              f"Arbiter vs oracle: {ag['agreement_decisive']:.3f} at the {ag['decisive']} decisive of "
              f"{ag['consulted']} consulted mismatches ({ag['agreement']:.3f} at all). Oracle (best branch at one "
              f"mismatch): {pooled['oracle']['accuracy']:.3f}."]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m cospec_ext.task.report demo_out/demo.json
    import json
    import sys

    with open(sys.argv[1]) as f:
        print(markdown(json.load(f)))
