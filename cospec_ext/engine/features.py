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
At the candidate itself (the target has read cand_i: target_logits[b, i], which the
verification forward already computed; Judge Decoding's signal):
    tc_logp_top   log max_v p_target(v | i)         tc_entropy    entropy of p_target(. | i)
    tc_margin     top-1 minus top-2 target logit at i
How the target receives the draft's continuation beyond the mismatch, along i's first
child (the draft's preferred continuation) down to the tree's end:
    la_len        drafted tokens below i on that path (0 at the deepest level)
    la_accept     how many of them, in a row from i, equal the target's greedy choice
    la_logp_next  log p_target(first child's token | i)   (0 when la_len = 0)
    la_logp_mean  mean of log p_target(token | its parent) over the la_len tokens (0 when none)
All of them come from one fused kernel, ops.node_features, over the verification logits and
the draft's logits at each node's parent (which the draft computed while drafting).

Hidden inputs (arbiters with `hidden_sizes`): per name in `hidden_inputs` (default
("t_parent", "d_parent")) the last hidden state of
    t_parent      the target at i's parent        d_parent      the draft at i's parent
    t_cand        the target at i (after reading cand_i)
concatenated in that order, float32 [.., sum(hidden_sizes)].
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch

from .. import ops

FEATURE_NAMES: tuple[str, ...] = (
    "t_logp_cand", "t_logp_top", "t_entropy", "t_margin", "t_rank",
    "d_logp_cand", "d_logp_top", "d_entropy", "d_margin", "kl_dt",
    "depth", "sibling_rank", "position",
    "tc_logp_top", "tc_entropy", "tc_margin",
    "la_len", "la_accept", "la_logp_next", "la_logp_mean",
)
# The columns read before candidate features existed (arbiter files of that time list them).
PARENT_FEATURES: tuple[str, ...] = FEATURE_NAMES[:13]
CANDIDATE_FEATURES: tuple[str, ...] = FEATURE_NAMES[13:]
HIDDEN_INPUTS: tuple[str, ...] = ("t_parent", "d_parent", "t_cand")


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
    """Validates an arbiter (its columns and, with `hidden_sizes`, one known hidden input per
    width) and returns the FEATURE_NAMES columns it reads."""
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
    sizes = getattr(arbiter, "hidden_sizes", None)
    if sizes is not None:
        hin = hidden_inputs_of(arbiter)
        if any(n not in HIDDEN_INPUTS for n in hin) or len(hin) != len(sizes):
            raise ValueError(f"`arbiter` hidden_inputs {list(hin)} must name one of {list(HIDDEN_INPUTS)} per entry "
                             f"of hidden_sizes {list(sizes)}")
    return [FEATURE_NAMES.index(n) for n in names]


def hidden_widths(names, target_width: int | None, draft_width: int | None) -> tuple:
    """The width of each named hidden input (t_*: the target's hidden size, d_*: the draft's)."""
    return tuple(target_width if n.startswith("t_") else draft_width for n in names)


def hidden_inputs_of(arbiter) -> tuple[str, ...]:
    """The hidden inputs an arbiter with `hidden_sizes` reads (default: both models at the parent)."""
    return tuple(getattr(arbiter, "hidden_inputs", None) or HIDDEN_INPUTS[:2])


def node_features(target_logits: torch.Tensor, candidates: torch.Tensor, parents: torch.Tensor,
                  depth: torch.Tensor, rank: torch.Tensor, draft_stats: dict, n_generated: torch.Tensor,
                  levels: int) -> torch.Tensor:
    """Features of every node, float32 [B, N, len(FEATURE_NAMES)] (the root's row is zero),
    by the fused kernel ops.node_features (its docstring gives each column's formula).

    target_logits [B, N, V]; candidates int64 [B, N]; parents, depth, rank: int64 [B or 1, N];
    draft_stats: the draft's logits at each node's parent, d_parent_logits [B, N, V];
    n_generated: int64 [B]; levels: the tree's depth. The engine builds its trees itself,
    so they are not validated again (no host sync)."""
    return ops.node_features(target_logits, candidates, parents, depth, rank, n_generated,
                             draft_stats["d_parent_logits"], int(levels), validate=False)


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

