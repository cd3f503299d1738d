"""Models spread over devices (transformers' `device_map`): each layer's K/V live on that
layer's device, `kv_rollback` and row compaction run per device, and decode gives the same
tokens as with the model on one device.

On the CPU the split is forced: layers declared on `cpu` and `cpu:0` (distinct device
objects, one physical device) make a cache of two parts, which runs every per-part path.
With CUDA, layers go to `cuda:0` and the CPU (and `cuda:1` when present) for real.
"""

import pytest
import torch

import cospec_ext
from cospec_ext.engine import HFAdapter, LogisticArbiter
from cospec_ext.engine.kv import KVCache, KVView
from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

SPLIT = [torch.device("cpu"), torch.device("cpu", 0)]


def _split(model, devices):
    ad = HFAdapter(model)
    ad.layer_devices = list(devices)
    return ad


def test_cache_in_parts_matches_one_part():
    """Writes (uniform and per-row slots), rollback and keep_rows on a 3-layer cache in two
    parts leave the same K/V as on a cache in one part."""
    g = torch.Generator().manual_seed(0)
    L, B, H, S, D = 3, 4, 2, 24, 8
    one = KVCache(L, B, H, S, D, torch.float32, torch.device("cpu"))
    two = KVCache(L, B, H, S, D, torch.float32, torch.device("cpu"), layer_devices=[SPLIT[0], SPLIT[0], SPLIT[1]])
    assert len(two.parts) == 2 and two.data is None and len(one.parts) == 1
    kv_of = lambda c: torch.cat([p for p in c.parts], dim=1)  # noqa: E731  [2, L, B, H, S, D]
    one.data.copy_(torch.randn(one.data.shape, generator=g))
    two.parts[0].copy_(one.data[:, :2])
    two.parts[1].copy_(one.data[:, 2:])
    slots = torch.randint(0, S, (B, 5), generator=g)
    kvs = [(torch.randn(B, H, 5, D, generator=g), torch.randn(B, H, 5, D, generator=g)) for _ in range(L)]
    for c in (one, two):
        for view in (KVView(c, 12, uniform_start=4), KVView(c, S, slots=slots)):
            for l, (k, v) in enumerate(kvs):
                ko, vo = view.update(l, k, v)
                assert ko.shape == (B, H, view.s_used, D)
    torch.testing.assert_close(kv_of(two), kv_of(one), rtol=0, atol=0)
    root = torch.tensor([3, 6, 2, 9])
    path = torch.tensor([[0, 2, 4, -1, -1, -1, -1], [0, 1, -1, -1, -1, -1, -1], [0, 3, 5, 6, -1, -1, -1],
                         [0, -1, -1, -1, -1, -1, -1]])  # [B, N=7] node ids, the tree's nodes < 7
    for c in (one, two):
        c.rollback(root, path)
        c.keep_rows([1, 3], upto=S)
    assert one.batch == two.batch == 2
    torch.testing.assert_close(kv_of(two), kv_of(one), rtol=0, atol=0)


def test_layer_devices_must_match_the_layers():
    with pytest.raises(ValueError, match="layer_devices"):
        KVCache(3, 1, 1, 8, 4, torch.float32, torch.device("cpu"), layer_devices=SPLIT)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_decode_with_the_cache_split_over_devices_equals_one_device(arch):
    """spd (rows finishing apart, so rows are compacted) and cospec with a fixed arbiter:
    the same tokens with target and draft caches in two parts, and spd equals generate()."""
    target = tiny(arch, layers=2, seed=11)
    draft = first_layers(target, 1)
    ids, mask = prompts(5, seed=3)
    free = generate_greedy(target, ids, mask, 20, eos=None)
    eos = int(free[1, ids.shape[1] + 3])  # a token some row emits early
    arb = LogisticArbiter(["t_logp_cand", "d_logp_cand"], [0.3, 1.0], 3.0)
    draft_split = HFAdapter(draft)
    draft_split.layer_devices = [SPLIT[1]]
    for mode, kw in (("spd", {}), ("cospec", {"arbiter": arb})):
        common = dict(mode=mode, tree="tree:2,2", max_new_tokens=20, eos_token_id=eos, pad_token_id=PAD, **kw)
        want = cospec_ext.decode(target, draft, ids, mask, **common)
        got = cospec_ext.decode(_split(target, SPLIT), draft_split, ids, mask, **common)
        assert torch.equal(got.sequences, want.sequences), mode
        if mode == "spd":
            assert torch.equal(got.sequences, generate_greedy(target, ids, mask, 20, eos=eos))
            assert len(set(got.stats.new_tokens)) > 1  # rows finished apart


def test_device_map_model_decodes():
    """A model loaded through accelerate's dispatch (device_map, every module on the CPU
    here) runs through decode unchanged."""
    pytest.importorskip("accelerate")
    from accelerate import dispatch_model

    target = tiny("llama", layers=2, seed=12)
    ref = tiny("llama", layers=2, seed=12)
    dm = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu", "model.norm": "cpu",
          "model.rotary_emb": "cpu", "lm_head": "cpu"}
    target = dispatch_model(target, device_map=dm)
    ids, mask = prompts(3, seed=4)
    out = cospec_ext.decode(target, first_layers(ref, 1), ids, mask, mode="spd", tree="chain:3", max_new_tokens=12,
                            eos_token_id=EOS, pad_token_id=PAD)
    assert torch.equal(out.sequences, generate_greedy(ref, ids, mask, 12))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_map_over_cpu_and_cuda_equals_one_device():
    """Layer 0 on cuda:0, layer 1 on cuda:1 when present (else the CPU): float32 spd equals
    the target's own greedy decoding on one device; rollback runs per device."""
    from accelerate import dispatch_model

    other = "cuda:1" if torch.cuda.device_count() > 1 else "cpu"
    ref = tiny("llama", layers=2, seed=13).cuda()
    target = tiny("llama", layers=2, seed=13)
    dm = {"model.embed_tokens": "cuda:0", "model.layers.0": "cuda:0", "model.layers.1": other, "model.norm": other,
          "model.rotary_emb": "cuda:0", "lm_head": other}
    target = dispatch_model(target, device_map=dm)
    ad = HFAdapter(target)
    assert ad.layer_devices == [torch.device("cuda:0"), torch.device(other)]
    ids, mask = prompts(4, seed=5)
    ids, mask = ids.cuda(), mask.cuda()
    out = cospec_ext.decode(ad, first_layers(ref, 1).cuda(), ids, mask, mode="spd", tree="tree:2,2", max_new_tokens=16,
                            eos_token_id=EOS, pad_token_id=PAD)
    assert torch.equal(out.sequences, generate_greedy(ref, ids, mask, 16))
