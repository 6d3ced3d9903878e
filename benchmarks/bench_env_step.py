"""Benchmark: ``env.step`` time of SplitExit-v0 against CartPole-v1, both from ``gym.make``.

    python benchmarks/bench_env_step.py [--steps 100000] [--env-id splitexit:SplitExit-v0]

Both envs take the same number of steps with pre-drawn random actions (resets included, as in
training), interleaved in rounds so that both see the same machine state; the ratio of the
median per-step times over the rounds is printed (acceptance <= 2.0, goal <= 1.0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np

import splitexit  # noqa: F401  (registers the ids)


def time_steps(env: gym.Env, actions: np.ndarray) -> float:
    """Seconds per step over ``actions`` (resetting at episode ends)."""
    env.reset(seed=0)
    step = env.step
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - start) / len(actions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--env-id", default="splitexit:SplitExit-v0")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env, cartpole = gym.make(args.env_id), gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    n = args.steps // args.rounds
    ours = rng.integers(env.action_space.n, size=n).tolist()
    theirs = rng.integers(2, size=n).tolist()
    t_ours, t_cartpole = [], []
    for _ in range(args.rounds):
        t_cartpole.append(time_steps(cartpole, theirs))
        t_ours.append(time_steps(env, ours))
    result = {
        "env_id": args.env_id,
        "steps": n * args.rounds,
        "splitexit_step_us": statistics.median(t_ours) * 1e6,
        "cartpole_step_us": statistics.median(t_cartpole) * 1e6,
    }
    result["ratio"] = result["splitexit_step_us"] / result["cartpole_step_us"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.env_id}: {result['splitexit_step_us']:.2f} us/step, CartPole-v1: "
            f"{result['cartpole_step_us']:.2f} us/step, ratio {result['ratio']:.2f} "
            "(acceptance <= 2.0, goal <= 1.0)"
        )


if __name__ == "__main__":
    main()
