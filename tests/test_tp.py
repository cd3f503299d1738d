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


@pytest.mark.parametrize("nproc", [2, 4])
def test_arbiter_training_with_a_tensor_parallel_target_matches_one_process(tmp_path, nproc):
    """`cospec train --stage rl --tp 2` under torchrun ends with the arbiter one process
    trains: with 2 processes the target is sharded over both ranks, every rank decoding the
    same prompts; with 4, a 2-D mesh (two data-parallel groups of two tensor-parallel ranks,
    each group its half of the prompts, every round checked within its group)."""
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(HERE.parent / "python"))
    from cospec_train.rl import RLConfig, train
    from _models import save_task_models

    models = save_task_models(tmp_path / "models")
    common = dict(target=str(models / "target"), draft=str(models / "draft"), updates=3, prompts=4, group=3,
                  speed_coef=0.2, max_new_tokens=20, seed=3, threads=1)
    args = ["--target", common["target"], "--draft", common["draft"], "--out", str(tmp_path / "tp"), "--updates", "3",
            "--prompts", "4", "--group", "3", "--speed-coef", "0.2", "--max-new-tokens", "20", "--seed", "3",
            "--threads", "1", "--tp", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COSPEC_TP_CHECK": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent / "python"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                        "--master-port", str(29541 + nproc), "-m", "cospec_train", *args],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    got = load_file(tmp_path / "tp" / "arbiter" / "arbiter.safetensors")
    want = train(RLConfig(out=str(tmp_path / "single"), **common), progress=False).state_dict()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-5, msg=f"TP vs one process: {k}")
    log = lambda d: [json.loads(x)["accuracy"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa
    assert log("tp") == log("single")


def test_two_d_mesh_shards_data_by_tensor_parallel_group(monkeypatch):
    """rank = dp_index * tp + tp_index (transformers' mesh): the tp ranks of a group share a
    data shard; a --tp that does not divide the world is refused, naming --tp."""
    sys.path.insert(0, str(HERE.parent / "python"))
    from cospec_train import rl

    cfg = rl.RLConfig(tp=2)
    shards = []
    for rank in range(6):
        monkeypatch.setattr(rl, "_world", lambda r=rank: (r, 6))
        shards.append(rl._data_shard(cfg))
    assert shards == [(0, 3), (0, 3), (1, 3), (1, 3), (2, 3), (2, 3)]
    monkeypatch.setattr(rl, "_world", lambda: (0, 6))
    with pytest.raises(ValueError, match="--tp 4"):
        rl._data_shard(rl.RLConfig(tp=4))
