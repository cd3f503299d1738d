"""The issue-3 bench pair (bench/decode/test_bench_decode.py's 8-layer random target, its first-2-layers
draft and an independent useless draft), compiled vs eager, beside generate() and transformers'
assisted generation.

    python bench/decode/pair_compile.py [--repeats 5] [--batches 1,4] [--threads 2] [--sets 6] [--prompt-seed 0]

Greedy, no EOS, 64 new tokens from 32-token prompts (--sets prompt sets per batch size, 6). Warm-up
pass, then `repeats` interleaved timed passes (bench/decode/compile_speed.py); every method's tokens
are checked equal to generate()'s. Printed per batch: tokens/s and x generate() (medians);
then the ratios the goals name, per pass: spd (compiled) / assisted generation (batch 1), and
spd with the useless draft / target-only, eager and compiled (the minimum over passes too:
"in every run"). The adaptive depth remembers between calls what a call with the same models
learned (engine/adaptive.py: after the warm-up, the useless draft starts switched off); "spd
poor+compile cold" forgets it before every call, the figure of a first call.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import transformers

from compile_speed import run, table
from cospec_ext import decode
from cospec_ext.engine.adaptive import forget
from test_bench_decode import DRAFT_LAYERS, MAX_NEW, PAD, build_prompts, build_target, first_layers, _config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", type=int, default=6,
                    help="prompt sets per batch size and pass (more: less noise per pass; 2 before 2026-12-01)")
    ap.add_argument("--prompt-seed", type=int, default=0,
                    help="offset of the prompt sets' seeds (0: the sets the engine was tuned on)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    target = build_target(0)
    good = first_layers(target, DRAFT_LAYERS)
    torch.manual_seed(7)
    poor = transformers.LlamaForCausalLM(_config(DRAFT_LAYERS)).eval()

    def assisted(ids, mask):
        with torch.inference_mode():
            return target.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=MAX_NEW,
                                   eos_token_id=None, pad_token_id=PAD, assistant_model=good)

    def cold(ids, mask):  # the useless draft with nothing remembered from earlier calls (adaptive.PairMemory)
        forget(poor)
        return decode(target, poor, ids, mask, mode="spd", compile=True, tree="chain:4", max_new_tokens=MAX_NEW,
                      eos_token_id=None, pad_token_id=PAD).sequences

    print(f"bench pair (8-layer target, 2-layer drafts), {args.repeats} interleaved passes, {args.threads} threads")
    for bs in (int(b) for b in args.batches.split(",")):
        methods = {"generate": None}
        if bs == 1:  # transformers' assisted generation takes one row
            methods["assisted"] = assisted
        methods.update({
            "target": dict(mode="target"), "target+compile": dict(mode="target", compile=True),
            "spd": dict(mode="spd", draft=good), "spd+compile": dict(mode="spd", draft=good, compile=True),
            "spd poor": dict(mode="spd", draft=poor), "spd poor+compile": dict(mode="spd", draft=poor, compile=True),
            "spd poor+compile cold": cold})
        chunks = [build_prompts(bs, 100 * j + bs + args.prompt_seed) for j in range(args.sets)]
        res = run(target, good, chunks, methods, "chain:4", MAX_NEW, None, PAD, args.repeats)
        print(table(res, bs))

        def per_pass(a, b):
            return [x / y for x, y in zip(res[a]["tps"], res[b]["tps"])]

        pairs = [("spd poor", "target"), ("spd poor+compile", "target+compile"),
                 ("spd poor+compile cold", "target+compile"), ("spd+compile", "target+compile")]
        if bs == 1:
            pairs = [("spd+compile", "assisted"), ("spd", "assisted")] + pairs
        for a, b in pairs:
            r = per_pass(a, b)
            print(f"  {a} / {b}: median {statistics.median(r):.2f}, min {min(r):.2f}, max {max(r):.2f}")


if __name__ == "__main__":
    main()
