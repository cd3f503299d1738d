"""Counterfactual labels for the arbiter: what happens if a mismatch is accepted.

A problem set is decoded with decode(mode="cospec") under a recording arbiter that sees
every FEATURE_NAMES column (and, with `hidden`, every hidden input). Under the default
policy it never accepts, so the run is the target's greedy answer and the engine's
features at each mismatch are exactly those a CoSpec run meets there. At each consulted
mismatch both branches are followed (one deviation, then the target's greedy
continuation, as AutoJudge's search and `cospec demo`'s oracle do):
    accept_ok   the answer ends correct when the draft's candidate is taken
    reject_ok   it ends correct when the target's token is taken (under the never-accept
                policy: the run's own answer, no replay needed)
A mismatch is decisive when exactly one branch ends correct (label = accept_ok), and
"either" otherwise. With a `policy` (DAgger), the run follows that arbiter's decisions,
so later mismatches are those its own choices lead to, and both branches are replayed.

Saved as safetensors (tensors) + JSON (what was mined: task, split, seed, sizes), so
a run can reuse mined labels; never pickled.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file

import cospec_ext
from cospec_ext.engine.features import FEATURE_NAMES, HIDDEN_INPUTS, hidden_widths
from cospec_ext.task.analysis import consulted_items, replay_branches
from cospec_ext.task.tasks import DEFAULT_TREE


class RecordingArbiter:
    """Reads every feature (and hidden input) so the trace keeps them; decides by `policy`
    (an arbiter, at `threshold`) or never accepts."""

    feature_names = FEATURE_NAMES

    def __init__(self, policy=None, threshold: float = 0.5, hidden_sizes: tuple | None = None):
        self.policy, self.threshold = policy, float(threshold)
        if hidden_sizes is not None:
            self.hidden_sizes, self.hidden_inputs = tuple(hidden_sizes), HIDDEN_INPUTS
        self._cols = [FEATURE_NAMES.index(n) for n in policy.feature_names] if policy is not None else None

    def predict_proba(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        if self.policy is None:
            return torch.zeros(x.shape[0], device=x.device)
        return policy_proba(self.policy, x[:, self._cols], hidden, getattr(self, "hidden_sizes", None))


def select_hidden(hidden_all: torch.Tensor, sizes_all, names) -> torch.Tensor:
    """The hidden inputs `names` cut out of hidden_all [M, sum(sizes_all)], which holds all of
    HIDDEN_INPUTS in that order (sizes_all: their widths) -> [M, sum of the named widths]."""
    starts = torch.tensor([0, *sizes_all]).cumsum(0).tolist()
    return torch.cat([hidden_all[:, starts[HIDDEN_INPUTS.index(n)]:starts[HIDDEN_INPUTS.index(n) + 1]]
                      for n in names], dim=-1)


def policy_proba(policy, x: torch.Tensor, hidden_all: torch.Tensor | None, sizes_all) -> torch.Tensor:
    """policy.predict_proba on its own columns x [M, F_p] and, when it reads hidden states,
    its hidden inputs cut out of hidden_all (select_hidden)."""
    if getattr(policy, "hidden_sizes", None) is None:
        return policy.predict_proba(x)
    if hidden_all is None:
        raise ValueError("this policy reads hidden states: mine with hidden=True")
    return policy.predict_proba(x, hidden=select_hidden(hidden_all, sizes_all, policy.hidden_inputs))


def mine(task, target, draft, problems: list[dict], *, tree: str = DEFAULT_TREE, max_new_tokens: int = 64,
         batch: int = 64, policy=None, threshold: float = 0.5, hidden: bool = False) -> dict:
    """Decodes `problems` and labels every consulted mismatch (module docstring) ->
    dict of CPU tensors: features float32 [M, len(FEATURE_NAMES)], hidden float32
    [M, H_t + H_d + H_t] (with `hidden`), accept_ok / reject_ok / decision bool [M],
    problem int64 [M] (index into problems), run_ok bool [len(problems)] (the run's answers)."""
    sizes = hidden_widths(HIDDEN_INPUTS, target.config.hidden_size, draft.config.hidden_size) if hidden else None
    rec = RecordingArbiter(policy, threshold, sizes)
    items, run_ok = [], []
    for s in range(0, len(problems), batch):
        chunk = problems[s:s + batch]
        ids, mask = task.encode([p["question"] for p in chunk])
        out = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=rec, threshold=threshold,
                                tree=tree, max_new_tokens=max_new_tokens, eos_token_id=task.eos_id,
                                pad_token_id=task.pad_id, return_trace=True)
        P = ids.shape[1]
        run_ok += [task.is_correct(out.sequences[b, P:P + out.stats.new_tokens[b]].tolist(), p["final"])
                   for b, p in enumerate(chunk)]
        items += consulted_items(task, [(chunk, ids, out)])  # the trace itself is dropped here
    index = {id(p): i for i, p in enumerate(problems)}
    prob_idx = [index[id(it["problem"])] for it in items]
    acc, rej = replay_branches(target, task, items, max_new_tokens, reject=policy is not None)
    if rej is None:  # never accepting, the run is the reject branch of every mismatch
        rej = [run_ok[i] for i in prob_idx]
    F = len(FEATURE_NAMES)
    data = {"features": torch.stack([it["features"] for it in items]).float() if items else torch.zeros(0, F),
            "accept_ok": torch.tensor(acc, dtype=torch.bool), "reject_ok": torch.tensor(rej, dtype=torch.bool),
            "decision": torch.tensor([it["decision"] for it in items], dtype=torch.bool),
            "problem": torch.tensor(prob_idx, dtype=torch.int64), "run_ok": torch.tensor(run_ok, dtype=torch.bool)}
    if hidden:
        data["hidden"] = (torch.stack([it["hidden"] for it in items]).float() if items
                          else torch.zeros(0, sum(sizes)))
    return data


def summary(data: dict) -> dict:
    """Counts of a mined set: mismatches, decisive, draft-only / target-only correct."""
    a, r = data["accept_ok"], data["reject_ok"]
    return {"problems": int(data["run_ok"].numel()), "run_accuracy": float(data["run_ok"].float().mean()),
            "mismatches": int(a.numel()), "decisive": int((a != r).sum()), "draft_only": int((a & ~r).sum()),
            "target_only": int((~a & r).sum())}


def save_mined(path: str, data: dict, meta: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in data.items()}, path + ".safetensors")
    with open(path + ".json", "w") as f:
        json.dump({**meta, "feature_names": list(FEATURE_NAMES), "summary": summary(data)}, f, indent=1)


def load_mined(path: str, meta: dict | None = None) -> dict | None:
    """The mined set saved at `path` (None when absent, or when its metadata differs from `meta`)."""
    if not (os.path.isfile(path + ".safetensors") and os.path.isfile(path + ".json")):
        return None
    with open(path + ".json") as f:
        saved = json.load(f)
    if saved.get("feature_names") != list(FEATURE_NAMES):
        return None
    if meta is not None and any(saved.get(k) != v for k, v in meta.items()):
        return None
    return load_file(path + ".safetensors")
