"""Training-free baselines for the decision CoSpec's arbiter makes at a mismatch.

Each is an arbiter (feature_names + predict_proba) whose probability is 0 or 1, so
decode(mode="cospec", threshold=0.5) applies the rule exactly:
    AlwaysAccept          take the draft's token at every mismatch
    TargetUncertain(tau)  take it when the target's top probability is below tau
    TypicalAcceptance     Medusa's typical acceptance: take it when
                          p_target(cand) > min(eps, delta * exp(-H(p_target)))
    KLJudge(tau)          take it when KL(p_draft || p_target) at the parent is below tau
                          (the models disagree only on a near-tie)
"""

from __future__ import annotations

import math

import torch


class _Rule:
    feature_names: tuple = ()
    family: str = ""  # the key of its parameter grid in candidates() and of validation.json

    def rule(self, x: torch.Tensor) -> torch.Tensor:  # [M, F] -> bool [M]
        raise NotImplementedError

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.rule(x).float()


class AlwaysAccept(_Rule):
    feature_names = ("t_logp_cand",)
    family = name = "always-accept"
    params: dict = {}

    def rule(self, x):
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)


class TargetUncertain(_Rule):
    feature_names = ("t_logp_top",)
    family = "target-uncertain"

    def __init__(self, tau: float):
        self.tau, self.name = float(tau), f"target-uncertain(p_top<{tau:g})"
        self.params = {"tau": self.tau}

    def rule(self, x):
        return x[:, 0] < math.log(self.tau)


class TypicalAcceptance(_Rule):
    feature_names = ("t_logp_cand", "t_entropy")
    family = "typical"

    def __init__(self, eps: float = 0.3, delta: float = 0.09):
        self.eps, self.delta = float(eps), float(delta)
        self.name = f"typical(eps={eps:g},delta={delta:g})"
        self.params = {"eps": self.eps, "delta": self.delta}

    def rule(self, x):
        p = x[:, 0].exp()
        return p > torch.minimum(torch.full_like(p, self.eps), self.delta * torch.exp(-x[:, 1]))


class KLJudge(_Rule):
    feature_names = ("kl_dt",)
    family = "kl-judge"

    def __init__(self, tau: float):
        self.tau, self.name = float(tau), f"kl-judge(KL<{tau:g})"
        self.params = {"tau": self.tau}

    def rule(self, x):
        return x[:, 0] < self.tau


def candidates() -> dict[str, list]:
    """The parameter grid each baseline is tuned over (on the validation split)."""
    grids = [[AlwaysAccept()],
             [TargetUncertain(t) for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)],
             [TypicalAcceptance(e, d) for e in (0.05, 0.1, 0.2, 0.3) for d in (0.09, 0.3)],
             [KLJudge(t) for t in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)]]
    return {grid[0].family: grid for grid in grids}


def from_params(family: str, params: dict):
    """The rule of `family` with `params` (as stored in a validation.json)."""
    cls = {c.family: c for c in (AlwaysAccept, TargetUncertain, TypicalAcceptance, KLJudge)}
    if family not in cls:
        raise ValueError(f"unknown baseline family {family!r} (expected one of {sorted(cls)})")
    return cls[family](**params)
