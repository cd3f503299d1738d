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


def _host(flags: list[torch.Tensor]) -> list[bool]:
    """The validation's one device -> host transfer: every check's flag at once."""
    return torch.stack(flags).tolist()


def run(checks) -> None:
    """checks: [(bad, explain)]: `bad` a bool tensor (any shape) marking offending entries,
    `explain(bad)` raises the ValueError that names the first one. All flags cross to the
    host in one transfer (one sync on CUDA); only a failing check reads more."""
    checks = [(bad, explain) for bad, explain in checks if bad.numel()]
    if not checks:
        return
    for flag, (bad, explain) in zip(_host([bad.any() for bad, _ in checks]), checks):
        if flag:
            explain(bad)


def _first(bad: torch.Tensor) -> list[int]:
    return [int(v) for v in bad.nonzero()[0]]


def tree_checks(parents: torch.Tensor, candidates: torch.Tensor | None = None, vocab: int | None = None) -> list:
    """The checks of `run` for parents[b, 0] == -1, 0 <= parents[b, i] < i and candidates in
    [0, vocab)."""
    B, N = parents.shape
    if N == 0:
        raise ValueError("trees need at least the root node (N >= 1), got N = 0")

    def root(bad):
        b = _first(bad)[0]
        raise ValueError(f"`parents`[{b}, 0] must be -1 (node 0 is the root), got {int(parents[b, 0])}")

    def order(bad):
        b, i = _first(bad)
        raise ValueError(f"`parents`[{b}, {i + 1}] must be in [0, {i + 1}) (a parent comes before its child), "
                         f"got {int(parents[b, i + 1])}")

    def token(bad):
        b, i = _first(bad)
        raise ValueError(f"`candidates`[{b}, {i}] must be a token id in [0, {vocab}), got {int(candidates[b, i])}")

    out = [(parents[:, 0] != -1, root)]
    if N > 1:
        p = parents[:, 1:]
        out.append(((p < 0) | (p >= torch.arange(1, N, device=parents.device)), order))
    if candidates is not None and vocab is not None:
        out.append(((candidates < 0) | (candidates >= vocab), token))
    return out


def tree(parents: torch.Tensor, candidates: torch.Tensor | None = None, vocab: int | None = None) -> None:
    """parents[b, 0] == -1, 0 <= parents[b, i] < i; candidates in [0, vocab) (one host sync)."""
    run(tree_checks(parents, candidates, vocab))


def path_checks(path: torch.Tensor, n_nodes: int) -> list:
    """The checks of `run` for a path: valid entries form a strictly increasing prefix of
    node ids < n_nodes, then -1."""
    valid = path >= 0

    def below(bad):
        b, j = _first(bad)
        raise ValueError(f"`path`[{b}, {j}] must be a node id or -1, got {int(path[b, j])}")

    def past(bad):
        b, j = _first(bad)
        raise ValueError(f"`path`[{b}, {j}] = {int(path[b, j])} is past the tree's N = {n_nodes} nodes")

    def gap(bad):
        b, j = _first(bad)
        raise ValueError(f"`path`[{b}] has a valid entry at {j + 1} after -1 padding")

    def order(bad):
        b, j = _first(bad)
        raise ValueError(f"`path`[{b}] must be strictly increasing (a root-to-node path), got "
                         f"{int(path[b, j])} then {int(path[b, j + 1])}")

    out = [(path < -1, below), (path >= n_nodes, past)]
    if path.shape[1] > 1:
        both = valid[:, 1:] & valid[:, :-1]
        out += [(valid[:, 1:] & ~valid[:, :-1], gap), (both & (path[:, 1:] <= path[:, :-1]), order)]
    return out


def path(path: torch.Tensor, n_nodes: int) -> None:
    """Valid entries form a strictly increasing prefix of node ids < n_nodes, then -1 (one host sync)."""
    run(path_checks(path, n_nodes))


