"""Typed, validated wrappers of the `torch.ops.cospec` kernels, with their fake
(meta) implementations for torch.compile registered beside each.

Tree convention (every op, the engine and the tests): per sequence b there are N
nodes; node 0 is the root (the last accepted token, whose target logits predict
the first new token); `candidates[b, i]` is the token at node i; `parents[b, 0]
= -1` and `parents[b, i] < i`; children of a node, in increasing index, are in
the draft's preference order; `logits[b, i]` is the next-token distribution after
node i. A chain of k drafted tokens is `parents = [-1, 0, 1, ..., k-1]`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from . import _validate as check

_ops = torch.ops.cospec
_LONG = (torch.int64,)
# Temperatures below this are greedy, everywhere (verify_tree's kernels: kMinTemperature in
# csrc/verify_tree/verify_tree.h; decode): 1 / T then never overflows float32.
MIN_TEMPERATURE = 1e-5


class VerifyOutput(NamedTuple):
    path: torch.Tensor  # int64 [B, N]: accepted node ids, root first, -1 padded
    accept_len: torch.Tensor  # int64 [B]: accepted non-root nodes
    next_token: torch.Tensor  # int64 [B]: bonus / correction token after the last accepted node
    consulted: torch.Tensor  # bool [B, N]: nodes whose accept_draft was looked at
    arbiter_accepted: torch.Tensor  # bool [B, N]: nodes accepted because of the arbiter


class LogitStats(NamedTuple):
    argmax: torch.Tensor  # int64 [B, N]
    max_logit: torch.Tensor  # float32 [B, N]
    logsumexp: torch.Tensor  # float32 [B, N]
    entropy: torch.Tensor  # float32 [B, N], nats
    margin: torch.Tensor  # float32 [B, N]: top1 - top2 logit (+inf when V == 1)
    cand_logprob: torch.Tensor  # float32 [B, N]: log p_parent(candidate); 0 at the root


# The kernels of verify_tree and logit_stats without the wrappers' Python checks, for callers
# that build their own inputs every round (the engine): the kernels' C++ checks of types and
# shapes still run (RuntimeError), the value checks and the wrappers' few us do not.
def verify_tree_unchecked(candidates, parents, target_logits=None, target_argmax=None, accept_draft=None,
                          temperature: float = 0.0, uniforms=None) -> VerifyOutput:
    return VerifyOutput(*_ops.verify_tree(candidates, parents, target_logits, target_argmax, accept_draft,
                                          temperature, uniforms))


def logit_stats_unchecked(logits, candidates=None, parents=None) -> LogitStats:
    return LogitStats(*_ops.logit_stats(logits, candidates, parents))


def verify_tree(
    candidates: torch.Tensor,
    parents: torch.Tensor,
    target_logits: Optional[torch.Tensor] = None,
    accept_draft: Optional[torch.Tensor] = None,
    temperature: float = 0.0,
    uniforms: Optional[torch.Tensor] = None,
    *,
    target_argmax: Optional[torch.Tensor] = None,
    validate: bool = True,
) -> VerifyOutput:
    """Walks each draft tree from the root and returns the accepted path.

    Greedy (temperature < MIN_TEMPERATURE = 1e-5, 0 included): at node c,
    t = argmax(target_logits[b, c]) (ties: lowest id; or `target_argmax[b, c]` when given,
    e.g. from logit_stats, so the logits are not read again); move to the first child with candidate t; otherwise, when
    `accept_draft` is given, consult the children in order (marking `consulted`) and move
    to the first with accept_draft true (marking `arbiter_accepted`); otherwise stop and
    emit next_token = t. With accept_draft=None this is standard, lossless greedy tree
    verification.

    Sampling (temperature >= 1e-5), lossless for a deterministic drafter: with
    p = softmax(target_logits[b, c] / T) and q = p, try the children of c in order and
    accept child i (token t) when `uniforms[b, i] * sum(q) < q[t]`, else set q[t] = 0;
    when all are rejected the arbiter may move to a child as in greedy; otherwise
    next_token is drawn from q / sum(q) by inverse CDF with `uniforms[b, 0]`. When no
    token has mass (NaN logits, logits / T overflowing float32, every token a rejected
    child's) next_token is the lowest index of the largest non-NaN logit among the tokens
    not rejected, else among all, else 0: next_token is always in [0, V).

    Args:
        candidates: int64 [B, N], token at each node (candidates[b, 0] = root token).
        parents: int64 [B, N], the tree (see the module docstring).
        target_logits: float32/float16/bfloat16 [B, N, V]; rows may be strided.
        accept_draft: bool [B, N], the arbiter's decision per node, or None.
        temperature: 0 (or anything below 1e-5) for greedy, else sampling at T.
        uniforms: float32 [B, N] in [0, 1), required for sampling.
        target_argmax: int64 [B, N], greedy only: precomputed argmax per node.
        validate: check tree structure, token and uniform ranges (one host sync on CUDA).
    Returns:
        VerifyOutput(path [B, N], accept_len [B], next_token [B], consulted [B, N],
        arbiter_accepted [B, N]).
    """
    check.tensor("candidates", candidates, dtypes=_LONG, dim=2)
    dev = candidates.device
    check.tensor("parents", parents, dtypes=_LONG, dim=2, device=dev)
    B, N = candidates.shape
    check.same_shape("parents", parents, (B, N), "[B, N] like `candidates`")
    temperature = float(temperature)
    if not (temperature >= 0.0 and temperature != float("inf")):
        raise ValueError(f"`temperature` must be finite and >= 0, got {temperature}")
    if temperature < MIN_TEMPERATURE:  # greedy (the kernels apply the same rule)
        temperature = 0.0
    vocab = None
    if target_logits is not None:
        check.tensor("target_logits", target_logits, dtypes=check.FLOAT_DTYPES, dim=3, device=dev)
        if tuple(target_logits.shape[:2]) != (B, N) or target_logits.shape[2] == 0:
            raise ValueError(f"`target_logits` must be [B, N, V] = [{B}, {N}, V], got {list(target_logits.shape)}")
        vocab = target_logits.shape[2]
    if temperature > 0.0:
        if target_logits is None:
            raise ValueError("sampling (temperature > 0) needs `target_logits`")
        if uniforms is None:
            raise ValueError("sampling (temperature > 0) needs `uniforms` float32 [B, N] in [0, 1)")
        check.tensor("uniforms", uniforms, dtypes=(torch.float32,), dim=2, device=dev)
        check.same_shape("uniforms", uniforms, (B, N), "[B, N]")
        target_argmax = None
    elif target_logits is None and target_argmax is None:
        raise ValueError("give `target_logits` or `target_argmax`")
    if target_argmax is not None:
        check.tensor("target_argmax", target_argmax, dtypes=_LONG, dim=2, device=dev)
        check.same_shape("target_argmax", target_argmax, (B, N), "[B, N]")
    if accept_draft is not None:
        check.tensor("accept_draft", accept_draft, dtypes=(torch.bool,), dim=2, device=dev)
        check.same_shape("accept_draft", accept_draft, (B, N), "[B, N]")
    if validate and not check.is_compiling():
        checks = check.tree_checks(parents, candidates, vocab)
        if uniforms is not None and temperature > 0.0:
            checks.append(((uniforms < 0) | (uniforms >= 1), _uniforms_out_of_range))
        check.run(checks)  # one host sync for all of them
    return VerifyOutput(
        *_ops.verify_tree(candidates, parents, target_logits, target_argmax, accept_draft, temperature, uniforms)
    )


def _uniforms_out_of_range(bad):
    b, i = (int(v) for v in bad.nonzero()[0])
    raise ValueError(f"`uniforms` must lie in [0, 1), got `uniforms`[{b}, {i}] outside it")


@torch.library.register_fake("cospec::verify_tree")
def _verify_tree_fake(candidates, parents, target_logits=None, target_argmax=None, accept_draft=None,
                      temperature=0.0, uniforms=None):
    torch._check(candidates.dim() == 2 and candidates.dtype == torch.int64, lambda: "candidates: int64 [B, N]")
    torch._check(parents.shape == candidates.shape, lambda: "parents must be [B, N] like candidates")
    torch._check(target_logits is not None or target_argmax is not None, lambda: "need logits or argmax")
    B, N = candidates.shape
    long = candidates.new_empty((B, N))
    return (
        long,
        candidates.new_empty((B,)),
        candidates.new_empty((B,)),
        candidates.new_empty((B, N), dtype=torch.bool),
        candidates.new_empty((B, N), dtype=torch.bool),
    )


def logit_stats(
    logits: torch.Tensor,
    candidates: Optional[torch.Tensor] = None,
    parents: Optional[torch.Tensor] = None,
    *,
    validate: bool = True,
) -> LogitStats:
    """Per-node softmax statistics in one pass over logits [B, N, V].

    With p = softmax(x) for a row x (float32 accumulation):
        argmax      = lowest i with x_i = max x            int64 [B, N]
        max_logit   = max x                                 float32 [B, N]
        logsumexp   = log sum_j exp(x_j)                    float32 [B, N]
        entropy     = -sum_j p_j log p_j                    float32 [B, N]
        margin      = top1(x) - top2(x)                     float32 [B, N]
        cand_logprob[b, i] = x[b, parents[b,i], candidates[b,i]] - logsumexp[b, parents[b,i]]
                      for i >= 1; 0 at the root and everywhere when no tree is given.
    Special rows (the same in the CPU and CUDA kernels and reference.logit_stats_ref):
        a NaN:        argmax = the first NaN (as torch.argmax); the four floats NaN
        else a +inf:  argmax = the first +inf; max_logit = logsumexp = +inf; entropy NaN;
                      margin +inf with one +inf (or V == 1), NaN with several
        all -inf:     argmax 0; max_logit = logsumexp = -inf; entropy 0; margin NaN
                      (+inf when V == 1)
    Finite logits of any size give finite statistics (up to logsumexp overflowing float).
    Args:
        logits: float32/float16/bfloat16 [B, N, V]; rows may be strided.
        candidates, parents: int64 [B, N] (given together), the tree the logits belong to.
    """
    check.tensor("logits", logits, dtypes=check.FLOAT_DTYPES, dim=3)
    B, N, V = logits.shape
    if V == 0:
        raise ValueError(f"`logits` must have a non-empty vocabulary dim, got {list(logits.shape)}")
    if (candidates is None) != (parents is None):
        raise ValueError("`candidates` and `parents` must be given together")
    if candidates is not None:
        check.tensor("candidates", candidates, dtypes=_LONG, dim=2, device=logits.device)
        check.tensor("parents", parents, dtypes=_LONG, dim=2, device=logits.device)
        check.same_shape("candidates", candidates, (B, N), "[B, N] like `logits`")
        check.same_shape("parents", parents, (B, N), "[B, N] like `logits`")
        if validate and not check.is_compiling():
            check.tree(parents, candidates, V)
    return LogitStats(*_ops.logit_stats(logits, candidates, parents))


@torch.library.register_fake("cospec::logit_stats")
def _logit_stats_fake(logits, candidates=None, parents=None):
    torch._check(logits.dim() == 3, lambda: "logits must be [B, N, V]")
    B, N, _ = logits.shape
    f = logits.new_empty((B, N), dtype=torch.float32)
    return (logits.new_empty((B, N), dtype=torch.int64), f, f.clone(), f.clone(), f.clone(), f.clone())


def arbiter_score(
    features: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: Optional[torch.Tensor] = None,
    b2: Optional[torch.Tensor] = None,
    *,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    activation: str = "gelu",
) -> torch.Tensor:
    """The arbiter's MLP on feature rows, fused: one logit per row.

        h1 = act(features @ w1.T + b1)       features [M, F] (f32/f16/bf16), w1 [H1, F]
        h2 = act(h1 @ w2.T + b2)             optional, w2 [H2, H1]
        logit = h_last @ w_out + b_out       w_out [H_last], b_out [1]
    act: "gelu" (exact erf form) or "relu". Weights float32 contiguous, widths <= 1024.
    Returns float32 [M].
    """
    check.tensor("features", features, dtypes=check.FLOAT_DTYPES, dim=2)
    dev = features.device
    for name, t in (("w1", w1), ("b1", b1), ("w_out", w_out), ("b_out", b_out)):
        check.tensor(name, t, dtypes=(torch.float32,), device=dev)
    if (w2 is None) != (b2 is None):
        raise ValueError("`w2` and `b2` must be given together")
    if w2 is not None:
        check.tensor("w2", w2, dtypes=(torch.float32,), dim=2, device=dev)
        check.tensor("b2", b2, dtypes=(torch.float32,), dim=1, device=dev)
    if activation not in ("gelu", "relu"):
        raise ValueError(f"`activation` must be 'gelu' or 'relu', got {activation!r}")
    F = features.shape[1]
    if w1.dim() != 2 or w1.shape[1] != F:
        raise ValueError(f"`w1` must be [H1, F={F}], got {list(w1.shape)}")
    H1 = w1.shape[0]
    if not 1 <= H1 <= 1024 or list(b1.shape) != [H1]:
        raise ValueError(f"`w1` [H1, F] with 1 <= H1 <= 1024 and `b1` [H1]; got {list(w1.shape)}, {list(b1.shape)}")
    last = H1
    if w2 is not None:
        if w2.shape[1] != H1 or not 1 <= w2.shape[0] <= 1024 or list(b2.shape) != [w2.shape[0]]:
            raise ValueError(f"`w2` must be [H2, H1={H1}] (H2 <= 1024) with `b2` [H2]; got {list(w2.shape)}, {list(b2.shape)}")
        last = w2.shape[0]
    if list(w_out.shape) != [last]:
        raise ValueError(f"`w_out` must be [{last}], got {list(w_out.shape)}")
    if b_out.numel() != 1:
        raise ValueError(f"`b_out` must hold one value, got shape {list(b_out.shape)}")
    w1, b1, w_out, b_out = (t.contiguous() for t in (w1, b1, w_out, b_out.reshape(1)))
    if w2 is not None:
        w2, b2 = w2.contiguous(), b2.contiguous()
    return _ops.arbiter_score(features, w1, b1, w2, b2, w_out, b_out, activation)


@torch.library.register_fake("cospec::arbiter_score")
def _arbiter_score_fake(features, w1, b1, w2, b2, w_out, b_out, activation="gelu"):
    torch._check(features.dim() == 2, lambda: "features must be [M, F]")
    torch._check(w1.shape[1] == features.shape[1], lambda: "w1 must be [H1, F]")
    return features.new_empty((features.shape[0],), dtype=torch.float32)


NODE_FEATURES = 20  # columns of node_features (FEATURE_NAMES in cospec_ext/engine/features.py)


def node_features(
    target_logits: torch.Tensor,
    candidates: torch.Tensor,
    parents: torch.Tensor,
    depth: torch.Tensor,
    rank: torch.Tensor,
    n_generated: torch.Tensor,
    draft_parent_logits: torch.Tensor,
    levels: int,
    *,
    validate: bool = True,
) -> torch.Tensor:
    """The arbiter's features of every tree node in one fused pass, float32 [B, N, 20].

    For node i >= 1 of sequence b, with p = parents[b, i], c = candidates[b, i],
    x = target_logits[b] (x_i: the target after node i), d = draft_parent_logits[b, i]
    (the draft's logits after p), lse the logsumexp of a row, H its softmax entropy,
    margin its top-1 minus top-2 logit (clamped at 1e4):
        0 t_logp_cand  x_p[c] - lse(x_p)        5 d_logp_cand  d[c] - lse(d)
        1 t_logp_top   max x_p - lse(x_p)       6 d_logp_top   max d - lse(d)
        2 t_entropy    H(x_p)                   7 d_entropy    H(d)
        3 t_margin     margin(x_p)              8 d_margin     margin(d)
        4 t_rank       log(1 + #{v: x_p[v] > x_p[c]})
        9 kl_dt        KL(softmax d || softmax x_p), clamped at 0
       10 depth        depth[b, i]             11 sibling_rank rank[b, i]
       12 position     n_generated[b] + depth[b, i]
       13 tc_logp_top  max x_i - lse(x_i)      14 tc_entropy   H(x_i)     15 tc_margin margin(x_i)
    and along i's first-child path (first child = the smallest child index; at most
    `levels` nodes below i), with t_j = argmax of the target at node j:
       16 la_len       nodes on the path
       17 la_accept    how many in a row from i have candidate == t at their parent
       18 la_logp_next t_logp_cand of the first child (0 if none)
       19 la_logp_mean mean t_logp_cand over the path (0 if none)
    Row 0 (the root) is zero. Float32 accumulation; the same online-softmax row statistics
    as logit_stats.
    Args:
        target_logits: float32/float16/bfloat16 [B, N, V]; rows may be strided.
        candidates, parents: int64 [B, N]; parents may be [1, N] (one tree for all rows).
        depth, rank: int64 [B or 1, N]; n_generated: int64 [B].
        draft_parent_logits: [B, N, V], cast to target_logits' dtype (float32 when they differ).
        levels: int >= 0, the tree's depth.
    """
    check.tensor("target_logits", target_logits, dtypes=check.FLOAT_DTYPES, dim=3)
    B, N, V = target_logits.shape
    dev = target_logits.device
    check.tensor("draft_parent_logits", draft_parent_logits, dtypes=check.FLOAT_DTYPES, dim=3, device=dev)
    check.same_shape("draft_parent_logits", draft_parent_logits, (B, N, V), "[B, N, V] like `target_logits`")
    check.tensor("candidates", candidates, dtypes=_LONG, dim=2, device=dev)
    check.same_shape("candidates", candidates, (B, N), "[B, N] like `target_logits`")
    for name, t in (("parents", parents), ("depth", depth), ("rank", rank)):  # [1, N]: one tree, not copied
        check.tensor(name, t, dtypes=_LONG, dim=2, device=dev)
        if t.shape[0] not in (1, B) or t.shape[1] != N:
            raise ValueError(f"`{name}` must be [B, N] or [1, N] with B = {B}, N = {N}, got {list(t.shape)}")
    check.tensor("n_generated", n_generated, dtypes=_LONG, dim=1, device=dev)
    check.same_shape("n_generated", n_generated, (B,), "[B]")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
        raise ValueError(f"`levels` must be an int >= 0, got {levels!r}")
    if N == 0:
        raise ValueError("trees need at least the root node (N >= 1), got N = 0")
    if validate and not check.is_compiling():
        check.tree(parents, candidates, V)
    if draft_parent_logits.dtype != target_logits.dtype:
        target_logits, draft_parent_logits = target_logits.float(), draft_parent_logits.float()
    return _ops.node_features(target_logits, candidates, parents, depth, rank, n_generated, draft_parent_logits,
                              levels)


@torch.library.register_fake("cospec::node_features")
def _node_features_fake(target_logits, candidates, parents, depth, rank, n_generated, draft_parent_logits, levels):
    torch._check(target_logits.dim() == 3, lambda: "target_logits must be [B, N, V]")
    torch._check(draft_parent_logits.shape == target_logits.shape, lambda: "draft_parent_logits must be [B, N, V]")
    B, N, _ = target_logits.shape
    return target_logits.new_empty((B, N, NODE_FEATURES), dtype=torch.float32)


def kv_rollback(
    cache: torch.Tensor, base_len: torch.Tensor, path: torch.Tensor, *, validate: bool = True
) -> torch.Tensor:
    """Compacts each sequence's accepted tree path to the front of its KV slots, in place.

    cache [..., B, H, S, D] (any leading dims, e.g. [2, layers, B, H, S, D], any dtype,
    rows of D contiguous): node i of sequence b was written at slot base_len[b] + i. For
    every valid entry j of path[b] (a strictly increasing prefix of node ids, then -1):
        cache[..., b, :, base_len[b] + j, :] <- cache[..., b, :, base_len[b] + path[b, j], :]
    (values from before the call). Returns new_len = base_len + #valid entries, int64 [B].
    Args:
        base_len: int64 [B], with base_len[b] + N <= S.
        path: int64 [B, N], e.g. VerifyOutput.path.
    """
    check.tensor("cache", cache)
    if cache.dim() < 4:
        raise ValueError(f"`cache` must be [..., B, H, S, D] (>= 4 dims), got shape {list(cache.shape)}")
    if cache.stride(-1) != 1 and cache.shape[-1] != 1:
        raise ValueError(f"`cache` rows (the last dim, D) must be contiguous, got strides {cache.stride()}")
    if not check.is_compiling() and torch._debug_has_internal_overlap(cache) == 1:  # 1: MemOverlap::Yes
        # (under torch.compile the kernel's own check raises the same)
        raise ValueError(f"`cache` has internal overlap (some elements share memory, e.g. an expanded dim with "
                         f"stride 0; strides {cache.stride()}): compact it into its own memory first")
    dev = cache.device
    check.tensor("base_len", base_len, dtypes=_LONG, dim=1, device=dev)
    check.tensor("path", path, dtypes=_LONG, dim=2, device=dev)
    B, S = cache.shape[-4], cache.shape[-2]
    if base_len.shape[0] != B or path.shape[0] != B:
        raise ValueError(
            f"batch sizes differ: `cache` has B = {B}, `base_len` {base_len.shape[0]}, `path` {path.shape[0]}"
        )
    N = path.shape[1]
    if validate and not check.is_compiling():
        def base_out_of_range(bad):
            b = int(bad.nonzero()[0, 0])
            raise ValueError(f"`base_len`[{b}] + N = {int(base_len[b])} + {N} must be within the cache's S = {S} slots")

        check.run(check.path_checks(path, N) + [((base_len < 0) | (base_len + N > S), base_out_of_range)])
    return _ops.kv_rollback(cache, base_len, path)


@torch.library.register_fake("cospec::kv_rollback")
def _kv_rollback_fake(cache, base_len, path):
    torch._check(cache.dim() >= 4, lambda: "cache must be [..., B, H, S, D]")
    torch._check(base_len.shape[0] == cache.shape[-4], lambda: "base_len must be [B]")
    return base_len.new_empty(base_len.shape)


def commit_tokens(
    seq: torch.Tensor, total: torch.Tensor, candidates: torch.Tensor, path: torch.Tensor,
    accept_len: torch.Tensor, next_token: torch.Tensor, eos_ids: torch.Tensor, limit: int, *,
    validate: bool = True,
) -> torch.Tensor:
    """Appends a verification round's tokens to each row's sequence, in place.

    Per row b, with count = accept_len[b] + 1 new tokens
        t_j = candidates[b, path[b, j + 1]] (j < accept_len[b]),  t_{accept_len[b]} = next_token[b],
    kept = min(e + 1, count, limit - total[b]) (at least 0), e the first j with t_j in
    `eos_ids` (count when none); then seq[b, total[b] + j] = t_j for j < kept,
    total[b] += kept, and the row is finished when it kept an EOS or reached `limit`.
    (seq past total[b] + kept is left as it was.)

    Args:
        seq: int64 [B, S], written in place; total: int64 [B], each row's length, in place.
        candidates, path: int64 [B, N], the tree's tokens and VerifyOutput.path (root first).
        accept_len, next_token: int64 [B], from verify_tree.
        eos_ids: int64 [E] (E may be 0). limit: the length at which a row is finished.
        validate: check accept_len, the path entries read and the room in `seq` (one host
            sync on CUDA). Without it, a call with any bad row writes nothing: the CPU kernel
            raises, the CUDA kernel reports every row kept 0, finished 1.
    Returns:
        int64 [3, B]: kept, finished (0/1), accept_len (one tensor: one copy to the host).
    """
    names = ("seq", "total", "candidates", "path", "accept_len", "next_token", "eos_ids")
    args = (seq, total, candidates, path, accept_len, next_token, eos_ids)
    dev = seq.device if isinstance(seq, torch.Tensor) else None
    for name, t, dim in zip(names, args, (2, 1, 2, 2, 1, 1, 1)):
        check.tensor(name, t, dtypes=_LONG, dim=dim, device=dev)
    B, N = path.shape
    for name, t in zip(names, args):
        if name != "eos_ids" and t.shape[0] != B:
            raise ValueError(f"`{name}` has {t.shape[0]} rows, `path` {B}: every argument but eos_ids is per row")
    if tuple(candidates.shape) != (B, N) or N == 0:
        raise ValueError(f"`candidates` must be [B, N] like `path` = {[B, N]} with N >= 1, got {list(candidates.shape)}")
    if not isinstance(limit, int):
        raise TypeError(f"`limit` must be an int, got {type(limit).__name__}")
    if validate and not check.is_compiling() and B:
        S = seq.shape[1]
        upto = torch.minimum(accept_len + 1, limit - total).clamp(min=0)  # tokens that may be kept

        def bad_row(what):
            def explain(bad):
                b = int(bad.nonzero()[0, 0])
                raise ValueError(f"row {b}: {what} (accept_len = {int(accept_len[b])}, total = {int(total[b])}, "
                                 f"limit = {limit}, S = {S}, N = {N})")
            return explain

        j = torch.arange(N, device=dev)[None, :]
        read = (j >= 1) & (j <= accept_len[:, None]) & (j <= upto[:, None])  # path entries read
        check.run([((accept_len < 0) | (accept_len >= N), bad_row("`accept_len` must be in [0, N)")),
                   ((total < 0) | (total + upto > S), bad_row("`seq` has no room for the kept tokens")),
                   ((read & ((path < 0) | (path >= N))).any(1), bad_row("`path`[b, 1..accept_len] must be in [0, N)"))])
    return _ops.commit_tokens(seq, total, candidates, path, accept_len, next_token, eos_ids, limit)


@torch.library.register_fake("cospec::commit_tokens")
def _commit_tokens_fake(seq, total, candidates, path, accept_len, next_token, eos_ids, limit):
    torch._check(path.dim() == 2, lambda: "path must be [B, N]")
    return path.new_empty((3, path.shape[0]))


def tree_mask(out: torch.Tensor, pad: torch.Tensor, root_slot: torch.Tensor, anc: torch.Tensor) -> torch.Tensor:
    """The boolean attention mask (True = attend) of a forward over draft-tree nodes, in place:

        out[b, 0, q, s] = (pad[b] <= s < root_slot[b])                    the committed prefix
                          or (0 <= s - root_slot[b] < n and anc[b, q, s - root_slot[b]])

    Args:
        out: bool [B, 1, nq, S] (any strides without overlap), overwritten.
        pad, root_slot: int64 [B]: left padding, slot of tree node 0 (root_slot + n <= S).
        anc: bool [B or 1, nq, n]: anc[b, q, j] = node j is query q's node or an ancestor of it.
    Returns `out`.
    """
    check.tensor("out", out, dtypes=(torch.bool,), dim=4)
    dev = out.device
    check.tensor("pad", pad, dtypes=_LONG, dim=1, device=dev)
    check.tensor("root_slot", root_slot, dtypes=_LONG, dim=1, device=dev)
    check.tensor("anc", anc, dtypes=(torch.bool,), dim=3, device=dev)
    B, _, nq, S = out.shape
    if out.shape[1] != 1 or pad.shape[0] != B or root_slot.shape[0] != B:
        raise ValueError(f"`out` must be [B, 1, nq, S] and `pad`, `root_slot` [B]; got {list(out.shape)}, "
                         f"{list(pad.shape)}, {list(root_slot.shape)}")
    if anc.shape[0] not in (1, B) or anc.shape[1] != nq:
        raise ValueError(f"`anc` must be [B or 1, nq, n] = [{B} or 1, {nq}, n], got {list(anc.shape)}")
    n = anc.shape[2]
    if not check.is_compiling() and B:
        def explain(bad):
            b = int(bad.nonzero()[0, 0])
            raise ValueError(f"`root_slot`[{b}] + n = {int(root_slot[b])} + {n} must be within the mask's S = {S} slots")

        check.run([((root_slot < 0) | (root_slot + n > S), explain)])
    _ops.tree_mask(out, pad, root_slot, anc)
    return out


@torch.library.register_fake("cospec::tree_mask")
def _tree_mask_fake(out, pad, root_slot, anc):
    torch._check(out.dim() == 4, lambda: "out must be [B, 1, nq, S]")
    return None


# The compiled forward's projections and attention (linear_rows, pack_weight, linear_packed,
# linear_auto, tree_attention), in their own module; re-exported here as the other ops.
from .forward_ops import PANEL, linear_auto, linear_packed, linear_rows, pack_weight, tree_attention  # noqa: E402,F401
