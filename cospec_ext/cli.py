"""The `cospec` command line: decode, train, task, demo."""

from __future__ import annotations

import argparse
import sys


def _train_pkg():
    try:
        import cospec_train  # noqa: F401  (python/cospec_train, installed with the package)
    except ImportError as e:  # pragma: no cover - a broken install
        raise SystemExit(f"cospec: the training package `cospec_train` is not importable ({e}); "
                         "reinstall with `pip install --no-build-isolation -e .`")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="cospec", description="Collaborative speculative decoding tools")
    sub = parser.add_subparsers(dest="cmd", required=True)
    from .cli_decode import add_parser as add_decode, run as run_decode

    add_decode(sub)
    sub.add_parser("demo", add_help=False,
                   help="the embedded task: every method's accuracy and speed, and a plot (--ops: the kernel showcase)")
    sub.add_parser("train", help="RL training of an arbiter (see `cospec train --help`)", add_help=False)
    task = sub.add_parser("task", help="the embedded task's tools: train-models")
    task.add_argument("action", choices=["train-models"])
    if argv[:1] == ["train"]:
        _train_pkg()
        from cospec_train.cli import main as train_main

        return train_main(argv[1:])
    if argv[:2] == ["task", "train-models"]:
        _train_pkg()
        from cospec_train.train_models import main as models_main

        return models_main(argv[2:])
    if argv[:1] == ["demo"]:
        if "--ops" in argv:
            from .demo import main as ops_demo

            return ops_demo()
        from .task.demo import main as task_demo

        return task_demo(argv[1:])
    args = parser.parse_args(argv)
    if args.cmd == "decode":
        return run_decode(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
