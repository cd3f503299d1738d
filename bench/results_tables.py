"""Regenerate the measured tables of bench/RESULTS.md from make bench's pytest-benchmark JSON.

    python bench/results_tables.py [bench/out/bench.json]                 # rewrite bench/RESULTS.md
    python bench/results_tables.py JSON --results FILE -o OUT             # write the result elsewhere
    python bench/results_tables.py JSON --check                           # exit 1 if FILE would change

RESULTS.md marks each generated table with a pair of HTML comments:

    <!-- generated: ops -->      ... bench/ops/summary.py --markdown output ...    <!-- end: ops -->
    <!-- generated: decode -->   ... bench/decode/decode_summary.py --markdown ... <!-- end: decode -->

Each block is replaced by the summary of the JSON (its head line names the host, torch, commit
and date of the run); a block whose benchmarks the JSON lacks (e.g. `pytest bench -k ops`) is
left as it is, and everything outside the markers is never touched. A QUICK run
(COSPEC_BENCH_QUICK=1: smallest shapes only) is refused unless --allow-quick. The other tables
(compiled decoding, the task, multi-device) come from scripts that print text; their commands
stand beside them in RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ops"))
sys.path.insert(0, os.path.join(HERE, "decode"))
import decode_summary  # noqa: E402  (bench/decode/decode_summary.py)
import summary  # noqa: E402  (bench/ops/summary.py)

# block name -> (load, render) of the summary that fills it
BLOCKS = {
    "ops": (summary.load, summary.render),
    "decode": (decode_summary.load, decode_summary.render),
}
_BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def tables(json_path: str, stat: str = "median") -> dict[str, str]:
    """{block name: markdown} for every block whose benchmarks the JSON holds."""
    out = {}
    for name, (load, render) in BLOCKS.items():
        data, runs = load(json_path, stat)
        if runs:
            out[name] = render(data, runs, True, stat)
    return out


def update(text: str, generated: dict[str, str]) -> tuple[str, list[str]]:
    """`text` with each marked block that `generated` names replaced; (new text, names replaced)."""
    done = []

    def sub(m: re.Match) -> str:
        name = m.group(2)
        if name not in generated:
            return m.group(0)
        done.append(name)
        return f"{m.group(1)}\n{generated[name].strip()}\n\n{m.group(4)}"

    return _BLOCK.sub(sub, text), done


def is_quick(json_path: str) -> bool:
    import json

    with open(json_path) as f:
        return bool(json.load(f).get("machine_info", {}).get("cospec_quick"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="?", default="bench/out/bench.json", help="pytest-benchmark JSON of `make bench`")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"), help="the dashboard to update")
    ap.add_argument("-o", "--output", help="write here instead of rewriting --results")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table would change")
    ap.add_argument("--allow-quick", action="store_true", help="accept a COSPEC_BENCH_QUICK=1 run")
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    args = ap.parse_args(argv)
    if is_quick(args.json) and not args.allow_quick:
        print(f"{args.json}: a QUICK run (smallest shapes only); not written (--allow-quick)", file=sys.stderr)
        return 1
    with open(args.results) as f:
        text = f.read()
    new, done = update(text, tables(args.json, args.stat))
    if not done:
        print(f"{args.json}: no benchmarks for any generated block of {args.results}", file=sys.stderr)
        return 1
    if args.check:
        changed = new != text
        print(f"{args.results}: {'would change' if changed else 'up to date'} ({', '.join(done)})")
        return 1 if changed else 0
    with open(args.output or args.results, "w") as f:
        f.write(new)
    print(f"{args.output or args.results}: regenerated {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
