"""Self-drafts: a draft made of the target's own first L layers (the same modules) with its
norm and head, as in LayerSkip / self-speculative decoding.

The K/V such a draft computes in its layers for a committed token are the target's K/V of
those layers for the same token (same weights, same inputs, same positions, same keys to
attend), so the engine gives the draft no cache of its own: its cache is a view of the
target's first L layers. Then

- the draft needs no prefill and no catch-up over committed tokens: after every round the
  target's verification has written every committed token but the new root, and its
  `kv_rollback` has moved them into place, in the shared layers too; a round's catch-up is
  the root alone (one token), however long drafting was off;
- the draft's own tree writes land on slots the target's verification overwrites, and the
  draft does no rollback or row compaction of its own (the target's moves the shared layers).

Greedy speculative decoding stays exactly the target's output (the target verifies every
token); what the draft proposes may differ in the last bits from a draft with its own cache,
since its K/V come from the target's forwards (other batch shapes).
"""

from __future__ import annotations

import copy

import torch


def self_draft(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    """A self-draft of a transformers Llama-style causal LM: its first `layers` layers, token
    embeddings, rotary embedding, final norm and head as a model of its own, every module
    shared with `model` (nothing copied), so decode gives it a view of the target's cache."""
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not 0 < layers < len(inner.layers):
        n = len(getattr(inner, "layers", []))
        raise ValueError(f"`layers` must be in [1, {n - 1}] (a model with .model.layers of {n}), got {layers}")
    cfg = copy.deepcopy(model.config)
    cfg.num_hidden_layers = layers
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = cfg.layer_types[:layers]
    with torch.device("meta"):
        draft = type(model)(cfg)
    draft.model.embed_tokens, draft.model.norm, draft.lm_head = inner.embed_tokens, inner.norm, model.lm_head
    draft.model.layers = torch.nn.ModuleList(list(inner.layers[:layers]))
    draft.model.rotary_emb = inner.rotary_emb
    draft.generation_config = model.generation_config
    return draft.eval()


def _layers(model):
    inner = getattr(model, "model", None)
    return getattr(inner, "layers", None)


def shared_prefix_layers(verifier, drafter) -> int:
    """L > 0 when `drafter`'s model is `verifier`'s first L layers (the same module objects,
    the same token embeddings and rotary frequencies), on one device, neither tensor-parallel;
    else 0 (the draft gets a cache of its own)."""
    tm, dm = getattr(verifier, "model", None), getattr(drafter, "model", None)
    if tm is None or dm is None or tm is dm:
        return 0
    tl, dl = _layers(tm), _layers(dm)
    if tl is None or dl is None or len(dl) == 0 or len(dl) >= len(tl):
        return 0
    if any(a is not b for a, b in zip(dl, tl)):
        return 0
    if tm.model.get_input_embeddings() is not dm.model.get_input_embeddings():
        return 0
    rt, rd = getattr(tm.model, "rotary_emb", None), getattr(dm.model, "rotary_emb", None)
    if rt is not rd:
        if rt is None or rd is None or not hasattr(rt, "inv_freq") or not hasattr(rd, "inv_freq"):
            return 0
        if (not torch.equal(rt.inv_freq, rd.inv_freq)
                or getattr(rt, "attention_scaling", 1.0) != getattr(rd, "attention_scaling", 1.0)):
            return 0
    for a in ("tensor_parallel", "layer_devices"):
        if getattr(verifier, a, None) or getattr(drafter, a, None):
            return 0
    for a in ("num_kv_heads", "head_dim", "dtype", "device"):
        if getattr(verifier, a) != getattr(drafter, a):
            return 0
    tc, dc = getattr(tm, "config", None), getattr(dm, "config", None)
    for a in ("sliding_window", "use_sliding_window", "attn_logit_softcapping"):  # attention must match too
        if getattr(tc, a, None) != getattr(dc, a, None):
            return 0
    return len(dl)
