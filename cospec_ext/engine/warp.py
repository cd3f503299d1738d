"""Sampling warpers: top-k, top-p (nucleus) and min-p, as transformers' generate() applies them.

Sampling at temperature T draws from softmax(w(x / T)) where x are the target's logits and w
sets the logits of filtered tokens to -inf, in generate()'s order (TemperatureLogitsWarper,
then TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, each with min_tokens_to_keep = 1):

    top_k: keep x_i >= (k-th largest x), k = min(top_k, V) (ties with the k-th are all kept)
    top_p: sort ascending (torch.sort), drop the tokens whose cumulative probability is
           <= 1 - top_p, never the largest one
    min_p: drop p_i < min_p * max_j p_j, p = softmax of what top_k/top_p left

The engine hands verify_tree (and the first pick after prefill) the raw logits with the
filtered entries set to -inf: its walk then accepts a drafted child c with probability
q[c] / sum(q), q = softmax(w(x / T)) restricted by the rejections, and samples the residual,
so speculative sampling stays lossless for the warped distribution (a filtered draft token has
q = 0 and is never accepted; the residual never draws it).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Warper:
    """Filters over logits/T. top_k 0 / top_p 1.0 / min_p 0.0 are off (the values `resolve`
    gives for None when the model sets nothing, besides generate()'s top_k = 50)."""

    temperature: float
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    @property
    def active(self) -> bool:
        """Whether sampling happens and some filter is on (greedy ignores the warpers, as
        generate(do_sample=False) does)."""
        return self.temperature > 0.0 and (self.top_k > 0 or self.top_p < 1.0 or self.min_p > 0.0)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [..., V] (any float dtype) -> the same logits with the filtered tokens set to
        -inf, same shape and dtype. The filter is decided in float32 on logits / T, as
        generate() decides it on its float32 scores."""
        if not self.active:
            return logits
        x = logits.float() / self.temperature  # [..., V]
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [R, V]
        if self.top_k > 0:
            k = min(self.top_k, x.shape[-1])
            x = x.masked_fill(x < torch.topk(x, k)[0][..., -1, None], -math.inf)
        if self.top_p < 1.0:
            xs, order = torch.sort(x, descending=False)  # [R, V]
            drop = xs.softmax(dim=-1).cumsum(dim=-1) <= (1 - self.top_p)  # [R, V], sorted order
            drop[..., -1:] = False  # the largest is always kept
            x = x.masked_fill(drop.scatter(1, order, drop), -math.inf)
        if self.min_p > 0.0:
            p = torch.softmax(x, dim=-1)  # [R, V]
            drop = p < self.min_p * p.amax(dim=-1, keepdim=True)
            drop.scatter_(-1, torch.topk(p, 1, dim=-1).indices, False)
            x = x.masked_fill(drop, -math.inf)
        return logits.masked_fill(torch.isneginf(x).reshape(shape), -math.inf)


def check_knobs(top_k, top_p, min_p) -> None:
    """ValueError naming the argument for a bad value (None is always accepted)."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0):
        raise ValueError(f"`top_k` must be an int >= 0 (0 or None: off), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < float(top_p) <= 1.0):
        raise ValueError(f"`top_p` must be a float in (0, 1] (1.0 or None: off), got {top_p!r}")
    if min_p is not None and (isinstance(min_p, bool) or not isinstance(min_p, numbers.Real)
                              or not 0.0 <= float(min_p) <= 1.0):
        raise ValueError(f"`min_p` must be a float in [0, 1] (0 or None: off), got {min_p!r}")


# what generate() applies for a knob that neither the call nor the model's generation_config
# sets (GenerationConfig._get_default_generation_params): top_k 50, top_p 1.0, min_p unset
GENERATE_DEFAULTS = {"top_k": 50, "top_p": 1.0, "min_p": None}


def resolve(model, temperature: float, top_k, top_p, min_p) -> Warper:
    """The warper decode applies: each knob given (not None) as is; when sampling, a knob left
    None takes the model's generation_config value, else generate()'s default (top_k = 50).
    Greedy (temperature 0) keeps the knobs but never applies them. The arguments are checked
    by the caller (decode, `check_knobs`, before any model work); values taken from the
    generation_config are checked here."""
    knobs = {"top_k": top_k, "top_p": top_p, "min_p": min_p}
    if temperature > 0.0:
        gc = getattr(model, "generation_config", None)
        for name, v in knobs.items():
            if v is None:
                v = getattr(gc, name, None) if gc is not None else None
                knobs[name] = GENERATE_DEFAULTS[name] if v is None else v
        check_knobs(*knobs.values())
    return Warper(temperature, int(knobs["top_k"] or 0), 1.0 if knobs["top_p"] is None else float(knobs["top_p"]),
                  float(knobs["min_p"] or 0.0))
