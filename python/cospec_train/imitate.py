"""Imitation stage: fit the arbiter to counterfactual labels (mine.py) before any RL.

Per mined mismatch m with features x_m (and hidden inputs h_m):
    decisive (accept_ok != reject_ok):  y_m = accept_ok,  w_m = 1
    either   (both branches agree):      y_m = 1/2,        w_m = either_weight
    L = sum_m w_m BCE(sigmoid(f(x_m, h_m)), y_m) / sum_m w_m  +  weight decay
so f estimates P(the draft's branch is the correct one | exactly one is), and accepting
when it is >= 1/2 picks the branch more likely to be right; the "either" rows (where the
choice does not change the answer) only keep their predictions away from the extremes.
Full-batch AdamW for `steps` steps from a seeded initialisation, with the feature
normalisation taken from the training rows: deterministic for a seed and thread count.
"""

from __future__ import annotations

import torch

from cospec_ext.engine import Arbiter
from cospec_ext.engine.features import FEATURE_NAMES, HIDDEN_INPUTS

from .mine import policy_proba, select_hidden


def targets(data: dict, either_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(y float32 [M], w float32 [M]) of a mined set (module docstring)."""
    a, r = data["accept_ok"], data["reject_ok"]
    decisive = a != r
    y = torch.where(decisive, a.float(), torch.full_like(a, 0.5, dtype=torch.float32))
    w = torch.where(decisive, torch.ones_like(y), torch.full_like(y, float(either_weight)))
    return y, w


def fit(data: dict, features=FEATURE_NAMES, hidden=(32, 16), *, hidden_inputs: tuple | None = None,
        sizes_all: tuple | None = None, proj_dim: int = 8, steps: int = 600, lr: float = 1e-2,
        weight_decay: float = 1e-3, either_weight: float = 0.1, seed: int = 0) -> Arbiter:
    """Trains a fresh Arbiter on a mined set (module docstring) and returns it in eval mode.

    features: the FEATURE_NAMES columns to read; hidden_inputs: names from HIDDEN_INPUTS to
    read as hidden states (None: none), sizes_all: the widths of all three in the mined set."""
    torch.manual_seed(seed)
    cols = [FEATURE_NAMES.index(n) for n in features]
    X = data["features"][:, cols].float()  # [M, F]
    Hs = None
    sizes = None
    if hidden_inputs:
        sizes = tuple(sizes_all[HIDDEN_INPUTS.index(n)] for n in hidden_inputs)
        Hs = select_hidden(data["hidden"], sizes_all, hidden_inputs).float()  # [M, sum(sizes)]
    arb = Arbiter(features, hidden=hidden, hidden_sizes=sizes, proj_dim=proj_dim, hidden_inputs=hidden_inputs)
    arb.set_normalization(X)
    if Hs is not None:  # scale the hidden states' projection input once, into the projection
        mu, sd = Hs.mean(0), Hs.std(0).clamp(min=1e-3)
        with torch.no_grad():
            w = arb.proj.weight / sd
            arb.proj.bias -= w @ mu
            arb.proj.weight.copy_(w)
    y, w = targets(data, either_weight)
    opt = torch.optim.AdamW(arb.parameters(), lr=lr, weight_decay=weight_decay)
    arb.train()
    for _ in range(steps):
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(arb(X, Hs), y, reduction="none") * w).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return arb.eval()


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (probability a random positive outranks a random negative; ties 1/2)."""
    pos, neg = scores[labels], scores[~labels]
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).double().mean()
    eq = (pos[:, None] == neg[None, :]).double().mean()
    return float(gt + 0.5 * eq)


def decisive_auc(arb, data: dict, sizes_all: tuple | None = None) -> dict:
    """The arbiter on a mined set's decisive mismatches: AUC, and how often p >= threshold
    picks the correct branch (agreement with the oracle)."""
    a, r = data["accept_ok"], data["reject_ok"]
    dec = a != r
    cols = [FEATURE_NAMES.index(n) for n in arb.feature_names]
    p = policy_proba(arb, data["features"][:, cols], data.get("hidden"), sizes_all)
    thr = float(getattr(arb, "threshold", 0.5))
    return {"decisive": int(dec.sum()), "auc": auc(p[dec], a[dec]),
            "agreement_decisive": float(((p[dec] >= thr) == a[dec]).float().mean()) if dec.any() else float("nan")}
