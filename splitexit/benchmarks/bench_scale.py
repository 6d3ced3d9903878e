"""Benchmark: how SplitExit-v0's vector env scales, against CartPole-v1, in env steps,
training and memory.

    splitexit bench scale [--rounds 5] [--quick] [--only {env,train,memory}]
                                     [--json PATH]

Prints Markdown tables; ``--json PATH`` also writes every figure (with the date, the machine,
the package versions and the command) to ``PATH``, atomically. ``--quick`` is a smoke run with
small sizes and 2 rounds (seconds); its figures are noise. Timings on a busy machine are noisy
too: the contestants run in interleaved rounds (``timing.py``: every contestant once per round,
the order reversed every other round, so CartPole and SplitExit alternate which goes first)
after one discarded warm-up round, so that a ratio compares figures taken under the same
machine state; a rate is the median of the per-round rates, a ratio the median of the per-round
ratios (paired). The single env's ``step`` against CartPole-v1's is ``bench_env_step.py``'s.

1. ``env``: env steps per second, with pre-drawn random actions, episode resets included.
   Each row's ratio is SplitExit's steps/s over CartPole-v1's (> 1: SplitExit is faster).
   - ``vector``: ``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``,
     i.e. ``SplitExitVectorEnv`` (compiled step) vs ``CartPoleVectorEnv``, both autoreset
     ``NEXT_STEP``; steps/s counts ``N`` env steps per batch step. The runs are long enough to
     cross the 200-request horizon (600 batch steps at N = 1024), so resets are included.
     At N = 1024: acceptance >= 0.5, goal >= 1.0.
   - ``SB3 SubprocVecEnv``: ``make_vec_env(id, n_envs=2, vec_env_cls=SubprocVecEnv)`` (one
     worker per core), SplitExit-v0 vs CartPole-v1.
   ``us/batch step`` is the wall time of one ``step`` call of that (vector) env.
2. ``train``: env steps per second of SB3 PPO (``MlpPolicy``, CPU, ``torch.set_num_threads(1)``,
   the shipped ``splitexit/agents/hyperparams/ppo.yml``: 16 envs (4 with ``--quick``),
   ``n_steps`` 128, batch 512, 5 epochs) over ``model.learn(T)`` (T = 10 rollouts, 1 with
   ``--quick``, after a one-rollout warm-up), i.e. rollouts and gradient updates together, with
   three SB3 vector envs: ``dummy`` (``DummyVecEnv``), ``subproc`` (``SubprocVecEnv``, one
   worker per env on the machine's cores) and ``native``
   (``splitexit.agents.sb3.make_native_vec_env``: ``SplitExitVectorEnv`` in one process). The
   ratio is to ``dummy``. The ``SubprocVecEnv`` workers of sections 1 and 2 start from a
   forkserver that has imported torch, SB3 and splitexit (start-up only).
3. ``memory``: in a fresh subprocess per size (so that nothing allocated earlier counts), after
   ``import splitexit`` and ``import torch``, resetting and stepping one
   ``gym.make("splitexit:SplitExit-v0")`` and one 1-env ``SplitExitVectorEnv`` once (which
   loads the tables, traces, server realisation and compiled code that every env of the process
   shares; reported as ``first envs``, the RSS they add, once per process):
   - ``max RSS increase``: the process's peak RSS after building ``SplitExitVectorEnv(N)``,
     resetting it and taking 300 random steps (50 with ``--quick``), minus its peak RSS before
     (the baseline, also reported). The peak is ``VmHWM`` from ``/proc/self/status``:
     ``ru_maxrss`` of a child carries over the parent's RSS at the fork (it read 403 MiB, the
     parent's, for a 280 MiB child), so it is only the fallback where ``/proc`` is missing;
   - ``tracemalloc peak``: the peak of Python-tracked allocations over the same work done again
     (after the first env is dropped) with ``tracemalloc`` on; it runs after the RSS figure,
     as tracing itself costs memory.
   For N = 64 and N = 1024, in MiB.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

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
CARTPOLE = "CartPole-v1"
MIB = 2**20
# Imported once by the forkserver that starts SubprocVecEnv workers (a missing one is skipped).
PRELOAD = ["torch", "gymnasium", "splitexit", "splitexit.envs", "stable_baselines3.common.vec_env"]


@dataclass
class EnvCase:
    name: str
    n_envs: int
    batch_steps: int
    ours: Timer
    cartpole: Timer


# -- 1. env steps -----------------------------------------------------------------------------


def batch_timer(venv: Any, actions: np.ndarray, gym_api: bool) -> Timer:
    """Steps a Gymnasium vector env (``gym_api``) or an SB3 ``VecEnv`` through the rows of
    ``actions`` after a reset; both reset finished sub-envs by themselves."""

    def run() -> float:
        if gym_api:
            venv.reset(seed=0)
        else:
            venv.reset()
        step = venv.step
        start = time.perf_counter()
        for a in actions:
            step(a)
        return time.perf_counter() - start

    return run


def env_cases(quick: bool, closers: list[Callable[[], None]]) -> list[EnvCase]:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    rng = np.random.default_rng(0)
    cases = []
    for n, steps in ((1, 3_000), (64, 1_000), (1024, 600)):
        steps = 250 if quick else steps  # > 200 (the horizon): resets included
        kw: dict[str, Any] = {"num_envs": n, "vectorization_mode": "vector_entry_point"}
        ours, cartpole = gym.make_vec(SPLITEXIT, **kw), gym.make_vec(CARTPOLE, **kw)
        closers.extend((ours.close, cartpole.close))
        a_ours = rng.integers(ours.single_action_space.n, size=(steps, n))
        a_cartpole = rng.integers(2, size=(steps, n))
        cases.append(
            EnvCase(
                f"vector ({type(ours).__name__} / {type(cartpole).__name__})",
                n,
                steps,
                batch_timer(ours, a_ours, True),
                batch_timer(cartpole, a_cartpole, True),
            )
        )
    steps = 500 if quick else 5_000
    ours = make_vec_env(SPLITEXIT, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    cartpole = make_vec_env(CARTPOLE, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    closers.extend((ours.close, cartpole.close))
    a_ours = rng.integers(ours.action_space.n, size=(steps, 2))
    a_cartpole = rng.integers(2, size=(steps, 2))
    cases.append(
        EnvCase(
            "SB3 SubprocVecEnv",
            2,
            steps,
            batch_timer(ours, a_ours, False),
            batch_timer(cartpole, a_cartpole, False),
        )
    )
    return cases


def bench_env(rounds: int, quick: bool) -> list[dict[str, Any]]:
    closers: list[Callable[[], None]] = []
    try:
        cases = env_cases(quick, closers)
        timers: dict[str, Timer] = {}
        for i, case in enumerate(cases):
            timers[f"{i} splitexit"], timers[f"{i} cartpole"] = case.ours, case.cartpole
        times_s = interleaved_rounds(timers, rounds)
    finally:
        for close in closers:
            close()
    rows = []
    for i, case in enumerate(cases):
        ours, cartpole = times_s[f"{i} splitexit"], times_s[f"{i} cartpole"]
        env_steps = case.n_envs * case.batch_steps
        rows.append(
            {
                "case": case.name,
                "n_envs": case.n_envs,
                "batch_steps": case.batch_steps,
                "splitexit_steps_per_s": statistics.median(env_steps / t for t in ours),
                "cartpole_steps_per_s": statistics.median(env_steps / t for t in cartpole),
                "ratio": median_ratio(cartpole, ours),  # of rates: CartPole's time / ours
                "splitexit_us_per_batch_step": statistics.median(ours) / case.batch_steps * 1e6,
                "cartpole_us_per_batch_step": statistics.median(cartpole) / case.batch_steps * 1e6,
                "splitexit_s": ours,
                "cartpole_s": cartpole,
            }
        )
    return rows


def env_table(rows: list[dict[str, Any]]) -> str:
    header = ["case", "envs", "SplitExit steps/s", "CartPole steps/s", "ratio"]
    header += ["SplitExit µs/batch step", "CartPole µs/batch step"]
    cells = [
        [
            r["case"],
            str(r["n_envs"]),
            f"{r['splitexit_steps_per_s']:,.0f}",
            f"{r['cartpole_steps_per_s']:,.0f}",
            f"{r['ratio']:.3f}",
            f"{r['splitexit_us_per_batch_step']:,.1f}",
            f"{r['cartpole_us_per_batch_step']:,.1f}",
        ]
        for r in rows
    ]
    return markdown_table(header, "lrrrrrr", cells)


# -- 2. training ------------------------------------------------------------------------------


def bench_train(rounds: int, quick: bool) -> list[dict[str, Any]]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

    from splitexit.agents.sb3 import load_hyperparams, make_native_vec_env

    torch.set_num_threads(1)
    hyper = load_hyperparams("ppo", SPLITEXIT)
    hyper.pop("n_timesteps", None)
    n_envs = 4 if quick else 16
    hyper.pop("n_envs", None)
    rollout = n_envs * int(hyper["n_steps"])
    total = rollout * (1 if quick else 10)

    makers: dict[str, Callable[[], VecEnv]] = {
        "dummy": lambda: make_vec_env(SPLITEXIT, n_envs=n_envs, seed=0, vec_env_cls=DummyVecEnv),
        "subproc": lambda: make_vec_env(
            SPLITEXIT, n_envs=n_envs, seed=0, vec_env_cls=SubprocVecEnv
        ),
        "native": lambda: make_native_vec_env(SPLITEXIT, n_envs, 0, {}),
    }
    models: dict[str, Any] = {}
    steps: dict[str, list[int]] = {name: [] for name in makers}

    def learn_timer(name: str) -> Timer:
        def run() -> float:
            model = models[name]
            before = model.num_timesteps
            start = time.perf_counter()
            model.learn(total, reset_num_timesteps=False)
            elapsed_s = time.perf_counter() - start
            steps[name].append(model.num_timesteps - before)
            return elapsed_s

        return run

    try:
        for name, make in makers.items():
            models[name] = PPO(env=make(), seed=0, device="cpu", verbose=0, **hyper)
            models[name].learn(rollout)  # warm-up
        times_s = interleaved_rounds({name: learn_timer(name) for name in makers}, rounds, 0)
    finally:
        for model in models.values():
            model.get_env().close()
    rate = {name: [s / t for s, t in zip(steps[name], times_s[name])] for name in makers}
    return [
        {
            "vec_env": name,
            "n_envs": n_envs,
            "steps_per_learn": steps[name][0],
            "steps_per_s": statistics.median(rate[name]),
            "ratio_to_dummy": median_ratio(rate[name], rate["dummy"]),
            "s_per_learn": statistics.median(times_s[name]),
            "learn_s": times_s[name],
            "hyperparams": {**hyper, "n_envs": n_envs},
        }
        for name in makers
    ]


def train_table(rows: list[dict[str, Any]]) -> str:
    header = [f"vec env ({rows[0]['n_envs']} envs)", "PPO env steps/s", "ratio to dummy"]
    cells = [
        [
            r["vec_env"],
            f"{r['steps_per_s']:,.0f}",
            f"{r['ratio_to_dummy']:.2f}",
            f"{r['s_per_learn']:.2f} ({r['steps_per_learn']:,} steps)",
        ]
        for r in rows
    ]
    return markdown_table([*header, "s per learn"], "lrrr", cells)


# -- 3. memory --------------------------------------------------------------------------------


def memory_child(n_envs: int, steps: int) -> dict[str, float]:
    """Run in a fresh process (``--memory-child N STEPS``): the figures of section 3, in bytes."""
    kw: dict[str, Any] = {"vectorization_mode": "vector_entry_point"}

    def work() -> None:
        venv = gym.make_vec(SPLITEXIT, num_envs=n_envs, **kw)
        venv.reset(seed=0)
        rng = np.random.default_rng(0)
        n_actions = int(venv.single_action_space.n)
        for _ in range(steps):
            venv.step(rng.integers(n_actions, size=n_envs))
        venv.close()

    def max_rss() -> int:
        """Peak RSS in bytes: ``VmHWM`` where Linux has it, else ``ru_maxrss``. A child's
        ``ru_maxrss`` starts at its parent's RSS at the fork (Linux carries the peak over
        ``exec``), which can hide this process's own peak."""
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024  # kB
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    import torch  # noqa: F401  (imported by the first env anyway; counted in the baseline only)

    before_first = max_rss()
    # The first envs load what every env of the process shares (tables, traces, server world,
    # compiled code): once per process.
    for first in (gym.make(SPLITEXIT), gym.make_vec(SPLITEXIT, num_envs=1, **kw)):
        first.reset(seed=0)
        first.step(first.action_space.sample())
    baseline = max_rss()
    work()
    after = max_rss()
    gc.collect()
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "baseline_rss": baseline,
        "first_envs_rss": baseline - before_first,
        "rss_increase": after - baseline,
        "tracemalloc_peak": peak,
    }


def bench_memory(quick: bool) -> list[dict[str, Any]]:
    steps = 50 if quick else 300
    rows = []
    for n in (64, 1024):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--memory-child", str(n), str(steps)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        b = json.loads(out.strip().splitlines()[-1])
        rows.append(
            {
                "n_envs": n,
                "steps": steps,
                "tracemalloc_peak_mib": b["tracemalloc_peak"] / MIB,
                "max_rss_increase_mib": b["rss_increase"] / MIB,
                "baseline_max_rss_mib": b["baseline_rss"] / MIB,
                "first_envs_max_rss_mib": b["first_envs_rss"] / MIB,
            }
        )
    return rows


def memory_table(rows: list[dict[str, Any]]) -> str:
    header = ["SplitExitVectorEnv", "tracemalloc peak (MiB)", "max RSS increase (MiB)"]
    header += ["baseline max RSS (MiB)", "of which first envs (MiB)"]
    cells = [
        [
            f"{r['n_envs']} envs, {r['steps']} steps",
            f"{r['tracemalloc_peak_mib']:.1f}",
            f"{r['max_rss_increase_mib']:.1f}",
            f"{r['baseline_max_rss_mib']:.1f}",
            f"{r['first_envs_max_rss_mib']:.1f}",
        ]
        for r in rows
    ]
    return markdown_table(header, "rrrrr", cells)


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("env", "train", "memory"))
    parser.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parse_args(parser, rounds=5)
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child)))
        return

    # SB3's SubprocVecEnv starts its workers from multiprocessing's forkserver: importing torch,
    # SB3 and splitexit there once, not in every worker, makes 16 workers start in ~3 s, not ~15.
    multiprocessing.set_forkserver_preload(PRELOAD)
    start = time.perf_counter()
    result = {**environment(), "rounds": args.rounds, "quick": args.quick}
    parts: list[tuple[str, Callable[[], list[dict[str, Any]]], Callable[..., str], str]] = [
        ("env", lambda: bench_env(args.rounds, args.quick), env_table, "Env steps/s"),
        ("train", lambda: bench_train(args.rounds, args.quick), train_table, "PPO training"),
        ("memory", lambda: bench_memory(args.quick), memory_table, "Peak memory"),
    ]
    for name, run, table, title in parts:
        if args.only not in (None, name):
            continue
        result[name] = rows = run()
        print(f"\n### {title}\n\n{table(rows)}", flush=True)
    result["wall_s"] = time.perf_counter() - start
    print(f"\n{args.rounds} rounds, wall time {result['wall_s']:.1f} s")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
