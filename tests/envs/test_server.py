"""The edge server: background loads and outages (splitexit.envs.server), and the queue of the
reference model (Lindley's recursion) against hand computations and an event simulation;
tests/envs/test_core.py holds the compiled core to the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from splitexit.envs import server as package_server
from splitexit.envs.server import (
    DEFAULT_AZURE_TRACE,
    BackgroundLoad,
    OutageProcess,
    PoissonMarkovLoad,
    TraceLoad,
    read_azure_trace,
)
from tests.envs.reference import EdgeServer, OutageSchedule, ServerWorld, reference_schedule


class FixedLoad:
    """A load 'process' that always realises the given jobs."""

    def __init__(self, arrival_s, service_s):
        self.bg = BackgroundLoad(np.asarray(arrival_s, float), np.asarray(service_s, float))

    def sample(self, rng, duration_s):
        return self.bg


class FixedOutages:
    def __init__(self, starts, ends):
        self.schedule = OutageSchedule(tuple(starts), tuple(ends))

    def sample(self, rng, duration_s):
        return self.schedule


def _server(arrival_s=(), service_s=(), down=((), ())) -> EdgeServer:
    server = EdgeServer(FixedLoad(arrival_s, service_s), FixedOutages(*down))
    server.reset(np.random.default_rng(0), 100.0)
    return server


def test_lindley_matches_hand_computation():
    # Background jobs: t=0 (2 s of work), t=1 (1 s), t=5 (1 s).
    server = _server([0.0, 1.0, 5.0], [2.0, 1.0, 1.0])
    assert server.backlog_s(0.0) == pytest.approx(2.0)
    assert server.backlog_s(1.5) == pytest.approx(0.5 + 1.0)
    assert server.peek(1.5, 0.5) == pytest.approx((1.5, 3.5))
    assert server.peek(1.5, 0.5) == pytest.approx((1.5, 3.5))  # peeking changes nothing
    assert server.submit(1.5, 0.5) == pytest.approx((1.5, 3.5))  # behind 1.5 s of work
    assert server.backlog_s(3.0) == pytest.approx(0.5)
    assert server.submit(4.0, 1.0) == pytest.approx((0.0, 5.0))  # idle since 3.5
    assert server.backlog_s(5.0) == pytest.approx(1.0)  # the job arriving at 5 counts
    assert server.submit(5.5, 0.2) == pytest.approx((0.5, 6.2))
    assert server.backlog_s(10.0) == 0.0


# Work that ends within this of an outage's start is a tie that floating-point sums of up time
# may break either way (the job waits out the outage or not): such cases are not compared.
TIE_S = 1e-9


def _reference(arrival_s, service_s, ours, starts=(), ends=(), ties=None):
    """Event-by-event FIFO with preemptive-resume outages; background first at equal times.
    Appends to ``ties`` the moments where work ends or starts at an outage's start."""
    sched = OutageSchedule(tuple(starts), tuple(ends))
    ties = [] if ties is None else ties

    def advance(t, work):  # wall time when `work` seconds of service are done from t
        ties.extend(t for d in sched.down_start_s if abs(t - d) < TIE_S)
        while True:
            t = sched.down_until(t)
            if work <= 0 or t == math.inf:
                return t
            k = next((k for k, a in enumerate(sched.down_start_s) if a > t), None)
            room = math.inf if k is None else sched.down_start_s[k] - t
            if abs(work - room) < TIE_S:
                ties.append(t + room)
            if work <= room:
                return t + work
            t, work = t + room, work - room

    jobs = sorted(
        [(a, 0, s, None) for a, s in zip(arrival_s, service_s, strict=True)]
        + [(a, 1, s, i) for i, (a, s) in enumerate(ours)]
    )
    free_s = 0.0
    out = [None] * len(ours)
    for a, _, s, i in jobs:
        start = advance(max(a, free_s), 0.0)
        free_s = advance(start, s) if s > 0 else start
        if i is not None:
            out[i] = (start - a, free_s)
    return out


def _times(hi: int):
    """Half-second grid (ties between jobs and outage edges are common) or any float."""
    return st.integers(0, 2 * hi).map(lambda x: x / 2) | st.floats(0, hi)


@settings(max_examples=80, deadline=None)
@given(
    bg=st.lists(st.tuples(_times(20), _times(3)), max_size=25),
    ours=st.lists(st.tuples(_times(20), _times(3)), min_size=1, max_size=10),
    downs=st.lists(st.tuples(_times(6), _times(4)), max_size=4),
    permanent=st.booleans(),
)
def test_matches_event_simulation_with_outages(bg, ours, downs, permanent):
    bg.sort()
    ours.sort()
    starts, ends, t = [], [], 0.0
    for gap, length in downs:  # disjoint down periods from gaps and lengths (may touch)
        starts.append(t + gap)
        ends.append(starts[-1] + length)
        t = ends[-1]
    if permanent and starts:
        ends[-1] = math.inf
    server = _server([a for a, _ in bg], [s for _, s in bg], (starts, ends))
    ties = []
    expected = _reference([a for a, _ in bg], [s for _, s in bg], ours, starts, ends, ties)
    assume(not ties)
    for (a, s), (wait_ref, finish_ref) in zip(ours, expected, strict=True):
        peeked = server.peek(a, s)
        wait_s, finish_s = server.submit(a, s)
        assert (wait_s, finish_s) == peeked
        assert not (math.isnan(wait_s) or math.isnan(finish_s))
        assert wait_s == pytest.approx(wait_ref, abs=1e-9)
        assert finish_s == pytest.approx(finish_ref, abs=1e-9)


def test_outage_schedule_queries():
    sched = OutageSchedule((2.0, 5.0), (3.0, math.inf))
    assert [sched.is_down(t) for t in (1.0, 2.0, 2.5, 3.0, 6.0)] == [False, True, True, False, True]
    assert sched.down_until(2.5) == 3.0 and sched.down_until(1.0) == 1.0
    assert sched.down_until(6.0) == math.inf
    assert sched.uptime_s(4.0) == pytest.approx(3.0) and sched.uptime_s(100.0) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="down periods must be sorted and disjoint"):
        OutageSchedule((2.0, 2.5), (3.0, 4.0))


def test_outages_stop_the_work_and_permanent_failure_is_infinite_not_nan():
    server = _server(down=((2.0, 5.0), (3.0, math.inf)))
    assert server.submit(1.0, 2.0) == pytest.approx((0.0, 4.0))  # 1 s, down 1 s, 1 s
    # arrives during the outage behind 1 s of work: starts when that work is done
    assert server.submit(2.2, 0.0) == pytest.approx((1.8, 4.0))
    assert server.submit(4.5, 1.0) == (0.0, math.inf)  # 0.5 s done, then down for ever
    wait_s, finish_s = server.submit(6.0, 0.1)
    assert wait_s == math.inf and finish_s == math.inf
    assert server.backlog_s(7.0) == pytest.approx(0.6)
    assert server.is_down(6.0) and server.down_until(2.5) == 3.0 and not server.is_down(4.0)


def test_outage_process_statistics_and_determinism():
    process = OutageProcess(mean_up_s=10.0, mean_down_s=5.0)
    sched = process.sample(np.random.default_rng(0), 20_000.0)
    again = process.sample(np.random.default_rng(0), 20_000.0)
    other = process.sample(np.random.default_rng(1), 20_000.0)
    assert np.array_equal(sched.down_start_s, again.down_start_s)
    assert not np.array_equal(sched.down_start_s[:5], other.down_start_s[:5])
    down_s = 20_000.0 - reference_schedule(sched).uptime_s(20_000.0)
    assert down_s / 20_000.0 == pytest.approx(5.0 / 15.0, abs=0.03)
    with pytest.raises(ValueError, match="drawn per episode"):
        OutageProcess(mean_up_s=10.0, permanent=True).sample(np.random.default_rng(0), 1000.0)
    with pytest.raises(ValueError, match="mean_down_s must be > 0"):
        OutageProcess(mean_down_s=0.0)


def test_poisson_markov_load():
    load = PoissonMarkovLoad(levels_utilisation=(0.2, 0.8), slot_s=1.0, mean_service_s=0.01)
    a = load.sample(np.random.default_rng(0), 3000.0)
    b = load.sample(np.random.default_rng(0), 3000.0)
    c = load.sample(np.random.default_rng(1), 3000.0)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.service_s, b.service_s)
    assert a.arrival_s.size != c.arrival_s.size or not np.array_equal(a.arrival_s, c.arrival_s)
    assert np.all(np.diff(a.arrival_s) >= 0) and a.arrival_s[-1] < 3000.0
    assert a.service_s.mean() == pytest.approx(0.01, rel=0.05)
    # offered utilisation = mean level utilisation; default transition is symmetric -> 0.5
    assert a.service_s.sum() / 3000.0 == pytest.approx(a.level_utilisation.mean(), rel=0.1)
    assert set(np.unique(a.level_utilisation)) <= {0.2, 0.8}
    det = PoissonMarkovLoad(service="deterministic").sample(np.random.default_rng(0), 10.0)
    assert np.all(det.service_s == 0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"levels_utilisation": (0.5, -0.1)}, "levels_utilisation must be >= 0"),
        ({"mean_service_s": 0.0}, "mean_service_s must be > 0"),
        ({"slot_s": -1.0}, "slot_s must be > 0"),
        ({"transition": [[0.5, 0.5]]}, "transition must be of shape"),
        ({"service": "gamma"}, "service must be one of"),
    ],
)
def test_poisson_markov_load_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoissonMarkovLoad(**kwargs)


def test_server_is_deterministic_and_reports_levels():
    server = EdgeServer(PoissonMarkovLoad(), OutageProcess(mean_up_s=30.0, mean_down_s=2.0))
    runs = []
    for seed in (5, 5, 6):
        server.reset(np.random.default_rng(seed), 200.0)
        runs.append([server.submit(0.1 * k, 0.005) for k in range(1, 1500)])
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert server.utilisation_level(10.0) in (0.2, 0.5, 0.8)
    assert server.utilisation_level(500.0) == 0.0  # beyond the realised horizon


def test_submit_validation():
    server = _server()
    server.submit(2.0, 0.1)
    with pytest.raises(ValueError, match="arrival_s must be >="):
        server.submit(1.0, 0.1)
    with pytest.raises(ValueError, match="service_s must be >= 0"):
        server.submit(3.0, -1.0)
    with pytest.raises(ValueError, match="t_s must be >="):
        server.backlog_s(1.0)


def test_huge_load_gives_large_finite_waits():
    server = EdgeServer(PoissonMarkovLoad(levels_utilisation=(5.0,), mean_service_s=0.01))
    server.reset(np.random.default_rng(0), 20.0)
    waits = [server.submit(t, 0.01)[0] for t in (1.0, 10.0, 19.0, 50.0)]
    assert all(math.isfinite(w) for w in waits)
    assert waits[1] > waits[0] > 1.0  # the backlog grows by ~4 s of work per second
    # Busy from the first arrival on: the wait is all work so far minus the time served.
    bg = server.background
    served_s = 50.0 - bg.arrival_s[0]
    assert waits[3] == pytest.approx(bg.service_s.sum() + 3 * 0.01 - served_s, abs=1e-6)


def test_trace_load_targets_utilisation():
    load = TraceLoad(target_utilisation=0.7, mean_service_s=0.02)
    a = load.sample(np.random.default_rng(0), 2000.0)
    b = load.sample(np.random.default_rng(0), 2000.0)
    c = load.sample(np.random.default_rng(1), 2000.0)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.arrival_s[:10], c.arrival_s[:10])
    assert np.all(np.diff(a.arrival_s) >= 0)
    assert a.arrival_s[0] >= 0 and a.arrival_s[-1] < 2000.0
    assert a.service_s.sum() / 2000.0 == pytest.approx(0.7, rel=0.1)
    assert a.level_utilisation.size == 200 and a.level_utilisation.mean() == pytest.approx(
        a.service_s.sum() / 2000.0
    )
    zero = TraceLoad(target_utilisation=0.0).sample(np.random.default_rng(0), 10.0)
    assert zero.arrival_s.size == 0


@pytest.mark.parametrize(
    ("rows", "line", "what"),
    [
        ("2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0,1,x\n", 3, "not integers"),
        ("2023-11-16 18:17:03.9799600,4808,10\nyesterday,1,2\n", 3, "bad timestamp"),
        ("2023-11-16 18:17:03.9799600,4808\n", 2, "expected 3 columns"),
        ("2023-11-16 18:17:03.9799600,-4,10\n", 2, "negative token count"),
    ],
)
def test_malformed_azure_csv_names_path_and_line(tmp_path, rows, line, what):
    path = tmp_path / "load.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    with pytest.raises(ValueError, match=what) as err:
        read_azure_trace(path)
    assert f"{path}:{line}:" in str(err.value)


def test_azure_csv_header_and_shipped_trace(tmp_path):
    path = tmp_path / "bad_header.csv"
    path.write_text("time,a,b\n")
    with pytest.raises(ValueError, match=r"bad_header.csv:1: expected header"):
        read_azure_trace(path)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        TraceLoad(tmp_path / "missing.csv")
    t_s, tokens = read_azure_trace(DEFAULT_AZURE_TRACE.resolve())
    assert t_s.size == tokens.size == 19_366
    assert t_s[0] == 0.0 and t_s[-1] == pytest.approx(3501.7, abs=1.0)


def test_background_backlog_matches_the_scalar_query():
    for outages in (None, OutageProcess(mean_up_s=2.0, mean_down_s=0.5)):
        server = EdgeServer(PoissonMarkovLoad(), outages)
        server.reset(np.random.default_rng(3), 30.0)
        times = np.linspace(0.0, 29.0, 300)
        vector = server.background_backlog_s(times)
        scalar = [server.backlog_s(t) for t in times]
        np.testing.assert_allclose(vector, scalar, rtol=0, atol=1e-12)


def _shared_server(outages=None, seed=0):
    world = package_server.ServerWorld.realise(PoissonMarkovLoad(), outages, 600.0, seed)
    world = ServerWorld(world.background, reference_schedule(world.schedule), world.duration_s)
    return EdgeServer(PoissonMarkovLoad(), outages, world=world), world


@pytest.mark.parametrize(
    "outages",
    [None, OutageProcess(mean_up_s=3.0, mean_down_s=1.0), OutageProcess(20.0, permanent=True)],
    ids=["no outages", "intermittent", "permanent"],
)
def test_shared_world_episode_matches_event_simulation_from_its_offset(outages):
    server, world = _shared_server(outages)
    for draw in (np.array([0.3, 0.5]), np.array([0.9, 0.05])):
        server.reset(np.random.default_rng(0), 30.0, draw)
        offset = server.offset_s
        assert offset == pytest.approx(draw[0] * (600.0 - 30.0))
        ours = [(0.05 + 0.1 * k, 0.004) for k in range(250)]
        bg = world.background
        keep = bg.arrival_s < offset + 30.0  # the history before the offset included
        sched = server.schedule
        expected = _reference(
            bg.arrival_s[keep].tolist(),
            bg.service_s[keep].tolist(),
            [(a + offset, s) for a, s in ours],
            sched.down_start_s,
            sched.down_end_s,
        )
        times = np.array([a for a, _ in ours])
        queue = server.background_backlog_s(times)
        assert queue[0] == pytest.approx(server.backlog_s(times[0]), abs=1e-12)
        for (a, s), (wait_ref, finish_ref) in zip(ours, expected, strict=True):
            wait_s, finish_s = server.submit(a, s)
            assert wait_s == pytest.approx(wait_ref, abs=1e-9)
            assert finish_s == pytest.approx(finish_ref - offset, abs=1e-9)


def test_shared_world_episodes_start_in_the_stationary_regime_and_draw_two_uniforms():
    server, world = _shared_server()
    rng = np.random.default_rng(1)
    start_backlog = []
    for _ in range(200):
        server.reset(rng, 30.0)
        start_backlog.append(server.backlog_s(0.0))
    # Mean M/M/1 work at the levels' utilisations (0.2, 0.5, 0.8) and 10 ms jobs is a few ms;
    # an empty start would give exactly 0 every time.
    assert np.mean(start_backlog) > 0.002 and np.mean(np.array(start_backlog) > 0) > 0.3
    state = np.random.default_rng(5)
    server.reset(state, 30.0)
    after = state.random()
    state = np.random.default_rng(5)
    state.random(2)
    assert after == state.random()  # reset drew exactly its two uniforms
    with pytest.raises(ValueError, match="duration_s must be <= the shared world"):
        server.reset(rng, 601.0)


def loop_outages(rng: np.random.Generator, mean_up_s: float, mean_down_s: float, duration_s):
    """The outage draw period by period (as first written), the oracle of the block draw."""
    down = bool(rng.random() < mean_down_s / (mean_up_s + mean_down_s))
    t_s, starts, ends = 0.0, [], []
    while t_s < duration_s:
        if down:
            end_s = t_s + rng.exponential(mean_down_s)
            starts.append(t_s)
            ends.append(end_s)
            t_s = end_s
        else:
            t_s += rng.exponential(mean_up_s)
        down = not down
    return starts, ends


def loop_schedule(starts, ends):
    """OutageSchedule's arrays computed period by period (as first written)."""
    s, e = [], []
    for a, b in zip(starts, ends, strict=True):
        if a == b:
            continue
        if e and a == e[-1]:
            e[-1] = b
        else:
            s.append(a)
            e.append(b)
    cum = [0.0]
    for a, b in zip(s, e, strict=True):
        cum.append(cum[-1] + (b - a))
    return s, e, cum, [a - c for a, c in zip(s, cum, strict=False)]


@settings(max_examples=60, deadline=None)
@given(
    st.floats(1e-3, 1e3),
    st.floats(1e-3, 1e3),
    st.floats(0.0, 5e3),
    st.integers(0, 2**32 - 1),
)
def test_block_drawn_outages_equal_the_period_by_period_draw(up_s, down_s, duration_s, seed):
    assume(duration_s / (up_s + down_s) < 2e4)
    a, b = np.random.default_rng(seed), np.random.default_rng(seed)
    starts, ends = loop_outages(a, up_s, down_s, duration_s)
    schedule = package_server.OutageProcess(up_s, down_s).sample(b, duration_s)
    assert a.bit_generator.state == b.bit_generator.state  # the same draws, no more
    expected = loop_schedule(starts, ends)
    for got, want in zip(
        (schedule.down_start_s, schedule.down_end_s, schedule.cum_down_s, schedule.up_at_start_s),
        expected,
        strict=True,
    ):
        assert got.tolist() == want


def test_schedule_merges_touching_and_drops_empty_periods():
    starts, ends = [0.0, 1.0, 3.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0, 6.5]
    schedule = package_server.OutageSchedule(starts, ends)
    assert schedule.down_start_s.tolist() == [0.0, 3.0, 5.0]
    assert schedule.down_end_s.tolist() == [2.0, 4.0, 6.5]
    assert [x.tolist() for x in (schedule.cum_down_s, schedule.up_at_start_s)] == list(
        loop_schedule(starts, ends)[2:]
    )
    with pytest.raises(ValueError, match="sorted and disjoint"):
        package_server.OutageSchedule([0.0, 1.5], [2.0, 3.0])
