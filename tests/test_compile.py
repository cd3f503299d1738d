"""decode(compile=True): the static-shape native forward (engine/native.py) under
torch.compile gives the eager path's tokens (greedy: generate()'s), compiles a bounded
set of graphs with no graph break, reuses them across calls, and a fresh process loads
them from inductor's on-disk cache."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
import transformers

import cospec_ext
from cospec_ext.engine import ConstantArbiter
from cospec_ext.engine.native import NativeAdapter, batch_bucket, query_bucket, unsupported_reason
from cospec_ext.engine.adapter import HFAdapter
from cospec_ext.engine.kv import KVCache, KVView
from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

MAX_NEW = 20


def _mistral():
    cfg = transformers.MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
                                     initializer_range=0.3, sliding_window=None, eos_token_id=EOS, pad_token_id=PAD)
    torch.manual_seed(5)
    return transformers.MistralForCausalLM(cfg).eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_native_forward_equals_transformers(arch):
    """The uncompiled core's logits over a left-padded prompt equal the transformers model's."""
    model = _mistral() if arch == "mistral" else tiny(arch, layers=2, seed=3)
    assert unsupported_reason(model) is None
    ids, mask = prompts(3, 4)
    B, P = ids.shape
    with torch.no_grad():
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        ref = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits  # [B, P, V]
        nat = NativeAdapter(HFAdapter(model), compile=False)
        cache = KVCache(nat.num_layers, B, nat.num_kv_heads, P + 4, nat.head_dim, nat.dtype, nat.device, rows=4)
        s = torch.arange(P)
        m = (s[None, :] <= s[:, None])[None] & mask.bool()[:, None, :]
        m |= torch.eye(P, dtype=torch.bool)[None]
        got = nat.forward(ids, pos, m[:, None], KVView(cache, P, uniform_start=0))  # [B, P, V]
    real = mask.bool()
    err = (got[real] - ref[real]).abs().max().item()
    assert err < 1e-4, f"{arch}: native vs transformers logits differ by {err:.2e}"


@pytest.mark.parametrize("arch,fused", [("llama", True), ("llama", False), ("qwen2", True)])
def test_compiled_decode_equals_eager(arch, fused, monkeypatch):
    """target and spd equal generate() token for token; cospec (an always-accepting arbiter)
    equals its eager run; rows finish at different times, prompts are left-padded. fused: the
    tiny models' graphs compute projections and attention as inductor's own loops
    (core.FUSED_BYTES), else through the extern kernels larger models use."""
    from cospec_ext.engine import core, native

    if not fused:
        monkeypatch.setattr(core, "FUSED_BYTES", 0)
    target = tiny(arch, layers=3, seed=1)
    draft = first_layers(target, 1)
    assert native.compiled_core(target).core.fused == fused
    ids, mask = prompts(3, 2)
    ref = generate_greedy(target, ids, mask, MAX_NEW)
    kw = dict(max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD)
    for mode, tree in (("target", "chain:1"), ("spd", "chain:4"), ("spd", "tree:2,2;fixed")):
        out = cospec_ext.decode(target, draft, ids, mask, mode=mode, tree=tree, compile=True, **kw)
        assert out.stats.compiled
        diff = (out.sequences != ref).nonzero()
        assert out.sequences.shape == ref.shape and diff.numel() == 0, f"{mode} {tree}: first mismatch {diff[:1]}"
    eager = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=ConstantArbiter(1.0),
                              tree="chain:3;fixed", **kw)
    comp = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=ConstantArbiter(1.0),
                             tree="chain:3;fixed", compile=True, **kw)
    assert comp.stats.arbiter_accepted > 0
    assert torch.equal(eager.sequences, comp.sequences)
    assert (eager.stats.arbiter_consulted, eager.stats.arbiter_accepted) == \
        (comp.stats.arbiter_consulted, comp.stats.arbiter_accepted)


def test_graphs_are_bounded_and_reused():
    """One graph per (batch bucket, query bucket) a model meets, none breaks; the same call again
    compiles nothing, and calls with other batch sizes and prompt lengths in the same buckets stay
    within the bound."""
    from torch._dynamo.utils import counters

    target = tiny("llama", layers=2, seed=11)
    draft = first_layers(target, 1)
    kw = dict(mode="spd", tree="chain:3;fixed", max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD,
              compile=True)
    ids, mask = prompts(4, 6, min_len=9, max_len=13)  # P in 9..13: query bucket 16
    first = cospec_ext.decode(target, draft, ids, mask, **kw)
    # target: 4 nodes (bucket 4); draft: catch-up of 1-2 tokens (1, 2) and one node per level
    # (1); batch buckets 4, 2, 1 as rows finish; plus the draft's chain graph, built once per
    # cache (while its 4-row bucket is full); the prefills run eagerly
    bound = 3 * (1 + 2) + 1
    assert 1 <= first.stats.graphs <= bound, f"{first.stats.graphs} graphs, bound {bound}"
    assert not counters["graph_break"], f"graph breaks: {dict(counters['graph_break'])}"
    unique = counters["stats"]["unique_graphs"]
    again = cospec_ext.decode(target, draft, ids, mask, **kw)
    assert torch.equal(again.sequences, first.sequences)
    assert counters["stats"]["unique_graphs"] == unique, "the same call compiled new graphs"
    # another batch in the same bucket, other prompt lengths in the same query bucket: it may meet
    # batch buckets the first did not (rows finish at other times), never more than the bound
    ids2, mask2 = prompts(3, 7, min_len=9, max_len=15)
    second = cospec_ext.decode(target, draft, ids2, mask2, **kw)
    assert torch.equal(second.sequences, generate_greedy(target, ids2, mask2, MAX_NEW))
    assert second.stats.graphs <= bound, f"{second.stats.graphs} graphs after two calls, bound {bound}"
    assert not counters["graph_break"]
    # on the CPU every graph is called directly after its first call (no dynamo frame handling)
    from cospec_ext.engine.native import _CORES
    for model in (target, draft):
        caps = [cap for _, cap in _CORES[model].fns.values()]
        assert caps and all(c is not None and c.user_idx is not None for c in caps)


@pytest.mark.parametrize("mode", ["target", "spd"])
def test_no_graph_per_prompt_length(mode):
    """After one warm-up call on a short prompt, prompts of other lengths (3 to 90 tokens, one
    cache length: the prefill runs eagerly, the cache's length is on a ladder with a floor)
    compile no new graph, and their tokens equal generate()'s."""
    target = tiny("llama", layers=2, seed=12, max_pos=256)
    draft = first_layers(target, 1)
    kw = dict(mode=mode, tree="chain:3;fixed", max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, compile=True)
    ids, mask = prompts(1, 1, min_len=5, max_len=5)
    warm = cospec_ext.decode(target, draft, ids, mask, **kw)
    graphs = warm.stats.graphs
    assert warm.stats.compile_s > 0 and graphs >= 1
    for i, n in enumerate((3, 9, 17, 31, 46, 64, 90)):
        ids, mask = prompts(1, 100 + i, min_len=n, max_len=n)
        out = cospec_ext.decode(target, draft, ids, mask, **kw)
        assert torch.equal(out.sequences, generate_greedy(target, ids, mask, 12)), f"prompt of {n}"
        assert out.stats.graphs == graphs and out.stats.compile_s == 0.0, f"prompt of {n} compiled a graph"


def test_short_prefill_is_one_dynamic_graph():
    """A CPU prefill over at most PREFILL_ROWS_MAX rows runs one graph per batch bucket, dynamic in
    the prompt length and called without dynamo's guards after its first call: its last-position logits and the K/V it writes equal the eager core's for
    prompts of 2 to 16 tokens (left-padded rows at batch 2), no other length compiles again (its
    compile seconds counted once), and a longer prompt runs eagerly."""
    from torch._dynamo.utils import counters

    from cospec_ext.engine import native
    from cospec_ext.engine.runner import ModelRunner

    model = tiny("llama", layers=2, seed=21, max_pos=256)
    comp, eager = NativeAdapter(HFAdapter(model)), NativeAdapter(HFAdapter(model), compile=False)
    for B, lengths in ((1, (5, 2, 16, 9, 17, 40, 1)), (2, (6, 3, 8, 12))):
        before = counters["stats"]["unique_graphs"]
        for i, P in enumerate(lengths):
            g = torch.Generator().manual_seed(300 + P)
            ids = torch.randint(4, 64, (B, P), generator=g)  # [B, P]: row 0 left-padded at batch 2
            pad = torch.tensor([min(2, P - 1), 0][-B:], dtype=torch.int64)  # [B]
            out = []
            with torch.inference_mode():
                for ad in (comp, eager):
                    r = ModelRunner(ad, B, 96, 8, pad)
                    out.append((r.prefill(ids), r.cache.data[..., :P, :].clone()))  # [B, V], [2, L, rows, H, P, D]
            graphed = B * P <= native.PREFILL_ROWS_MAX
            for b in range(B):  # the cache slots of each row's real tokens
                real = slice(int(pad[b]), P)
                err = (out[0][1][:, :, b, :, real] - out[1][1][:, :, b, :, real]).abs().max().item()
                assert err < 1e-4, f"B={B} P={P}: K/V differ by {err:.2e}"
            err = (out[0][0] - out[1][0]).abs().max().item()
            assert err < 1e-4, f"B={B} P={P}: logits differ by {err:.2e}"
            shape = tuple(out[0][1].shape[:4]) + (128, out[0][1].shape[5])  # the cache's
            key = ("prefill", B, 1, shape, torch.float32, torch.device("cpu"))
            assert (key in comp.compiled.fns) == (i > 0 or graphed), f"B={B} P={P}"
            if i == 0:
                assert comp.compile_seconds > 0
                c0 = comp.compile_seconds
            if P == 1:  # a one-token prompt: the rounds' one-token graph (built here: counted)
                assert (B, 1, shape, torch.float32, torch.device("cpu")) in comp.compiled.fns
                assert comp.compile_seconds > c0
                before, c0 = before + 1, comp.compile_seconds
        assert counters["stats"]["unique_graphs"] == before + 1, f"B={B}: one prefill graph for every length"
        assert comp.compile_seconds == c0
        # called directly after its first call (no dynamo guards), the prompt length read from
        # the tokens' size
        cap = comp.compiled.fns[key][1]
        assert cap is not None and cap.user_idx is not None and cap.syms, f"B={B}: {cap and cap.syms}"


def test_cache_length_ladder():
    """The static cache's length: >= what is needed, on the ladder 128, 192, 256, 384, ..., never
    below the model's floor (its cache at most KV_SHARE of the weights' bytes), few lengths."""
    from cospec_ext.engine.native import KV_SHARE, cache_length

    slot, weights = 46080, 538_000_000  # SmolLM2-135M: 30 layers x 3 KV heads x 64 x 2 (K, V) x 4 B
    assert [cache_length(n, 1, slot, weights) for n in (1, 300, 512, 513, 700, 1000)] == [512, 512, 512, 768, 768, 1024]
    assert cache_length(10, 8, slot, weights) == 128  # batch 8: a smaller floor
    assert 512 * slot <= KV_SHARE * weights < 768 * slot
    lengths = {cache_length(n, 1, slot, weights) for n in range(1, 8193)}
    assert len(lengths) == 9 and max(lengths) == 8192


def test_batch_and_query_buckets():
    assert [query_bucket(n) for n in (1, 2, 3, 5, 6, 7, 8, 9, 17)] == [1, 2, 3, 5, 6, 8, 8, 16, 24]
    assert [batch_bucket(b, 8) for b in (1, 3, 5, 8)] == [1, 4, 8, 8]
    assert batch_bucket(5, 6) == 6


def test_unsupported_model_falls_back_with_a_warning():
    target = tiny("llama", layers=2, seed=12)
    target.config.hidden_act = "relu2"  # not in the native forward's activations
    assert "activation" in unsupported_reason(target)
    target.config.hidden_act = "silu"
    target.config.model_type = "gpt_neox"
    ids, mask = prompts(2, 3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = cospec_ext.decode(target, None, ids, mask, mode="target", max_new_tokens=8, eos_token_id=EOS,
                                pad_token_id=PAD, compile=True)
    assert any("runs uncompiled" in str(x.message) for x in w)
    assert not out.stats.compiled
    with pytest.raises(TypeError, match="compile"):
        cospec_ext.decode(target, None, ids, mask, mode="target", compile="yes")


_CHILD = r"""
import json, sys, torch
sys.path.insert(0, {tests!r})
import cospec_ext
from torch._dynamo.utils import counters
from _models import tiny, prompts, EOS, PAD
t = tiny("qwen2", layers=2, seed=13)
ids, mask = prompts(2, 1)
out = cospec_ext.decode(t, None, ids, mask, mode="target", max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD,
                        compile=True)
print(json.dumps({{"hit": counters["inductor"]["fxgraph_cache_hit"], "miss": counters["inductor"]["fxgraph_cache_miss"],
                  "tokens": out.sequences.tolist()}}))
"""


def test_fresh_process_reuses_inductor_cache(tmp_path):
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "TORCHINDUCTOR_FX_GRAPH_CACHE": "1"}
    code = _CHILD.format(tests=os.path.dirname(__file__))
    runs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert runs[0]["miss"] >= 1 and runs[0]["hit"] == 0, runs[0]
    assert runs[1]["hit"] >= 1 and runs[1]["miss"] == 0, f"second process did not load the cached graph: {runs[1]}"
    assert runs[0]["tokens"] == runs[1]["tokens"]
