"""Benchmark: one env's ``step`` via ``gym.make`` against CartPole-v1's, and first-use time.

    splitexit bench env_step [--rounds 5] [--steps 20000] [--quick] [--json PATH]

1. ``step``: ``gym.make("splitexit:SplitExit-v0")`` (replay) and
   ``gym.make("splitexit:SplitExitLive-v0")`` (the torch CNN on every request, torch's default
   thread count), each against ``gym.make("CartPole-v1")``: the same number of steps per round
   (``--steps``; live: 300) with pre-drawn random actions, ``reset()`` at episode ends as in
   training, in interleaved rounds (``timing.py``). The ratio is SplitExit's time per step over
   CartPole-v1's, the median of the per-round ratios (< 1: SplitExit is faster). For replay:
   acceptance <= 0.8, goal <= 0.5.
2. ``first use``: seconds in a fresh process for ``import splitexit`` and then
   ``gym.make(id)``, ``reset``, ``step`` (``single``) or ``gym.make_vec(id, num_envs=2)``,
   ``reset``, ``step`` (``vector``: ``SplitExitVectorEnv``), with numba's cache
   (``NUMBA_CACHE_DIR``) in an empty temporary folder (``cold``: compiles) and then in the same
   folder again (``warm``: loads). ``process`` is the wall time of the whole process, interpreter
   start included. The median over the rounds (one with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import gymnasium as gym

import splitexit  # noqa: F401  (registers the ids)
from splitexit.benchmarks.timing import (
    Timer,
    environment,
    interleaved_rounds,
    markdown_table,
    median_ratio,
    parse_args,
    write_json,
)

SPLITEXIT = "splitexit:SplitExit-v0"
LIVE = "splitexit:SplitExitLive-v0"
CARTPOLE = "CartPole-v1"

# Run by ``python -c`` with argv ``[kind, env_id]``; prints the seconds as one JSON line.
FIRST_USE = """\
import json, sys, time
import gymnasium as gym
start = time.perf_counter()
import splitexit
imported = time.perf_counter()
env = gym.make(sys.argv[2]) if sys.argv[1] == "single" else gym.make_vec(sys.argv[2], num_envs=2)
env.reset(seed=0)
env.step(env.action_space.sample())
print(json.dumps({"import_s": imported - start, "first_step_s": time.perf_counter() - imported}))
"""


def step_timer(env: gym.Env, actions: list[Any]) -> Timer:
    """Steps ``env`` through ``actions`` from ``reset(seed=0)``, resetting at episode ends."""

    def run() -> float:
        env.reset(seed=0)
        step, reset = env.step, env.reset
        start = time.perf_counter()
        for a in actions:
            _, _, terminated, truncated, _ = step(a)
            if terminated or truncated:
                reset()
        return time.perf_counter() - start

    return run


def random_actions(env: gym.Env, n: int) -> list[Any]:
    env.action_space.seed(0)
    return [env.action_space.sample() for _ in range(n)]


def bench_step(env_id: str, steps: int, rounds: int) -> dict[str, Any]:
    """``env_id`` against CartPole-v1, ``steps`` steps each per round."""
    ours, cartpole = gym.make(env_id), gym.make(CARTPOLE)
    try:
        times_s = interleaved_rounds(
            {
                "splitexit": step_timer(ours, random_actions(ours, steps)),
                "cartpole": step_timer(cartpole, random_actions(cartpole, steps)),
            },
            rounds,
        )
    finally:
        ours.close()
        cartpole.close()
    return {
        "env_id": env_id,
        "steps_per_round": steps,
        "splitexit_us_per_step": statistics.median(times_s["splitexit"]) / steps * 1e6,
        "cartpole_us_per_step": statistics.median(times_s["cartpole"]) / steps * 1e6,
        "ratio": median_ratio(times_s["splitexit"], times_s["cartpole"]),
        "splitexit_s": times_s["splitexit"],
        "cartpole_s": times_s["cartpole"],
    }


def first_use(kind: str, cache_dir: str) -> dict[str, float]:
    """Seconds of a fresh process's first use of ``kind`` (single or vector), numba's cache in
    ``cache_dir``."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FIRST_USE, kind, SPLITEXIT],
        env={**os.environ, "NUMBA_CACHE_DIR": cache_dir},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    process_s = time.perf_counter() - start
    return {**json.loads(out.strip().splitlines()[-1]), "process_s": process_s}


def bench_first_use(rounds: int) -> list[dict[str, Any]]:
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for kind in ("single", "vector"):
            with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
                for cache in ("cold", "warm"):
                    runs.setdefault((kind, cache), []).append(first_use(kind, cache_dir))
    return [
        {
            "kind": kind,
            "cache": cache,
            **{key: statistics.median(r[key] for r in rs) for key in rs[0]},
            "runs": rs,
        }
        for (kind, cache), rs in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="replay steps per round (20000, quick 2000)")
    args = parse_args(parser, rounds=5)
    steps = args.steps or (2_000 if args.quick else 20_000)
    start = time.perf_counter()
    result = {**environment(), "rounds": args.rounds, "quick": args.quick}
    result["step"] = step_rows = [
        bench_step(SPLITEXIT, steps, args.rounds),
        bench_step(LIVE, 20 if args.quick else 300, args.rounds),
    ]
    cells = [
        [
            f"`{r['env_id']}`",
            f"{r['steps_per_round']:,}",
            f"{r['splitexit_us_per_step']:,.2f}",
            f"{r['cartpole_us_per_step']:,.2f}",
            f"{r['ratio']:.3f}",
        ]
        for r in step_rows
    ]
    header = ["env (gym.make)", "steps/round", "SplitExit µs/step", "CartPole-v1 µs/step"]
    print("### env.step against CartPole-v1 (ratio of times: acceptance <= 0.8, goal <= 0.5)\n")
    print(markdown_table([*header, "ratio"], "lrrrr", cells), flush=True)

    result["first_use"] = first_rows = bench_first_use(1 if args.quick else args.rounds)
    cells = [
        [
            r["kind"],
            r["cache"],
            f"{r['import_s']:.2f}",
            f"{r['first_step_s']:.2f}",
            f"{r['process_s']:.2f}",
        ]
        for r in first_rows
    ]
    header = ["first use", "numba cache", "import splitexit (s)", "make, reset, step (s)"]
    print("\n### First use in a fresh process\n")
    print(markdown_table([*header, "process (s)"], "llrrr", cells))
    result["wall_s"] = time.perf_counter() - start
    print(f"\n{args.rounds} rounds, wall time {result['wall_s']:.1f} s")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
