"""The static-shape forward of a Llama-family model (engine/native.py compiles it): `_Core`,
its projections (`_linear`: cospec::linear_rows / linear_packed / F.linear by rows, or inductor's
own loops for a tiny model) and attention (cospec::tree_attention for a float32 model on the
CPU, SDPA elsewhere, or `_attend` for a tiny model)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops

_ACTS = {"silu": F.silu, "swish": F.silu, "gelu": F.gelu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}

# Rows up to which a CPU projection runs as cospec::linear_rows (below) where its weight has no
# packed copy: it reads 20 float32 [1536, 576] weights 1.55x / 1.26x / 1.04x faster than the
# fastest other path at 16 / 24 / 32 rows and 0.88x at 48 (bench/ops/gemv_speed.py --rows
# 16,24,32,48, 2026-12-07); a 20-token eager prefill of a 48 MiB model: 8.4 ms against 9.9 with 16.
LINEAR_ROWS_MAX = 32
# Rows from which a CPU projection with a packed copy runs as cospec::linear_packed: over the
# demo target's 57 projections, linear_rows / linear_packed / F.linear take 4.6 / 5.9 / 6.8 ms at
# 16 rows, 6.6 / 6.4 / 8.3 at 24 and 12.4 / 9.9 / 11.3 at 48 (bench/ops/linear_packed_speed.py).
PACKED_ROWS_MIN = 17
# Weight bytes up to which a model's compiled CPU forward computes its projections and attention
# as broadcast products and sums (`_linear(fused=True)`, `_attend`) that inductor fuses with
# everything around them, instead of extern calls (cospec::linear_rows, SDPA): each such call
# costs a few microseconds of dispatch, allocation and setup whatever its size, which is most of
# a tiny model's step. The demo draft (0.31 MiB) drafts an 8-token chain in 0.30 ms instead of
# 0.42 (one fused kernel for the whole chain; bench/decode/fused_draft.py); the demo target
# (48 MiB) runs a one-token step in 1.95 ms instead of 1.76 with `_attend`, so large models keep
# the extern kernels.
FUSED_BYTES = 1 << 20


class _Core(torch.nn.Module):
    """The forward over the model's modules (held by reference). Not registered as a child of
    the model, so its state_dict is untouched."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.embed, self.layers = model.model.embed_tokens, model.model.layers
        self.norm, self.head = model.model.norm, model.lm_head
        rope = model.model.rotary_emb
        self.register_buffer("inv_freq", rope.inv_freq.detach().float().clone(), persistent=False)
        self.rope_scale = float(getattr(rope, "attention_scaling", 1.0) or 1.0)
        self.act = _ACTS[getattr(cfg, "hidden_act", "silu")]
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads)
        self.eps = [float(getattr(ly.input_layernorm, "variance_epsilon", getattr(cfg, "rms_norm_eps", 1e-6)))
                    for ly in self.layers]
        self.final_eps = float(getattr(self.norm, "variance_epsilon", getattr(cfg, "rms_norm_eps", 1e-6)))
        # a tiny model's compiled CPU forward: projections and attention as inductor's own loops
        # (FUSED_BYTES)
        self.fused = sum(p.numel() * p.element_size() for p in model.parameters()) <= FUSED_BYTES
        # Weights also kept in other layouts, as non-persistent buffers refreshed when the weight
        # changes (`refresh_packed`): CPU float32 ones packed for forwards over many rows
        # (`_linear`), "pk{layer}_{q,k,v,o,gate,up,down}" and "pk_head"; a tiny model's transposed,
        # W^T [in, out] contiguous, which its fused projections read along the output (vectorised
        # over the outputs, no lane sum per output), "ft{layer}_..." and "ft_head"
        self._packed: list = []  # (buffer name, module, the weight's (data_ptr, version) when packed)
        self._transposed: list = []  # the same for the W^T copies
        cpu32 = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
        projections = [(f"{li}_{name}", lin) for li, ly in enumerate(self.layers)
                       for name, lin in (("q", ly.self_attn.q_proj), ("k", ly.self_attn.k_proj),
                                         ("v", ly.self_attn.v_proj), ("o", ly.self_attn.o_proj),
                                         ("gate", ly.mlp.gate_proj), ("up", ly.mlp.up_proj),
                                         ("down", ly.mlp.down_proj))] + [("_head", self.head)]
        for suffix, lin in projections:
            if cpu32:
                self._keep("pk" + suffix, lin, self._packed)
            if self.fused:
                self._keep("ft" + suffix, lin, self._transposed)
        # a tiny model's RoPE as tables of cos and sin per position [max positions, D] (where they
        # take at most FUSED_BYTES): its fused graphs inline RoPE into the attention scores'
        # loops, where computing cos and sin per cache slot cost more than the projections
        max_pos = getattr(cfg, "max_position_embeddings", None)
        self.rope_table = bool(self.fused and max_pos and 8 * max_pos * self.head_dim <= FUSED_BYTES)
        if self.rope_table:
            fr = torch.arange(int(max_pos), device=self.inv_freq.device).float()[:, None] * self.inv_freq
            emb = torch.cat((fr, fr), dim=-1)  # [max positions, D]
            self.register_buffer("cos_t", emb.cos() * self.rope_scale, persistent=False)
            self.register_buffer("sin_t", emb.sin() * self.rope_scale, persistent=False)

    _LAYOUTS = {"pk": ops.pack_weight, "ft": lambda w: w.detach().t().contiguous()}

    def _keep(self, name: str, lin: torch.nn.Module, kept: list) -> None:
        self.register_buffer(name, self._LAYOUTS[name[:2]](lin.weight), persistent=False)
        kept.append((name, lin, _stamp(lin.weight)))

    def refresh_packed(self) -> int:
        """Recomputes (in place: compiled graphs keep their buffers) every packed or transposed
        copy whose weight changed since it was made (another tensor, or an in-place update: its
        version counter); returns how many. NativeAdapter calls it once per decode call."""
        n = 0
        for kept in (self._packed, self._transposed):
            for i, (name, lin, stamp) in enumerate(kept):
                now = _stamp(lin.weight)
                if now != stamp or now is None:
                    getattr(self, name).copy_(self._LAYOUTS[name[:2]](lin.weight))
                    kept[i] = (name, lin, now)
                    n += 1
        return n

    def _pk(self, name: str):
        """The packed copy `name` (None when the weights are not packed)."""
        return getattr(self, name, None)

    @staticmethod
    def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        """w * x / sqrt(mean(x^2) + eps), computed in float32 like transformers' RMSNorm."""
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return w * h.to(x.dtype)

    def forward(self, tokens, positions, mask, slots, cache, keep: int = 0, packed: bool | str = True):
        """tokens, positions, slots: int64 [Bb, nb]; mask: bool [Bb, 1, nb, S];
        cache: [2, L, B0, H_kv, S, D] (rows [0, Bb) are used; slots written in place);
        keep > 0: the head runs over the last `keep` positions only (a prefill);
        packed=False: never the packed copies; "auto": a graph dynamic in nb, whose rows must not
        choose the kernel while tracing (that would guard on them): cospec::linear_auto chooses
        when it runs (native.PREFILL_ROWS_MAX, CARRIED_ROWS_MAX).
        Returns (logits [Bb, nb or keep, V], last hidden state [Bb, nb or keep, hidden])."""
        Bb, nb = tokens.shape
        D, Hq, Hk = self.head_dim, self.heads, self.kv_heads
        fused = self.fused and tokens.device.type == "cpu" and torch.compiler.is_compiling()
        # projections: the packed copy (many rows), or a tiny model's W^T (fused)
        lin = lambda x, mod, name: _linear(x, mod, getattr(self, "ft" + name[2:]) if fused else  # noqa: E731
                                           self._pk(name) if packed else None, fused, packed == "auto")
        x = self.embed(tokens)  # [Bb, nb, hidden]
        if fused and self.rope_table:
            cos = self.cos_t[positions].to(x.dtype)[:, None]  # [Bb, 1, nb, D]
            sin = self.sin_t[positions].to(x.dtype)[:, None]
        else:
            freqs = positions.float()[..., None] * self.inv_freq  # [Bb, nb, D/2]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos = (emb.cos() * self.rope_scale).to(x.dtype)[:, None]  # [Bb, 1, nb, D]
            sin = (emb.sin() * self.rope_scale).to(x.dtype)[:, None]
        dev = tokens.device
        kv_sel = torch.arange(2, device=dev).view(2, 1, 1, 1)  # index tensors broadcasting to [2, Bb, Hk, nb]
        rows4 = torch.arange(Bb, device=dev).view(1, Bb, 1, 1)
        heads4 = torch.arange(Hk, device=dev).view(1, 1, Hk, 1)
        slots4 = slots.view(1, Bb, 1, nb)
        for li, layer in enumerate(self.layers):
            at = layer.self_attn
            h = self._rms(x, layer.input_layernorm.weight, self.eps[li])
            q = lin(h, at.q_proj, f"pk{li}_q").view(Bb, nb, Hq, D).transpose(1, 2)  # [Bb, Hq, nb, D]
            k = lin(h, at.k_proj, f"pk{li}_k").view(Bb, nb, Hk, D).transpose(1, 2)  # [Bb, Hk, nb, D]
            v = lin(h, at.v_proj, f"pk{li}_v").view(Bb, nb, Hk, D).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            # one in-place index_put_ on the cache itself (not on a view of it), which inductor
            # keeps in place: cache[t, li, b, h, slots[b, j]] = (k, v)[t][b, h, j]
            idx = (kv_sel, torch.full_like(kv_sel, li), rows4, heads4, slots4)
            cache.index_put_(idx, torch.stack((k, v)).to(cache.dtype))  # values [2, Bb, Hk, nb, D]
            if fused:
                o = _attend(q, cache[0, li, :Bb], cache[1, li, :Bb], mask, D**-0.5)  # [Bb, Hq, nb, D]
            elif q.device.type == "cpu" and q.dtype == cache.dtype == torch.float32:
                # over the slots the mask opens only: SDPA's CPU kernel runs all S of them, with
                # a fork/join and buffers sized for long sequences (2-4x the time here)
                o = torch.ops.cospec.tree_attention(q, cache[0, li, :Bb], cache[1, li, :Bb], mask, D**-0.5)
            else:
                o = F.scaled_dot_product_attention(q, cache[0, li, :Bb], cache[1, li, :Bb], attn_mask=mask,
                                                   scale=D**-0.5, enable_gqa=Hq != Hk)  # [Bb, Hq, nb, D]
            x = x + lin(o.transpose(1, 2).reshape(Bb, nb, Hq * D), at.o_proj, f"pk{li}_o")
            h = self._rms(x, layer.post_attention_layernorm.weight, self.eps[li])
            m = layer.mlp
            x = x + lin(self.act(lin(h, m.gate_proj, f"pk{li}_gate")) * lin(h, m.up_proj, f"pk{li}_up"),
                        m.down_proj, f"pk{li}_down")
        hid = self._rms(x[:, -keep:] if keep else x, self.norm.weight, self.final_eps)
        return lin(hid, self.head, "pk_head"), hid

    def chain(self, tokens, positions, mask, slots, cache, steps: int = 1):
        """`steps` forwards of one token per row, each fed the argmax of the last (a draft's greedy
        chain in one graph): step i runs token t_i at positions + i, slot slots + i, under `mask`
        with slots [slots, slots + i] opened, and t_{i+1} = argmax logits_i (ties: lowest id).
        tokens, positions, slots: int64 [Bb, 1] (t_0 and its place); mask: bool [Bb, 1, 1, S];
        cache as `forward`. Padding rows (slot S - 1) stay on that slot. Returns (argmaxes int64
        [Bb, steps], logits [Bb, steps, V], last hidden states [Bb, steps, hidden], and the next
        step's inputs: its token, position, mask and slot, shaped as the inputs), so that a longer
        chain can go on from where this one stopped (native.CHAIN_GRAPH_STEPS)."""
        S = cache.shape[4]
        ar = torch.arange(S, device=tokens.device)  # [S]
        live = slots < S - 1  # [Bb, 1]: real rows advance, padding rows keep the spare slot
        toks, logits, hids = [], [], []
        for _ in range(steps):
            lg, hid = self.forward(tokens, positions, mask, slots, cache)  # [Bb, 1, V], [Bb, 1, hidden]
            tokens = lg.argmax(-1)  # [Bb, 1]
            toks.append(tokens)
            logits.append(lg)
            hids.append(hid)
            positions = positions + 1
            slots = torch.where(live, slots + 1, slots)
            mask = mask | (ar == slots[..., None])[:, None]  # [Bb, 1, 1, S]: the new node's slot opened
        return torch.cat(toks, 1), torch.cat(logits, 1), torch.cat(hids, 1), tokens, positions, mask, slots


def _stamp(w: torch.Tensor):
    """What tells a weight's packed copy stale: (storage address, version counter), None where
    the tensor has no version counter (an inference tensor: then it is repacked every call)."""
    try:
        return (w.data_ptr(), w._version)
    except RuntimeError:
        return None


def _linear(x: torch.Tensor, lin: torch.nn.Module, packed: torch.Tensor | None = None,
            fused: bool = False, auto: bool = False) -> torch.Tensor:
    """lin(x) = x @ W^T + b, x [..., in], W [out, in] -> [..., out].

    fused (a tiny model inside a compiled CPU graph, FUSED_BYTES): `packed` is W^T [in, out]
    contiguous and y = sum_i x[..., i, None] W^T[i, :], left to inductor to fuse with the ops
    around it (never materialised: traced only); reading W^T along the output, its loops are
    vectorised over the outputs, where over W [out, in] each output paid a lane sum (the demo
    draft's 8-step chain: 0.21 vs 0.25 ms at batch 1, 0.8 vs 1.0 ms at batch 8, with the RoPE
    tables; bench/RESULTS.md).

    On the CPU, with few rows (decode steps, draft levels, batch-1 verification trees: below
    PACKED_ROWS_MIN, or up to LINEAR_ROWS_MAX without `packed`) through `cospec::linear_rows`,
    which reads W once for all rows (register tiles over rows; W split over torch's threads from
    256 KiB on): a forward bound by reading the weights then costs about the same for 1 and for
    8 tokens (bench/ops/forward_buckets.py). With more rows (a batch-8 verification, a prefill)
    the product is bound by the FMA units: through `cospec::linear_packed` over `packed`
    (ops.pack_weight(W), float32 [ceil(out / 48), in, 48]), broadcast-FMA tiles without lane sums.
    auto (a graph dynamic in the rows, whose row count is a symbol): `cospec::linear_auto`, which
    makes the same choice by PACKED_ROWS_MIN when it runs, without a guard on the rows.
    Inside a compiled graph the ops are extern calls between inductor's fused kernels. Other
    cases (no packed copy and more rows, other devices) use `F.linear` (MKL, cuBLAS). bfloat16
    weights too: inductor's per-row reduction streams them faster on bare matrices at one row
    (0.95 vs 1.27 ms, bench/ops/gemv_speed.py --dtype bfloat16) but is 1.7x slower in the whole
    forward (bench/ops/bf16_forward.py)."""
    w, b = lin.weight, lin.bias
    if fused:
        y = (x.unsqueeze(-1) * packed).sum(-2)  # [..., in, 1] * [in, out] -> [..., out]
        return y if b is None else y + b
    rows = x.numel() // x.shape[-1]
    if x.device.type != "cpu":
        return F.linear(x, w, b)
    if auto and packed is not None and x.dtype == torch.float32:
        # a graph dynamic in the rows (a prefill's): the op picks the kernel when it runs
        y = torch.ops.cospec.linear_auto(x.reshape(rows, x.shape[-1]), w, packed, b, PACKED_ROWS_MIN)  # [rows, out]
        return y.view(*x.shape[:-1], w.shape[0])
    if packed is not None and rows >= PACKED_ROWS_MIN and x.dtype == torch.float32:
        y = torch.ops.cospec.linear_packed(x.reshape(rows, x.shape[-1]), packed, w.shape[0], b)  # [rows, out]
        return y.view(*x.shape[:-1], w.shape[0])
    if rows > LINEAR_ROWS_MAX:
        return F.linear(x, w, b)
    y = torch.ops.cospec.linear_rows(x.reshape(rows, x.shape[-1]), w, b)  # [rows, out]
    return y.view(*x.shape[:-1], w.shape[0])


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention as broadcast products and sums (a tiny model's compiled CPU forward, FUSED_BYTES):
    o = softmax(scale * q k^T, masked to -inf where `mask` is False) v, each query head reading
    K/V head h // (Hq / Hk) as SDPA's enable_gqa. q [Bb, Hq, nb, D]; k, v [Bb, Hk, S, D]; mask
    bool [Bb, 1, nb, S] (every query opens a slot) -> o [Bb, Hq, nb, D], q's dtype."""
    Bb, Hq, nb, D = q.shape
    Hk, S = k.shape[1], k.shape[2]
    g = Hq // Hk  # query heads per K/V head
    s = (q.reshape(Bb, Hk, g * nb, 1, D) * k[:, :, None]).sum(-1) * scale  # [Bb, Hk, g * nb, S]
    s = s.view(Bb, Hk, g, nb, S).masked_fill(~mask[:, :, None], float("-inf"))
    p = torch.softmax(s.float(), dim=-1).to(v.dtype).view(Bb, Hk, g * nb, S, 1)
    return (p * v[:, :, None]).sum(-2).view(Bb, Hq, nb, D)  # [Bb, Hk, g * nb, D] -> [Bb, Hq, nb, D]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)
