"""Typed, validated wrappers of the compiled forward's `torch.ops.cospec` kernels (projections of
a few or many rows, attention over a static cache), with their fake implementations; re-exported
by `cospec_ext.ops`, where the tree ops live."""

from __future__ import annotations

import math
from typing import Optional

import torch

from . import _validate as check

_ops = torch.ops.cospec


def _check_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> int:
    """The checks of y = x W^T + b (linear_rows, linear_auto): x [..., K] float-like, weight
    [N, K] and bias [N] (or None) of x's dtype and device. Returns N."""
    check.tensor("x", x, dtypes=check.FLOAT_DTYPES)
    check.tensor("weight", weight, dtypes=(x.dtype,), dim=2, device=x.device)
    if x.dim() == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"`x` must be [..., K] with K = weight.shape[1] = {weight.shape[1]}, got {list(x.shape)}")
    N = weight.shape[0]
    if bias is not None:
        check.tensor("bias", bias, dtypes=(x.dtype,), dim=1, device=x.device)
        if bias.shape[0] != N:
            raise ValueError(f"`bias` must be [N] = [{N}], got {list(bias.shape)}")
    return N


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """y = x @ weight.T + bias for a handful of rows, reading `weight` once (`F.linear`'s math).

        y[..., n] = sum_k x[..., k] * weight[n, k] + bias[n]      accumulated in float32

    Built for M = x.numel() / K = 1..16 rows (a decode step, a draft level, a verification tree)
    on the CPU, where a forward is bound by reading the weights: register tiles of up to 8 rows
    of x by up to 8 rows of W (AVX-512 / AVX2 / portable builds, chosen at run time), W split
    over torch's threads from 256 KiB on. Any M works (rows go in blocks of <= 8 over each W
    tile while it is in L1). On CUDA it calls cuBLAS (`F.linear`).

    Args:
        x: [..., K] float32 / bfloat16 / float16, any strides.
        weight: [N, K], x's dtype and device (a unit stride along K avoids a copy).
        bias: [N], x's dtype, or None.
    Returns:
        [..., N] in x's dtype.
    """
    N = _check_linear(x, weight, bias)
    y = _ops.linear_rows(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]), weight, bias)  # [M, N]
    return y.view(*x.shape[:-1], N)


def tree_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                   scale: Optional[float] = None) -> torch.Tensor:
    """Attention of a few queries per row over a static KV cache, under a boolean mask
    (`F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=True)`'s
    math, float32 throughout):

        o[b, h, i] = sum_s p_s v[b, h // g, s],   p = softmax over {s : mask[b, 0, i, s]} of
                     scale * q[b, h, i] . k[b, h // g, s]        (g = Hq / Hk)

    A query row whose mask is all false gets zeros (SDPA: NaN). The CPU kernel lists, per row
    and K/V head, the slots any query opens and runs that head group's g * n query rows over
    them only (a static cache costs its live slots, not S); vectorised dot products along D,
    exp in float32 vectors, threads over (row, K/V head) pairs for larger calls. CUDA: one
    block per query row (the engine keeps SDPA there).

    Args:
        q: float32 [B, Hq, n, D], unit stride along D.
        k, v: float32 [B, Hk, S, D], unit stride along D (e.g. views of one cache); Hq % Hk == 0.
        mask: bool [B, 1, n, S], any strides.
        scale: the scores' factor, default D ** -0.5.
    Returns:
        float32 [B, Hq, n, D], contiguous.
    """
    check.tensor("q", q, dtypes=(torch.float32,), dim=4)
    check.tensor("k", k, dtypes=(torch.float32,), dim=4, device=q.device)
    check.tensor("v", v, dtypes=(torch.float32,), dim=4, device=q.device)
    check.tensor("mask", mask, dtypes=(torch.bool,), dim=4, device=q.device)
    B, Hq, n, D = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"`k` and `v` must both be [B, Hk, S, D] = [{B}, Hk, S, {D}], got {list(k.shape)} "
                         f"and {list(v.shape)}")
    if k.shape[1] < 1 or Hq % k.shape[1]:
        raise ValueError(f"`q`'s heads ({Hq}) must be a multiple of `k`'s ({k.shape[1]})")
    if tuple(mask.shape) != (B, 1, n, k.shape[2]):
        raise ValueError(f"`mask` must be [B, 1, n, S] = [{B}, 1, {n}, {k.shape[2]}], got {list(mask.shape)}")
    if scale is None:
        scale = D ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"`scale` must be a finite float, got {scale!r}")
    unit = lambda t: t if D <= 1 or t.stride(3) == 1 else t.contiguous()  # noqa: E731
    return _ops.tree_attention(unit(q), unit(k), unit(v), mask, float(scale))


@torch.library.register_fake("cospec::tree_attention")
def _tree_attention_fake(q, k, v, mask, scale):
    torch._check(q.dim() == 4 and k.dim() == 4, lambda: "q must be [B, Hq, n, D] and k [B, Hk, S, D]")
    return q.new_empty(q.shape)


PANEL = 48  # columns per panel of a packed weight (csrc/linear_packed/linear_packed.h kPanel)


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """A weight W [N, K] in the column panels linear_packed reads, float32 [ceil(N / 48), K, 48]:

        packed[p, k, c] = W[p * 48 + c, k]     (0 where p * 48 + c >= N)

    A copy (the CPU kernel streams each panel's K x 48 floats in order); repack after W changes."""
    check.tensor("weight", weight, dtypes=(torch.float32,), dim=2)
    N, K = weight.shape
    P = -(-N // PANEL)
    w = weight.detach()
    if P * PANEL != N:
        w = torch.cat((w, w.new_zeros(P * PANEL - N, K)))  # [P * 48, K]
    return w.view(P, PANEL, K).transpose(1, 2).contiguous()  # [P, K, 48]


def linear_packed(x: torch.Tensor, packed: torch.Tensor, n: int, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """y = x @ W.T + bias for many rows, W [n, K] given packed (`pack_weight(W)`).

        y[..., j] = sum_k x[..., k] * W[j, k] + bias[j]      float32

    For M = x.numel() / K >= ~16 rows on the CPU (a batch-8 verification, a prefill), where the
    product is bound by the FMA units: each k step broadcasts x[m, k] over a 48-column panel row
    for 8 rows of x (AVX-512; AVX2 2, portable 1), no lane sums; panels split over threads, the
    next one prefetched. On CUDA it rebuilds W and calls cuBLAS (`F.linear`).

    Args:
        x: [..., K] float32, any strides.
        packed: float32 [ceil(n / 48), K, 48], contiguous, x's device.
        n: W's rows (the output width).
        bias: float32 [n] or None.
    Returns:
        float32 [..., n].
    """
    check.tensor("x", x, dtypes=(torch.float32,))
    check.tensor("packed", packed, dtypes=(torch.float32,), dim=3, device=x.device)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int (W's rows), got {n!r}")
    if x.dim() == 0 or tuple(packed.shape) != (-(-n // PANEL), x.shape[-1], PANEL):
        raise ValueError(f"`packed` must be [ceil(n / {PANEL}), K, {PANEL}] = [{-(-n // PANEL)}, "
                         f"{x.shape[-1] if x.dim() else '?'}, {PANEL}] for n = {n} and x [..., K], "
                         f"got {list(packed.shape)} and x {list(x.shape)}")
    if bias is not None:
        check.tensor("bias", bias, dtypes=(torch.float32,), dim=1, device=x.device)
        if bias.shape[0] != n:
            raise ValueError(f"`bias` must be [n] = [{n}], got {list(bias.shape)}")
    y = _ops.linear_packed(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]), packed.contiguous(), n, bias)  # [M, n]
    return y.view(*x.shape[:-1], n)


def linear_auto(x: torch.Tensor, weight: torch.Tensor, packed: Optional[torch.Tensor] = None,
                bias: Optional[torch.Tensor] = None, *, packed_rows_min: int) -> torch.Tensor:
    """y = x @ weight.T + bias through the kernel that suits x's row count, chosen when the op
    runs (not when a graph is traced):

        linear_packed(x, packed, N, bias)   when packed is given, x is float32 and M >= packed_rows_min
        linear_rows(x, weight, bias)        otherwise

    with M = x.numel() / K. For a compiled graph whose row count is a symbol (the engine's
    prefill graphs, dynamic in the prompt length), where choosing in Python would guard on M
    and split the graph. `packed` must be pack_weight(weight) (not checked against it).

    Args:
        x: [..., K] float32 / bfloat16 / float16 (float32 for the packed path), any strides.
        weight: [N, K], x's dtype and device.
        packed: float32 [ceil(N / 48), K, 48] contiguous, or None (always linear_rows).
        bias: [N] in x's dtype, or None.
        packed_rows_min: int >= 1.
    Returns:
        [..., N] in x's dtype.
    """
    if isinstance(packed_rows_min, bool) or not isinstance(packed_rows_min, int) or packed_rows_min < 1:
        raise ValueError(f"`packed_rows_min` must be an int >= 1, got {packed_rows_min!r}")
    N, K = _check_linear(x, weight, bias), weight.shape[1]
    if packed is not None:
        check.tensor("packed", packed, dtypes=(torch.float32,), dim=3, device=x.device)
        if tuple(packed.shape) != (-(-N // PANEL), K, PANEL):
            raise ValueError(f"`packed` must be pack_weight(weight), [{-(-N // PANEL)}, {K}, {PANEL}], "
                             f"got {list(packed.shape)}")
        packed = packed.contiguous()
    y = _ops.linear_auto(x.reshape(math.prod(x.shape[:-1]), K), weight, packed, bias, packed_rows_min)  # [M, N]
    return y.view(*x.shape[:-1], N)


@torch.library.register_fake("cospec::linear_auto")
def _linear_auto_fake(x, weight, packed, bias, packed_rows_min):
    torch._check(x.dim() == 2 and weight.dim() == 2, lambda: "x must be [M, K] and weight [N, K]")
    torch._check(x.shape[1] == weight.shape[1], lambda: "x [M, K] and weight [N, K] must share K")
    return x.new_empty((x.shape[0], weight.shape[0]))


@torch.library.register_fake("cospec::linear_packed")
def _linear_packed_fake(x, packed, n, bias=None):
    torch._check(x.dim() == 2 and packed.dim() == 3, lambda: "x must be [M, K] and packed [P, K, 48]")
    torch._check(packed.shape[1] == x.shape[1], lambda: "x [M, K] and packed [P, K, 48] must share K")
    return x.new_empty((x.shape[0], n))


@torch.library.register_fake("cospec::linear_rows")
def _linear_rows_fake(x, weight, bias=None):
    torch._check(x.dim() == 2 and weight.dim() == 2, lambda: "x must be [M, K] and weight [N, K]")
    torch._check(x.shape[1] == weight.shape[1], lambda: "x [M, K] and weight [N, K] must share K")
    torch._check(x.dtype == weight.dtype, lambda: "x and weight must have one dtype")
    return x.new_empty((x.shape[0], weight.shape[0]))
