"""Arbiter features of draft-tree nodes and the arbiter protocol decode consults.

For a candidate node i with parent p (the node where draft and target may disagree),
one float32 row of FEATURE_NAMES:
    t_logp_cand   log p_target(cand_i | p)          d_logp_cand   log p_draft(cand_i | p)
    t_logp_top    log max_v p_target(v | p)         d_logp_top    log max_v p_draft(v | p)
    t_entropy     entropy of p_target(. | p), nats  d_entropy     entropy of p_draft(. | p)
    t_margin      top-1 minus top-2 target logit    d_margin      top-1 minus top-2 draft logit
    t_rank        log(1 + #tokens the target ranks above cand_i at p)
    kl_dt         KL(p_draft(. | p) || p_target(. | p)), nats
    depth         depth of i in the tree (1 = child of the root)
    sibling_rank  i's rank among p's children (0 = the draft's first choice)
    position      tokens generated before this round + depth (place in the answer)
Target statistics come from logit_stats over the verification logits, draft statistics
from logit_stats over the draft's logits while drafting.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch

from ..ops import LogitStats

FEATURE_NAMES: tuple[str, ...] = (
    "t_logp_cand", "t_logp_top", "t_entropy", "t_margin", "t_rank",
    "d_logp_cand", "d_logp_top", "d_entropy", "d_margin", "kl_dt",
    "depth", "sibling_rank", "position",
)


@runtime_checkable
class ArbiterLike(Protocol):
    """What decode(mode="cospec") consults at a mismatch.

    feature_names: the columns it reads, a subset of FEATURE_NAMES, in its order.
    predict_proba(features float32 [M, F]) -> float32 [M] in [0, 1]: the probability that
        accepting the draft's candidate leads to a correct answer.
    An `in_features` attribute, when present, must equal len(feature_names).
    """

    feature_names: Sequence[str]

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor: ...


def check_arbiter(arbiter) -> list[int]:
    """Validates an arbiter and returns the FEATURE_NAMES columns it reads."""
    if not isinstance(arbiter, ArbiterLike):
        raise TypeError(f"`arbiter` must have `feature_names` and `predict_proba(features)`, got {type(arbiter).__name__}")
    names = list(arbiter.feature_names)
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown or not names:
        raise ValueError(f"`arbiter` feature_names {names} must be a non-empty subset of {list(FEATURE_NAMES)}")
    width = getattr(arbiter, "in_features", None)
    if width is not None and int(width) != len(names):
        raise ValueError(f"`arbiter` expects {int(width)} input features but its feature_names list {len(names)}: "
                         "the feature width does not match")
    return [FEATURE_NAMES.index(n) for n in names]


def node_features(ls: LogitStats, target_logits: torch.Tensor, candidates: torch.Tensor, parents: torch.Tensor,
                  depth: torch.Tensor, rank: torch.Tensor, draft_stats: dict, n_generated: torch.Tensor) -> torch.Tensor:
    """Features of every node, float32 [B, N, len(FEATURE_NAMES)] (the root's row is unused).

    ls: logit_stats over target_logits [B, N, V] with (candidates, parents) int64 [B, N];
    depth, rank: int64 [B or 1, N]; draft_stats: float32 [B, N] tensors d_logp_cand,
    d_logp_top, d_entropy, d_margin (at each node's parent) and the draft's parent logits
    d_parent_logits [B, N, V]; n_generated: int64 [B].
    """
    B, N, V = target_logits.shape
    p = parents.expand(B, N).clamp(min=0)  # [B, N]
    top = (ls.max_logit - ls.logsumexp).gather(1, p)
    ent, margin = ls.entropy.gather(1, p), ls.margin.gather(1, p)
    par_logits = target_logits.gather(1, p[..., None].expand(B, N, V))  # [B, N, V] rows of the parents
    cand_logit = par_logits.gather(2, candidates[..., None])  # [B, N, 1]
    above = (par_logits > cand_logit).sum(-1)  # [B, N]
    d_logp = torch.log_softmax(draft_stats["d_parent_logits"].float(), -1)  # [B, N, V]
    t_logp = torch.log_softmax(par_logits.float(), -1)
    kl = (d_logp.exp() * (d_logp - t_logp)).sum(-1).clamp(min=0)  # [B, N]
    dep = depth.expand(B, N).float()
    cols = [ls.cand_logprob, top, ent, margin.clamp(max=1e4), torch.log1p(above.float()),
            draft_stats["d_logp_cand"], draft_stats["d_logp_top"], draft_stats["d_entropy"],
            draft_stats["d_margin"].clamp(max=1e4), kl, dep, rank.expand(B, N).float(),
            n_generated[:, None].float() + dep]
    return torch.stack([c.float() for c in cols], dim=-1)


class ConstantArbiter:
    """Stand-in arbiter with a constant probability: 1.0 always accepts the draft at a
    mismatch, 0.0 never does (decode then equals spd)."""

    def __init__(self, prob: float, feature_names: Sequence[str] = ("t_logp_cand",)):
        self.prob = float(prob)
        self.feature_names = tuple(feature_names)

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        return torch.full(features.shape[:1], self.prob, dtype=torch.float32, device=features.device)


class LogisticArbiter:
    """Stand-in arbiter: sigmoid(w . x + b) over the named features (a linear probe)."""

    def __init__(self, feature_names: Sequence[str], weight: Sequence[float], bias: float = 0.0):
        if len(weight) != len(feature_names):
            raise ValueError(f"`weight` has {len(weight)} entries for {len(feature_names)} features")
        self.feature_names = tuple(feature_names)
        self.in_features = len(self.feature_names)
        self.weight = torch.tensor(list(weight), dtype=torch.float32)
        self.bias = float(bias)

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(features.float() @ self.weight.to(features.device) + self.bias)

