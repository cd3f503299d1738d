"""Summarize a pytest-benchmark JSON of bench/ops/test_bench_ops.py: per op and shape, the
kernel's median beside the reference's and the floors' (measured in the same run), the
ratios, and whether each target is met.

    python bench/ops/summary.py [bench/out/bench.json]          # text tables
    python bench/ops/summary.py --markdown [-o bench/RESULTS.md]  # markdown tables

Targets (2-core CPU, medians):
    logit_stats  read bandwidth >= 50% of the copy's: bytes/t_kernel >= 0.5 * bytes/t_copy
                 (i.e. t_kernel <= 2 t_copy); >= 2x faster than torch.argmax over the same
                 logits; >= 10x faster than the float32 torch composition
    kv_rollback  t_kernel <= 2 t_index_copy (index_copy_ moving the same bytes)
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: _table
from _table import (  # noqa: E402
    cli,
    machine_parts,
    noise_line,
    render_tables,
    fmt_time as _fmt_time,
    fmt_x as _fmt_x,
    ratio as _ratio,
    yes as _yes,
)


Stats = dict  # (kind, variant) -> median seconds, plus "bytes", "flops" for the shape


def _at_least(r: Optional[float], bound: float) -> Optional[bool]:
    return None if r is None else r >= bound


def _gbs(nbytes: Optional[float], t: Optional[float]) -> str:
    return "-" if not nbytes or not t else f"{nbytes / t / 1e9:.3g}"


# One table per op: (header, cell) columns and (name, check) targets; cell(s) -> str, check(s) -> bool|None.
Column = tuple[str, Callable[[Stats], str]]
Target = tuple[str, Callable[[Stats], Optional[bool]]]


def _m(kind: str, variant: str) -> Callable[[Stats], Optional[float]]:
    return lambda s: s.get((kind, variant))


K, REF = _m("kernel", "kernel"), _m("reference", "torch")
COPY, ARGMAX = _m("floor", "copy"), _m("floor", "argmax")
VK_LOGITS, VK_ARGMAX, VREF = _m("kernel", "logits"), _m("kernel", "argmax"), _m("reference", "ref")
KVREF, INDEX_COPY = _m("reference", "ref"), _m("floor", "index_copy")

LOGIT_STATS_TARGETS: list[Target] = [
    ("bw>=50%", lambda s: _at_least(_ratio(COPY(s), K(s)), 0.5)),
    (">=2x argmax", lambda s: _at_least(_ratio(ARGMAX(s), K(s)), 2.0)),
    (">=10x ref", lambda s: _at_least(_ratio(REF(s), K(s)), 10.0)),
]
KV_TARGETS: list[Target] = [
    ("<=2x index_copy", lambda s: None if _ratio(K(s), INDEX_COPY(s)) is None else K(s) <= 2.0 * INDEX_COPY(s)),
]

TABLES: dict[str, tuple[str, list[Column], list[Target]]] = {
    "logit_stats": (
        "kernel (with the tree) vs the float32 torch composition; floors: logits.copy_ and "
        "torch.argmax. MB = logits bytes (a few MB fit in the last-level cache: "
        "there the copy floor is cache bandwidth); "
        "GB/s = logits bytes / kernel time; % copy = copy time / kernel time.",
        [
            ("MB", lambda s: f"{s.get('bytes', 0) / 1e6:.3g}"),
            ("kernel", lambda s: _fmt_time(K(s))),
            ("torch ref", lambda s: _fmt_time(REF(s))),
            ("copy", lambda s: _fmt_time(COPY(s))),
            ("argmax", lambda s: _fmt_time(ARGMAX(s))),
            ("GB/s", lambda s: _gbs(s.get("bytes"), K(s))),
            ("% copy", lambda s: "-" if _ratio(COPY(s), K(s)) is None else f"{100 * COPY(s) / K(s):.0f}%"),
            ("vs argmax", lambda s: _fmt_x(_ratio(ARGMAX(s), K(s)))),
            ("vs ref", lambda s: _fmt_x(_ratio(REF(s), K(s)))),
        ],
        LOGIT_STATS_TARGETS,
    ),
    "verify_tree": (
        "greedy walk accepting N/2 nodes: kernel from the logits and from a precomputed argmax "
        "vs verify_tree_ref (V = 32000 only); floor: torch.argmax over all logits.",
        [
            ("kernel", lambda s: _fmt_time(VK_LOGITS(s))),
            ("kernel(argmax in)", lambda s: _fmt_time(VK_ARGMAX(s))),
            ("ref", lambda s: _fmt_time(VREF(s))),
            ("argmax", lambda s: _fmt_time(ARGMAX(s))),
            ("vs ref", lambda s: _fmt_x(_ratio(VREF(s), VK_LOGITS(s)))),
            ("vs argmax", lambda s: _fmt_x(_ratio(ARGMAX(s), VK_LOGITS(s)))),
        ],
        [],
    ),
    "arbiter_score": (
        "fused MLP vs the float32 torch composition (F.linear, gelu, F.linear, gelu, matmul).",
        [
            ("kernel", lambda s: _fmt_time(K(s))),
            ("torch ref", lambda s: _fmt_time(REF(s))),
            ("vs ref", lambda s: _fmt_x(_ratio(REF(s), K(s)))),
            ("GFLOP/s", lambda s: "-" if not K(s) else f"{s.get('flops', 0) / K(s) / 1e9:.3g}"),
        ],
        [],
    ),
    "node_features": (
        "the arbiter's 20 features of every node (chains; the draft's logits at each parent "
        "beside the target's) vs the float32 torch composition the engine used before the "
        "kernel (logit_stats + ~60 batched ops). MB = target + draft logits bytes.",
        [
            ("MB", lambda s: f"{s.get('bytes', 0) / 1e6:.3g}"),
            ("kernel", lambda s: _fmt_time(K(s))),
            ("torch ref", lambda s: _fmt_time(REF(s))),
            ("vs ref", lambda s: _fmt_x(_ratio(REF(s), K(s)))),
            ("GB/s", lambda s: _gbs(s.get("bytes"), K(s))),
        ],
        [],
    ),
    "kv_rollback": (
        "path [0, 2, ..., N-2] in place vs kv_rollback_ref (B = 1 only); floor: one index_copy_ "
        "writing the same rows. MB = bytes moved; GB/s = read + written bytes / kernel time.",
        [
            ("kernel", lambda s: _fmt_time(K(s))),
            ("ref", lambda s: _fmt_time(KVREF(s))),
            ("index_copy", lambda s: _fmt_time(INDEX_COPY(s))),
            ("MB", lambda s: f"{s.get('bytes', 0) / 1e6:.3g}"),
            ("GB/s", lambda s: _gbs(2 * s.get("bytes", 0), K(s))),
            ("kernel/index_copy", lambda s: _fmt_x(_ratio(K(s), INDEX_COPY(s)))),
            ("vs ref", lambda s: _fmt_x(_ratio(KVREF(s), K(s)))),
        ],
        KV_TARGETS,
    ),
}


def load(path: str, stat: str = "median"):
    """Returns (data, {op: {(shape, dtype): Stats}}) in the order the benchmarks ran."""
    with open(path) as f:
        data = json.load(f)
    by_op: dict = defaultdict(dict)
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "op" not in info or not bench.get("stats"):
            continue
        s = by_op[info["op"]].setdefault((info["shape"], info["dtype"]), {})
        s[(info["kind"], info["variant"])] = bench["stats"][stat]
        for key in ("bytes", "flops"):
            if key in info and info["kind"] == "kernel":
                s[key] = info[key]
            elif key in info:
                s.setdefault(key, info[key])
    return data, by_op


def build_tables(by_op):
    """[(op, note, header, rows, met, checked)] with rows of strings."""
    out = []
    for op, (note, columns, targets) in TABLES.items():
        if op not in by_op:
            continue
        header = ["shape", "dtype"] + [c[0] for c in columns] + [t[0] for t in targets]
        rows, met, checked = [], 0, 0
        for (shape, dtype), s in by_op[op].items():
            oks = [check(s) for _, check in targets]
            met += sum(ok is True for ok in oks)
            checked += sum(ok is not None for ok in oks)
            rows.append([shape, dtype] + [cell(s) for _, cell in columns] + [_yes(ok) for ok in oks])
        out.append((op, note, header, rows, met, checked))
    return out


def _machine_line(data) -> str:
    parts = machine_parts(data)
    if data.get("machine_info", {}).get("cospec_quick"):
        parts.append("QUICK run (smallest shapes only)")
    return "; ".join(p for p in parts if p)


def render(data, by_op, markdown: bool, stat: str = "median") -> str:
    noise = noise_line((b["name"], b.get("stats") or {}) for b in data.get("benchmarks", []))
    return render_tables(f"{_machine_line(data)}; times: {stat} per call", build_tables(by_op), markdown, noise)


def main(argv=None) -> int:
    return cli(__doc__, "bench/out/bench.json", load, render, build_tables, "no cospec benchmarks found", argv)


if __name__ == "__main__":
    sys.exit(main())
