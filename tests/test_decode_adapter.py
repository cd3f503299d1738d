"""decode through a hand-written ModelAdapter (another stack's forward and cache): a
one-layer attention LM in plain PyTorch. spd over it equals plain greedy decoding of the
same model computed without any cache."""

import math

import torch

import cospec_ext
from cospec_ext.engine import ModelAdapter


class TinyAttnLM:
    """One attention layer, learned absolute positions, a single KV head:
    x = E[tok] + P[pos]; y = x + softmax(q k^T / sqrt(D) + mask) v; logits = y W."""

    num_layers, num_kv_heads, max_positions = 1, 1, 64

    def __init__(self, vocab=40, dim=16, seed=0, scale=1.0):
        g = torch.Generator().manual_seed(seed)
        r = lambda *s: torch.randn(*s, generator=g) * scale  # noqa: E731
        self.E, self.P, self.Wq, self.Wk, self.Wv, self.Wo = r(vocab, dim), r(64, dim), r(dim, dim), r(dim, dim), \
            r(dim, dim), r(dim, vocab)
        self.vocab_size, self.head_dim = vocab, dim
        self.dtype, self.device = torch.float32, torch.device("cpu")
        self.num_params = sum(t.numel() for t in (self.E, self.P, self.Wq, self.Wk, self.Wv, self.Wo))

    def _attend(self, x, k, v, allowed):  # x [B, n, D]; k, v [B, S, D]; allowed bool [B, n, S]
        s = (x @ self.Wq) @ k.transpose(1, 2) / math.sqrt(self.head_dim)
        return x + torch.softmax(s.masked_fill(~allowed, float("-inf")), -1) @ v

    def forward(self, input_ids, position_ids, attention_mask, kv, logits_to_keep=0):
        x = self.E[input_ids] + self.P[position_ids]  # [B, n, D]
        k_all, v_all = kv.update(0, (x @ self.Wk)[:, None], (x @ self.Wv)[:, None])  # [B, 1, S, D]
        y = self._attend(x, k_all[:, 0], v_all[:, 0], attention_mask[:, 0])
        logits = y @ self.Wo
        return logits[:, -logits_to_keep:] if logits_to_keep else logits

    def greedy(self, prompt, n):
        """Cache-free greedy decoding: every step recomputes the whole sequence."""
        seq = list(prompt)
        for _ in range(n):
            ids = torch.tensor([seq])
            x = self.E[ids] + self.P[torch.arange(len(seq))][None]
            causal = torch.ones(len(seq), len(seq), dtype=torch.bool).tril()[None]
            y = self._attend(x, x @ self.Wk, x @ self.Wv, causal)
            seq.append(int((y @ self.Wo)[0, -1].argmax()))
        return seq[len(prompt):]


def test_adapter_satisfies_protocol():
    assert isinstance(TinyAttnLM(), ModelAdapter)


def test_spd_through_custom_adapter_equals_cache_free_greedy():
    target = TinyAttnLM(seed=0)
    draft = TinyAttnLM(seed=0, scale=1.0)
    draft.Wo = draft.Wo + 0.3 * torch.randn(draft.Wo.shape, generator=torch.Generator().manual_seed(5))  # a near copy
    prompts = [[5, 7, 9], [1, 2, 3, 4, 5, 6], [11]]
    P = max(map(len, prompts))
    ids = torch.tensor([[0] * (P - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
    for tree in ("chain:3;fixed", "tree:3,2;fixed", "tree:3,2"):
        out = cospec_ext.decode(target, draft, ids, mask, mode="spd", tree=tree, max_new_tokens=15,
                                eos_token_id=[], pad_token_id=0)
        for b, p in enumerate(prompts):
            assert out.sequences[b, P:].tolist() == target.greedy(p, 15), f"{tree} row {b}"
        if tree.endswith(";fixed"):  # (the adaptive depth follows timings: no claim on its acceptance)
            assert out.stats.mean_accept_len > 1.2, "the near-copy draft should be accepted often"


def test_walked_facts_are_cached_per_model_and_follow_its_parameters():
    """HFAdapter's walked facts and the rest of what it reads from the model
    (engine/adapter.adapter_spec) are computed once per model while its parameters and config
    stay, and again when it is cast, moved, a weight is replaced or its config object is."""
    import copy

    from cospec_ext.engine.adapter import _SPECS, HFAdapter
    from _models import tiny

    m = tiny("llama", layers=2, seed=21)
    a = HFAdapter(m)
    first = _SPECS[m][1]
    assert HFAdapter(m).num_params == a.num_params and _SPECS[m][1] is first  # reused
    m.config = copy.deepcopy(m.config)  # another config object: read again
    assert HFAdapter(m).num_params == a.num_params and _SPECS[m][1] is not first
    first = _SPECS[m][1]
    m.to(torch.float64)  # same Parameter objects, new dtype
    b = HFAdapter(m)
    assert b.dtype == torch.float64 and _SPECS[m][1] is not first
    m.model.layers[0].mlp.up_proj.weight = torch.nn.Parameter(torch.zeros(96, 32, dtype=torch.float64))  # bigger
    c = HFAdapter(m)
    assert c.num_params == b.num_params + 32 * 32
