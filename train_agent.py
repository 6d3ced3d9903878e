"""The main job: train an RL agent on SplitExit-v0 and evaluate it (issue "train_agent.py").

Until the agents package lands, this script runs a short, seeded demonstration of the job's last
step on the embedded default env: it evaluates a random policy and the channel oracle on the same
evaluation episodes and prints their mean reward.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import splitexit  # noqa: F401  (registers the ids)


def evaluate(env, policy, seeds) -> float:
    """Mean reward per request of ``policy(env) -> action`` over the seeded episodes."""
    rewards = []
    for seed in seeds:
        env.reset(seed=seed)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(policy(env))
            rewards.append(reward)
            done = terminated or truncated
    return float(np.mean(rewards))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="splitexit:SplitExit-v0")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = gym.make(args.env).unwrapped
    seeds = range(args.seed, args.seed + args.episodes)
    rng = np.random.default_rng(args.seed)
    random_r = evaluate(env, lambda e: int(rng.integers(e.n_actions)), seeds)
    oracle_r = evaluate(env, lambda e: int(e.expected_rewards().argmax()), seeds)
    print(f"{args.env}: mean reward per request over {args.episodes} episodes")
    print(f"  random          {random_r:+.4f}")
    print(f"  channel oracle  {oracle_r:+.4f}")
    print("PPO/DQN training and the full report come with the agents package.")


if __name__ == "__main__":
    main()
