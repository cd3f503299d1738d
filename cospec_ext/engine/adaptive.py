"""Adaptive draft depth: each round, draft as deep as pays off.

With a per-level acceptance probability a (the chance that the next level is accepted
given the previous one was) and c = draft forward time / target forward time, a round
of depth D yields E[tokens] = sum_{j=0..D} a^j = (1 - a^(D+1)) / (1 - a) for a cost of
about 1 + c * D target forwards; the controller picks the D in [0, max_depth] with the
most tokens per unit cost. D = 0 is a plain target step, so a draft that never agrees
costs only the occasional probe (a depth-1 round after `probe_every` rounds at D = 0; the
wait doubles after each probe that does not lift the estimate, up to `max_probe_every`).
a is estimated from the observed accepted lengths (a truncated geometric: a row that
accepted L of D levels counts L successes in L + [L < D] trials), exponentially
forgotten; c from the measured forward times unless given.
"""

from __future__ import annotations

import torch


class DepthController:
    def __init__(self, max_depth: int, adaptive: bool, draft_cost: float | None, decay: float = 0.8,
                 probe_every: int = 8, max_probe_every: int = 64):
        self.max_depth, self.adaptive = max_depth, adaptive
        self.fixed_cost = draft_cost
        self.decay, self.probe_every, self.max_probe_every = decay, probe_every, max_probe_every
        self.wait = probe_every  # rounds at depth 0 before the next probe
        self.succ, self.trials = 1.0, 2.0  # a weak prior, a = 0.5: two failed rounds stop the drafting
        self.t_draft = self.t_target = None  # EMA of seconds per forward
        self.idle = 0

    @property
    def accept_rate(self) -> float:
        return self.succ / self.trials

    @property
    def cost(self) -> float:
        if self.fixed_cost is not None:
            return self.fixed_cost
        if not self.t_draft or not self.t_target:
            return 0.2
        return self.t_draft / self.t_target

    def choose(self) -> int:
        if not self.adaptive or self.max_depth == 0:
            return self.max_depth
        a, c = min(self.accept_rate, 0.999), self.cost
        best, best_val = 0, 1.0
        for d in range(1, self.max_depth + 1):
            val = (1 - a ** (d + 1)) / (1 - a) / (1 + c * d)
            if val > best_val * 1.0001:
                best, best_val = d, val
        if best == 0:
            self.idle += 1
            if self.idle >= self.wait:
                self.idle = 0
                self.wait = min(2 * self.wait, self.max_probe_every)  # back off while probes fail
                return 1
        else:
            self.idle = 0
            self.wait = self.probe_every
        return best

    def observe(self, depth: int, accepted: torch.Tensor) -> None:
        """accepted: CPU int64 [B], levels accepted by each row in a round of this depth."""
        n = accepted.numel()
        if depth == 0 or n == 0:
            return
        s = float(accepted.sum())
        t = s + float((accepted < depth).sum())
        self.succ = self.decay * self.succ + s / n
        self.trials = self.decay * self.trials + t / n

    def observe_times(self, draft_s: float | None, target_s: float | None) -> None:
        """Seconds per draft forward and per target forward measured this round."""
        for name, v in (("t_draft", draft_s), ("t_target", target_s)):
            if v:
                old = getattr(self, name)
                setattr(self, name, v if old is None else 0.7 * old + 0.3 * v)
