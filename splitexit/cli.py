"""The ``splitexit`` command: the project's tools under one name, as ``rl_zoo3`` has them.

    splitexit train [FLAGS]         # train, evaluate, report (python train_agent.py)
    splitexit evaluate [FLAGS]      # an agent or a baseline (python -m splitexit.agents.evaluate)
    splitexit profile|show|list     # the model zoo's profiles (python -m splitexit.dnn_profiles)
    splitexit bench [NAME [FLAGS]]  # lists the benchmarks, or runs one

Each subcommand is the module named beside it, with its flags, its errors and its exit codes
(2 for a usage error). Training a multi-exit model stays ``python -m splitexit.dnn_profiles
train`` (``splitexit train`` is the RL run).
"""

from __future__ import annotations

import ast
import os
import runpy
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import splitexit.benchmarks

BENCH_PREFIX = "bench_"


def command_line(args: Sequence[str]) -> str:
    """The command line that started this process with ``args``: ``python train_agent.py ...``
    or ``python bench_x.py ...`` for a script, ``splitexit train ...`` under this command
    (whose ``main`` sets ``sys.argv[0]`` to ``splitexit <command>``)."""
    head = ["python", sys.argv[0]] if sys.argv[0].endswith(".py") else shlex.split(sys.argv[0])
    return shlex.join([*head, *args])


def _train(argv: list[str]) -> int:
    from splitexit.agents.train import main

    return main(argv)


def _evaluate(argv: list[str]) -> int:
    from splitexit.agents.evaluate import main

    return main(argv, prog="splitexit evaluate")


def _profiles(command: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from splitexit.dnn_profiles.__main__ import main

        return main([command, *argv], prog="splitexit")

    return run


def benchmarks() -> dict[str, str]:
    """Each benchmark's name (``env_step`` for ``bench_env_step.py``) and its docstring's first
    sentence, read without importing it."""
    found = {}
    for path in sorted(Path(splitexit.benchmarks.__file__).parent.glob(f"{BENCH_PREFIX}*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        summary = " ".join(doc.split("\n\n")[0].split()).removeprefix("Benchmark: ")
        found[path.stem.removeprefix(BENCH_PREFIX)] = summary
    return found


def _bench(argv: list[str]) -> int:
    names = benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: splitexit bench [NAME [FLAGS]]   (splitexit bench NAME --help: its flags)\n")
        width = max(map(len, names))
        for name, summary in names.items():
            print(f"  {name:<{width}}  {summary}")
        return 0
    name, *flags = argv
    if name not in names:
        return _error(f"bench: unknown benchmark {name!r} (choose from {', '.join(names)})")
    # A benchmark is a script that reads sys.argv: run it as ``python -m`` would.
    sys.argv = [f"splitexit bench {name}", *flags]
    try:
        runpy.run_module(f"splitexit.benchmarks.{BENCH_PREFIX}{name}", run_name="__main__")
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)  # sys.exit("message"), as Python prints it
        return 1
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (_train, "train an agent, evaluate it against every baseline, write a report"),
    "evaluate": (_evaluate, "evaluate a saved agent or a baseline on held-out episodes"),
    "profile": (_profiles("profile"), "profile a trained multi-exit model on its test split"),
    "show": (_profiles("show"), "print a profile as a table"),
    "list": (_profiles("list"), "list the registered profiles"),
    "bench": (_bench, "list the benchmarks, or run one"),
}


def _usage() -> str:
    lines = ["usage: splitexit COMMAND [FLAGS]   (splitexit COMMAND --help: its flags)", ""]
    lines += [f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def _error(message: str) -> int:
    print(f"splitexit: error: {message} (see --help)", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"splitexit {splitexit.__version__}")
        return 0
    command, *rest = args
    if command not in COMMANDS:
        return _error(f"unknown command {command!r} (choose from {', '.join(COMMANDS)})")
    # Each tool names itself after sys.argv[0] in its usage, errors and recorded command lines.
    saved_argv = sys.argv
    sys.argv = [f"splitexit {command}", *rest]
    try:
        return COMMANDS[command][0](rest)
    finally:
        sys.argv = saved_argv


def run() -> int:
    """The console script: ``main``, quiet when its reader goes away (``splitexit show | head``)."""
    try:
        return main()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # 128 + SIGPIPE, as a shell reports it


if __name__ == "__main__":
    raise SystemExit(run())
