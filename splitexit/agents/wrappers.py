"""Training-side wrappers (the env itself is never changed; evaluation uses its rewards)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ExpectedAccuracyReward(gym.Wrapper):
    """Replace the 0/1 accuracy part of the reward by its expectation given the exit that
    answered: P(correct | split, compression, threshold, exit) from the profile.

    The sample of a request is drawn independently of the channel and the server, so the
    expected return of every policy is unchanged (tower property), while the per-step reward
    loses most of its Bernoulli noise: a variance reduction for the learner (Rao-Blackwell).
    Requests that timed out keep an accuracy part of 0.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        tables = base.tables
        with np.errstate(invalid="ignore", divide="ignore"):
            p = tables.exit_correct_prob / tables.exit_prob  # (S+1, C, T, E)
        self._p_correct = np.nan_to_num(p).tolist()
        self._exit_index = {b: k for k, b in enumerate(tables.exit_blocks)}
        self._t_index = {t: k for k, t in enumerate(base.thresholds)}
        self._c_index = {c: k for k, c in enumerate(base.compressions)}
        self._weight = base.weights["accuracy"]

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not info["timed_out"]:
            s, c = info["split"], self._c_index[info["compression"]]
            t, e = self._t_index[info["threshold"]], self._exit_index[info["exit_block"]]
            reward += self._weight * self._p_correct[s][c][t][e] - info["rewards"]["accuracy"]
        return obs, reward, terminated, truncated, info
