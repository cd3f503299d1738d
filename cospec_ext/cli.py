"""The `cospec` command line."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cospec", description="Collaborative speculative decoding tools")
    sub = parser.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="run each kernel on example inputs and print what it did")
    demo.add_argument("--seed", type=int, default=0)
    from .cli_decode import add_parser as add_decode, run as run_decode

    add_decode(sub)
    args = parser.parse_args(argv)
    if args.cmd == "decode":
        return run_decode(args)
    if args.cmd == "demo":
        from .demo import main as demo_main

        return demo_main(seed=args.seed)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
