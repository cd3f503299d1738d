"""`decode(compile=True)` as a chat user meets it: one warm-up call, then prompts of lengths it
has not seen. SmolLM2-135M-Instruct (bench/decode/smollm2_speed.py's model), compiled target-only
against transformers' generate(), batch 1, greedy, 48 new tokens.

    python bench/decode/smollm2_prompts.py [--passes 3] [--threads 2]

The warm-up is one call on one short prompt; its wall time and compile time are printed.
Then twelve prompts of 8 to ~200 tokens (four plain texts, eight chat-formatted questions of
growing length), each decoded by both paths in turn (the order alternating), in `--passes`
passes: the first pass is the first time the compiled path meets those lengths, and must
compile no graph (stats.compile_s == 0 and the graph count unchanged, checked); tokens are
checked equal to generate()'s. Reported per pass: tokens/s of each path over the whole
sequence and their ratio; then the median ratio over passes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from smollm2_speed import load
from cospec_ext import decode

PLAIN = ["The capital city of Italy, famous for its history, is", "Once upon a time, in a small village by the sea,",
         "Photosynthesis is the process by which green plants",
         "The three laws of motion, first stated by Isaac Newton, describe how"]
TOPIC = ("Rivers shape the land they cross: they carve valleys, carry silt to the plains and build deltas "
         "where they meet the sea. ")
QUESTIONS = ["Summarise this in one sentence: ", "What is the main idea here? ", "Write a title for this text: ",
             "Which word best describes the tone? ", "List two facts from this passage: ",
             "Rewrite the first sentence more simply: ", "What could a student learn from this? ",
             "Give one question this text answers: "]


def prompt_ids(tok) -> list[torch.Tensor]:
    """Twelve prompts, int64 [1, P] each, P from 8 to ~200 tokens, all of different lengths."""
    out = [torch.tensor([tok(t)["input_ids"]]) for t in PLAIN]
    for i, q in enumerate(QUESTIONS):
        msg = [{"role": "user", "content": q + " ".join((TOPIC * 8).split()[: 5 + 16 * i])}]
        r = tok.apply_chat_template(msg, add_generation_prompt=True)
        out.append(torch.tensor([r["input_ids"] if hasattr(r, "keys") else r]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load()
    eos = model.generation_config.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    kw = dict(max_new_tokens=args.max_new_tokens, eos_token_id=eos, pad_token_id=pad)
    prompts = prompt_ids(tok)
    print(f"SmolLM2-135M-Instruct, compiled target-only vs generate(), batch 1, {args.max_new_tokens} new tokens, "
          f"{args.threads} threads; prompt lengths {[p.shape[1] for p in prompts]}")
    t0 = time.perf_counter()
    warm = decode(model, None, torch.tensor([tok("Hello there")["input_ids"]]), mode="target", compile=True, **kw)
    print(f"warm-up (one call, {warm.sequences.shape[1] - warm.stats.new_tokens[0]}-token prompt): "
          f"{time.perf_counter() - t0:.1f} s, of which compiling {warm.stats.compile_s:.1f} s, {warm.stats.graphs} graphs")
    graphs, ratios = warm.stats.graphs, []
    for p in range(args.passes):
        wall, toks = {"generate": 0.0, "compiled": 0.0}, {"generate": 0, "compiled": 0}
        for i, ids in enumerate(prompts):
            order = ["generate", "compiled"] if (i + p) % 2 == 0 else ["compiled", "generate"]
            for m in order:
                t = time.perf_counter()
                if m == "generate":
                    with torch.inference_mode():
                        seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, **kw)
                    ref = seq
                else:
                    out = decode(model, None, ids, mode="target", compile=True, **kw)
                    seq = out.sequences
                    if out.stats.compile_s > 0 or out.stats.graphs != graphs:
                        raise AssertionError(f"prompt of {ids.shape[1]} tokens compiled a graph "
                                             f"({out.stats.compile_s:.1f} s, {out.stats.graphs} graphs)")
                wall[m] += time.perf_counter() - t
                toks[m] += seq.shape[1] - ids.shape[1]
            if not torch.equal(out.sequences, ref[:, :out.sequences.shape[1]]) or ref.shape != out.sequences.shape:
                raise AssertionError(f"prompt of {ids.shape[1]} tokens: compiled tokens differ from generate()'s")
        tps = {m: toks[m] / wall[m] for m in wall}
        ratios.append(tps["compiled"] / tps["generate"])
        print(f"pass {p}: generate {tps['generate']:.1f} tok/s, compiled {tps['compiled']:.1f} tok/s, "
              f"ratio {ratios[-1]:.2f}; new graphs 0", flush=True)
    print(f"compiled / generate(): median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}) over {args.passes} passes")


if __name__ == "__main__":
    main()
