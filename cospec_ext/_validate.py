"""Input validation for the cospec ops: clear Python exceptions, never a crash.

Type and shape checks are free; value checks (tree structure, token ranges, path
and cache ranges) read the tensors, which on CUDA costs one host sync, so the
wrappers let hot loops that build their inputs themselves skip them
(`validate=False`). The C++ CPU kernels repeat the value checks; the CUDA
kernels never index out of bounds whatever the values.
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def is_compiling() -> bool:
    return torch.compiler.is_compiling()


def tensor(name: str, t, *, dtypes=None, dim=None, device=None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        want = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"`{name}` must be {want}, got {str(t.dtype).replace('torch.', '')}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"`{name}` must have {dim} dims, got shape {tuple(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"`{name}` must be on {device} (like the other inputs), got {t.device}")


def same_shape(name: str, t: torch.Tensor, shape, what: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"`{name}` must be {what} = {list(shape)}, got {list(t.shape)}")


def tree(parents: torch.Tensor, candidates: torch.Tensor | None = None, vocab: int | None = None) -> None:
    """parents[b, 0] == -1, 0 <= parents[b, i] < i; candidates in [0, vocab)."""
    B, N = parents.shape
    if N == 0:
        raise ValueError("trees need at least the root node (N >= 1), got N = 0")
    bad_root = parents[:, 0] != -1
    if bool(bad_root.any()):
        b = int(bad_root.nonzero()[0, 0])
        raise ValueError(f"`parents`[{b}, 0] must be -1 (node 0 is the root), got {int(parents[b, 0])}")
    if N > 1:
        idx = torch.arange(1, N, device=parents.device)
        p = parents[:, 1:]
        bad = (p < 0) | (p >= idx)
        if bool(bad.any()):
            b, i = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"`parents`[{b}, {i + 1}] must be in [0, {i + 1}) (a parent comes before its child), "
                f"got {int(p[b, i])}"
            )
    if candidates is not None and vocab is not None:
        bad = (candidates < 0) | (candidates >= vocab)
        if bool(bad.any()):
            b, i = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"`candidates`[{b}, {i}] must be a token id in [0, {vocab}), got {int(candidates[b, i])}"
            )


def path(path: torch.Tensor, n_nodes: int) -> None:
    """Valid entries form a strictly increasing prefix of node ids < n_nodes, then -1."""
    valid = path >= 0
    if bool((path < -1).any()):
        b, j = (int(v) for v in (path < -1).nonzero()[0])
        raise ValueError(f"`path`[{b}, {j}] must be a node id or -1, got {int(path[b, j])}")
    if bool((path >= n_nodes).any()):
        b, j = (int(v) for v in (path >= n_nodes).nonzero()[0])
        raise ValueError(f"`path`[{b}, {j}] = {int(path[b, j])} is past the tree's N = {n_nodes} nodes")
    if path.shape[1] > 1:
        gap = valid[:, 1:] & ~valid[:, :-1]
        if bool(gap.any()):
            b, j = (int(v) for v in gap.nonzero()[0])
            raise ValueError(f"`path`[{b}] has a valid entry at {j + 1} after -1 padding")
        both = valid[:, 1:] & valid[:, :-1]
        dec = both & (path[:, 1:] <= path[:, :-1])
        if bool(dec.any()):
            b, j = (int(v) for v in dec.nonzero()[0])
            raise ValueError(
                f"`path`[{b}] must be strictly increasing (a root-to-node path), got "
                f"{int(path[b, j])} then {int(path[b, j + 1])}"
            )
