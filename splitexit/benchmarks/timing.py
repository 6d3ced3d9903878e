"""The benchmarks' shared timing: interleaved rounds in one process, medians, JSON.

Each round runs every contestant once, in the given order on even rounds and the reverse on odd
ones, after discarded warm-up rounds, so that figures compared with each other are taken under
the same machine state. A figure is the median over the rounds; a ratio is the median of the
per-round ratios (paired). ``--quick`` runs every benchmark in seconds, as a smoke test (CI runs
it so that a broken benchmark fails); its figures are noise.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from splitexit.cli import command_line

Timer = Callable[[], float]  # does a fixed amount of work, returns the seconds it took


def timed(fn: Callable[[], object]) -> Timer:
    """A ``Timer`` that calls ``fn`` once."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def interleaved_rounds(
    timers: Mapping[str, Timer], rounds: int, warmup_rounds: int = 1
) -> dict[str, list[float]]:
    """Seconds per round of every timer, by name; the order is reversed every other round."""
    names = list(timers)
    times_s: dict[str, list[float]] = {name: [] for name in names}
    for r in range(-warmup_rounds, rounds):
        for name in names if r % 2 == 0 else reversed(names):
            t_s = timers[name]()
            if r >= 0:
                times_s[name].append(t_s)
    return times_s


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median of the per-round ratios ``numerator[i] / denominator[i]``."""
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


def parse_args(
    parser: argparse.ArgumentParser,
    rounds: int,
    quick_rounds: int = 2,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Adds ``--rounds`` (default ``rounds``, or ``quick_rounds`` with ``--quick``), ``--quick``
    and ``--json PATH`` to ``parser``, and parses ``argv``."""
    parser.add_argument("--rounds", type=int, help=f"timed rounds ({rounds}, quick {quick_rounds})")
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds; noisy")
    parser.add_argument("--json", metavar="PATH", help="also write every figure here")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = quick_rounds if args.quick else rounds
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def environment() -> dict[str, Any]:
    """Date, command, machine, package versions and load: what a JSON result starts with."""
    versions = {}
    for dist in ("numpy", "numba", "gymnasium", "torch", "stable_baselines3", "splitexit"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": cpu_model(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "versions": versions,
        "loadavg_start": os.getloadavg(),
    }


def cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """Writes ``result`` (plus the end load) to ``path`` atomically; nothing if ``path`` is None."""
    if path is None:
        return
    result = {**result, "loadavg_end": os.getloadavg()}
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(f.name, path)


def markdown_table(header: list[str], align: str, rows: list[list[str]]) -> str:
    """A Markdown table; ``align``: one ``l`` or ``r`` per column."""
    rule = ["---" if c == "l" else "---:" for c in align]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])
