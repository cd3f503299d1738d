"""Adaptive draft depth: each round, draft as deep as pays off.

With a per-level acceptance probability a (the chance that the next level is accepted
given the previous one was), a round of depth D yields
E[tokens] = sum_{j=0..D} a^j = (1 - a^(D+1)) / (1 - a); the controller picks the D in
[0, max_depth] with the most tokens per unit cost, D = 0 being a plain target step
(E = 1, cost 1). A round's cost, relative to a plain step:

    given c = draft/target cost (sampling, an arbiter, tensor parallelism: the output must not
    depend on timings):  1 + c * D
    measured (greedy spd):  (T(D) + D * t_draft) / T(0)

where t_draft is the time of one draft forward (the smallest of its last 3 timings; a round
of depth D makes D of them: the
catch-up, then one per level but the last) and T(D) the time of a round of depth D less its
draft forwards: the target's forward, which grows with the tree's node count once the
forward is no longer pure overhead (a compiled CPU forward of 5 tokens costs twice one of
1), and the engine's own work (masks, verification, commit, rollbacks), which a drafting
round has more of. T is kept monotone, and robust to timing noise, which only adds time: T(D)
is the smallest of the last 3 timings of depth D, and at most any deeper depth's (a deeper
round measured cheaper bounds a shallower one); a depth timed fewer than twice is as cheap as
the depth below it (tried again before one slow round rules it out); and the unit, T(0), is
the smallest measured T (a plain step never costs more than a deeper round's verification). T(0) taken from deeper rounds is an upper bound that makes
drafting look cheap, so the first round that would draft after a drafting round has been
timed is a plain step instead, once per call: it measures T(0). Before any timing, c = 0.2.

A draft that never agrees costs only the occasional probe (a depth-1 round after
`probe_every` rounds at D = 0; the wait doubles after each probe that does not lift the
estimate, up to `max_probe_every`; and it is at least (cost of a probe - 1) / PROBE_BUDGET
rounds, even past max_probe_every, so probing an expensive draft takes at most ~2% of the
time). A probe's draft work is its catch-up of every token committed while drafting was off,
one forward over k + 1 positions after k idle rounds: that cost grows with the wait, so it is
kept per position (measured on probes, first estimated by the draft's prefill), and a draft
whose catch-up alone costs more than the budget per idle round is probed every 4 *
max_probe_every rounds (a self-draft sharing the target's cache catches up one token: its
probes are cheap).

a is estimated from the observed accepted lengths (a truncated geometric: a row that
accepted L of D levels counts L successes in L + [L < D] trials; every row of a round
counts), exponentially forgotten.

Where the timings steer (greedy spd: the output cannot depend on the tree), a call starts
from the state the last call with the same models, batch size, tree, forward path and thread
count ended in (`PairMemory`): its timings, and its acceptance evidence moved halfway back to
the prior. A draft with its own cache is prefilled only before the first round that drafts,
so a draft remembered as useless costs a call nothing but a few plain-step decisions (and
its probes, whose schedule runs on across calls); `forget()` clears the memory.
"""

from __future__ import annotations

import math
import weakref


# Probes (depth-1 rounds while drafting is off) take at most this share of the time
# (DepthController.probe_wait).
PROBE_BUDGET = 0.02
LONG_WAIT_FACTOR = 4  # x max_probe_every: the wait of a draft whose catch-up alone exceeds the budget
QUIET_ROUNDS = 3  # idle rounds between full evaluations while drafting is off
SAMPLES = 3  # a depth's round cost: the smallest of its last SAMPLES timings
TRUSTED = 2  # timings a depth needs before its own cost can rule it out


class DepthController:
    def __init__(self, max_depth: int, adaptive: bool, draft_cost: float | None, decay: float = 0.8,
                 probe_every: int = 8, max_probe_every: int = 64):
        self.max_depth, self.adaptive = max_depth, adaptive
        self.fixed_cost = draft_cost
        self.decay, self.probe_every, self.max_probe_every = decay, probe_every, max_probe_every
        self.wait = probe_every  # rounds at depth 0 before the next probe
        self.succ, self.trials = 1.0, 2.0  # a weak prior, a = 0.5: two failed rounds stop the drafting
        # the last SAMPLES timings of a draft forward, and per depth of a round less its draft
        # forwards (t_draft, t_target: their smallest; noise only adds time)
        self.draft_samples: list[float] = []
        self.samples: dict[int, list[float]] = {}
        # seconds of the draft's catch-up per position skipped while drafting was off (a probe
        # after k idle rounds feeds the draft ~k + 1 positions of every row in one forward):
        # measured on probes, first estimated by its prefill (P positions of every row)
        self.t_catch: float | None = None
        self.idle = 0
        self._probing = 0  # positions the last choice (a probe) catches up; 0: not a probe
        self._quiet = 0  # idle rounds left before the next full evaluation

    @property
    def t_draft(self) -> float | None:
        """Seconds per draft forward: the smallest of its last SAMPLES timings (None: untimed)."""
        return min(self.draft_samples) if self.draft_samples else None

    @property
    def t_target(self) -> dict[int, float]:
        """depth -> seconds of a round less its draft forwards: the smallest of its last SAMPLES."""
        return {d: min(h) for d, h in self.samples.items()}

    @property
    def accept_rate(self) -> float:
        return self.succ / self.trials

    @property
    def measured(self) -> bool:
        """Costs come from timings: no given cost, and a draft forward and a round were timed."""
        return self.fixed_cost is None and bool(self.draft_samples) and bool(self.samples)

    def round_costs(self) -> list[float]:
        """Cost of a round of each depth 0..max_depth relative to the cheapest verification.
        Timing noise (a cold graph, a pause of the OS) only adds time, and a deeper tree never
        verifies faster than a shallower one, so: T(d) of a depth is the smallest of its last
        SAMPLES timings; it is bounded by every deeper depth's (a deeper round measured cheaper
        bounds it); a depth timed fewer than TRUSTED times is priced as the depth below it (one
        slow round cannot rule a depth out: it is tried again first); and no T is below the
        unit, the smallest measured T. (Before, one slow round priced its depth and every
        deeper one out for good: on the demo pair the first depth-1 round after the graphs were
        built, 2.7x the steady cost, kept a draft accepted at 0.96 from drafting in every later
        call, 0.98x target-only.) A plain
        step (one query, the least engine work) is that unit, measured or not: a slow plain
        step (a cold graph, a pause of the OS) then cannot make drafting look cheap (it once
        kept a never-accepted self-draft drafting ~10 rounds), and before a plain step is timed
        the rounds of a draft that is never switched off still weigh what their trees cost."""
        if not self.measured:
            c = 0.2 if self.fixed_cost is None else self.fixed_cost  # given, or a guess before any timing
            return [1 + c * d for d in range(self.max_depth + 1)]
        up, t, tt = {}, math.inf, self.t_target  # up: the cheapest round measured at each depth or deeper
        for d in sorted(tt, reverse=True):
            t = up[d] = min(t, tt[d])
        unit = out_t = t  # the smallest measured T
        out, t_draft = [1.0], self.t_draft
        for d in range(1, self.max_depth + 1):
            if len(self.samples.get(d, ())) >= TRUSTED:  # else as cheap as the depth below it
                out_t = up[d]
            out.append((out_t + d * t_draft) / unit)
        return out

    def probe_wait(self, costs: list[float]) -> int:
        """Idle rounds before a probe so that probing costs at most PROBE_BUDGET of the time.
        A probe after k idle rounds costs base + k * c plain steps: base = costs[1] - costs[0]
        (a depth-1 round over a plain step) and c = t_catch / T(0) for its catch-up; its share
        (base + k c) / k <= PROBE_BUDGET needs k >= base / (PROBE_BUDGET - c). When c alone is
        >= PROBE_BUDGET no wait meets it: the probe then waits LONG_WAIT_FACTOR * max_probe_every
        rounds (256), so a long generation still finds a draft that became useful, at a cost
        near c per round."""
        base = (costs[1] - costs[0]) / costs[0]
        c = 0.0
        if self.fixed_cost is None and self.t_catch and self.samples:
            c = self.t_catch / (min(map(min, self.samples.values())) * costs[0])
        if c >= PROBE_BUDGET:
            return LONG_WAIT_FACTOR * self.max_probe_every
        return math.ceil(base / (PROBE_BUDGET - c) - 1e-9)

    def choose(self) -> int:
        if not self.adaptive or self.max_depth == 0:
            return self.max_depth
        self._probing = 0
        if self._quiet:  # an idle round between full evaluations (see below)
            self._quiet -= 1
            self.idle += 1
            return 0
        a = min(self.accept_rate, 0.999)
        costs = self.round_costs()
        best, best_val = 0, 1.0 / costs[0]
        for d in range(1, self.max_depth + 1):
            val = (1 - a ** (d + 1)) / (1 - a) / costs[d]
            if val > best_val * 1.0001:
                best, best_val = d, val
        if best and self.measured and 0 not in self.samples:
            # one plain step measures T(0): until then it is taken as the smallest measured T, an
            # upper bound, under which drafting looks cheaper than it may be (on a host where the
            # demo pair's drafting did not pay, every depth drafted and lost ~7% to target-only)
            return 0
        if best == 0:
            self.idle += 1
            # an expensive draft probes less often: its probes cost at most PROBE_BUDGET of the time
            due = max(self.wait, self.probe_wait(costs))  # (the budget may wait past max_probe_every)
            if self.idle >= due:
                self.idle, self._probing = 0, self.idle + 1
                self.wait = min(2 * self.wait, self.max_probe_every)  # back off while probes fail
                return 1
            # while idle only T(0) moves (a, the draft's timings and T(d > 0) are measured by
            # drafting rounds): the next QUIET_ROUNDS rounds skip this evaluation (a few us each,
            # ~2% of a small model's plain step), never past the probe's round
            self._quiet = min(QUIET_ROUNDS, due - self.idle - 1)
        else:
            self.idle = 0
            self.wait = self.probe_every
        return best

    def observe(self, depth: int, accepted: list[int]) -> None:
        """accepted: levels accepted by each row in a round of this depth. Every row is an
        observation of its own (a batch of B rows that all rejected is B times the evidence of
        one: a useless draft at batch 4 is dropped after one round, not two)."""
        if depth == 0 or not accepted:
            return
        self._quiet = 0  # new evidence: evaluate the next round
        s = sum(accepted)
        t = s + sum(a < depth for a in accepted)
        self.succ = self.decay * self.succ + s
        self.trials = self.decay * self.trials + t

    def observe_times(self, depth: int, draft_s: float | None, target_s: float | None,
                      round_draft_s: float | None = None) -> None:
        """Seconds per draft forward and of the round less its draft forwards (target_s: the
        target's forward and the engine's work), measured in a round of `depth` levels
        (draft_s None in a round without drafting); round_draft_s: all the draft's seconds in
        the round (a probe's are its cost)."""
        if draft_s:
            _push(self.draft_samples, draft_s)
        if target_s:
            _push(self.samples.setdefault(depth, []), target_s)
        if self._probing > 1 and round_draft_s:
            self.t_catch = _ema(self.t_catch, round_draft_s / self._probing)

    def observe_prefill(self, draft_s: float, positions: int) -> None:
        """The draft's prefill over `positions` positions of every row: the first estimate of
        t_catch."""
        if self.t_catch is None and draft_s > 0 and positions > 0:
            self.t_catch = draft_s / positions

    def state(self) -> dict:
        """What a later call with the same models may start from (`restore`)."""
        return {"succ": self.succ, "trials": self.trials, "t_draft": list(self.draft_samples),
                "t_target": {d: list(h) for d, h in self.samples.items()}, "t_catch": self.t_catch,
                "idle": self.idle, "wait": self.wait}

    def restore(self, st: dict) -> None:
        """Starts from an earlier call's state: its timings as they were (properties of the models
        and the machine), its acceptance evidence moved halfway back to the prior (succ 1 of 2
        trials), so a draft found useless is not tried at once, and within a few calls that
        never draft the choice is again the one a fresh call with these timings would make (a
        draft that fits other prompts is not ruled out for good). The probe schedule goes on
        where it stopped: idle rounds count across calls, so calls shorter than the wait still
        probe within the budget (when each call restarted the count, a draft off at the end of
        one call of ~40 rounds was never probed again by calls of that length)."""
        self.draft_samples = _timings(st["t_draft"])
        self.samples = {d: _timings(h) for d, h in st["t_target"].items()}
        self.t_catch = st["t_catch"]
        self.succ, self.trials = 0.5 * (st["succ"] + 1.0), 0.5 * (st["trials"] + 2.0)
        self.idle, self.wait = st.get("idle", 0), st.get("wait", self.probe_every)
        self._quiet = 0  # a call evaluates its first round


class PairMemory:
    """Controller states kept between decode calls, per (target model, draft model, `key`: the
    batch size, maximum depth, forward paths, device and thread count, whatever the timings
    depend on): the target is held weakly (a model that is freed takes its entries), the draft
    by a weak reference checked on lookup. Used only where the output does not depend on the
    tree (greedy spd, timings free to steer), so a call's tokens never depend on earlier calls."""

    def __init__(self):
        self._by_target: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def get(self, target, draft, key: tuple) -> dict | None:
        try:
            hit = self._by_target.get(target, {}).get((id(draft),) + key)
        except TypeError:  # a model that takes no weak reference
            return None
        if hit is None or hit[0]() is not draft:
            return None
        return hit[1]

    def put(self, target, draft, key: tuple, state: dict) -> None:
        try:
            entries = self._by_target.setdefault(target, {})
            if len(entries) >= 256:  # many draft models or shapes met by one target: stay bounded
                entries.clear()
            entries[(id(draft),) + key] = (weakref.ref(draft), state)
        except TypeError:  # a model that takes no weak reference: nothing is kept
            pass

    def clear(self, draft=None) -> None:
        """Forgets everything, or only the entries of one draft model."""
        if draft is None:
            self._by_target.clear()
            return
        for entries in list(self._by_target.values()):
            for k in [k for k, v in entries.items() if v[0]() is draft]:
                del entries[k]


MEMORY = PairMemory()


def forget(draft=None) -> None:
    """Clears what the adaptive depth remembers between calls, for every pair or only for pairs
    with this draft model (their next call starts cold)."""
    MEMORY.clear(draft)


def _push(hist: list[float], x: float) -> None:
    """Appends a timing, keeping the last SAMPLES."""
    hist.append(x)
    del hist[:-SAMPLES]


def _timings(v) -> list[float]:
    """A state's timings (a list, or one number: a state written by hand) as a list."""
    if v is None:
        return []
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)]


def _ema(old: float | None, x: float) -> float:
    """0.7 old + 0.3 x, with x first clipped to [old / 2, 2 old]: one outlier (a forward that
    loaded a graph, a pause of the OS) moves the estimate by at most 30%, not 30x."""
    if old is None:
        return x
    return 0.7 * old + 0.3 * min(max(x, 0.5 * old), 2.0 * old)
