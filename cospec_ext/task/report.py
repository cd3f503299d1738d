"""Tables, paired comparisons and the plot of `cospec demo`."""

from __future__ import annotations

import os

from .evaluate import paired_diff, wilson


def _fmt(x, spec):
    return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0]))


def print_table(methods: dict, out=print) -> None:
    """methods: name -> dict(accuracy, ci_low, ci_high, mean_accept_len, target_forwards_per_token,
    tokens_per_s, speedup) (None prints as '-')."""
    out(f"{'method':<34} {'accuracy':>8} {'95% CI':>15} {'acc.len':>7} {'fwd/tok':>7} {'tok/s':>8} {'speedup':>7}")
    for name, r in methods.items():
        ci = f"[{r['ci_low']:.3f},{r['ci_high']:.3f}]"
        out(f"{name:<34} {r['accuracy']:>8.3f} {ci:>15} {_fmt(r.get('mean_accept_len'), '7.2f')} "
            f"{_fmt(r.get('target_forwards_per_token'), '7.3f')} {_fmt(r.get('tokens_per_s'), '8.0f')} "
            f"{_fmt(r.get('speedup'), '6.2f') + ('x' if r.get('speedup') is not None else ''):>7}")


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
    """Accuracy against speedup: CoSpec across thresholds (a line, labelled at its ends) and one
    marker per method (legend only, so labels never overlap)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    xs, ys = [s["speedup"] for s in sweep], [s["accuracy"] for s in sweep]
    ax.plot(xs, ys, "o-", color="0.6", ms=3, label="CoSpec, thresholds "
            f"{sweep[0]['threshold']:g}..{sweep[-1]['threshold']:g}")
    markers = "sD^vP*Xo<>"
    for i, (name, r) in enumerate(points.items()):
        if r.get("speedup") is not None:
            ax.scatter([r["speedup"]], [r["accuracy"]], marker=markers[i % len(markers)], color=f"C{i % 10}",
                       label=name, zorder=3, s=36)
    ax.set_xlabel("speedup over target-only (median of interleaved repeats)")
    ax.set_ylabel("accuracy (test, pooled over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
