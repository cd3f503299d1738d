"""The `cospec` command line: decode, train, task, demo."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable


# Commands served by the training package (python/cospec_train, installed beside cospec_ext),
# named as "module:function" and imported only when run, so importing cospec_ext never needs it.
# An installed package may add or replace one through the `cospec.commands` entry-point group
# (setup.py registers these two there); the table is the fallback for a source checkout.
PLUGIN_COMMANDS = {
    "train": "cospec_train.cli:main",
    "task-train-models": "cospec_train.train_models:main",
}


def _plugin(name: str) -> Callable[[list[str]], int]:
    """The `main(argv)` of the plugin command `name`: its entry point, else PLUGIN_COMMANDS."""
    from importlib.metadata import entry_points

    found = [ep.value for ep in entry_points(group="cospec.commands") if ep.name == name]
    target = found[0] if found else PLUGIN_COMMANDS[name]
    module, func = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - a broken install
        raise SystemExit(f"cospec: `{module}` (the `{name}` command) is not importable ({e}); "
                         "reinstall with `pip install --no-build-isolation -e .`")
    return getattr(mod, func)


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
        return _plugin("train")(argv[1:])
    if argv[:2] == ["task", "train-models"]:
        return _plugin("task-train-models")(argv[2:])
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
