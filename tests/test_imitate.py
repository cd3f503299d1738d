"""Counterfactual labels (cospec_train.mine) against an independent replay with
transformers' generate(); the imitation fit (deterministic, learns a separable rule);
the whole pipeline (`cospec train --stage all`, then `cospec demo`) on a GSM8K-format
JSONL file with tiny models."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from cospec_ext.engine.features import FEATURE_NAMES  # noqa: E402
from cospec_train.imitate import auc, fit  # noqa: E402
from cospec_train.mine import mine, summary  # noqa: E402
from cospec_train.tasks import ArithTask  # noqa: E402
from _models import save_task_models  # noqa: E402

MAX_NEW = 16


class DigitSumTask(ArithTask):
    """The embedded task's prompts, judged by a rule random models satisfy about half the
    time and that depends on every generated token: the token ids sum to an even number."""

    def is_correct(self, ids, final):
        return sum(ids) % 2 == 0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    root = save_task_models(tmp_path_factory.mktemp("im_models"))
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True).eval()  # noqa: E731
    return root, load(root / "target"), load(root / "draft")


def _replay(target, task, prompt, answer, budget):
    """The target's greedy continuation by generate(), cut after EOS, judged."""
    cont = []
    if budget > 0 and answer[-1] != task.eos_id:
        with torch.no_grad():
            x = torch.tensor([prompt + answer])  # an explicit mask: the models may emit the pad id
            g = target.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=budget,
                                eos_token_id=task.eos_id, pad_token_id=task.pad_id)
        cont = g[0, len(prompt) + len(answer):].tolist()
        if task.eos_id in cont:
            cont = cont[:cont.index(task.eos_id) + 1]
    return task.is_correct(answer + cont, "")


@pytest.mark.parametrize("policy", [None, "always"])
def test_mined_labels_match_generate(models, policy):
    from cospec_ext.engine import ConstantArbiter
    from cospec_ext.task.analysis import consulted_items

    _, target, draft = models
    task = DigitSumTask()
    probs = task.problems(10, seed=4, split="train")
    pol = ConstantArbiter(1.0, FEATURE_NAMES) if policy else None
    data = mine(task, target, draft, probs, tree="chain:3;fixed", max_new_tokens=MAX_NEW, batch=4, policy=pol)
    s = summary(data)
    assert s["mismatches"] > 5 and 0 < s["decisive"] < s["mismatches"]
    # the same run again, to rebuild the items in order, then replay each by generate()
    import cospec_ext

    runs = []
    for i in range(0, len(probs), 4):
        chunk = probs[i:i + 4]
        ids, mask = task.encode([p["question"] for p in chunk])
        from cospec_train.mine import RecordingArbiter

        out = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=RecordingArbiter(pol),
                                tree="chain:3;fixed", max_new_tokens=MAX_NEW, eos_token_id=task.eos_id,
                                pad_token_id=task.pad_id, return_trace=True)
        runs.append((chunk, ids, out))
    items = consulted_items(task, runs)
    assert len(items) == s["mismatches"]
    for k, it in enumerate(items):
        acc = _replay(target, task, it["prompt"], it["prefix"] + [it["cand"]], MAX_NEW - len(it["prefix"]) - 1)
        assert bool(data["accept_ok"][k]) == acc, f"accept branch of mismatch {k}"
        if it["prefix"]:
            rej = _replay(target, task, it["prompt"], it["prefix"], MAX_NEW - len(it["prefix"]))
            assert bool(data["reject_ok"][k]) == rej, f"reject branch of mismatch {k}"
        assert torch.equal(data["features"][k], it["features"].float())
        assert bool(data["decision"][k]) == (policy is not None)


def test_fit_is_deterministic_and_learns_a_rule():
    g = torch.Generator().manual_seed(0)
    M = 600
    feats = torch.randn(M, len(FEATURE_NAMES), generator=g)
    score = feats[:, FEATURE_NAMES.index("tc_entropy")] - feats[:, FEATURE_NAMES.index("t_logp_top")]
    decisive = torch.rand(M, generator=g) < 0.6
    accept = score > 0
    data = {"features": feats, "accept_ok": accept, "reject_ok": torch.where(decisive, ~accept, accept)}
    a, b = fit(data, steps=150, seed=3), fit(data, steps=150, seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    p = a.predict_proba(feats)
    assert auc(p[decisive], accept[decisive]) > 0.95


def test_pipeline_and_demo_on_gsm8k_jsonl(models, tmp_path):
    from cospec_ext.task.demo import main as demo_main
    from cospec_train.cli import main as train_main

    root = models[0]
    recs = [{"question": f"Ann has {a} pens and buys {b} more. How many pens?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"}
            for a in range(1, 9) for b in range(1, 6)]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    common = ["--task", "gsm8k", "--data", str(data), "--target", str(root / "target"), "--draft", str(root / "draft")]
    out = tmp_path / "run"
    rc = train_main(["--stage", "all", *common, "--out", str(out), "--train-problems", "16", "--val-problems", "8",
                     "--val-n", "6", "--updates", "2", "--prompts", "2", "--group", "2", "--max-new-tokens", "12",
                     "--steps", "20", "--threads", "1", "--no-progress"])
    assert rc == 0
    val = json.loads((out / "arbiter" / "validation.json").read_text())
    assert val["n"] == 6 and val["split"] == "validation" and val["stages"]["kept"] in ("imitate", "rl")
    assert set(val["baselines"]) == {"always-accept", "target-uncertain", "typical", "kl-judge"}
    assert (out / "mined_train.safetensors").exists() and (out / "rl" / "arbiter" / "arbiter.json").exists()
    log = [json.loads(x) for x in (out / "pipeline.jsonl").read_text().splitlines()]
    assert log[0]["stage"] == "imitate" and log[0]["train"]["problems"] == 16
    js = tmp_path / "demo.json"
    rc = demo_main([*common, "--arbiter", str(out / "arbiter"), "--seeds", "0,1", "--n", "5", "--timing-n", "2",
                    "--repeats", "2", "--eager", "--batches", "2", "--max-new-tokens", "12", "--json", str(js), "--plot", str(tmp_path / "p.png")])
    assert rc == 0
    res = json.loads(js.read_text())
    assert res["pooled"]["cospec"]["n"] == 10 and len(res["pooled"]["target"]["speed"]["2"]["speedup_repeats"]) == 2
    assert res["threshold"] == val["threshold"]
    assert {"cospec_minus_target", "cospec_minus_best_heuristic"} <= set(res["comparisons"])
