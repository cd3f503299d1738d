"""Summarize a pytest-benchmark JSON of bench/decode/test_bench_decode.py: end-to-end decoding
throughput of cospec_ext.decode beside transformers generate() and assisted generation,
each a median (or min) of the same run, with the ratios computed from those medians.

    pytest bench/decode/test_bench_decode.py --benchmark-json=bench/out/decode.json
    python bench/decode/decode_summary.py [bench/out/decode.json]            # text tables
    python bench/decode/decode_summary.py --markdown [-o FILE] [JSON]        # markdown tables

Targets (2-core CPU; tokens/s = B * 64 new tokens / median seconds):
    decode(mode="target")            >= 0.9x generate()'s tokens/s (within 10%)
    decode(spd, good draft, chain:4) >= 2x transformers assisted generation (B = 1)
    decode(spd, poor draft)          >= 0.9x decode(mode="target") (adaptive depth)
    decode(spd, good draft, trees)   >= 1.5x decode(mode="target") (an aim)
Engine overhead (no target): per verification round, the wall time outside the target's
and the draft's forwards, (wall - target forward s - draft forward s) / rounds.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: _table
from _table import (  # noqa: E402
    cli,
    machine_parts,
    noise_line,
    render_tables,
    fmt_time as _fmt_time,
    fmt_x as _x,
    ratio as _ratio,
    yes as _yes,
)


SPD_VS_ASSISTED_TREE = "chain:4"
TARGETS = {"target_vs_generate": 0.9, "spd_vs_assisted": 2.0, "poor_vs_target": 0.9, "trees_vs_target": 1.5}


def _num(v, fmt="{:.3g}") -> str:
    return "-" if v is None else fmt.format(v)


def _met(r: Optional[float], bound: float) -> Optional[bool]:
    return None if r is None else r >= bound


class Run:
    """One measured case: its timing statistic and extra_info."""

    def __init__(self, bench: dict, stat: str):
        self.name = bench["name"]
        self.t: float = bench["stats"][stat]
        self.info: dict = bench.get("extra_info", {})

    def __getitem__(self, key):
        return self.info.get(key)

    @property
    def tps(self) -> Optional[float]:
        return self.info["tokens"] / self.t if self.t and self.info.get("tokens") else None


def load(path: str, stat: str = "median"):
    """Returns (data, [Run]) of the decode benchmarks, in the order they ran."""
    with open(path) as f:
        data = json.load(f)
    runs = [Run(b, stat) for b in data.get("benchmarks", [])
            if b.get("extra_info", {}).get("suite") == "decode" and b.get("stats")]
    return data, runs


def _find(runs, **kw) -> Optional[Run]:
    for r in runs:
        if all(r[k] == v for k, v in kw.items()):
            return r
    return None


def _batches(runs, **kw) -> list[int]:
    return sorted({r["B"] for r in runs if all(r[k] == v for k, v in kw.items())})


def build_tables(runs):
    """[(title, note, header, rows, met, checked)] with rows of strings."""
    tables = []

    def table(title, note, header, rows_oks):
        oks = [ok for _, ok in rows_oks]
        tables.append((title, note, header, [row for row, _ in rows_oks],
                       sum(ok is True for ok in oks), sum(ok is not None for ok in oks)))

    base = {B: _find(runs, bench="decode", mode="target", B=B) for B in _batches(runs, bench="decode", mode="target")}

    # 1. target-only decoding: decode(mode="target") vs generate()
    rows = []
    for B in _batches(runs, bench="generate"):
        g, d = _find(runs, bench="generate", B=B), base.get(B)
        r = _ratio(d.tps if d else None, g.tps)
        bound = TARGETS["target_vs_generate"]
        rows.append(([f"B{B}", _fmt_time(g.t), _fmt_time(d.t if d else None), _num(g.tps, "{:.1f}"),
                      _num(d.tps if d else None, "{:.1f}"), _x(r), f">={bound}x", _yes(_met(r, bound))],
                     _met(r, bound)))
    if rows:
        table("target only", 'decode(mode="target") vs target.generate(do_sample=False): tokens/s ratio.',
              ["batch", "generate", "decode", "gen tok/s", "decode tok/s", "decode/gen", "target", "met"], rows)

    # 2. speculative: decode(spd, good draft, chain:4) vs transformers assisted generation
    rows = []
    for B in _batches(runs, bench="assisted"):
        a = _find(runs, bench="assisted", B=B)
        s = _find(runs, bench="decode", mode="spd", draft="good", tree=SPD_VS_ASSISTED_TREE, B=B)
        g = _find(runs, bench="generate", B=B)
        r = _ratio(s.tps if s else None, a.tps)
        bound = TARGETS["spd_vs_assisted"]
        rows.append(([f"B{B}", _fmt_time(a.t), _fmt_time(s.t if s else None), _num(a.tps, "{:.1f}"),
                      _num(s.tps if s else None, "{:.1f}"), _x(_ratio(a.tps, g.tps if g else None)),
                      _num(s["mean_accept_len"] if s else None, "{:.2f}"), _num(a["draft_agreement"], "{:.0%}"),
                      _x(r), f">={bound}x", _yes(_met(r, bound))], _met(r, bound)))
    if rows:
        a0 = _find(runs, bench="assisted")
        cfg = (f"num_assistant_tokens={a0['num_assistant_tokens']}, schedule={a0['num_assistant_tokens_schedule']}, "
               f"confidence={a0['assistant_confidence_threshold']}")
        table("spd vs assisted generation",
              f'good draft (the target\'s first layers): decode(mode="spd", tree="{SPD_VS_ASSISTED_TREE}") vs '
              f"target.generate(assistant_model=draft) with transformers' defaults ({cfg}); "
              "agree = the draft's per-token agreement with the target's greedy tokens.",
              ["batch", "assisted", "spd", "assisted tok/s", "spd tok/s", "assisted/gen", "accept len", "agree",
               "spd/assisted", "target", "met"], rows)

    # 3. a draft that never agrees: spd with adaptive depth vs target-only decoding
    rows = []
    for B in _batches(runs, bench="decode", draft="poor"):
        for p in (r for r in runs if r["bench"] == "decode" and r["draft"] == "poor" and r["B"] == B):
            d = base.get(B)
            r = _ratio(p.tps, d.tps if d else None)
            bound = TARGETS["poor_vs_target"]
            rows.append(([f"B{B}", p["tree"], _fmt_time(d.t if d else None), _fmt_time(p.t),
                          _num(d.tps if d else None, "{:.1f}"), _num(p.tps, "{:.1f}"),
                          _num(p["mean_accept_len"], "{:.2f}"), _num(p["draft_forwards"], "{:.0f}"),
                          _num(p["target_forwards"], "{:.0f}"), _x(r), f">={bound}x", _yes(_met(r, bound))],
                         _met(r, bound)))
    if rows:
        table("poor draft", 'an independent random draft: decode(mode="spd") vs decode(mode="target"); '
              "draft fwd = draft forwards per call (adaptive depth probes now and then).",
              ["batch", "tree", "target", "spd", "target tok/s", "spd tok/s", "accept len", "draft fwd",
               "target fwd", "spd/target", "target", "met"], rows)

    # 4. tree shapes with the good draft vs target-only decoding
    rows = []
    for B in _batches(runs, bench="decode", draft="good"):
        for s in (r for r in runs if r["bench"] == "decode" and r["draft"] == "good" and r["B"] == B):
            d = base.get(B)
            r = _ratio(s.tps, d.tps if d else None)
            bound = TARGETS["trees_vs_target"]
            rows.append(([f"B{B}", s["tree"], _fmt_time(s.t), _num(s.tps, "{:.1f}"),
                          _num(s["mean_accept_len"], "{:.2f}"), _num(s["verify_rounds"], "{:.0f}"),
                          _num(s["target_forwards"], "{:.0f}"), _num(s["draft_forwards"], "{:.0f}"),
                          _x(r), f">={bound}x", _yes(_met(r, bound))], _met(r, bound)))
    if rows:
        table("draft trees", 'good draft: decode(mode="spd", tree=...) vs decode(mode="target") of the same batch; '
              "accept len = tokens committed per verification round per row; rounds, target fwd, draft fwd: "
              "per call (medians over the timed calls; adaptive depth varies them).",
              ["batch", "tree", "spd", "tok/s", "accept len", "rounds", "target fwd", "draft fwd", "spd/target",
               "target", "met"], rows)

    # 5. engine overhead outside model forwards
    rows = []
    for o in (r for r in runs if r["bench"] == "overhead"):
        rows.append(([f"B{o['B']}", o["tree"], _fmt_time(o.t), _num(o.tps, "{:.1f}"),
                      _num(o["verify_rounds"], "{:.0f}"), _num(o["accept"], "{:.2f}"), _fmt_time(o["target_s"]), _fmt_time(o["draft_s"]),
                      _fmt_time(o["overhead_per_round"]), _num(o["overhead_share"], "{:.1%}"), "-", "-"], None))
    if rows:
        table("engine overhead", "SpecEngine run as decode runs it (good draft); target s / draft s = time inside "
              "each model's forwards (prefill included); overhead/round = (wall - target s - draft s) / rounds; "
              "overhead % = of the wall time. Each column a median over the timed calls.",
              ["batch", "tree", "wall", "tok/s", "rounds", "accept len", "target s", "draft s", "overhead/round",
               "overhead %", "target", "met"], rows)
    return tables


def _machine_line(data, runs) -> str:
    info = runs[0].info if runs else {}
    parts = machine_parts(data, info.get("threads")) + [
        info.get("model", ""), f"{info.get('timed_rounds', '?')} timed calls per case"]
    if data.get("machine_info", {}).get("cospec_quick") or info.get("timed_rounds") == 1:
        parts.append("QUICK run (smoke test: figures not meaningful)")
    return "; ".join(str(p) for p in parts if p)


def render(data, runs, markdown: bool, stat: str = "median") -> str:
    by_name = {b["name"]: b["stats"] for b in data.get("benchmarks", [])}
    noise = noise_line((r.name, by_name[r.name]) for r in runs)
    return render_tables(f"{_machine_line(data, runs)}; times: {stat} per call", build_tables(runs), markdown, noise)


def main(argv=None) -> int:
    return cli(__doc__, "bench/out/decode.json", load, render, build_tables, "no decode benchmarks found (run bench/decode/test_bench_decode.py)", argv)


if __name__ == "__main__":
    sys.exit(main())
