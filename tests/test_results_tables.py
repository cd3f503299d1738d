"""bench/results_tables.py: the generated blocks of bench/RESULTS.md from a pytest-benchmark JSON
(a small synthetic one in pytest-benchmark's format; no benchmark runs)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import results_tables  # noqa: E402


def _bench(name, median, **info):
    return {"name": name, "stats": {"median": median, "min": median, "iqr": 0.01 * median}, "extra_info": info}


def _json(tmp_path, quick=False):
    ls = dict(op="logit_stats", shape="B1 N16 V32000", dtype="float32", bytes=2_048_000)
    data = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "torch": "2.x", "torch_threads": 2,
                         "cospec_quick": quick},
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "datetime": "2026-12-08T10:00:00.000000",
        "benchmarks": [
            _bench("test_logit_stats[kernel]", 100e-6, kind="kernel", variant="kernel", **ls),
            _bench("test_logit_stats[ref]", 3e-3, kind="reference", variant="torch", **ls),
            _bench("test_logit_stats[copy]", 40e-6, kind="floor", variant="copy", **ls),
            _bench("test_logit_stats[argmax]", 250e-6, kind="floor", variant="argmax", **ls),
        ],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    return str(path)


RESULTS = """# Results

## Ops on CPU

<!-- generated: ops -->
old ops table
<!-- end: ops -->

Goal lines stay.

## Decoding

<!-- generated: decode -->
old decode table
<!-- end: decode -->
"""


def test_ops_block_regenerated_and_the_rest_untouched(tmp_path):
    res = tmp_path / "RESULTS.md"
    res.write_text(RESULTS)
    assert results_tables.main([_json(tmp_path), "--results", str(res)]) == 0
    text = res.read_text()
    assert "old ops table" not in text, text
    # kernel 100 us vs torch 3 ms: 30x; vs argmax 250 us: 2.5x; copy 40 us: 40% of copy speed
    row = next(ln for ln in text.splitlines() if ln.startswith("| B1 N16 V32000"))
    assert "| 30x |" in row and "| 2.5x |" in row and "| 40% |" in row, row
    assert "commit 0123456789" in text and "Test CPU" in text and "2026-12-08" in text
    # the decode block has no benchmarks in this JSON: left as it was, as is the text around
    assert "old decode table" in text
    assert text.startswith("# Results\n\n## Ops on CPU\n\n<!-- generated: ops -->\n")
    assert "<!-- end: ops -->\n\nGoal lines stay.\n" in text


def test_check_and_output(tmp_path):
    res = tmp_path / "RESULTS.md"
    res.write_text(RESULTS)
    js = _json(tmp_path)
    assert results_tables.main([js, "--results", str(res), "--check"]) == 1
    assert res.read_text() == RESULTS  # --check writes nothing
    out = tmp_path / "out.md"
    assert results_tables.main([js, "--results", str(res), "-o", str(out)]) == 0
    assert res.read_text() == RESULTS
    assert results_tables.main([js, "--results", str(out), "--check"]) == 0  # regenerating is stable


@pytest.mark.parametrize("allow", [False, True])
def test_quick_run_refused_unless_allowed(tmp_path, allow):
    res = tmp_path / "RESULTS.md"
    res.write_text(RESULTS)
    argv = [_json(tmp_path, quick=True), "--results", str(res)] + (["--allow-quick"] if allow else [])
    assert results_tables.main(argv) == (0 if allow else 1)
    assert ("old ops table" in res.read_text()) != allow


def test_the_dashboard_marks_both_generated_blocks():
    path = os.path.join(os.path.dirname(results_tables.HERE), "bench", "RESULTS.md")
    with open(path) as f:
        text = f.read()
    _, done = results_tables.update(text, {"ops": "x", "decode": "y"})
    assert done == ["ops", "decode"], done
