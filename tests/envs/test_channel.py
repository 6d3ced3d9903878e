"""Capacity traces, trace files and the channel models (splitexit.envs.capacity, .traces,
.channel); the integration of a transfer on the reference model's twin of a trace, which
tests/envs/test_core.py holds the compiled core to."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitexit.envs import capacity
from splitexit.envs.channel import (
    FadingChannel,
    MarkovChannel,
    TraceChannel,
    default_markov_channel,
    fit_markov_channel,
)
from splitexit.envs.markov import stationary_distribution
from splitexit.envs.traces import (
    load_mahimahi,
    load_pensieve,
    load_trace,
    load_traces,
    shipped_trace_paths,
)
from tests.envs.reference import CapacityTrace, ShiftedTrace, reference_trace, sample_shifted

# 1 byte = 8 bits, so with capacities in multiples of 8 bit/s the hand computations are exact.
HAND = CapacityTrace(1.0, np.array([8.0, 0.0, 16.0]), "hand")  # 3 bytes per 3 s loop


@pytest.mark.parametrize(
    ("start_s", "payload_bytes", "expected_s"),
    [
        (0.0, 1, 1.0),  # slot 0 at 1 byte/s
        (0.0, 2, 2.5),  # 1 byte, wait out the zero slot, 1 byte at 2 bytes/s
        (0.5, 1, 1.75),  # half a byte in slot 0, half a byte in slot 2
        (1.2, 1, 1.3),  # starts inside the zero slot
        (0.0, 3, 3.0),  # exactly one loop
        (0.0, 4, 4.0),  # one loop and one more byte in slot 0 of the next
        (2.5, 2, 1.5),  # wraps: 1 byte in [2.5, 3), 1 byte in [3, 4)
        (3000.5, 1, 1.75),  # 1000 loops later, same as starting at 0.5
        (0.0, 0, 0.0),
        (1.0, 3 * 10, 30.0),  # 10 loops from the start of the zero slot
    ],
)
def test_transfer_time_exact_on_hand_trace(start_s, payload_bytes, expected_s):
    assert HAND.transfer_time_s(start_s, payload_bytes) == pytest.approx(expected_s, abs=1e-12)


def test_trailing_zero_slot_and_zero_capacity():
    trace = CapacityTrace(1.0, [8.0, 0.0])
    assert trace.transfer_time_s(0.0, 1) == pytest.approx(1.0)  # done before the zero slot
    assert trace.transfer_time_s(0.0, 2) == pytest.approx(3.0)  # waits for the next loop
    dead = CapacityTrace(0.5, np.zeros(4))
    assert dead.transfer_time_s(1.0, 100) == math.inf
    assert dead.transfer_time_s(1.0, 0) == 0.0
    assert dead.mean_capacity_bps(0.0, 10.0) == 0.0
    assert HAND.scaled(0.0).transfer_time_s(0.0, 1) == math.inf


def test_mean_capacity_and_cumulative_bits():
    assert HAND.mean_capacity_bps(0.0, 3.0) == pytest.approx(8.0)
    assert HAND.mean_capacity_bps(0.5, 2.5) == pytest.approx((4 + 0 + 8) / 2)
    assert HAND.mean_capacity_bps(2.25, 2.25) == 16.0  # instantaneous
    assert HAND.cumulative_bits(6.5) == pytest.approx(2 * 24 + 4)
    assert HAND.duration_s == 3.0 and HAND.mean_bps == pytest.approx(8.0)
    with pytest.raises(ValueError, match="t1_s must be >= t0_s"):
        HAND.mean_capacity_bps(2.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    cap=st.lists(st.sampled_from([0.0, 1e3, 5e5, 2e6, 1.3e7]), min_size=1, max_size=12),
    slot_s=st.sampled_from([0.01, 0.1, 1.0]),
    start_s=st.floats(0.0, 50.0),
    payload_bytes=st.integers(1, 200_000),
)
def test_transfer_time_inverts_cumulative_bits(cap, slot_s, start_s, payload_bytes):
    trace = CapacityTrace(slot_s, cap)
    dt = trace.transfer_time_s(start_s, payload_bytes)
    if sum(cap) == 0:
        assert dt == math.inf
        return
    assert 0 < dt < math.inf
    bits = trace.cumulative_bits(start_s + dt) - trace.cumulative_bits(start_s)
    # the difference of two large cumulative counts: float64 rounding of their magnitude
    rounding = 1e-12 * trace.cumulative_bits(start_s + dt)
    assert bits == pytest.approx(8 * payload_bytes, rel=1e-9, abs=rounding)
    # Earliest such time: a moment earlier, fewer bits got through.
    earlier = trace.cumulative_bits(start_s + dt * (1 - 1e-6)) - trace.cumulative_bits(start_s)
    assert earlier < 8 * payload_bytes
    assert trace.transfer_time_s(start_s, payload_bytes + 1) >= dt


def test_resampled_window_scaled():
    trace = CapacityTrace(1.0, [8.0, 0.0, 16.0, 8.0])
    np.testing.assert_allclose(trace.resampled(2.0).capacity_bps, [4.0, 12.0])
    np.testing.assert_allclose(trace.window(3, 3).capacity_bps, [8.0, 8.0, 0.0])
    np.testing.assert_allclose(trace.scaled(0.5).capacity_bps, [4.0, 0.0, 8.0, 4.0])
    assert not trace.capacity_bps.flags.writeable  # immutable, safe to cache and share
    assert pickle.loads(pickle.dumps(trace)).transfer_time_s(0.0, 3) == trace.transfer_time_s(0, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"slot_s": 0.0, "capacity_bps": [1.0]}, "slot_s must be > 0"),
        ({"slot_s": 1.0, "capacity_bps": [1.0, -2.0]}, "capacity_bps must be >= 0"),
        ({"slot_s": 1.0, "capacity_bps": [np.nan]}, "capacity_bps must be finite"),
        ({"slot_s": 1.0, "capacity_bps": []}, "capacity_bps must be a non-empty"),
    ],
)
def test_capacity_trace_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        capacity.CapacityTrace(**kwargs)


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def test_load_mahimahi_bins_and_loops(tmp_path):
    path = tmp_path / "tiny.up"
    path.write_text("0\n0\n5\n\n12\n20\n")
    trace = load_trace(path, slot_s=0.01)
    assert trace is load_trace(path, slot_s=0.01)  # cached
    # Period 20 ms = 2 slots; the delivery at 20 ms is the first ms of the next loop.
    np.testing.assert_allclose(trace.capacity_bps, np.array([4, 1]) * 1500 * 8 / 0.01)
    assert trace.duration_s == pytest.approx(0.02)
    np.testing.assert_array_equal(load_mahimahi(path).capacity_bps, trace.capacity_bps)


def test_load_pensieve(tmp_path):
    path = tmp_path / "trace.log"
    path.write_text("0.0\t1.5\n1.01 2.0\n2.0 0.0\n3.02 4.0\n")
    trace = load_trace(path)
    assert trace.slot_s == pytest.approx(1.01)  # median of 1.01, 0.99, 1.02
    np.testing.assert_allclose(trace.capacity_bps, [1.5e6, 2e6, 0.0, 4e6])
    np.testing.assert_array_equal(load_pensieve(path).capacity_bps, trace.capacity_bps)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("12\nabc\n", 2, "not an integer"),
        ("1\n\n\n2.5\n", 4, "not an integer"),
        ("-5\n3\n", 1, "negative timestamp"),
        ("5\n7\n3\n", 3, "timestamps decrease"),
        ("0 1.0\n1 2.0 3\n", 2, "expected 2 columns"),
        ("0 1.0\n1\n", 2, "expected 2 columns"),
        ("0 x\n", 1, "not a number"),
        ("0 1\n1 -2\n", 2, "negative throughput"),
        ("0 1\n2 1\n1 1\n", 3, "timestamps decrease"),
        ("0 1\n1 nan\n", 2, "not finite"),
        ("0 1\n1 1e-300\n", 2, "throughput 1e-300 Mbit/s is outside 0 or"),  # issue 19, 18
        ("0 1\n1 2e303\n", 2, "throughput 2e\\+303 Mbit/s is outside"),  # issue 19, 27
        ("0\n" + "9" * 30 + "\n", 2, "ms is beyond the longest trace allowed"),  # over int64
    ],
)
def test_malformed_trace_names_path_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad.trace"
    path.write_text(text)
    with pytest.raises(ValueError, match=what) as err:
        load_trace(path)
    assert f"{path}:{line}:" in str(err.value)


def test_missing_empty_and_short_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.up"):
        load_trace(tmp_path / "nope.up")
    for text in ("", "\n  \n"):
        (tmp_path / "empty").write_text(text)
        with pytest.raises(ValueError, match="empty") as err:
            load_mahimahi(tmp_path / "empty")
        assert str(tmp_path / "empty") in str(err.value)
    (tmp_path / "one").write_text("0 1.0\n")
    with pytest.raises(ValueError, match="at least 2 rows"):
        load_trace(tmp_path / "one")


def test_trace_files_are_regular_files_of_bounded_size(tmp_path, monkeypatch):
    import os

    from splitexit.envs import traces
    from splitexit.envs.server import read_azure_trace

    with pytest.raises(ValueError, match="/dev/zero: trace file is not a regular file"):
        load_trace("/dev/zero")
    os.mkfifo(tmp_path / "fifo.up")  # refused without blocking on it
    with pytest.raises(ValueError, match="fifo.up: trace file is not a regular file"):
        load_trace(tmp_path / "fifo.up")
    monkeypatch.setattr(traces, "MAX_TRACE_BYTES", 10)
    (tmp_path / "big.up").write_text("0\n1000\n2000\n")
    with pytest.raises(ValueError, match="big.up: trace file has 12 bytes, at most 10"):
        load_trace(tmp_path / "big.up")
    (tmp_path / "load.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    with pytest.raises(ValueError, match="load.csv: load trace has 40 bytes, at most 10"):
        read_azure_trace(tmp_path / "load.csv")


def test_a_pensieve_time_step_under_a_millisecond_is_refused(tmp_path):
    (tmp_path / "tiny.log").write_text("0 1\n1e-300 1\n2e-300 1\n")
    with pytest.raises(ValueError, match="tiny.log: median time step is 1e-300 s, must be at"):
        load_trace(tmp_path / "tiny.log")


def test_the_traces_of_a_folder_are_bounded_in_all(tmp_path, monkeypatch):
    """Each trace within a day, but a folder of many: refused at the one past the bound."""
    from splitexit.envs import traces

    monkeypatch.setattr(traces, "MAX_TOTAL_SLOTS", 250)
    for name in ("a.up", "b.up", "c.up"):
        (tmp_path / name).write_text("0\n1000\n")  # 1 s: 100 slots of 10 ms
    assert len(load_traces([tmp_path / "a.up", tmp_path / "b.up"])) == 2
    with pytest.raises(ValueError, match="c.up: the traces up to this one hold 300 slots"):
        load_traces(tmp_path)


def test_a_trace_spanning_more_than_a_day_is_refused_before_allocating(tmp_path):
    (tmp_path / "long.up").write_text("1\n1000000000\n")  # 11.6 days: 1e8 slots of 10 ms
    with pytest.raises(ValueError, match="long.up: the trace spans 1e\\+06 s; at most 86400"):
        load_trace(tmp_path / "long.up")


def test_load_traces_folder(tmp_path):
    (tmp_path / "b.up").write_text("0\n10\n")
    (tmp_path / "a.log").write_text("0 1\n1 2\n")
    (tmp_path / "LICENSE.x").write_text("licence")
    (tmp_path / "README.md").write_text("readme")
    (tmp_path / "sub").mkdir()
    traces = load_traces(tmp_path)
    assert [t.name for t in traces] == ["a.log", "b.up"]
    assert len(load_traces([tmp_path / "b.up", tmp_path])) == 3
    with pytest.raises(ValueError, match="no trace files"):
        load_traces(tmp_path / "sub")


def test_shipped_traces_load():
    up = load_traces(shipped_trace_paths("mahimahi-up"))
    readme_mean_mbps = {  # traces/README.md
        "ATT-LTE-driving-2016.up": 1.91,
        "ATT-LTE-driving.up": 0.83,
        "TMobile-LTE-short.up": 13.3,
        "Verizon-LTE-short.up": 5.95,
    }
    assert {t.name: round(t.mean_bps / 1e6, 2) for t in up} == pytest.approx(
        readme_mean_mbps, abs=0.02
    )
    pensieve = load_traces(shipped_trace_paths("pensieve"))
    assert len(pensieve) == 127
    assert all(0.9 < t.slot_s <= 5.0 and t.mean_bps > 0 for t in pensieve)
    with pytest.raises(ValueError, match="kind must be one of"):
        shipped_trace_paths("5g")


# --------------------------------------------------------------------------------------------
# Channel generators
# --------------------------------------------------------------------------------------------


def _channels():
    return [
        MarkovChannel([1e6, 4e6], [[0.9, 0.1], [0.2, 0.8]], slot_s=0.1),
        FadingChannel(),
    ]


@pytest.mark.parametrize("channel", _channels(), ids=lambda c: c.name)
def test_channels_are_deterministic_given_the_rng(channel):
    a = channel.sample(np.random.default_rng(7), 30.0)
    b = channel.sample(np.random.default_rng(7), 30.0)
    c = channel.sample(np.random.default_rng(8), 30.0)
    np.testing.assert_array_equal(a.capacity_bps, b.capacity_bps)
    assert a.slot_s == b.slot_s and a.name == b.name
    assert not np.array_equal(a.capacity_bps, c.capacity_bps)
    assert a.duration_s >= 30.0 - 1e-9
    assert np.all(np.isfinite(a.capacity_bps)) and np.all(a.capacity_bps >= 0)
    legacy_state = np.random.get_state()[1].copy()  # noqa: NPY002 (checks it stays untouched)
    channel.sample(np.random.default_rng(9), 5.0)
    np.testing.assert_array_equal(np.random.get_state()[1], legacy_state)  # noqa: NPY002


def test_trace_channel_scales_its_traces():
    trace = capacity.CapacityTrace(1.0, np.arange(10.0) * 8)
    scaled = TraceChannel([trace], scale=2.5).scaled_traces[0]
    np.testing.assert_allclose(scaled.capacity_bps, 2.5 * trace.capacity_bps)
    zero = reference_trace(TraceChannel([trace], scale=0.0).scaled_traces[0])
    assert zero.transfer_time_s(0.0, 10) == math.inf
    with pytest.raises(ValueError, match="scale must be >= 0"):
        TraceChannel([trace], scale=-1)
    with pytest.raises(ValueError, match="traces must be"):
        TraceChannel([])


def test_markov_channel_validation():
    with pytest.raises(ValueError, match="transition must be row-stochastic"):
        MarkovChannel([1.0, 2.0], [[0.5, 0.6], [0.5, 0.5]], 1.0)
    with pytest.raises(ValueError, match="transition must be of shape"):
        MarkovChannel([1.0, 2.0], [[1.0]], 1.0)
    with pytest.raises(ValueError, match="states_bps must be >= 0"):
        MarkovChannel([-1.0, 2.0], np.eye(2), 1.0)
    with pytest.raises(ValueError, match="slot_s must be > 0"):
        MarkovChannel([1.0], [[1.0]], 0.0)


def _markov_path(rng, transition, n):
    """An independent reference sampler (rng.choice per step)."""
    pi = stationary_distribution(transition)
    path = [rng.choice(len(pi), p=pi)]
    for _ in range(n - 1):
        path.append(rng.choice(len(pi), p=transition[path[-1]]))
    return np.array(path)


def test_fit_recovers_a_known_markov_chain():
    states = np.array([1e6, 5e6, 10e6])
    transition = np.array([[0.9, 0.07, 0.03], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    rng = np.random.default_rng(0)
    traces = [CapacityTrace(0.1, states[_markov_path(rng, transition, 4000)]) for _ in range(2)]
    fit = fit_markov_channel(traces, n_states=3, slot_s=0.1)
    np.testing.assert_allclose(fit.states_bps, states, rtol=1e-9)
    np.testing.assert_allclose(fit.transition, transition, atol=0.03)
    assert fit.mean_bps == pytest.approx(stationary_distribution(transition) @ states, rel=0.05)


def test_sampled_markov_path_has_the_stationary_mix():
    channel = MarkovChannel([0.0, 3e6], [[0.8, 0.2], [0.4, 0.6]], slot_s=0.1)
    trace = channel.sample(np.random.default_rng(1), 2000.0)
    assert np.mean(trace.capacity_bps > 0) == pytest.approx(1 / 3, abs=0.03)
    assert trace.mean_bps == pytest.approx(channel.mean_bps, rel=0.1)


def test_default_markov_channel_matches_shipped_traces():
    channel = default_markov_channel()
    traces = load_traces(shipped_trace_paths("mahimahi-up"))
    pooled_bits = sum(t.cum_bits_array[-1] for t in traces)
    mean_bps = pooled_bits / sum(t.duration_s for t in traces)
    assert channel.mean_bps == pytest.approx(mean_bps, rel=0.10)
    assert np.all(np.diff(channel.states_bps) > 0)
    np.testing.assert_allclose(channel.transition.sum(axis=1), 1.0)
    assert channel is default_markov_channel()


def test_fading_channel_link_budget_and_rayleigh_gain():
    channel = FadingChannel(distance_m=150.0, shadowing_std_db=0.0)
    # 23 dBm - (128.1 + 37.6 log10(0.15)) - 20 dB - (-174 + 10 log10(4.5 MHz) + 5) dB
    expected_db = 23 - (128.1 + 37.6 * math.log10(0.15)) - 20 - (-174 + 10 * math.log10(4.5e6) + 5)
    assert channel.mean_snr_db(150.0) == pytest.approx(expected_db)
    # 3 km/h at 2 GHz: f_D = 5.56 Hz, T_c = 0.423 / f_D = 76 ms
    assert channel.coherence_time_s == pytest.approx(0.423 / (3 / 3.6 * 2e9 / 299_792_458))
    trace = channel.sample(np.random.default_rng(0), 600.0)
    gain = (2 ** (trace.capacity_bps / channel.bandwidth_hz) - 1) / 10 ** (expected_db / 10)
    assert gain.mean() == pytest.approx(1.0, abs=0.05)  # exponential power gain, unit mean
    assert np.median(gain) == pytest.approx(math.log(2), abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bandwidth_hz": -1.0}, "bandwidth_hz must be > 0"),
        ({"distance_m": (100.0, 50.0)}, "distance_m must be"),
        ({"distance_m": 0.0}, "distance_m must be"),
        ({"shadowing_std_db": -1.0}, "shadowing_std_db must be >= 0"),
        ({"speed_kmh": 0.0}, "speed_kmh must be > 0"),
        ({"coherence_time_s": 0.0}, "coherence_time_s must be > 0"),
    ],
)
def test_fading_channel_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FadingChannel(**kwargs)


def test_fading_channel_extremes_never_nan():
    far = FadingChannel(distance_m=1e7).sample(np.random.default_rng(0), 10.0)
    assert np.all(np.isfinite(far.capacity_bps))
    assert reference_trace(far).transfer_time_s(0.0, 1000) > 0


def test_shifted_trace_reads_the_base_from_its_slot_on():
    base = reference_trace(load_traces(shipped_trace_paths("mahimahi-up"))[1])
    start = 1234
    shifted = ShiftedTrace(base, start * base.slot_s)
    window = base.window(start, 3000)  # the same capacities, copied
    for t in (0.0, 0.005, 1.234, 17.5):
        assert shifted.capacity_at_bps(t) == window.capacity_at_bps(t)
        assert shifted.transfer_time_s(t, 6276) == pytest.approx(
            window.transfer_time_s(t, 6276), abs=1e-9
        )
        assert shifted.mean_capacity_bps(t, t + 0.1) == pytest.approx(
            window.mean_capacity_bps(t, t + 0.1), rel=1e-9
        )


def test_sample_shifted_maps_uniforms_to_a_trace_and_a_slot():
    traces = [
        capacity.CapacityTrace(0.5, [1.0, 2.0, 3.0, 4.0]),
        capacity.CapacityTrace(1.0, [5.0, 6.0]),
    ]
    channel = TraceChannel(traces, scale=2.0)
    first = sample_shifted(channel, 0.0, 0.0)
    assert first.base.capacity_bps.tolist() == [2.0, 4.0, 6.0, 8.0] and first.shift_s == 0.0
    last = sample_shifted(channel, 0.999, 0.999)  # trace 1, slot 1
    assert last.base.capacity_bps.tolist() == [10.0, 12.0] and last.shift_s == 1.0
    assert last.capacity_at_bps(0.0) == 12.0 and last.capacity_at_bps(1.0) == 10.0  # loops
