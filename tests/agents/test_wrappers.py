import numpy as np
import pytest

from splitexit.agents.wrappers import ExpectedAccuracyReward
from splitexit.envs import SplitExitEnv


def test_expected_accuracy_reward_keeps_costs_and_replaces_the_coin_flip():
    env = SplitExitEnv(horizon=100)
    wrapped = ExpectedAccuracyReward(SplitExitEnv(horizon=100))
    env.reset(seed=1)
    wrapped.reset(seed=1)
    never = env.n_t - 1
    for split in (0, 2):
        a = env.encode_action(split, never)
        _, r, _, _, info = env.step(a)
        _, rw, _, _, info_w = wrapped.step(a)
        assert info == info_w  # the env underneath is untouched
        costs = r - info["rewards"]["accuracy"]
        if info["timed_out"]:
            assert rw == pytest.approx(costs)
        else:  # the final exit answers: its accuracy with this split's payload
            final = env.tables.correct[:, split, 0, -1].mean()
            assert rw == pytest.approx(costs + final)


def test_expected_accuracy_reward_has_the_same_mean():
    env, wrapped = SplitExitEnv(horizon=200), ExpectedAccuracyReward(SplitExitEnv(horizon=200))
    rng = np.random.default_rng(0)
    true, smooth = [], []
    for seed in range(10):
        env.reset(seed=seed)
        wrapped.reset(seed=seed)
        for _ in range(200):
            a = int(rng.integers(env.n_actions))
            true.append(env.step(a)[1])
            smooth.append(wrapped.step(a)[1])
    diff = np.array(true) - np.array(smooth)
    assert abs(diff.mean()) < 3 * diff.std() / np.sqrt(len(diff))
    assert np.var(smooth) < np.var(true)
