"""Formatting and the command line shared by bench/ops/summary.py (ops) and bench/decode/decode_summary.py."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Callable, Optional


def fmt_time(t: Optional[float]) -> str:
    if t is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    return num / den if num is not None and den else None


def fmt_x(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.3g}x"


def yes(ok: Optional[bool]) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def text_table(header, rows) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def md_table(header, rows) -> str:
    align = ["---" if i < 2 else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, align] + rows)


def machine_parts(data: dict, threads=None) -> list[str]:
    """CPU, cores, torch (threads), commit and date of a pytest-benchmark JSON (threads: the
    count the benchmarks set, default the one machine_info records)."""
    mi, ci = data.get("machine_info", {}), data.get("commit_info", {})
    cpu = mi.get("cpu", {})
    threads = mi.get("torch_threads", "?") if threads is None else threads
    return [
        cpu.get("brand_raw") or mi.get("processor", "?"),
        f"{cpu.get('count', '?')} cores",
        f"torch {mi.get('torch', '?')} ({threads} threads)",
        f"commit {str(ci.get('id', '?'))[:10]}{' (dirty)' if ci.get('dirty') else ''}",
        data.get("datetime", "")[:19],
    ]


def noise_line(named_stats, bound: float = 0.25) -> Optional[str]:
    """(name, pytest-benchmark stats) pairs -> how many have an interquartile range over
    `bound` of their median, and the worst; None when there are none."""
    spread = sorted((st["iqr"] / st["median"], name) for name, st in named_stats if st.get("median"))
    if not spread:
        return None
    noisy = sum(x > bound for x, _ in spread)
    x, name = spread[-1]
    return (f"{noisy}/{len(spread)} benchmarks with IQR > {100 * bound:.0f}% of the median "
            f"(worst {name}: {100 * x:.0f}%)")


def render_tables(head: str, tables, markdown: bool, noise: Optional[str]) -> str:
    """The summary text: a head line, each (title, note, header, rows, met, checked) table as
    text or markdown, then the count of targets met and the noise line."""
    parts = [f"_{head}_" if markdown else head]
    for title, note, header, rows, _, _ in tables:
        if markdown:
            parts.append(f"### {title}\n\n{note}\n\n{md_table(header, rows)}")
        else:
            parts.append(textwrap.fill(f"== {title}: {note}", 100, subsequent_indent="   ") + "\n"
                         + text_table(header, rows))
    tail = f"targets met: {sum(t[4] for t in tables)}/{sum(t[5] for t in tables)}"
    parts.append(f"{tail}; {noise}" if noise else tail)
    return "\n\n".join(parts) + "\n"


def cli(doc: str, default_json: str, load: Callable, render: Callable, build_tables: Callable, empty: str,
        argv=None) -> int:
    """The summaries' shared main: read the JSON, print or write the tables, --fail-on-miss.
    build_tables(...) returns tables whose items 4 and 5 are (targets met, targets checked)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("json", nargs="?", default=default_json, help="pytest-benchmark JSON")
    ap.add_argument("--markdown", action="store_true", help="markdown tables (for bench/RESULTS.md)")
    ap.add_argument("-o", "--output", help="write the summary to this file instead of stdout")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="per-benchmark statistic (min: on a machine shared with other load)")
    ap.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a measured target is missed")
    args = ap.parse_args(argv)
    data, runs = load(args.json, args.stat)
    if not runs:
        print(f"{args.json}: {empty}", file=sys.stderr)
        return 1
    text = render(data, runs, args.markdown, args.stat)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if args.fail_on_miss:
        tables = build_tables(runs)
        return 0 if sum(t[4] for t in tables) == sum(t[5] for t in tables) else 1
    return 0
