"""Benchmark: how much of the channel oracle's edge a device could get from what it measures.

    splitexit bench observability [--episodes 30] [--quick]

On the held-out evaluation trace, compares the channel oracle (knows the capacity during the
upload and the server queue), a "measured-capacity oracle" (the same planner, with the true
queue, but assuming the capacity stays at the throughput measured over the last frame period,
which is what the observation carries), the best fixed action and random actions.
"""

from __future__ import annotations

import argparse

import numpy as np

from splitexit.agents.evaluate import make_env, run_episodes, summarise


class Planner:
    """argmax of ``expected_rewards()``, optionally with the capacity replaced by an estimate."""

    deployable = False

    def __init__(self, env, measured: bool) -> None:
        self.env, self.measured = env, measured

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        env = self.env
        if not self.measured:
            return int(env.expected_rewards().argmax()), None
        estimate_bps = max(env.decode_observation(observation)["uplink_bps"][-1], 1e3)
        return int(env.expected_rewards(capacity_bps=estimate_bps).argmax()), None


class Fixed:
    def __init__(self, action: int) -> None:
        self.action = action

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return self.action, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--traces", default="mahimahi-up-eval")
    parser.add_argument("--quick", action="store_true", help="2 episodes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.episodes = 2
    env = make_env("splitexit:SplitExit-v0", traces=args.traces)
    seeds = range(args.episodes)
    rng = np.random.default_rng(0)

    class Random:
        def predict(self, observation, state=None, episode_start=None, deterministic=True):
            return int(rng.integers(env.n_actions)), None

    rows = [
        summarise("channel-oracle", run_episodes(Planner(env, False), env, seeds)),
        summarise("measured-capacity oracle", run_episodes(Planner(env, True), env, seeds)),
        max(
            (
                summarise(f"fixed {a}", run_episodes(Fixed(a), env, seeds))
                for a in range(env.n_actions)
            ),
            key=lambda s: s["mean_reward"],
        ),
        summarise("random", run_episodes(Random(), env, seeds)),
    ]
    lo, hi = rows[3]["mean_reward"], rows[0]["mean_reward"]
    print(f"{args.traces}, {args.episodes} episodes")
    for s in rows:
        norm = (s["mean_reward"] - lo) / (hi - lo)
        print(f"{s['name']:<26} {s['mean_reward']:.4f} ± {s['ci95']:.4f}  normalised {norm:.3f}")


if __name__ == "__main__":
    main()
