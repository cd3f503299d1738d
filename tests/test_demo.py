"""`cospec demo` end to end on tiny random models (the shipped ones are exercised by
`make demo`), the baselines' rules, and the statistics helpers."""

import json
import math

import pytest
import torch

from cospec_ext.engine import FEATURE_NAMES
from cospec_ext.task.demo import main as demo_main
from cospec_ext.task.evaluate import paired_diff, wilson
from cospec_ext.task.heuristics import AlwaysAccept, KLJudge, TargetUncertain, TypicalAcceptance
from _models import save_task_models


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return save_task_models(tmp_path_factory.mktemp("demo_assets"), arbiter=True)


def test_demo_writes_the_table_as_json(assets, tmp_path, capsys):
    """No validation.json beside the arbiter: the demo chooses on validation problems first
    (and saves the choice beside its JSON), then reports two seeds and their pool."""
    out = tmp_path / "demo.json"
    rc = demo_main(["--seeds", "3,4", "--n", "12", "--val-n", "6", "--timing-n", "4", "--repeats", "3",
                    "--eager", "--batches", "1,2",
                    "--max-new-tokens", "20", "--json", str(out), "--plot", str(tmp_path / "p.png"),
                    "--target", str(assets / "target"), "--draft", str(assets / "draft"),
                    "--arbiter", str(assets / "arbiter")])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["seeds"] == [3, 4] and res["validation"]["n"] == 6
    assert json.loads((tmp_path / "validation.json").read_text())["threshold"] == res["threshold"]
    for m in ("target", "draft", "spd", "cospec", "oracle"):
        r = res["pooled"][m]
        assert r["n"] == 24 and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
        if m != "oracle":
            assert res["per_seed"]["3"]["methods"][m]["n"] == 12
    assert res["batches"] == [1, 2] and res["compiled"] is False
    for b in ("1", "2"):
        assert res["pooled"]["target"]["speed"][b]["speedup"] == pytest.approx(1.0)
        assert len(res["pooled"]["spd"]["speed"][b]["speedup_repeats"]) == 3
        assert res["speed"][b]["warm_up"]["wall_s"] > 0
        # the sweep's dot at the chosen threshold is the CoSpec marker itself (same passes, same median)
        dot = next(s for s in res["threshold_sweep"] if s["threshold"] == res["threshold"])
        assert dot["speedup"][b] == res["pooled"]["cospec"]["speed"][b]["speedup"]
        assert all(s["speedup"][b] > 0 for s in res["threshold_sweep"])
    assert res["pooled"]["spd"]["mean_accept_len"] >= 1.0
    for key in ("cospec_minus_target", "cospec_minus_best_heuristic"):
        assert set(res["comparisons"][key]) >= {"diff", "ci_low", "ci_high", "n"}
        assert res["comparisons"][key]["n"] == 24
    assert {0.1, 0.5, 0.9, res["threshold"]} <= {s["threshold"] for s in res["threshold_sweep"]}
    assert res["pooled"]["oracle"]["accuracy"] >= res["pooled"]["target"]["accuracy"]
    assert (tmp_path / "p.png").exists() and "pooled over seeds" in capsys.readouterr().out


def test_baseline_rules():
    x = torch.tensor([[math.log(0.2), 2.0], [math.log(0.9), 0.1]])
    assert AlwaysAccept().predict_proba(x).tolist() == [1.0, 1.0]
    assert TargetUncertain(0.5).predict_proba(x[:, :1]).tolist() == [1.0, 0.0]
    # typical: accept when p > min(eps, delta * exp(-H))
    assert TypicalAcceptance(0.3, 0.09).predict_proba(x).tolist() == [1.0, 1.0]
    # row 0: 0.2 > min(0.95, exp(-2) = 0.135); row 1: 0.9 < min(0.95, exp(-0.1) = 0.905)
    assert TypicalAcceptance(0.95, 1.0).predict_proba(x).tolist() == [1.0, 0.0]
    assert KLJudge(0.5).predict_proba(torch.tensor([[0.1], [0.7]])).tolist() == [1.0, 0.0]
    for h in (AlwaysAccept(), TargetUncertain(0.5), TypicalAcceptance(), KLJudge(1.0)):
        assert set(h.feature_names) <= set(FEATURE_NAMES)


def test_intervals():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    d = paired_diff([True, True, False, True], [False, True, False, False])
    assert d["diff"] == pytest.approx(0.5) and d["ci_low"] < 0.5 < d["ci_high"]
