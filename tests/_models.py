"""Tiny random-init causal LMs built from configs (no downloads) for the decode tests."""

from __future__ import annotations

import torch
import transformers

EOS, PAD = 3, 0


def tiny(arch: str = "llama", layers: int = 2, seed: int = 0, vocab: int = 64, hidden: int = 32,
         init: float = 0.3, attn: str = "sdpa", max_pos: int = 256) -> torch.nn.Module:
    """A small LlamaForCausalLM / Qwen2ForCausalLM in float32, eval mode.

    A larger initializer_range than the default makes the logits peaky, so greedy argmaxes
    are far from ties and float reordering between tree and sequential attention cannot
    flip them."""
    kw = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_pos,
              initializer_range=init, eos_token_id=EOS, pad_token_id=PAD, bos_token_id=1,
              attn_implementation=attn)
    cls, cfg_cls = {"llama": (transformers.LlamaForCausalLM, transformers.LlamaConfig),
                    "qwen2": (transformers.Qwen2ForCausalLM, transformers.Qwen2Config)}[arch]
    torch.manual_seed(seed)
    return cls(cfg_cls(**kw)).eval()


def first_layers(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    """A draft made of the model's own first `layers` layers (shared embeddings, norm, head)."""
    d = {**model.config.to_dict(), "num_hidden_layers": layers}
    if d.get("layer_types"):
        d["layer_types"] = d["layer_types"][:layers]
    cfg = model.config.__class__(**d)
    draft = model.__class__(cfg).eval()
    draft.load_state_dict(model.state_dict(), strict=False)
    return draft


def prompts(batch: int, seed: int, vocab: int = 64, min_len: int = 3, max_len: int = 9):
    """Left-padded random prompts: (input_ids [B, P], attention_mask [B, P]); tokens avoid EOS/PAD."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(min_len, max_len + 1, (batch,), generator=g)
    P = int(lens.max())
    ids = torch.randint(4, vocab, (batch, P), generator=g)
    mask = (torch.arange(P)[None, :] >= (P - lens)[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask


def generate_greedy(model, ids, mask, max_new_tokens, eos=EOS):
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                              eos_token_id=eos, pad_token_id=PAD)


def save_task_models(root, arbiter: bool = False):
    """Tiny random target (2 layers) and draft (1 layer) over the embedded task's tokenizer,
    saved with it under root/target and root/draft (and a random arbiter under root/arbiter)."""
    from cospec_ext.task.tokenizer import VOCAB_SIZE, build_tokenizer

    tok = build_tokenizer()
    for name, layers, seed in (("target", 2, 0), ("draft", 1, 1)):
        torch.manual_seed(seed)
        cfg = transformers.LlamaConfig(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=128, initializer_range=0.3, eos_token_id=2,
                                       pad_token_id=0, bos_token_id=1)
        transformers.LlamaForCausalLM(cfg).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    if arbiter:
        from cospec_ext.engine import Arbiter

        torch.manual_seed(2)
        Arbiter(hidden=(8,)).save(root / "arbiter")
    return root

