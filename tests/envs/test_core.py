"""splitexit.envs.core, the compiled world, equals the plain-Python reference model bit for bit.

Whole episodes of the single env against the reference env on the ten worlds of
``tests/envs/reference.py`` (observations, rewards, flags, infos and both oracles' expected
rewards), then the building blocks on the inputs where float rounding decides (loop
boundaries, zero-capacity slots, ties). ``test_vector.py`` holds the vector env to the single.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitexit.envs import SplitExitEnv, core
from tests.envs.reference import WORLDS, CapacityTrace, OutageSchedule, ReferenceEnv


def assert_same_episodes(config: dict, seed: int, episodes: int = 2) -> None:
    ours, reference = SplitExitEnv(config), ReferenceEnv(config)
    rng = np.random.default_rng(seed)
    for episode in range(episodes):
        obs, _ = ours.reset(seed=seed + episode)
        expected, _ = reference.reset(seed=seed + episode)
        np.testing.assert_array_equal(obs, expected)
        done, k = False, 0
        while not done:
            where = f"episode {episode}, step {k}"
            if k % 7 == 0:
                for hindsight in (False, True):
                    np.testing.assert_array_equal(
                        ours.expected_rewards(hindsight),
                        reference.expected_rewards(hindsight),
                        err_msg=where,
                    )
            if ours.config["action_type"] == "discrete":
                action = int(rng.integers(ours.n_actions))
            else:
                action = rng.integers(ours.action_space.nvec)
            obs, reward, terminated, truncated, info = ours.step(action)
            expected = reference.step(action)
            np.testing.assert_array_equal(obs, expected[0], err_msg=where)
            assert (reward, terminated, truncated, info) == expected[1:], where
            done, k = terminated or truncated, k + 1


@pytest.mark.parametrize("name", list(WORLDS))
def test_single_env_equals_the_reference_model(name):
    assert_same_episodes(WORLDS[name], seed=11)


@pytest.mark.parametrize(
    "config",
    [
        {"channel": "fading", "horizon": 60},
        {"channel": "fading", "outage": "intermittent", "lte_tail": True, "horizon": 60},
        {"mode": "live", "horizon": 15},
    ],
    ids=["fading", "fading with outages and tail", "live"],
)
def test_fading_and_live_equal_the_reference_model(config):
    assert_same_episodes(config, seed=5, episodes=1)


positive = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(t=st.floats(0.0, 1e6, allow_nan=False), d=positive)
def test_divmod_is_pythons(t, d):
    assert core._divmod(t, d) == divmod(t, d)
    for near in (d, 2.0 * d, math.nextafter(d, 0.0), math.nextafter(2.0 * d, 0.0)):
        assert core._divmod(near, d) == divmod(near, d)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 20), min_size=1, max_size=60),
    x=st.floats(-1.0, 21.0, allow_nan=False),
    lo_fraction=st.floats(0.0, 1.0),
)
def test_bisect_is_the_bisect_modules(values, x, lo_fraction):
    a = np.sort(np.asarray(values, dtype=np.float64) / 2.0)  # with ties
    lo = int(lo_fraction * a.size)
    for right, reference in ((False, bisect.bisect_left), (True, bisect.bisect_right)):
        assert core._bisect(a, lo, a.size, x, right) == reference(a.tolist(), x, lo)
        if lo < a.size:
            assert core._bisect(a, lo, a.size, a[lo], right) == reference(a.tolist(), a[lo], lo)


def test_max_min_are_pythons_on_signed_zeros():
    for a, b in ((0.0, -0.0), (-0.0, 0.0), (1.0, 2.0), (2.0, 1.0)):
        assert math.copysign(1.0, core._max(a, b)) == math.copysign(1.0, max(a, b))
        assert math.copysign(1.0, core._min(a, b)) == math.copysign(1.0, min(a, b))
        assert core._max(a, b) == max(a, b) and core._min(a, b) == min(a, b)


@st.composite
def traces(draw):
    """Traces with zero-capacity runs, and possibly no capacity at all."""
    n = draw(st.integers(1, 30))
    cap = draw(
        st.lists(st.sampled_from([0.0, 0.0, 8.0, 1e3, 3.3e5, 1.7e7]), min_size=n, max_size=n)
    )
    return CapacityTrace(draw(st.sampled_from([0.01, 0.1, 0.3])), np.array(cap))


def trace_args(trace: CapacityTrace) -> tuple:
    return (
        np.asarray(trace.cum_bits_array),
        np.asarray(trace.capacity_bps),
        trace.slot_s,
        trace.duration_s,
        float(trace.cum_bits_array[-1]),
    )


@settings(max_examples=300, deadline=None)
@given(
    trace=traces(),
    start_s=st.floats(0.0, 50.0, allow_nan=False),
    payload_bytes=st.integers(0, 10**6),
    hint_fraction=st.floats(0.0, 1.0),
)
def test_trace_arithmetic_is_capacity_traces(trace, start_s, payload_bytes, hint_fraction):
    cum, cap, slot_s, duration_s, total = trace_args(trace)
    bits, slot = core.cumulative_bits(cum, cap, slot_s, duration_s, total, start_s)
    assert bits == trace.cumulative_bits(start_s)
    assert slot == min(int((start_s % duration_s) / slot_s), cap.size - 1)
    assert core.capacity_at_bps(cap, slot_s, duration_s, start_s) == trace.capacity_at_bps(start_s)
    target = bits + 8.0 * payload_bytes
    expected = trace.time_at_bits_s(target)
    for hint in (slot, int(hint_fraction * (cap.size - 1))):  # any slot is a valid hint
        assert core.time_at_bits_s(cum, cap, slot_s, duration_s, total, target, hint) == (expected)


@pytest.mark.parametrize("t_s", [0.0, 0.5, 1.0, 1.5, 2.0, 2.999, 3.0, 5.0, 9.0, 100.0])
def test_outage_schedule_functions_are_outage_schedules(t_s):
    schedule = OutageSchedule((1.0, 3.0, 8.0), (2.0, 4.5, math.inf))  # (its package arrays too)
    arrays = [
        schedule.down_start_s,
        schedule.down_end_s,
        schedule.cum_down_s,
        schedule.up_at_start_s,
    ]
    mode = core.INTERMITTENT
    assert core.is_down(arrays[0], arrays[1], mode, math.inf, t_s) == schedule.is_down(t_s)
    assert core.uptime_s(*arrays, mode, math.inf, t_s) == schedule.uptime_s(t_s)
    for after_down in (False, True):
        up_s = schedule.uptime_s(t_s)
        assert core.time_at_uptime_s(
            arrays[2], arrays[3], mode, math.inf, up_s, after_down
        ) == schedule.time_at_uptime_s(up_s, after_down)
    # a permanent failure at 3.0 is the schedule ((3.0,), (inf,))
    failure = OutageSchedule((3.0,), (math.inf,))
    empty = np.zeros(0)
    perm = core.PERMANENT
    assert core.is_down(empty, empty, perm, 3.0, t_s) == failure.is_down(t_s)
    assert core.uptime_s(empty, empty, empty, empty, perm, 3.0, t_s) == failure.uptime_s(t_s)
    for after_down in (False, True):
        up_s = failure.uptime_s(t_s)
        assert core.time_at_uptime_s(
            empty, empty, perm, 3.0, up_s, after_down
        ) == failure.time_at_uptime_s(up_s, after_down)


def test_time_at_bits_on_slot_boundaries_from_every_hint():
    # bits reached exactly at a slot boundary, after zero-capacity slots, in later loops
    trace = CapacityTrace(0.5, np.array([8.0, 0.0, 0.0, 16.0, 0.0, 4.0]))
    cum, cap, slot_s, duration_s, total = trace_args(trace)
    for loops in (0, 1, 3):
        for k in range(1, cum.size):
            target = loops * total + cum[k]
            for hint in range(cap.size):
                got = core.time_at_bits_s(cum, cap, slot_s, duration_s, total, target, hint)
                assert got == trace.time_at_bits_s(target), (loops, k, hint)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=0, max_size=70),
    x=st.floats(-1.0, 60.0, allow_nan=False),
    lo_fraction=st.floats(0.0, 1.0),
)
def test_advancing_through_arrivals_is_bisect_right(values, x, lo_fraction):
    arrivals = sorted(values)
    a = np.append(arrivals, np.full(core.ARRIVAL_SENTINELS, np.inf))
    lo = int(lo_fraction * len(arrivals))
    lo = min(lo, bisect.bisect_right(arrivals, x))  # (the callers' answer is never before lo)
    expected = bisect.bisect_right(arrivals, x, lo)
    assert core._advance(a, lo, x) == expected
    assert core._advance_block(a, lo, x) == expected


def test_planner_capacity_and_measured_capacity_equal_the_reference_model():
    config = {"horizon": 40, "lte_tail": True}
    ours, reference = SplitExitEnv(config), ReferenceEnv(config)
    ours.reset(seed=4)
    reference.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(30):
        t = ours.arrival_s
        assert ours.mean_capacity_bps(t - ours.frame_s, t) == reference.trace.mean_capacity_bps(
            t - ours.frame_s, t
        )
        assert ours.mean_capacity_bps(t, t) == reference.trace.mean_capacity_bps(t, t)
        for capacity_bps in (3e4, 2.5e6):
            true_trace = reference.trace  # what a planner assumes: a constant capacity
            reference.trace = CapacityTrace(1e3, np.array([capacity_bps]))
            expected = reference.expected_rewards()
            reference.trace = true_trace
            np.testing.assert_array_equal(
                ours.expected_rewards(capacity_bps=capacity_bps), expected
            )
        np.testing.assert_array_equal(ours.expected_rewards(), reference.expected_rewards())
        action = int(rng.integers(ours.n_actions))
        ours.step(action)
        reference.step(action)


def test_constants_are_the_params_record_by_name():
    env = SplitExitEnv({"battery_j": 3.0, "outage": "permanent", "lte_tail": True})
    params = env.batch.world.params
    constants = core.constants(params)
    assert constants._fields == core.PARAMS.names
    for name in core.PARAMS.names:
        assert getattr(constants, name) == params[0][name], name


def test_info_keys_come_in_order():
    env = SplitExitEnv()
    env.reset(seed=0)
    info = env.step(0)[4]
    assert list(info) == [*core.INFO_KEYS, "rewards"]
    assert list(info["rewards"]) == list(core.REWARD_KEYS)


@pytest.mark.parametrize(
    ("t0_s", "t1_s"), [(-1.0, 0.0), (1.0, 0.5), (0.0, math.inf), (math.nan, 1.0)]
)
def test_mean_capacity_needs_finite_ordered_times(t0_s, t1_s):
    env = SplitExitEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="t0_s"):
        env.mean_capacity_bps(t0_s, t1_s)


@pytest.mark.parametrize("kernel", [core.step, core.start_episodes, core.expected_rewards])
def test_kernels_take_the_world_by_its_field_names(kernel):
    import inspect

    parameters = list(inspect.signature(kernel.py_func).parameters)
    assert parameters[: len(core.World._fields)] == list(core.World._fields)
