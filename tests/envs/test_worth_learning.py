"""The default world makes the problem worth learning (issue "SplitExitEnv", acceptance)."""

from collections import Counter

import numpy as np
import pytest

from splitexit.envs import SplitExitEnv

SEEDS = range(40)


def run(env, policy):
    """Mean reward and the split / exit mix of ``policy(env) -> action`` on SEEDS."""
    rewards, mix = [], Counter()
    s_max, final = env.num_splits - 1, env.tables.exit_blocks[-1]
    for seed in SEEDS:
        env.reset(seed=seed)
        done = False
        while not done:
            _, reward, terminated, truncated, info = env.step(policy(env))
            rewards.append(reward)
            split = info["split"]
            mix["offload" if split == 0 else "mid" if split < s_max else "local"] += 1
            mix["early exit"] += info["exit_block"] != final
            done = terminated or truncated
    return float(np.mean(rewards)), {k: v / len(rewards) for k, v in mix.items()}


@pytest.fixture(scope="module")
def results():
    env = SplitExitEnv()
    oracle, mix = run(env, lambda e: int(e.expected_rewards().argmax()))
    rng = np.random.default_rng(0)
    random, _ = run(env, lambda e: int(rng.integers(e.n_actions)))
    fixed = [run(env, lambda e, a=a: a)[0] for a in range(env.n_actions)]
    return {"oracle": oracle, "mix": mix, "random": random, "best_fixed": max(fixed)}


def test_channel_oracle_uses_every_kind_of_decision(results):
    for kind in ("local", "mid", "offload", "early exit"):
        assert results["mix"].get(kind, 0.0) >= 0.05, results["mix"]


def test_best_fixed_action_falls_short_of_the_channel_oracle(results):
    gap = results["oracle"] - results["random"]
    assert results["oracle"] - results["best_fixed"] >= 0.10 * gap, results
