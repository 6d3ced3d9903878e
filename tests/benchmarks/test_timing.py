"""splitexit/benchmarks/timing.py: the benchmarks' shared rounds, ratios, arguments and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from splitexit.benchmarks import timing


def test_rounds_interleave_and_reverse_after_a_discarded_warm_up() -> None:
    calls: list[str] = []

    def timer(name: str, seconds: float):
        def run() -> float:
            calls.append(name)
            return seconds + len(calls)  # which call it was, to check what is kept

        return run

    times_s = timing.interleaved_rounds({"a": timer("a", 0.0), "b": timer("b", 0.5)}, rounds=3)
    # warm-up round -1 (odd: reversed), then rounds 0, 1, 2
    assert calls == ["b", "a", "a", "b", "b", "a", "a", "b"]
    assert times_s == {"a": [3.0, 6.0, 7.0], "b": [4.5, 5.5, 8.5]}


def test_median_ratio_pairs_the_rounds() -> None:
    assert timing.median_ratio([1.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == 2.0
    with pytest.raises(ValueError):
        timing.median_ratio([1.0], [1.0, 2.0])


def test_quick_sets_the_rounds_unless_given() -> None:
    def parse(*argv: str) -> argparse.Namespace:
        return timing.parse_args(argparse.ArgumentParser(), 5, 2, argv)

    assert parse().rounds == 5
    assert parse("--quick").rounds == 2
    assert parse("--quick", "--rounds", "3").rounds == 3
    with pytest.raises(SystemExit):
        parse("--rounds", "0")


def test_write_json(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    timing.write_json(str(path), {**timing.environment(), "ratio": 0.5})
    result = json.loads(path.read_text())
    assert result["ratio"] == 0.5 and {"date", "machine", "versions", "loadavg_end"} <= set(result)
    assert list(tmp_path.iterdir()) == [path]
    timing.write_json(None, {})  # no path: nothing written
