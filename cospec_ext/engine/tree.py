"""Draft-tree shapes: `TreeSpec`, its string form, and the static tree tables.

String forms accepted by `decode(tree=...)`:
    "chain:K"                 a chain of K drafted tokens (the draft's greedy continuation)
    "tree:D,K" / "tree:D,K,M" a dynamic tree (EAGLE-2 style): expand the K best frontier
                              nodes per level by path probability for D levels, keep the
                              M (default D*K) best nodes
    "static:-1,0,0,1,..."     a fixed tree given by its parents list (node 0 the root, BFS
                              order); a node's candidate is the draft's r-th choice at its
                              parent, r its rank among its siblings
Options may follow after ';': "chain:6;fixed" (no adaptive depth), "tree:4,2;conf=0.05"
(stop deepening when every row's best path probability is below 0.05), "chain:4;cost=0.2"
(draft/target forward-time ratio for the adaptive depth instead of measuring it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TreeSpec:
    """How the draft proposes tokens each round.

    depth: levels below the root (draft forwards per round, counting the catch-up one).
    topk: dynamic trees: children per expanded node and nodes kept per level.
    budget: dynamic trees: non-root nodes verified (default depth * topk).
    static_parents: a fixed tree (chains are static trees); None for a dynamic tree.
    adaptive: choose each round's depth in [0, depth] from the measured acceptance rate and
        draft/target cost (depth 0 is a plain target step: a useless draft costs ~nothing).
    min_confidence: stop deepening when every row's best path probability is below it.
    draft_cost: draft/target forward-time ratio for the adaptive choice; None: measured for
        greedy spd (whose output does not depend on the tree), the ratio of parameter counts
        when the output can depend on the tree (sampling, cospec), so a seed repeats.
    """

    depth: int = 4
    topk: int = 1
    budget: int | None = None
    static_parents: tuple[int, ...] | None = None
    adaptive: bool = True
    min_confidence: float = 0.0
    draft_cost: float | None = None

    def __post_init__(self):
        if self.static_parents is not None:
            _static_tables(self.static_parents)  # validates
            object.__setattr__(self, "depth", max(_depths(self.static_parents)))
        if not (isinstance(self.depth, int) and 0 <= self.depth <= 64):
            raise ValueError(f"tree depth must be an int in [0, 64], got {self.depth!r}")
        if not (isinstance(self.topk, int) and 1 <= self.topk <= 64):
            raise ValueError(f"tree topk must be an int in [1, 64], got {self.topk!r}")
        if self.budget is not None and not (isinstance(self.budget, int) and 1 <= self.budget <= self.depth * self.topk):
            raise ValueError(f"tree budget must be an int in [1, depth * topk = {self.depth * self.topk}], got {self.budget!r}")
        if not (0.0 <= self.min_confidence < 1.0):
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence}")
        if self.draft_cost is not None and not (self.draft_cost >= 0 and math.isfinite(self.draft_cost)):
            raise ValueError(f"draft_cost must be finite and >= 0, got {self.draft_cost}")

    @classmethod
    def chain(cls, k: int, **kw) -> "TreeSpec":
        if not (isinstance(k, int) and 0 <= k <= 64):
            raise ValueError(f"chain length must be an int in [0, 64], got {k!r}")
        return cls(static_parents=tuple(range(-1, k)), **kw) if k > 0 else cls(depth=0, **kw)

    @property
    def is_static(self) -> bool:
        return self.static_parents is not None or self.depth == 0

    @property
    def max_nodes(self) -> int:
        """Nodes the target verifies per round at most (root included)."""
        if self.static_parents is not None:
            return len(self.static_parents)
        return 1 + (self.budget or self.depth * self.topk)

    @property
    def max_expanded(self) -> int:
        """Nodes the draft may write to its cache per round (root included)."""
        if self.static_parents is not None:
            return len(self.static_parents)
        return 1 + self.depth * self.topk


def parse_tree(tree) -> TreeSpec:
    """A TreeSpec from a TreeSpec or its string form (see the module docstring)."""
    if isinstance(tree, TreeSpec):
        return tree
    if not isinstance(tree, str):
        raise TypeError(f"`tree` must be a TreeSpec or a string like 'chain:4', got {type(tree).__name__}")
    head, *opts = [p.strip() for p in tree.split(";")]
    kw: dict = {}
    try:
        for o in opts:
            if o == "fixed":
                kw["adaptive"] = False
            elif o.startswith("conf="):
                kw["min_confidence"] = float(o[5:])
            elif o.startswith("cost="):
                kw["draft_cost"] = float(o[5:])
            else:
                raise ValueError(f"unknown option {o!r}")
        kind, _, arg = head.partition(":")
        if kind == "chain":
            return TreeSpec.chain(int(arg), **kw)
        if kind == "tree":
            nums = [int(x) for x in arg.split(",")]
            if len(nums) not in (2, 3):
                raise ValueError("expected tree:D,K or tree:D,K,M")
            return TreeSpec(depth=nums[0], topk=nums[1], budget=nums[2] if len(nums) == 3 else None, **kw)
        if kind == "static":
            return TreeSpec(static_parents=tuple(int(x) for x in arg.split(",")), **kw)
        raise ValueError(f"unknown tree kind {kind!r}")
    except ValueError as e:
        raise ValueError(f"malformed tree spec {tree!r}: {e} (expected 'chain:K', 'tree:D,K[,M]' or "
                         f"'static:-1,0,...', options ';fixed', ';conf=P', ';cost=C')") from None


def _depths(parents: tuple[int, ...]) -> list[int]:
    depth = [0] * len(parents)
    for i in range(1, len(parents)):
        depth[i] = depth[parents[i]] + 1
    return depth


def _static_tables(parents: tuple[int, ...]):
    """Validates a static tree and returns (depth, sibling rank) lists."""
    if len(parents) < 1 or parents[0] != -1:
        raise ValueError(f"a static tree starts with the root's parent -1, got {list(parents)[:8]}")
    for i, p in enumerate(parents[1:], 1):
        if not (0 <= p < i):
            raise ValueError(f"static tree: parents[{i}] = {p} must be in [0, {i})")
    depth = _depths(parents)
    if any(depth[i] < depth[i - 1] for i in range(1, len(parents))):
        raise ValueError("static tree nodes must be in breadth-first order (non-decreasing depth)")
    rank, seen = [0] * len(parents), {}
    for i, p in enumerate(parents[1:], 1):
        rank[i] = seen.get(p, 0)
        seen[p] = rank[i] + 1
    return depth, rank


_TABLES: dict = {}  # (parents, device) -> StaticTables (read-only, shared by every call)


def static_tables(parents: tuple[int, ...], device: torch.device) -> "StaticTables":
    """The StaticTables of a tree on a device, built once per process (~60 us each, per call before)."""
    key = (tuple(parents), torch.device(device))
    hit = _TABLES.get(key)
    if hit is None:
        if len(_TABLES) >= 64:  # trees seen by a long-running process: keep the cache bounded
            _TABLES.clear()
        hit = _TABLES[key] = StaticTables(parents, device)
    return hit


class StaticTables:
    """Device tables of a static tree: per level the node range and each node's parent,
    sibling rank and depth; the ancestor-or-self matrix. Read-only once built."""

    def __init__(self, parents: tuple[int, ...], device: torch.device):
        depth, rank = _static_tables(parents)
        n = len(parents)
        self.n = n
        self.parents = torch.tensor(parents, dtype=torch.int64, device=device)  # [N]
        self.rank = torch.tensor(rank, dtype=torch.int64, device=device)  # [N]
        self.depth = torch.tensor(depth, dtype=torch.int64, device=device)  # [N]
        self.levels = []  # (lo, hi) node range of each depth
        for d in range(max(depth) + 1):
            idx = [i for i in range(n) if depth[i] == d]
            self.levels.append((idx[0], idx[-1] + 1))
        self.kmax = max(rank) + 1 if n > 1 else 1
        anc = torch.zeros(n, n, dtype=torch.bool)
        for i in range(n):
            anc[i, i] = True
            if i:
                anc[i] |= anc[parents[i]]
        self.anc = anc.to(device)  # [N, N]: anc[i, j] = j is i or an ancestor of i
        # per level d >= 1: each node's parent as an index into level d - 1's nodes
        self.local_parents = [None] + [self.parents[lo:hi] - self.levels[d - 1][0]
                                       for d, (lo, hi) in enumerate(self.levels) if d]
        # per level d: its queries' ancestor rows over the nodes up to it, bool [1, n_d, hi_d]
        self.level_anc = [self.anc[None, lo:hi, :hi] for lo, hi in self.levels]
        self._prefix: dict[int, tuple] = {}

    def prefix(self, n: int) -> tuple:
        """(parents, depth, anc, rank) of the first n nodes as [1, n] / [1, n, n] views, made once per n."""
        hit = self._prefix.get(n)
        if hit is None:
            hit = self._prefix[n] = (self.parents[None, :n], self.depth[None, :n], self.anc[None, :n, :n],
                                     self.rank[None, :n])
        return hit
