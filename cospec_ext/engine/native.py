"""A compact, static-shape forward for the Llama family (Llama, Qwen2, Mistral) over the
weights of a transformers model, compiled with `torch.compile` (`decode(compile=True)`).

Why not compile the transformers forward itself: its Cache facade, mask utilities and
kernel-hub hooks change between 5.x releases and retrace on every new sequence length.
This module follows gpt-fast instead: one function per forward, every shape fixed,

    x = embed(tokens)                                     # [Bb, nb, H]
    per layer:  h = rmsnorm(x);  q, k, v = rope(h Wq), rope(h Wk), h Wv
                cache[:, l, rows, :, slots] = k, v         # index writes, no resize
                x += Wo · sdpa(q, cache_k, cache_v, mask)  # over the whole cache, mask [Bb, 1, nb, S]
                x += Wdown (act(x' Wgate) * x' Wup),  x' = rmsnorm(x)
    logits = lm_head(rmsnorm(x))                         # [Bb, nb, V]

so `torch.compile(dynamic=False)` makes one graph per (batch bucket Bb, query bucket nb,
cache shape): the batch is padded to a power of two (at most the cache's rows), the query
count to `query_bucket(n)`, and attention always covers all S slots of the cache, the
engine's boolean mask hiding what a row may not see. Padding queries and rows read slot 0
and write slot S - 1, which no mask ever opens (the engine sizes S with two spare slots).
The weights are the model's own tensors (nothing is copied). On a GPU the graphs run as
CUDA graphs (`mode="reduce-overhead"`); on the CPU inductor emits C++.
"""

from __future__ import annotations

import time
import weakref

import torch
import torch.nn.functional as F

SUPPORTED = ("llama", "qwen2", "mistral")
_ACTS = {"silu": F.silu, "swish": F.silu, "gelu": F.gelu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


def query_bucket(n: int) -> int:
    """The padded query count of a forward over n tokens: 1, 2, 4, 8, then multiples of 8."""
    if n <= 8:
        return 1 << (n - 1).bit_length()
    return -(-n // 8) * 8


def batch_bucket(b: int, rows: int) -> int:
    """The padded batch of a forward over b live rows of a cache with `rows` rows: the next
    power of two, at most `rows`."""
    return min(1 << (b - 1).bit_length(), rows)


def unsupported_reason(model) -> str | None:
    """None when `model` can run natively, else why not (the caller falls back to transformers)."""
    cfg = getattr(model, "config", None)
    mt = getattr(cfg, "model_type", None)
    if mt not in SUPPORTED:
        return f"model_type {mt!r} is not one of {SUPPORTED}"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return f"{type(model).__name__} does not have the usual .model.layers / .lm_head layout"
    if any(hasattr(p, "to_local") for p in model.parameters()):
        return "its weights are tensor-parallel shards (DTensor)"
    if getattr(cfg, "hidden_act", "silu") not in _ACTS:
        return f"activation {cfg.hidden_act!r}"
    if getattr(cfg, "use_sliding_window", False) or (mt == "mistral" and getattr(cfg, "sliding_window", None)):
        return "sliding-window attention"
    rope = getattr(inner, "rotary_emb", None)
    if rope is None or not hasattr(rope, "inv_freq"):
        return "no rotary_emb.inv_freq"
    if getattr(rope, "rope_type", "default") == "dynamic":
        return "dynamic RoPE scaling changes with the sequence length"
    return None


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

    @staticmethod
    def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        """w * x / sqrt(mean(x^2) + eps), computed in float32 like transformers' RMSNorm."""
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return w * h.to(x.dtype)

    def forward(self, tokens, positions, mask, slots, cache):
        """tokens, positions, slots: int64 [Bb, nb]; mask: bool [Bb, 1, nb, S];
        cache: [2, L, B0, H_kv, S, D] (rows [0, Bb) are used; slots written in place).
        Returns (logits [Bb, nb, V], last hidden state [Bb, nb, hidden])."""
        Bb, nb = tokens.shape
        D, Hq, Hk = self.head_dim, self.heads, self.kv_heads
        x = self.embed(tokens)  # [Bb, nb, hidden]
        freqs = positions.float()[..., None] * self.inv_freq  # [Bb, nb, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scale).to(x.dtype)[:, None]  # [Bb, 1, nb, D]
        sin = (emb.sin() * self.rope_scale).to(x.dtype)[:, None]
        rows = torch.arange(Bb, device=tokens.device)[:, None]  # [Bb, 1]
        for li, layer in enumerate(self.layers):
            at = layer.self_attn
            h = self._rms(x, layer.input_layernorm.weight, self.eps[li])
            q = at.q_proj(h).view(Bb, nb, Hq, D).transpose(1, 2)  # [Bb, Hq, nb, D]
            k = at.k_proj(h).view(Bb, nb, Hk, D).transpose(1, 2)  # [Bb, Hk, nb, D]
            v = at.v_proj(h).view(Bb, nb, Hk, D).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            ck, cv = cache[0, li], cache[1, li]  # [B0, Hk, S, D]
            ck.transpose(1, 2)[rows, slots] = k.transpose(1, 2).to(ck.dtype)
            cv.transpose(1, 2)[rows, slots] = v.transpose(1, 2).to(cv.dtype)
            o = F.scaled_dot_product_attention(q, ck[:Bb], cv[:Bb], attn_mask=mask, scale=D**-0.5,
                                               enable_gqa=Hq != Hk)  # [Bb, Hq, nb, D]
            x = x + at.o_proj(o.transpose(1, 2).reshape(Bb, nb, Hq * D))
            h = self._rms(x, layer.post_attention_layernorm.weight, self.eps[li])
            m = layer.mlp
            x = x + m.down_proj(self.act(m.gate_proj(h)) * m.up_proj(h))
        hid = self._rms(x, self.norm.weight, self.final_eps)
        return self.head(hid), hid


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


_CORES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (core, compiled core)


def _set_recompile_limit(n: int) -> None:
    """Each (batch bucket, query bucket, cache shape) is one graph of the same code object:
    raise dynamo's per-code cache limit so none of them falls back to eager."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < n:
            setattr(cfg, name, n)
    if hasattr(cfg, "accumulated_recompile_limit") and cfg.accumulated_recompile_limit < 4 * n:
        cfg.accumulated_recompile_limit = 4 * n
    elif hasattr(cfg, "accumulated_cache_size_limit") and cfg.accumulated_cache_size_limit < 4 * n:
        cfg.accumulated_cache_size_limit = 4 * n


def compiled_core(model, device: torch.device):
    """The model's `_Core` and its `torch.compile`d forward, built once per model and reused by
    every decode call (dynamo's graphs are keyed by the core, so a new one would recompile)."""
    hit = _CORES.get(model)
    if hit is None:
        core = _Core(model)  # holds the model's modules: never .to() it
        _set_recompile_limit(64)
        mode = "reduce-overhead" if device.type == "cuda" else None
        fn = torch.compile(core, dynamic=False, fullgraph=True, mode=mode)
        hit = _CORES[model] = (core, fn)
    return hit


class NativeAdapter:
    """`ModelAdapter` running a Llama-family transformers model through `_Core`.

    compile: run the compiled core (else the same code eagerly, for tests and prefill).
    `compile_seconds` accumulates the time of each forward that met a new shape (dynamo
    tracing + inductor, or a cache load); `graphs` is the set of shapes met.
    """

    static_shapes = True

    def __init__(self, hf_adapter, compile: bool = True):
        self.hf = hf_adapter
        for a in ("model", "config", "num_layers", "head_dim", "num_kv_heads", "vocab_size", "dtype", "device",
                  "max_positions", "hidden_size", "num_params"):
            setattr(self, a, getattr(hf_adapter, a))
        self.tensor_parallel = False
        self.core, self.fn = compiled_core(self.model, self.device)
        self.compile = compile
        self.compile_seconds = 0.0
        self.graphs: set = set()

    def forward(self, input_ids, position_ids, attention_mask, kv, logits_to_keep: int = 0,
                return_hidden: bool = False, eager: bool = False):
        """As `ModelAdapter.forward`; `eager` runs this forward uncompiled (the prefill)."""
        B, n = input_ids.shape
        cache = kv.cache.data  # [2, L, B0, H, S, D]
        B0, S = cache.shape[2], cache.shape[4]
        Bb, nb = batch_bucket(B, B0), query_bucket(n)
        dev = input_ids.device
        tok = torch.zeros(Bb, nb, dtype=torch.int64, device=dev)
        pos = torch.zeros(Bb, nb, dtype=torch.int64, device=dev)
        slots = torch.full((Bb, nb), S - 1, dtype=torch.int64, device=dev)
        mask = torch.zeros(Bb, 1, nb, S, dtype=torch.bool, device=dev)
        mask[..., 0] = True  # padding queries attend slot 0 (finite K/V); real ones are overwritten
        tok[:B, :n], pos[:B, :n] = input_ids, position_ids
        slots[:B, :n] = kv.slot_tensor(n)
        mask[:B, :, :n, : attention_mask.shape[-1]] = attention_mask
        if eager or not self.compile:
            logits, hid = self.core(tok, pos, mask, slots, cache)
        else:
            key = (Bb, nb, tuple(cache.shape), cache.dtype)
            new = key not in self.graphs
            t0 = time.perf_counter()
            if dev.type == "cuda":
                if getattr(cache, "_dynamo_static_input_type", None) is None:
                    torch._dynamo.mark_static_address(cache)  # written in place by the CUDA graphs
                torch.compiler.cudagraph_mark_step_begin()
            logits, hid = self.fn(tok, pos, mask, slots, cache)
            if dev.type == "cuda":  # CUDA graph outputs are overwritten by the next replay
                logits, hid = logits.clone(), hid.clone()
            if new:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                self.compile_seconds += time.perf_counter() - t0
                self.graphs.add(key)
        lo = n - logits_to_keep if logits_to_keep else 0
        logits = logits[:B, lo:n]
        if (Bb, nb) != (B, n - lo):
            logits = logits.contiguous()
        if return_hidden:
            return logits, hid[:B, lo:n].contiguous()
        return logits
