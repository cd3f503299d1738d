"""`cospec decode`: decode one prompt with local target/draft model directories."""

from __future__ import annotations

import argparse

MODES = ("target", "draft", "spd", "cospec")


def add_parser(sub) -> None:
    p = sub.add_parser("decode", help="decode a prompt with a target/draft pair (and an arbiter)",
                       description="Decode one prompt with local model directories (no downloads). Uses the "
                                   "tokenizer's chat template when it has one; prints the text and a stats line.")
    p.add_argument("--target", required=True, help="directory of the target model (save_pretrained format)")
    p.add_argument("--draft", help="directory of the draft model (needed by draft/spd/cospec)")
    p.add_argument("--arbiter", help="saved arbiter (directory or .json/.safetensors path) for --mode cospec")
    p.add_argument("--mode", choices=MODES, default="spd")
    p.add_argument("--tree", default="chain:4", help="'chain:K', 'tree:D,K[,M]', 'static:-1,0,...' (+ ';fixed')")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default: 128, or what the model's positions leave after the prompt and the tree")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--threshold", type=float, default=None,
                   help="arbiter threshold (default: the one chosen on validation, stored beside the arbiter; else 0.5)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=[None, "float32", "float16", "bfloat16"])
    p.add_argument("--no-chat-template", action="store_true", help="tokenize the prompt as plain text")


def encode_prompt(tokenizer, prompt: str, use_template: bool = True):
    """The prompt as input_ids [1, P]: through the chat template when the tokenizer has one."""
    if use_template and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt")
        return ids if not hasattr(ids, "input_ids") else ids["input_ids"]
    return tokenizer(prompt, return_tensors="pt").input_ids


def run(args) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import decode

    dtype = getattr(torch, args.dtype) if args.dtype else None
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=dtype).to(  # noqa: E731
        args.device).eval()
    if args.mode != "target" and not args.draft:
        raise SystemExit(f"cospec decode: --mode {args.mode} needs --draft")
    target = load(args.target) if args.mode != "draft" else None
    draft = load(args.draft) if args.draft else None
    tok = AutoTokenizer.from_pretrained(args.target, local_files_only=True)
    ids = encode_prompt(tok, args.prompt, not args.no_chat_template).to(args.device)
    if args.max_new_tokens is None:
        from .engine.tree import parse_tree

        limit = getattr((target or draft).config, "max_position_embeddings", None) or 1 << 30
        depth = parse_tree(args.tree).depth if args.mode in ("spd", "cospec") else 0
        args.max_new_tokens = max(1, min(128, limit - ids.shape[1] - depth))
    out = decode(target, draft, ids, mode=args.mode, arbiter=args.arbiter, threshold=args.threshold,
                 tree=args.tree, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    print(tok.decode(out.sequences[0, ids.shape[1]:], skip_special_tokens=True))
    print(out.stats.summary())
    return 0
