"""CPU microbenchmarks of the four cospec ops: each kernel beside a reference and a
floor measured in the same run (`make bench`; bench/ops/summary.py pairs them by shape).

Every benchmark records extra_info = {op, kind: kernel|reference|floor, variant, shape,
dtype, bytes}; the group is "<op> <shape>". Inputs are built (and cached per shape)
outside the timed function; the timed function allocates only the op's outputs.

    logit_stats    logits [B, N, V] f32, B in {1, 8}, N in {16, 64}, V in {32000, 152064}
                   kernel (with the tree, so cand_logprob too) | the float32 torch
                   composition a user would write | floors: logits.copy_ (memory
                   bandwidth) and torch.argmax over the logits
    verify_tree    same logits; a chain of N/2 accepted nodes with side branches: greedy
                   kernel from the logits and from a precomputed argmax | verify_tree_ref
                   (V = 32000 only: it loops in Python) | floor: torch.argmax
    arbiter_score  features [M, 32] f32, M in {64, 4096}, layers 128, 64 | the torch
                   composition F.linear, gelu, F.linear, gelu, matmul
    kv_rollback    cache [2, 24, B, 8, 4096, 128] bf16, B in {1, 8}, N in {16, 64}, path
                   [0, 2, 4, ..., N-2] (moves N/2 - 1 slots per row each call, reading
                   from higher slots, so every repeat moves real bytes) | kv_rollback_ref
                   (B = 1 only) | floor: one index_copy_ writing the same rows, same bytes

The kernels are called with validate=False: the host-side checks of the typed wrappers
(tree structure, token ranges) are not part of the kernel time.
"""

from __future__ import annotations

import functools
import math
import os
import time

import pytest
import torch
import torch.nn.functional as F

from cospec_ext import ops
from cospec_ext.reference import kv_rollback_ref, verify_tree_ref

QUICK = os.environ.get("COSPEC_BENCH_QUICK", "0") == "1"
TARGET_S = float(os.environ.get("COSPEC_BENCH_TIME", "1.0"))  # timed seconds per benchmark
MIN_ROUNDS, MAX_ROUNDS = 5, 200
MIN_ROUND_S = 2e-3  # fast calls are looped so one timed round lasts at least this long

LOGIT_SHAPES = [(1, 16, 32000)] if QUICK else [
    (B, N, V) for B in (1, 8) for N in (16, 64) for V in (32000, 152064)
]
ARBITER_M = [64] if QUICK else [64, 4096]
ARBITER_F, ARBITER_H = 32, (128, 64)
KV_L, KV_H, KV_S, KV_D = 24, 8, 4096, 128
KV_SHAPES = [(1, 16)] if QUICK else [(B, N) for B in (1, 8) for N in (16, 64)]


def _cases(shapes, kinds, name, skip=lambda shape, kind: False):
    """pytest params (shape, kind), shape-major so the per-shape input cache is reused."""
    return [pytest.param(s, k, id=f"{name(s)}-{k}") for s in shapes for k in kinds if not skip(s, k)]


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return max(time.perf_counter() - t0, 1e-7)


def _timed(benchmark, fn, *, op, kind, variant, shape, dtype, nbytes, **extra):
    """Times fn with benchmark.pedantic; rounds and loop count sized from untimed calls."""
    benchmark.group = f"{op} {shape}"
    benchmark.extra_info.update(
        op=op, kind=kind, variant=variant, shape=shape, dtype=str(dtype).replace("torch.", ""),
        bytes=int(nbytes), threads=torch.get_num_threads(), **extra,
    )
    t = _once(fn)  # also warms caches and first-touch pages
    if t < 0.1:
        t = _once(fn)  # a warm estimate for the fast ones
    iterations = max(1, min(1000, int(MIN_ROUND_S / t)))
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(TARGET_S / (t * iterations))))
    return benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=1)


# --------------------------------------------------------------------- logits ops

def _logits_name(s):
    return f"B{s[0]}-N{s[1]}-V{s[2]}"


@functools.lru_cache(maxsize=1)
def _logits_case(B: int, N: int, V: int):
    """Logits and a tree whose greedy walk accepts the chain 0 -> 1 -> ... -> N/2.

    Nodes 1..N/2 form a chain whose candidates are the parent's argmax; nodes past N/2
    hang off random chain nodes with a token that is not the parent's argmax.
    """
    gen = torch.Generator().manual_seed(B * 1_000_003 + N * 1009 + V)
    x = torch.randn(B, N, V, generator=gen) * 3.0  # [B, N, V] float32
    amax = x.argmax(-1)  # [B, N]
    k = N // 2
    parents = torch.empty(B, N, dtype=torch.int64)
    parents[:, 0] = -1
    parents[:, 1 : k + 1] = torch.arange(k)
    parents[:, k + 1 :] = torch.randint(0, k + 1, (B, N - k - 1), generator=gen)
    par_amax = amax.gather(1, parents.clamp(min=0))  # [B, N]
    candidates = torch.where(torch.arange(N) <= k, par_amax, (par_amax + 1) % V)
    candidates[:, 0] = amax[:, 0]  # the root's token (any valid id)
    return x, candidates, parents, amax


def logit_stats_torch(x: torch.Tensor, candidates: torch.Tensor, parents: torch.Tensor):
    """The float32 torch composition a user would write instead of cospec logit_stats."""
    B, N, V = x.shape
    logp = torch.log_softmax(x, dim=-1)  # [B, N, V]
    lse = torch.logsumexp(x, dim=-1)  # [B, N]
    entropy = -(logp.exp() * logp).sum(-1)  # [B, N]
    top2 = x.topk(2, dim=-1).values  # [B, N, 2]
    argmax = x.argmax(-1)  # [B, N]
    par = parents.clamp(min=0)
    cand_lp = logp.reshape(B, N * V).gather(1, par * V + candidates)  # [B, N]
    cand_lp = torch.where(parents >= 0, cand_lp, torch.zeros_like(cand_lp))
    return argmax, top2[..., 0], lse, entropy, top2[..., 0] - top2[..., 1], cand_lp


@pytest.mark.parametrize("shape,kind", _cases(LOGIT_SHAPES, ["kernel", "reference", "copy", "argmax"], _logits_name))
def test_logit_stats(benchmark, shape, kind):
    B, N, V = shape
    x, cand, par, _ = _logits_case(B, N, V)
    info = dict(op="logit_stats", shape=f"B{B} N{N} V{V}", dtype=x.dtype, nbytes=x.numel() * x.element_size())
    if kind == "kernel":
        _timed(benchmark, lambda: ops.logit_stats(x, cand, par, validate=False), kind="kernel", variant="kernel", **info)
    elif kind == "reference":
        got = _timed(benchmark, lambda: logit_stats_torch(x, cand, par), kind="reference", variant="torch", **info)
        want = ops.logit_stats(x, cand, par, validate=False)
        assert torch.equal(got[0], want.argmax)
        for g, w in zip(got[1:], want[1:]):  # the composition computes what the kernel does
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-3)
    elif kind == "copy":
        y = torch.empty_like(x)
        _timed(benchmark, lambda: y.copy_(x), kind="floor", variant="copy", **info)
    else:
        out = torch.empty(B, N, dtype=torch.int64)
        _timed(benchmark, lambda: torch.argmax(x, -1, out=out), kind="floor", variant="argmax", **info)


def _verify_skip(shape, kind):
    return kind == "reference" and shape[2] > 32000


@pytest.mark.parametrize(
    "shape,kind",
    _cases(LOGIT_SHAPES, ["kernel", "kernel_argmax", "reference", "argmax"], _logits_name, _verify_skip),
)
def test_verify_tree(benchmark, shape, kind):
    B, N, V = shape
    x, cand, par, amax = _logits_case(B, N, V)
    info = dict(op="verify_tree", shape=f"B{B} N{N} V{V}", dtype=x.dtype, nbytes=x.numel() * x.element_size())
    if kind == "kernel":
        res = _timed(benchmark, lambda: ops.verify_tree(cand, par, x, validate=False),
                     kind="kernel", variant="logits", **info)
        assert bool((res.accept_len == N // 2).all()), res.accept_len  # the walk reads N/2 + 1 rows
    elif kind == "kernel_argmax":
        _timed(benchmark, lambda: ops.verify_tree(cand, par, target_argmax=amax, validate=False),
               kind="kernel", variant="argmax", **info)
    elif kind == "reference":
        _timed(benchmark, lambda: verify_tree_ref(cand, par, x), kind="reference", variant="ref", **info)
    else:
        out = torch.empty(B, N, dtype=torch.int64)
        _timed(benchmark, lambda: torch.argmax(x, -1, out=out), kind="floor", variant="argmax", **info)


# ------------------------------------------------------------------ arbiter_score

@functools.lru_cache(maxsize=1)
def _arbiter_case(M: int):
    gen = torch.Generator().manual_seed(M)
    (h1, h2), f = ARBITER_H, ARBITER_F

    def rand(*shape, fan_in):
        return torch.randn(*shape, generator=gen) / math.sqrt(fan_in)

    feats = torch.randn(M, f, generator=gen)  # [M, F]
    w1, b1 = rand(h1, f, fan_in=f), rand(h1, fan_in=f)  # [H1, F], [H1]
    w2, b2 = rand(h2, h1, fan_in=h1), rand(h2, fan_in=h1)  # [H2, H1], [H2]
    w_out, b_out = rand(h2, fan_in=h2), rand(1, fan_in=h2)  # [H2], [1]
    return feats, w1, b1, w2, b2, w_out, b_out


def arbiter_score_torch(feats, w1, b1, w2, b2, w_out, b_out):
    """The float32 torch composition a user would write instead of cospec arbiter_score."""
    h = F.gelu(F.linear(feats, w1, b1))  # [M, H1]
    h = F.gelu(F.linear(h, w2, b2))  # [M, H2]
    return h @ w_out + b_out  # [M]


@pytest.mark.parametrize("shape,kind", _cases(ARBITER_M, ["kernel", "reference"], lambda m: f"M{m}"))
def test_arbiter_score(benchmark, shape, kind):
    M = shape
    feats, w1, b1, w2, b2, w_out, b_out = _arbiter_case(M)
    h1, h2 = ARBITER_H
    info = dict(
        op="arbiter_score", shape=f"M{M} F{ARBITER_F} H{h1},{h2}", dtype=feats.dtype,
        nbytes=feats.numel() * feats.element_size(),
        flops=2 * M * (ARBITER_F * h1 + h1 * h2 + h2),
    )
    if kind == "kernel":
        _timed(benchmark, lambda: ops.arbiter_score(feats, w1, b1, w2, b2, w_out=w_out, b_out=b_out),
               kind="kernel", variant="kernel", **info)
    else:
        got = _timed(benchmark, lambda: arbiter_score_torch(feats, w1, b1, w2, b2, w_out, b_out),
                     kind="reference", variant="torch", **info)
        want = ops.arbiter_score(feats, w1, b1, w2, b2, w_out=w_out, b_out=b_out)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ node_features

FEATURE_SHAPES = [(8, 5, 512)] if QUICK else [(1, 5, 512), (8, 5, 512), (64, 5, 32000), (8, 16, 32000)]  # B1: the engine's


def node_features_torch(x, cand, parents, depth, rank, ngen, d, levels):
    """The float32 torch composition a user would write instead of cospec node_features
    (the engine's own code before the kernel): logit_stats, then ~60 batched tensor ops."""
    B, N, V = x.shape
    ls = ops.logit_stats(x, cand, parents, validate=False)
    p = parents.clamp(min=0)  # [B, N]
    t_node = torch.stack([ls.max_logit - ls.logsumexp, ls.entropy, ls.margin.clamp(max=1e4)], dim=-1)  # [B, N, 3]
    t_par = t_node.gather(1, p[..., None].expand(B, N, 3))
    par_logits = x.gather(1, p[..., None].expand(B, N, V))  # [B, N, V]
    above = (par_logits > par_logits.gather(2, cand[..., None])).sum(-1)
    d_logp, t_logp = torch.log_softmax(d, -1), torch.log_softmax(par_logits, -1)
    kl = F.kl_div(t_logp, d_logp, reduction="none", log_target=True).sum(-1).clamp(min=0)
    d_top2 = d.topk(2, dim=-1).values
    d_stats = torch.stack([d_logp.gather(2, cand[..., None])[..., 0], d_logp.amax(-1),
                           -(d_logp.exp() * d_logp).sum(-1), (d_top2[..., 0] - d_top2[..., 1]).clamp(max=1e4)], -1)
    ids = torch.arange(N).expand(B, N)  # look-ahead along first children
    fc = torch.full((B, N + 1), N, dtype=torch.int64)
    fc.scatter_reduce_(1, torch.where(parents >= 0, parents, N)[:, 1:], ids[:, 1:], reduce="amin")
    fc = fc[:, :N]
    has, fcc = fc < N, fc.clamp(max=N - 1)
    ok = has & (ls.argmax == cand.gather(1, fcc))
    lp_fc = torch.where(has, ls.cand_logprob.gather(1, fcc), 0.0)
    step, keep = torch.stack([has.float(), ok.float(), lp_fc], -1), torch.stack([has, ok, has], -1)
    state = torch.zeros(B, N, 3)
    for _ in range(levels):
        state = torch.where(keep, step + state.gather(1, fcc[..., None].expand(B, N, 3)), 0.0)
    la = torch.stack([state[..., 0], state[..., 1], lp_fc, state[..., 2] / state[..., 0].clamp(min=1)], -1)
    dep = depth.float()
    out = torch.cat([ls.cand_logprob[..., None], t_par, torch.log1p(above.float())[..., None], d_stats,
                     kl[..., None], dep[..., None], rank.float()[..., None], (ngen[:, None] + dep)[..., None], t_node,
                     la], dim=-1)
    out[:, 0] = 0
    return out


@functools.lru_cache(maxsize=1)
def _features_case(B: int, N: int, V: int):
    gen = torch.Generator().manual_seed(B * N + V)
    x = torch.randn(B, N, V, generator=gen) * 3.0  # [B, N, V]
    d = x + torch.randn(B, N, V, generator=gen)  # the draft's logits at each node's parent
    parents = torch.arange(-1, N - 1).expand(B, N).contiguous()  # chains
    cand = torch.randint(0, V, (B, N), generator=gen)
    depth = torch.arange(N).expand(B, N).contiguous()
    return x, cand, parents, depth, torch.zeros_like(depth), torch.zeros(B, dtype=torch.int64), d, N - 1


@pytest.mark.parametrize("shape,kind", _cases(FEATURE_SHAPES, ["kernel", "reference"], _logits_name))
def test_node_features(benchmark, shape, kind):
    B, N, V = shape
    args = _features_case(B, N, V)
    info = dict(op="node_features", shape=f"B{B} N{N} V{V}", dtype=args[0].dtype,
                nbytes=2 * args[0].numel() * args[0].element_size())
    if kind == "kernel":
        _timed(benchmark, lambda: ops.node_features(*args, validate=False), kind="kernel", variant="kernel", **info)
    else:
        got = _timed(benchmark, lambda: node_features_torch(*args), kind="reference", variant="torch", **info)
        torch.testing.assert_close(got, ops.node_features(*args), rtol=1e-4, atol=1e-3)


# -------------------------------------------------------------------- kv_rollback

@functools.lru_cache(maxsize=1)
def _kv_case(B: int, N: int):
    """Cache [2, L, B, H, S, D] bf16, base_len, path [0, 2, ..., N-2], and the floor's rows.

    The cache is torch.empty: only the N-slot window of each row that the kernel and the
    floor touch is filled (and ever becomes resident), so B = 8 (3 GiB virtual) fits.
    """
    gen = torch.Generator().manual_seed(B * 100 + N)
    cache = torch.empty(2, KV_L, B, KV_H, KV_S, KV_D, dtype=torch.bfloat16)
    base_len = torch.tensor([1024 + 37 * b for b in range(B)], dtype=torch.int64)  # [B]
    for b in range(B):
        win = cache[:, :, b, :, int(base_len[b]) : int(base_len[b]) + N]
        win.copy_(torch.randn(win.shape, generator=gen))
    k = N // 2
    path = torch.full((B, N), -1, dtype=torch.int64)
    path[:, :k] = torch.arange(0, 2 * k, 2)  # slot j <- slot 2j, j = 1..k-1 move
    # The floor: the same destination rows as flat indices into cache.view(-1, D).
    lead = torch.arange(2 * KV_L).view(-1, 1, 1)  # kv * L + layer
    heads = torch.arange(KV_H).view(1, -1, 1)
    moved = torch.arange(1, k).view(1, 1, -1)  # destination offsets j >= 1
    per_b = [((lead * B + b) * KV_H + heads) * KV_S + int(base_len[b]) + moved for b in range(B)]
    dst = torch.stack([p.expand(2 * KV_L, KV_H, k - 1) for p in per_b], 1).reshape(-1)  # [rows]
    src = torch.randn(dst.numel(), KV_D, generator=gen).to(torch.bfloat16)  # [rows, D]
    return cache, base_len, path, dst, src


@pytest.mark.parametrize(
    "shape,kind",
    _cases(KV_SHAPES, ["kernel", "reference", "index_copy"], lambda s: f"B{s[0]}-N{s[1]}",
           lambda s, k: k == "reference" and s[0] > 1),
)
def test_kv_rollback(benchmark, shape, kind):
    B, N = shape
    cache, base_len, path, dst, src = _kv_case(B, N)
    info = dict(
        op="kv_rollback", shape=f"B{B} N{N} L{KV_L} H{KV_H} S{KV_S} D{KV_D}", dtype=cache.dtype,
        nbytes=src.numel() * src.element_size(),  # moved: read once and written once
        rows=int(dst.numel()),
    )
    if kind == "kernel":
        new_len = _timed(benchmark, lambda: ops.kv_rollback(cache, base_len, path, validate=False),
                         kind="kernel", variant="kernel", **info)
        assert torch.equal(new_len, base_len + N // 2)
    elif kind == "reference":
        _timed(benchmark, lambda: kv_rollback_ref(cache, base_len, path), kind="reference", variant="ref", **info)
    else:
        rows = cache.view(-1, KV_D)  # [2 * L * B * H * S, D]
        _timed(benchmark, lambda: rows.index_copy_(0, dst, src), kind="floor", variant="index_copy", **info)
