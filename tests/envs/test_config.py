"""splitexit.envs.config: configs whose world would take unbounded time or memory are refused."""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from splitexit.envs import SplitExitEnv, make_config, world
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


def log_floats(lo: float, hi: float):
    """Floats spread over the decades from ``lo`` to ``hi``."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0**e)


EXTREME = {  # mostly near and inside the bounds, sometimes far out
    "horizon": st.integers(1, 10**6) | st.sampled_from([-5, 0, 10**6, 2 * 10**6]),
    "frame_period_s": log_floats(1e-9, 60.0) | st.sampled_from([1e-300, 1e3]),
    "timeout_s": log_floats(1e-9, 60.0) | st.sampled_from([1e-300, 1e3]),
    "deadline_s": log_floats(1e-9, 60.0) | st.sampled_from([0.0, 1e3]),
    "rtt_s": log_floats(1e-9, 10.0) | st.sampled_from([0.0, 1e3]),
    "capacity_scale": log_floats(1e-4, 1e3) | st.sampled_from([0.0, 1e-300, 1e300]),
    "throughput_history": st.integers(1, 64) | st.sampled_from([0, 100]),
    "outage": st.sampled_from(["none", "intermittent", "permanent"]),
    "outage_mean_up_s": log_floats(1e-3, 1e6) | st.sampled_from([1e-9, 1e300]),
    "outage_mean_down_s": log_floats(1e-3, 1e6) | st.sampled_from([1e-9, 1e300]),
    "battery_j": st.none() | log_floats(1e-9, 1e9),
    "battery_empty": st.sampled_from(["terminate", "drop"]),
    "demands": st.sampled_from(["none", "markov"]),
    "observation": st.sampled_from(["basic", "context"]),
    "camera_dwell_s": log_floats(1e-9, 1e6) | st.sampled_from([0.0, 1e300]),
}
# The camera needs a profile with conditions.
CAMERA = st.sampled_from([{}, {"camera": "markov", "profile": "robust"}])
REFUSE_S = 1.0  # a refused config is refused at once
BUILD_S = 60.0  # the largest allowed worlds take a few seconds here; generous for slow CI
PEAK_BYTES = 1 << 30  # the largest allowed worlds peak near 400 MiB (tracemalloc)


def clear_world_caches() -> None:
    for value in vars(world).values():
        if hasattr(value, "cache_clear"):
            value.cache_clear()


def build_and_step(config: dict) -> tuple[float, int]:
    """Seconds and peak traced bytes to build an env of ``config``, reset it and take 5 steps
    (observations and rewards finite)."""
    clear_world_caches()
    start = time.perf_counter()
    tracemalloc.start()
    try:
        env = SplitExitEnv({**config, "horizon": config.get("horizon", 200)})
        obs, _ = env.reset(seed=0)
        for a in range(5):
            assert np.isfinite(obs).all() and env.observation_space.contains(obs)
            obs, reward, terminated, truncated, _ = env.step(a % env.n_actions)
            assert np.isfinite(reward)
            if terminated or truncated:
                obs, _ = env.reset(seed=a + 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        clear_world_caches()
    return time.perf_counter() - start, peak


@pytest.mark.parametrize(
    "config",
    [
        {"horizon": 10**6, "frame_period_s": 0.08, "throughput_history": 64},
        {"horizon": 10**6, "frame_period_s": 0.08, "outage": "intermittent",
         "outage_mean_up_s": 0.1, "outage_mean_down_s": 0.1},
        {"horizon": 1000, "frame_period_s": 60.0, "timeout_s": 60.0},
    ],
    ids=["a million requests", "and outages every 0.2 s", "a day of minute frames"],
)  # fmt: skip
def test_the_largest_allowed_worlds_stay_within_bounds(config):
    seconds, peak = build_and_step(config)
    assert seconds < BUILD_S and peak < PEAK_BYTES


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.fixed_dictionaries({}, optional=EXTREME), CAMERA)
def test_any_config_is_refused_at_once_or_runs_in_bounded_time_and_memory(config, camera):
    """Over extreme values of every numeric key: refused at once with a ValueError, or built,
    reset and stepped within the time and memory bounds, with finite observations."""
    config = {**config, **camera}
    start = time.perf_counter()
    try:
        make_config(config)
    except ValueError as err:
        assert time.perf_counter() - start < REFUSE_S
        event(f"refused: {str(err).split(' must ')[0].split(' make ')[0][:40]}")
        return
    event("built")
    seconds, peak = build_and_step(config)
    assert seconds < BUILD_S, config
    assert peak < PEAK_BYTES, (config, peak)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"capacity_scale": 10**400}, "'capacity_scale'"),
        ({"rtt_s": 10**400}, "'rtt_s'"),
        ({"battery_j": 10**400}, "'battery_j'"),
        ({"reward": {"accuracy": 10**400, "latency": 1, "energy": 1, "deadline_miss": 1}},
         "'reward.accuracy'"),
        ({"reward": {"accuracy": 1e308, "latency": 1, "energy": 1, "deadline_miss": 1}},
         "'reward.accuracy' must be a number in \\[0, 1e\\+06\\]"),
        ({"thresholds": [i / 1000 for i in range(1000)]}, "'thresholds' must be .* at most 32"),
        ({"thresholds": [0.5, 10**400]}, "'thresholds'"),
    ],
    ids=["huge capacity_scale", "huge rtt_s", "huge battery_j", "huge reward weight",
         "reward weight 1e308", "1000 thresholds", "huge threshold"],
)  # fmt: skip
def test_huge_numbers_are_refused_naming_the_key(config, key):
    """Integers beyond float range, weights that would make rewards infinite and threshold grids
    whose tables would not fit in memory: a ValueError naming the key, not an OverflowError."""
    with pytest.raises(ValueError, match=key):
        make_config(config)


def test_the_largest_reward_weights_keep_rewards_finite():
    top = {k: 1e6 for k in ("accuracy", "latency", "energy", "deadline_miss")}
    env = SplitExitEnv(reward=top, horizon=20)
    env.reset(seed=0)
    for a in range(20):
        _, reward, _, _, info = env.step(a % env.n_actions)
        assert math.isfinite(reward) and all(math.isfinite(v) for v in info["rewards"].values())


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"profile": 123}, "'profile'"),
        ({"profile": ["x"]}, "'profile'"),
        ({"profile": ""}, "'profile'"),
        ({"profile": "/tmp"}, "'profile' must be .* \\(not a folder\\)"),
        ({"weights": 1.5}, "'weights'"),
        ({"traces": ""}, "'traces'"),
        ({"traces": [""]}, "'traces'"),
        ({"traces": 123}, "'traces'"),
        ({"traces": 1.5}, "'traces'"),
        ({"mode": np.array(["replay", "live"])}, "'mode'"),
    ],
    ids=["int profile", "list profile", "empty profile", "folder profile", "float weights",
         "empty traces", "empty trace path", "int traces", "float traces", "array mode"],
)  # fmt: skip
def test_wrong_kinds_of_value_name_the_key(config, key):
    """Not a TypeError, "unhashable type" or the working directory read as a trace folder."""
    with pytest.raises(ValueError, match=key):
        make_config(config)


def test_every_config_key_is_documented_and_no_entry_is_stale():
    """CONFIG_DOCS is the documentation site's configuration table: a key added to
    default_config() needs its meaning there, and a key removed loses its entry."""
    from splitexit.envs import default_config
    from splitexit.envs.config import CONFIG_DOCS

    keys = set(default_config())
    assert not keys - set(CONFIG_DOCS), (
        f"undocumented config keys: {sorted(keys - set(CONFIG_DOCS))}"
    )
    assert not set(CONFIG_DOCS) - keys, (
        f"stale CONFIG_DOCS entries: {sorted(set(CONFIG_DOCS) - keys)}"
    )
    for key, meaning in CONFIG_DOCS.items():
        assert meaning.strip() and "|" not in meaning, key  # one table cell each
