"""`cospec decode`: decode one prompt with local target/draft model directories."""

from __future__ import annotations

import argparse
import os
import sys

MODES = ("target", "draft", "spd", "cospec")


def add_parser(sub) -> None:
    p = sub.add_parser("decode", help="decode a prompt with a target/draft pair (and an arbiter)",
                       description="Decode one prompt with local model directories (no downloads). Uses the "
                                   "tokenizer's chat template when it has one; prints the text and a stats line.")
    p.add_argument("--target", required=True, help="directory of the target model (save_pretrained format)")
    p.add_argument("--draft", help="directory of the draft model (needed by draft/spd/cospec)")
    p.add_argument("--arbiter", help="saved arbiter (directory or .json/.safetensors path) for --mode cospec")
    p.add_argument("--mode", choices=MODES, default="spd",
                   help="target: target-only; draft: draft-only; spd: speculative decoding (lossless); "
                        "cospec: spd with the arbiter at mismatches (needs --arbiter)")
    p.add_argument("--tree", default="chain:4", help="'chain:K', 'tree:D,K[,M]', 'static:-1,0,...' (+ ';fixed')")
    p.add_argument("--prompt", required=True, help="the prompt text")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default: 128, or what the model's positions leave after the prompt and the tree")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sampling at this temperature")
    p.add_argument("--top-k", type=int, default=None,
                   help="sampling: keep the k most likely tokens (0: off; default: the model's generation_config, else 50)")
    p.add_argument("--top-p", type=float, default=None,
                   help="sampling: keep the smallest most likely set with probability >= P (1.0: off)")
    p.add_argument("--min-p", type=float, default=None,
                   help="sampling: drop tokens below P times the most likely one's probability (0: off)")
    p.add_argument("--stop", action="append", default=None, metavar="STR",
                   help="stop a row after the token that completes STR (repeatable; as generate(stop_strings=...))")
    p.add_argument("--stream", action="store_true", help="print the text as it is decoded")
    p.add_argument("--threshold", type=float, default=None,
                   help="arbiter threshold (default: the one chosen on validation, stored beside the arbiter; else 0.5)")
    p.add_argument("--seed", type=int, default=None, help="random seed of sampling (temperature > 0)")
    p.add_argument("--device", default="cpu", help="torch device of both models, e.g. cpu or cuda:0")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="load the models in this dtype (default: as saved)")
    p.add_argument("--no-chat-template", action="store_true", help="tokenize the prompt as plain text")
    p.add_argument("--compile", action="store_true",
                   help="run Llama/Qwen2/Mistral models through the static-shape forward compiled with torch.compile "
                        "(the first call compiles; the summary gives the compile time)")


def encode_prompt(tokenizer, prompt: str, use_template: bool = True):
    """The prompt as input_ids [1, P]: through the chat template when the tokenizer has one."""
    if use_template and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt")
        return ids if not hasattr(ids, "input_ids") else ids["input_ids"]
    return tokenizer(prompt, return_tensors="pt").input_ids


def _error(msg: str) -> int:
    """A user's mistake: one line on stderr, exit status 2 (like argparse)."""
    print(f"cospec decode: error: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    """Decodes args.prompt; a user's mistake (a missing directory, a missing or bad arbiter, a
    bad option value) prints one line and returns 2; anything else is a bug and raises."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import decode
    from .engine import Arbiter

    if args.mode != "target" and not args.draft:
        return _error(f"--mode {args.mode} needs --draft")
    if args.mode == "cospec" and not args.arbiter:
        return _error("--mode cospec needs --arbiter (a saved arbiter's directory)")
    for flag, d in (("--target", args.target), ("--draft", args.draft)):
        if d is not None and not os.path.isdir(d):
            return _error(f"{flag}: no model directory at {d!r}")
    arbiter = None
    if args.mode == "cospec":
        try:
            arbiter = Arbiter.load(args.arbiter, device=args.device)
        except (FileNotFoundError, ValueError, KeyError) as e:
            return _error(f"--arbiter: {e}")
    dtype = getattr(torch, args.dtype) if args.dtype else None

    def load(flag, d):
        try:
            return AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=dtype).to(args.device).eval()
        except (OSError, ValueError) as e:  # no config / weights there, an unknown architecture
            raise _UserError(f"{flag}: cannot load a model from {d!r}: {str(e).splitlines()[0]}") from e

    try:
        target = load("--target", args.target) if args.mode != "draft" else None
        draft = load("--draft", args.draft) if args.draft else None
        try:
            tok = AutoTokenizer.from_pretrained(args.target, local_files_only=True)
        except (OSError, ValueError) as e:
            raise _UserError(f"--target: no tokenizer in {args.target!r}: {str(e).splitlines()[0]}") from e
    except _UserError as e:
        return _error(str(e))
    ids = encode_prompt(tok, args.prompt, not args.no_chat_template).to(args.device)
    if args.max_new_tokens is None:
        from .engine.tree import parse_tree

        limit = getattr((target or draft).config, "max_position_embeddings", None) or 1 << 30
        try:
            depth = parse_tree(args.tree).depth if args.mode in ("spd", "cospec") else 0
        except ValueError as e:
            return _error(f"--tree: {e}")
        args.max_new_tokens = max(1, min(128, limit - ids.shape[1] - depth))
    streamer = None
    if args.stream:
        from transformers import TextStreamer

        streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    try:
        out = decode(target, draft, ids, mode=args.mode, arbiter=arbiter, threshold=args.threshold, tree=args.tree,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                     compile=args.compile, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, streamer=streamer,
                     stop_strings=args.stop, tokenizer=tok if args.stop else None)
    except (ValueError, TypeError) as e:  # decode validates every argument with a message naming it
        return _error(str(e))
    if not args.stream:  # the streamer printed it, and a newline at the end
        print(tok.decode(out.sequences[0, ids.shape[1]:], skip_special_tokens=True))
    print(out.stats.summary())
    return 0


class _UserError(Exception):
    pass
