"""splitexit.envs.config: configs whose world would take unbounded time or memory are refused."""

from __future__ import annotations

import time

import numpy as np
import pytest

from splitexit.envs import SplitExitEnv, make_config
from splitexit.envs.config import MAX_CAPACITY_SCALE, MAX_EPISODE_S


@pytest.mark.parametrize(
    ("config", "keys"),
    [
        ({"outage": "intermittent", "outage_mean_up_s": 1e-6, "outage_mean_down_s": 1e-6},
         "'outage_mean_up_s' \\+ 'outage_mean_down_s'"),
        ({"horizon": 10**5, "frame_period_s": 60.0}, "'horizon', 'frame_period_s'"),
        ({"capacity_scale": 1e300}, "'capacity_scale'"),
    ],
    ids=["outages every microsecond", "a 70-day episode", "capacity scaled by 1e300"],
)  # fmt: skip
def test_unbounded_worlds_are_refused_at_once_naming_the_keys(config, keys):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=keys):
        make_config(config)
    assert time.perf_counter() - start < 1.0


def test_the_bounds_leave_room_for_long_and_fast_worlds():
    longest = {"horizon": int(MAX_EPISODE_S / 0.1) - 100, "frame_period_s": 0.1}
    assert make_config(longest)["horizon"] == longest["horizon"]
    make_config({"capacity_scale": MAX_CAPACITY_SCALE})
    make_config({"outage": "intermittent", "outage_mean_up_s": 0.1, "outage_mean_down_s": 0.1})


def test_a_large_capacity_scale_keeps_observations_finite():
    env = SplitExitEnv({"capacity_scale": MAX_CAPACITY_SCALE, "horizon": 20})
    obs, _ = env.reset(seed=0)
    for a in range(20):
        assert np.isfinite(obs).all() and env.observation_space.contains(obs)
        obs = env.step(a % env.n_actions)[0]
