"""How decode talks to a model: the `ModelAdapter` protocol and its Hugging Face implementation.

An adapter runs one forward over `n` new tokens per row at explicit positions, with an
explicit boolean attention mask over the cache's slots, writing the new keys and values
through a `KVView` and returning logits. `HFAdapter` does this for any transformers
causal LM by presenting the engine's preallocated cache through the transformers `Cache`
interface and passing the tree mask as a 4D attention mask (used as-is by transformers
5.x) together with explicit `position_ids`. Another stack plugs in by implementing the
protocol (see tests/test_decode_adapter.py for a hand-written one).
"""

from __future__ import annotations

import inspect
import weakref
from typing import Protocol, runtime_checkable

import torch

from .kv import KVView


@runtime_checkable
class ModelAdapter(Protocol):
    """What `cospec_ext.decode` needs from a model.

    Attributes: vocab_size (logits width V), num_layers, num_kv_heads, head_dim (the cache
    shape), dtype, device, max_positions (int or None), num_params (for cost estimates).
    Optional: layer_devices, the device of each layer when the model is spread over several
    (the cache then keeps each layer's K/V there and `kv.update` returns them there).
    """

    vocab_size: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device
    max_positions: int | None
    num_params: int

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor,
                kv: KVView, logits_to_keep: int = 0) -> torch.Tensor:
        """input_ids, position_ids: int64 [B, n]; attention_mask: bool [B, 1, n, kv.s_used]
        (True = attend); for every layer l call `kv.update(l, k, v)` with k, v [B, H, n, D]
        and attend over what it returns. Returns logits [B, n, V] (the last
        `logits_to_keep` positions when > 0). Optional, for arbiters that read hidden
        states: a `hidden_size` attribute and a `return_hidden=True` keyword returning
        (logits, last hidden state [B, n, hidden_size])."""
        ...


try:  # the transformers Cache base class, so model code sees a real Cache
    from transformers.cache_utils import Cache as _HFCache
except Exception:  # pragma: no cover - transformers without cache_utils
    _HFCache = object


class _SlotLayer:
    """Per-layer facade (transformers' code may look at `cache.layers[i]`)."""

    is_compileable = False
    is_sliding = False

    def __init__(self, cache: "SlotCache", idx: int):
        self._cache, self._idx = cache, idx

    def get_seq_length(self) -> int:
        return self._cache.get_seq_length()

    def get_max_length(self) -> int:
        return self._cache.kv.cache.max_len


class SlotCache(_HFCache):
    """A transformers `Cache` over the engine's preallocated tensor: `update` writes the
    new K/V at the engine's slots and returns K/V over slots [0, s_used). Positions and the
    mask come from the engine, so the cache never has to infer a sequence length."""

    def __init__(self, num_layers: int):
        # Not calling Cache.__init__: its signature changes across transformers versions and
        # it would build layer objects we do not use. One SlotCache serves every forward of
        # an adapter: `bind` points it at that forward's KVView.
        self.kv: KVView | None = None
        self.past_len = 0
        self.layers = [_SlotLayer(self, i) for i in range(num_layers)]
        self.layer_class_to_replicate = None
        self.offloading = False

    def bind(self, kv: KVView, past_len: int) -> "SlotCache":
        self.kv, self.past_len = kv, past_len
        return self

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        return self.kv.update(layer_idx, key_states, value_states)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.past_len

    def get_mask_sizes(self, *args, **kwargs):
        return self.kv.s_used, 0

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_sliding(self) -> list[bool]:
        return [False] * len(self.layers)


def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


class HFAdapter:
    """`ModelAdapter` for a transformers causal LM (Llama, Qwen2, Mistral, ...). What it reads
    from the model (config, parameter walk, forward signature) is computed once per model and
    `params_key` (`adapter_spec`), so building one per decode call costs one parameter walk."""

    def __init__(self, model: torch.nn.Module):
        if not hasattr(model, "config") or not callable(getattr(model, "forward", None)):
            raise TypeError(f"expected a transformers causal LM or a ModelAdapter, got {type(model).__name__}")
        self.model = model
        self.__dict__.update(adapter_spec(model))
        # transformers' tensor parallelism (tp_plan): weights are DTensor shards, every rank
        # runs the same round, so nothing rank-local (timings) may steer it
        self.tp_group = _tp_group(model) if self.tensor_parallel else None
        self._cache = SlotCache(self.num_layers)

    def forward(self, input_ids, position_ids, attention_mask, kv: KVView, logits_to_keep: int = 0,
                return_hidden: bool = False):
        mask = attention_mask
        if self._eager:  # eager attention adds the mask to the scores
            mask = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device).masked_fill_(
                ~mask, torch.finfo(self.dtype).min)
        kwargs = {self._cache_kw: self._cache.bind(kv, kv.s_used - input_ids.shape[1])}
        if self._keep_kw:
            kwargs["logits_to_keep"] = logits_to_keep
        seen, hook = [], None
        if return_hidden and self._head is not None:
            hook = self._head.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
        elif return_hidden:
            kwargs["output_hidden_states"] = True
        try:
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                             **kwargs)
        finally:
            if hook is not None:
                hook.remove()
        logits = out.logits if hasattr(out, "logits") else out[0]
        if logits_to_keep and logits.shape[1] != logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        if return_hidden:
            if hook is not None and not seen:
                raise RuntimeError(f"{type(self.model).__name__}: its output embeddings were not called as a module, "
                                   "so the last hidden state could not be read for the arbiter")
            return logits, (seen[-1] if hook is not None else out.hidden_states[-1])
        return logits


_SPECS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (key, spec)


def params_key(model: torch.nn.Module) -> tuple:
    """What a model's walked facts depend on, read in one walk over its modules' own parameters:
    each parameter's identity, dtype, device and shape. Moving or casting a model (`.to()` keeps
    the Parameter objects but changes their dtype/device), sharding it (DTensor parameters,
    FSDP2) or replacing a weight changes the key; editing its config in place after a call is
    not seen. (A plain walk over `_modules` / `_parameters`: `model.parameters()`'s generators
    cost 3x as much, 0.14 vs 0.05 ms for the demo target, on every decode call.)"""
    out, stack, seen = [], [model], set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.extend((id(p), p.dtype, p.device, p.shape) for p in m._parameters.values() if p is not None)
        stack.extend(c for c in reversed(m._modules.values()) if c is not None)
    return tuple(out)


def adapter_spec(model: torch.nn.Module) -> dict:
    """HFAdapter's attributes read from `model` (config sizes, vocabulary, dtype and device,
    `model_facts`, the forward's cache keyword, the output embeddings), computed once per model,
    its config object and `params_key`: rebuilding them on every decode call cost ~0.7 ms for
    the demo pair (~3% of a batch-1 spd call). Editing the config or the forward's signature in
    place after a call is not seen."""
    key = (id(model.config), params_key(model))
    try:
        hit = _SPECS.get(model)
    except TypeError:  # no weak reference to it: not cached
        hit = None
    if hit is not None and hit[0] == key:
        return hit[1]
    cfg = _text_config(model.config)
    num_layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    f = model_facts(model, num_layers, head_dim, int(getattr(cfg, "num_key_value_heads", None) or heads))
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    params = inspect.signature(model.forward).parameters
    # transformers renamed `past_key_values` to `cache` in later 5.x releases.
    cache_kw = "past_key_values" if "past_key_values" in params else "cache"
    if cache_kw not in params and not any(q.kind == q.VAR_KEYWORD for q in params.values()):
        raise TypeError(f"{type(model).__name__}.forward takes neither `past_key_values` nor `cache`")
    spec = {"config": cfg, "num_layers": num_layers, "head_dim": head_dim, "num_kv_heads": f["num_kv_heads"],
            "vocab_size": int(out_emb.weight.shape[0]) if out_emb is not None else int(cfg.vocab_size),
            "dtype": f["dtype"], "device": f["device"], "max_positions": getattr(cfg, "max_position_embeddings", None),
            "hidden_size": int(cfg.hidden_size), "num_params": f["num_params"],
            "facts": f,  # model_facts' dict (read by engine/native.py unsupported_reason too)
            "tensor_parallel": f["tensor_parallel"],
            "layer_devices": f["layer_devices"],  # a model spread over devices: each layer's K/V on its device
            "fsdp": f["fsdp"],  # FSDP2 wrappers
            "_cache_kw": cache_kw, "_keep_kw": "logits_to_keep" in params,
            "_eager": getattr(cfg, "_attn_implementation", "sdpa") == "eager",
            # the last hidden state is the LM head's input: a hook there reads it without
            # output_hidden_states collecting every layer's (None: fall back to that)
            "_head": out_emb if isinstance(out_emb, torch.nn.Module) else None}
    try:
        _SPECS[model] = (key, spec)
    except TypeError:
        pass
    return spec


def model_facts(model: torch.nn.Module, num_layers: int, head_dim: int, config_heads: int) -> dict:
    """The facts HFAdapter reads by walking the model: parameter count, dtype and device, the
    number of devices, tensor parallelism, local K/V heads, per-layer devices, FSDP2 wrappers
    (cached with the rest of its spec by `adapter_spec`)."""
    p = next(model.parameters())
    return {"dtype": p.dtype, "device": p.device, "num_params": sum(q.numel() for q in model.parameters()),
            "tensor_parallel": any(hasattr(q, "to_local") for q in model.parameters()),
            "devices": len({q.device for q in model.parameters()}),
            "num_kv_heads": _local_kv_heads(model, config_heads, head_dim),
            "layer_devices": _layer_devices(model, num_layers, p.device),
            "fsdp": any(type(m).__name__.startswith("FSDP") for m in model.modules())}


def _local_kv_heads(model: torch.nn.Module, config_heads: int, head_dim: int) -> int:
    """The K/V heads this process computes: the config's, or under tensor parallelism
    (transformers' tp_plan, weights as DTensor shards) the local shard's, read from the first
    attention layer's k_proj (its local rows / head_dim)."""
    for m in model.modules():
        k = getattr(m, "k_proj", None)
        w = getattr(k, "weight", None)
        if isinstance(w, torch.Tensor):
            if hasattr(w, "to_local"):  # a DTensor shard
                return max(1, w.to_local().shape[0] // head_dim)
            return config_heads
    return config_heads


def _layer_devices(model: torch.nn.Module, num_layers: int, device: torch.device) -> list[torch.device] | None:
    """The device of each decoder layer (its attention's k_proj weight), or None when the
    model is on one device or its layers cannot be found one per layer."""
    devs = [m.k_proj.weight.device for m in model.modules()
            if isinstance(getattr(getattr(m, "k_proj", None), "weight", None), torch.Tensor)]
    if len(devs) != num_layers or all(d == device for d in devs):
        return None
    return devs


def _tp_group(model: torch.nn.Module):
    """The process group of the ranks that hold shards of the same weights: the "tp" dim of
    a DTensor weight's mesh (a 2-D mesh: data parallel x tp), or its only dim; None: the
    default group."""
    meshes = [m for m in (getattr(q, "device_mesh", None) for q in model.parameters()) if m is not None]
    for mesh in meshes:
        if "tp" in (getattr(mesh, "mesh_dim_names", None) or ()):
            return mesh.get_group("tp")
    for mesh in meshes:  # an unnamed 1-D mesh: the tensor-parallel ranks themselves
        if mesh.ndim == 1 and not getattr(mesh, "mesh_dim_names", None):
            return mesh.get_group()
    return None


def as_adapter(model) -> ModelAdapter:
    """A `ModelAdapter` as-is, or a transformers model wrapped in `HFAdapter`."""
    if isinstance(model, HFAdapter) or (not isinstance(model, torch.nn.Module) and isinstance(model, ModelAdapter)):
        return model
    return HFAdapter(model)
