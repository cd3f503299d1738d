"""Random-tree builders and the device/dtype lists shared by the op tests.

Trees follow the convention of cospec_ext.ops: parents[b, 0] = -1, parents[b, i] < i.
"""

from __future__ import annotations

import torch

import cospec_ext  # noqa: F401  (loads the ops)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and cospec_ext.BUILT_WITH_CUDA else [])


def make_parents(kind: str, B: int, N: int, gen: torch.Generator) -> torch.Tensor:
    """int64 [B, N] trees of a given shape: chain, star, random, deep, wide."""
    rows = []
    for _ in range(B):
        par = [-1]
        for i in range(1, N):
            if kind == "chain":
                p = i - 1
            elif kind == "star":
                p = 0
            elif kind == "deep":  # mostly chains with an occasional branch
                p = i - 1 if torch.rand((), generator=gen) < 0.8 else int(torch.randint(0, i, (), generator=gen))
            elif kind == "wide":  # a few levels, many siblings
                p = int(torch.randint(0, min(i, 4), (), generator=gen))
            else:  # random
                p = int(torch.randint(0, i, (), generator=gen))
            par.append(p)
        rows.append(par)
    return torch.tensor(rows, dtype=torch.int64)


def make_tree_inputs(kind, B, N, V, dtype, gen, p_match=0.7, scale=3.0):
    """Random logits [B, N, V] and a tree whose candidates often equal the parent's argmax.

    Returns (candidates, parents, logits) on the CPU; p_match = 1 makes every candidate
    the parent's argmax (all-accept for chains), 0 makes mismatches likely.
    """
    parents = make_parents(kind, B, N, gen)
    logits = (torch.randn(B, N, V, generator=gen) * scale).to(dtype)
    amax = logits.float().argmax(-1)  # [B, N]
    candidates = torch.randint(0, V, (B, N), generator=gen)
    par_idx = parents.clamp(min=0)
    parent_amax = torch.gather(amax, 1, par_idx)
    match = torch.rand(B, N, generator=gen) < p_match
    candidates = torch.where(match, parent_amax, candidates)
    candidates[:, 0] = torch.randint(0, V, (B,), generator=gen)
    return candidates, parents, logits


def ancestors(parents: torch.Tensor) -> torch.Tensor:
    """parents int64 [B, N] (tree convention) -> bool [B, N, N]: anc[b, i, j] = j is i or an ancestor of i."""
    B, N = parents.shape
    anc = torch.zeros(B, N, N, dtype=torch.bool)
    for i in range(N):
        anc[:, i, i] = True
        if i:
            anc[:, i] |= anc[torch.arange(B), parents[:, i]]
    return anc
