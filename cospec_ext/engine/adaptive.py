"""Adaptive draft depth: each round, draft as deep as pays off.

With a per-level acceptance probability a (the chance that the next level is accepted
given the previous one was), a round of depth D yields
E[tokens] = sum_{j=0..D} a^j = (1 - a^(D+1)) / (1 - a); the controller picks the D in
[0, max_depth] with the most tokens per unit cost, D = 0 being a plain target step
(E = 1, cost 1). A round's cost, relative to a plain step:

    given c = draft/target cost (sampling, an arbiter, tensor parallelism: the output must not
    depend on timings):  1 + c * D
    measured (greedy spd):  (T(D) + D * t_draft) / T(0)

where t_draft is the time of one draft forward (a round of depth D makes D of them: the
catch-up, then one per level but the last) and T(D) the time of the target's forward in
rounds of depth D, which grows with the tree's node count once the forward is no longer
pure overhead (a compiled CPU forward of 5 tokens costs twice one of 1). An unmeasured T(D)
is taken equal to the nearest measured one below it (optimistic, so a depth is tried
before it is ruled out); before any measurement c = 0.2.

A draft that never agrees costs only the occasional probe (a depth-1 round after
`probe_every` rounds at D = 0; the wait doubles after each probe that does not lift the
estimate, up to `max_probe_every`). a is estimated from the observed accepted lengths (a
truncated geometric: a row that accepted L of D levels counts L successes in L + [L < D]
trials), exponentially forgotten.
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
        self.t_draft: float | None = None  # EMA of seconds per draft forward
        self.t_target: dict[int, float] = {}  # depth -> EMA of seconds of the target forward at that depth
        self.idle = 0

    @property
    def accept_rate(self) -> float:
        return self.succ / self.trials

    @property
    def cost(self) -> float:
        """c: draft forward / target forward (given, measured at depth 1 or below, or 0.2)."""
        if self.fixed_cost is not None:
            return self.fixed_cost
        t = self._target_time(1)
        if not self.t_draft or not t:
            return 0.2
        return self.t_draft / t

    def _target_time(self, d: int) -> float | None:
        """T(d): measured, else the nearest measured depth below d (None: nothing below)."""
        for k in range(d, -1, -1):
            if k in self.t_target:
                return self.t_target[k]
        return None

    def round_costs(self) -> list[float]:
        """Cost of a round of each depth 0..max_depth relative to a plain target step."""
        t0 = self._target_time(0)
        if self.fixed_cost is not None or not self.t_draft or t0 is None:
            c = self.cost
            return [1 + c * d for d in range(self.max_depth + 1)]
        return [(self._target_time(d) + d * self.t_draft) / t0 for d in range(self.max_depth + 1)]

    def choose(self) -> int:
        if not self.adaptive or self.max_depth == 0:
            return self.max_depth
        a = min(self.accept_rate, 0.999)
        costs = self.round_costs()
        best, best_val = 0, 1.0 / costs[0]
        for d in range(1, self.max_depth + 1):
            val = (1 - a ** (d + 1)) / (1 - a) / costs[d]
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

    def observe_times(self, depth: int, draft_s: float | None, target_s: float | None) -> None:
        """Seconds per draft forward and of the target forward measured in a round of `depth`
        levels (draft_s None in a round without drafting)."""
        if draft_s:
            self.t_draft = draft_s if self.t_draft is None else 0.7 * self.t_draft + 0.3 * draft_s
        if target_s:
            old = self.t_target.get(depth)
            self.t_target[depth] = target_s if old is None else 0.7 * old + 0.3 * target_s
