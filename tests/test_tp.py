"""Decode with a tensor-parallel target (transformers' tp_plan="auto" under torchrun, two
CPU processes, gloo): every rank returns the same tokens as a single-process decode, for
spd and cospec (a fixed arbiter), Llama and Qwen2, a left-padded batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _models import first_layers, tiny

pytest.importorskip("accelerate", reason="transformers' tensor parallelism needs accelerate")
HERE = Path(__file__).resolve().parent


def test_decode_with_a_tensor_parallel_target_equals_one_process(tmp_path):
    models = tmp_path / "models"
    for arch in ("llama", "qwen2"):
        target = tiny(arch, 2, seed=41)
        target.save_pretrained(models / arch / "target")
        first_layers(target, 1).save_pretrained(models / arch / "draft")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COSPEC_TP_CHECK": "1"}  # every round checked across ranks
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        "29541", str(HERE / "_tp_worker.py"), str(models), str(out)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    ranks = [json.loads((out / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert ranks[0].keys() == {"llama spd", "llama cospec", "qwen2 spd", "qwen2 cospec"}
    for case, res in ranks[0].items():
        assert res["tp"] == res["single"], f"{case}: tensor-parallel decode differs from one process"
        assert ranks[1][case]["tp"] == res["tp"], f"{case}: the ranks disagree"
    for arch in ("llama", "qwen2"):  # the arbiter decided both ways, so its features were compared too
        c = ranks[0][f"{arch} cospec"]
        assert 0 < c["arbiter_accepted"] < c["consulted"], c
