"""The compiled native forward's time by query count: what verifying n tree nodes costs
against a one-token step, for models from 0.3 MiB to 300 MB of weights (the adaptive depth
measures the same per depth inside decode).

    python bench/ops/forward_buckets.py [--calls 20] [--threads 2] [--models L2d64,L8d384,...]

Random Llama models (vocab 100, head_dim 64, kv heads = heads / 3), batch 1, 40 cached tokens;
query counts pad to the forward's buckets (n up to 6, then 8, 16). Per model and count: median
ms of `calls` interleaved rounds (one call per count each) after 3 warm-up calls per count
(graphs compile on first use, outside the timing), the
weight bytes read per forward over the time (GB/s), GFLOP/s (2 x matrix parameters x tokens
/ time) and the ratio to one token; the copy bandwidth of the same run is printed first
(bench/ops/gemv_speed.py `bandwidth`: 2 x bytes of `dst.copy_(src)` over 512 MB / time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

from cospec_ext.engine.adapter import as_adapter
from cospec_ext.engine.kv import KVCache, KVView
from cospec_ext.engine.native import NativeAdapter
from gemv_speed import bandwidth

# name -> (layers, hidden, intermediate)
MODELS = {"L2d64": (2, 64, 172), "L4d128": (4, 128, 344), "L6d256": (6, 256, 688), "L8d384": (8, 384, 1024),
          "L8d512": (8, 512, 1376), "L12d768": (12, 768, 2048)}
COUNTS = (1, 2, 4, 5, 8, 16)


def llama(layers: int, hidden: int, mlp: int, seed: int = 0) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    heads = max(1, hidden // 64)
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=hidden, intermediate_size=mlp,
                                   num_hidden_layers=layers, num_attention_heads=heads,
                                   num_key_value_heads=max(1, heads // 3), max_position_embeddings=512,
                                   tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(cfg).eval()


def weight_bytes(model) -> int:
    """Bytes a forward reads of the parameters: all but the embedding table (n rows of it)."""
    emb = model.model.embed_tokens.weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not emb)


def times(model, counts, calls: int, past: int = 40, S: int = 256) -> dict:
    """{n: median ms of a compiled forward over n new tokens at batch 1, `past` cached}: every
    count warmed up (compiled) first, then `calls` interleaved rounds of one call per count, so
    a slow spell of the host weighs on every count alike."""
    ad = NativeAdapter(as_adapter(model), compile=True)
    cache = KVCache(ad.num_layers, 1, ad.num_kv_heads, S, ad.head_dim, ad.dtype, ad.device, rows=1)
    fns = {}
    for n in counts:
        tok = torch.randint(0, 100, (1, n))
        pos = torch.arange(past, past + n)[None]
        mask = torch.ones(1, 1, n, past + n, dtype=torch.bool)
        fns[n] = (lambda tok=tok, pos=pos, mask=mask, n=n:
                  ad.forward(tok, pos, mask, KVView(cache, past + n, uniform_start=past)))
        for _ in range(3):
            fns[n]()
    ts = {n: [] for n in counts}
    for _ in range(calls):
        for n in counts:
            t0 = time.perf_counter()
            fns[n]()
            ts[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) * 1e3 for n, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    copy_bw, read_bw = bandwidth(args.threads)
    torch.set_num_threads(args.threads)
    print(f"compiled native forward, batch 1, median of {args.calls} calls, {args.threads} threads; "
          f"copy bandwidth {copy_bw:.1f} GB/s, read {read_bw:.1f} GB/s (same run)")
    print(f"  {'model':<9} {'MiB':>6} {'n':>3} {'ms':>8} {'GB/s':>6} {'%copy':>6} {'GFLOP/s':>8} {'x 1 tok':>8}")
    with torch.inference_mode():
        for name in args.models.split(","):
            model = llama(*MODELS[name])
            nbytes = weight_bytes(model)
            flops = 2 * nbytes / 4  # per token: 2 FLOP per float32 matrix parameter
            t = times(model, COUNTS, args.calls)
            for n in COUNTS:
                s = t[n] / 1e3
                print(f"  {name:<9} {nbytes / 2**20:>6.1f} {n:>3} {t[n]:>8.3f} {nbytes / s / 1e9:>6.1f} "
                      f"{100 * nbytes / s / 1e9 / copy_bw:>5.0f}% {flops * n / s / 1e9:>8.1f} {t[n] / t[1]:>8.2f}")


if __name__ == "__main__":
    main()
