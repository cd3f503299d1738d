"""pytest-benchmark setup for the CPU microbenchmarks in bench/ (run: `make bench`).

Knobs (environment):
    COSPEC_BENCH_QUICK=1      only the smallest shape of each op (a sanity run, ~1 minute)
    COSPEC_BENCH_TIME=SECONDS target timed seconds per benchmark (default 1.0)
    COSPEC_BENCH_THREADS=N    torch intra-op threads (default: the cores this process may use)

tests/ never collects this folder: pyproject's testpaths is ["tests"] and `pytest tests`
names its folder; `pytest bench` from the repository root runs these.
"""

from __future__ import annotations

import os

import pytest
import torch

import cospec_ext  # noqa: F401  (loads the ops)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pytest_configure(config):
    torch.set_num_threads(int(os.environ.get("COSPEC_BENCH_THREADS", _cores())))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Recorded in the JSON's machine_info; bench/ops/summary.py prints it above the tables."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cospec_quick"] = os.environ.get("COSPEC_BENCH_QUICK", "0") == "1"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
