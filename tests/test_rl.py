"""Arbiter RL training: deterministic for a seed, resumable from a checkpoint, and
data-parallel under torchrun (2 CPU processes, gloo) with the same result as one process.

Tiny random-init models with the task's tokenizer stand in for the shipped ones; their
answers are never correct, so the reward's speed term (accepted tokens per round) is
what varies between rollouts and drives the updates."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from cospec_ext.engine import FEATURE_NAMES  # noqa: E402
from cospec_train.rl import RLConfig, train  # noqa: E402
from _models import save_task_models  # noqa: E402


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return save_task_models(tmp_path_factory.mktemp("rl_models"))


def _cfg(model_dirs, out, **kw):
    base = dict(target=str(model_dirs / "target"), draft=str(model_dirs / "draft"), out=str(out), updates=4,
                prompts=4, group=3, speed_coef=0.2, max_new_tokens=20, ckpt_every=2, seed=3, threads=1)
    return RLConfig(**{**base, **kw})


def _log(out):
    rows = [json.loads(x) for x in Path(out, "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


def test_training_changes_the_policy_and_is_deterministic(model_dirs, tmp_path):
    a = train(_cfg(model_dirs, tmp_path / "a"), progress=False)
    b = train(_cfg(model_dirs, tmp_path / "b"), progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), f"{k} differs between two runs with one seed"
    assert float(a.out.weight.detach().abs().sum()) > 0, "the output layer should have moved from its zero init"
    assert len(_log(tmp_path / "a")) == 4
    assert (tmp_path / "a" / "arbiter" / "arbiter.safetensors").exists()


def test_resume_after_a_kill_matches_an_uninterrupted_run(model_dirs, tmp_path):
    full = train(_cfg(model_dirs, tmp_path / "full"), progress=False)
    out = tmp_path / "killed"
    train(_cfg(model_dirs, out, updates=2), progress=False)  # checkpoint at update 2
    with open(out / "metrics.jsonl", "a") as f:  # what a run killed during update 3 had logged
        f.write(json.dumps({"update": 3, "accuracy": -1, "seconds": 0}) + "\n")
    resumed = train(_cfg(model_dirs, out), progress=False)
    for (k, va), vb in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=f"{k} differs after resume")
    assert _log(out) == _log(tmp_path / "full")


def test_ddp_two_processes_match_single_process(model_dirs, tmp_path):
    cfg = _cfg(model_dirs, tmp_path / "ddp", updates=3)
    args = ["--target", cfg.target, "--draft", cfg.draft, "--out", cfg.out, "--updates", "3", "--prompts", "4",
            "--group", "3", "--speed-coef", "0.2", "--max-new-tokens", "20", "--seed", "3", "--threads", "1",
            "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", "29517", "-m", "cospec_train", *args],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    w0 = load_file(tmp_path / "ddp" / "arbiter_rank0.safetensors")
    w1 = load_file(tmp_path / "ddp" / "arbiter_rank1.safetensors")
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
    single = train(_cfg(model_dirs, tmp_path / "single", updates=3), progress=False).state_dict()
    for k in w0:
        torch.testing.assert_close(w0[k], single[k], rtol=1e-4, atol=1e-5, msg=f"DDP vs single process: {k}")
    assert [r["accuracy"] for r in _log(tmp_path / "ddp")] == [r["accuracy"] for r in _log(tmp_path / "single")]


def test_gsm8k_task_trains_from_a_jsonl_file(model_dirs, tmp_path):
    recs = [{"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3+4=7\n#### 7"},
            {"question": "A box holds 1,200 pens; 200 are sold. How many remain?", "answer": "#### 1,000"},
            {"question": "What is 6 times 7?", "answer": "6*7=42 #### 42"}]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    arb = train(_cfg(model_dirs, tmp_path / "g", task="gsm8k", data=str(data), updates=1, prompts=2), progress=False)
    assert (tmp_path / "g" / "arbiter" / "arbiter.json").exists() and arb.in_features == len(FEATURE_NAMES)
    from cospec_train.tasks import make_task

    task = make_task("gsm8k", str(data), str(model_dirs / "target"))
    ids = task.tok("#### 1000", add_special_tokens=False).input_ids
    assert task.is_correct(ids, "1,000") and not task.is_correct(ids, "100")


def test_rl_from_an_init_arbiter_with_counterfactual_credit(model_dirs, tmp_path):
    """--stage rl --init: starts from the saved arbiter (its columns, hidden inputs and
    normalisation), moves it, and repeats exactly; counterfactual credit runs too."""
    from cospec_ext.engine import Arbiter

    torch.manual_seed(5)
    init = Arbiter(FEATURE_NAMES[:15], hidden=(8,), hidden_sizes=(32, 32), proj_dim=3,
                   hidden_inputs=("t_cand", "t_parent"))
    init.mean.normal_()
    init.save(tmp_path / "init")
    for credit in ("rollout", "counterfactual"):
        runs = [train(_cfg(model_dirs, tmp_path / f"{credit}{i}", updates=2, init=str(tmp_path / "init"),
                           credit=credit), progress=False) for i in range(2)]
        a, b = (r.state_dict() for r in runs)
        assert runs[0].feature_names == init.feature_names and runs[0].hidden_inputs == ("t_cand", "t_parent")
        assert torch.equal(a["mean"], init.mean)
        for k in a:
            assert torch.equal(a[k], b[k]), f"{credit}: {k} differs between two runs"
        moved = sum(float((a[k] - v).abs().sum()) for k, v in init.state_dict().items())
        assert moved > 0, f"{credit}: the policy did not move"


def test_a_process_killed_between_checkpoints_resumes_to_the_same_weights(model_dirs, tmp_path):
    """`cospec train` as a process, SIGKILLed after its update-2 checkpoint (while update 3
    runs), then started again with the same --out: the final weights and the metrics log
    equal an uninterrupted run's."""
    import signal
    import time

    out = tmp_path / "killed"
    args = ["--target", str(model_dirs / "target"), "--draft", str(model_dirs / "draft"), "--out", str(out),
            "--updates", "6", "--prompts", "4", "--group", "3", "--speed-coef", "0.2", "--max-new-tokens", "20",
            "--ckpt-every", "2", "--seed", "3", "--threads", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])}
    state = out / "checkpoint" / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "cospec_train", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (state.exists() and json.loads(state.read_text())["update"] >= 2):
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = json.loads(state.read_text())["update"]
    assert done < 6, "the run finished before it was killed"
    r = subprocess.run([sys.executable, "-m", "cospec_train", *args], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    full = train(_cfg(model_dirs, tmp_path / "full", updates=6), progress=False)
    resumed = load_file(out / "arbiter" / "arbiter.safetensors")
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed[k]), f"{k} differs after a resume from update {done}"
    assert _log(out) == _log(tmp_path / "full")
