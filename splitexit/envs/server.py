"""The edge server's world: its background load and outages, realised once per config.

A FIFO single-server queue, measured in seconds of work. Background jobs (other clients') and
intermittent outages are realised for a long stretch from ``world_seed``
(:meth:`ServerWorld.realise`); each episode reads them from a random offset. Our requests are
queued among them by the compiled core (``splitexit.envs.core.server_phase``): Lindley's
recursion in up-time coordinates, with the per-job prefix arrays precomputed here. While the
server is down it does no work; jobs resume where they stopped (preemptive resume).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np

from splitexit.envs.checks import check, check_non_negative, check_positive
from splitexit.envs.core import uptimes_s
from splitexit.envs.markov import check_transition, sample_markov_chain
from splitexit.envs.traces import TRACES_DIR, read_trace_text

AZURE_TRACE_DIR = TRACES_DIR / "azure-llm-inference-2023"
# Splitwise (Patel et al., ISCA 2024) conversation trace: 19,366 requests over 3,502 s.
DEFAULT_AZURE_TRACE = AZURE_TRACE_DIR / "AzureLLMInferenceTrace_conv.csv"

# Background-load defaults. Scenario values, not measurements: three load levels from light to
# heavy (M/M/1 mean waits of 0.25, 1 and 4 mean services), each lasting 20 s on average
# (P_ii = 1 - slot_s / 20 s, the other levels equally likely next), and a mean background job of
# 10 ms, the order of one batch-1 CNN inference on an edge GPU.
DEFAULT_LEVELS_UTILISATION = (0.2, 0.5, 0.8)
DEFAULT_LEVEL_SLOT_S = 1.0
DEFAULT_LEVEL_MEAN_DWELL_S = 20.0
DEFAULT_MEAN_SERVICE_S = 0.01
# Trace-driven load: mean utilisation and the window over which the offered load is reported.
DEFAULT_TARGET_UTILISATION = 0.6
DEFAULT_TRACE_LEVEL_SLOT_S = 10.0
# Outage scenario defaults (fault injection, not measured): up 60 s, down 5 s on average, so
# that a 20 s episode meets an outage now and then.
DEFAULT_MEAN_UP_S = 60.0
DEFAULT_MEAN_DOWN_S = 5.0

SERVICE_DISTRIBUTIONS = ("exponential", "deterministic")


def sticky_transition(n_levels: int, stay_prob: float) -> np.ndarray:
    """Transition matrix that stays with ``stay_prob`` and otherwise moves uniformly."""
    check(n_levels >= 1, "n_levels", ">= 1", n_levels)
    check(0.0 <= stay_prob <= 1.0, "stay_prob", "in [0, 1]", stay_prob)
    if n_levels == 1:
        return np.ones((1, 1))
    p = np.full((n_levels, n_levels), (1.0 - stay_prob) / (n_levels - 1))
    np.fill_diagonal(p, stay_prob)
    return p


@dataclass(frozen=True, eq=False)
class BackgroundLoad:
    """One episode's background jobs: sorted arrival times (s) and service times (s), plus the
    load level (utilisation) per ``level_slot_s`` slot for reporting."""

    arrival_s: np.ndarray
    service_s: np.ndarray
    level_slot_s: float = 1.0
    level_utilisation: np.ndarray = field(default_factory=lambda: np.zeros(1))

    @classmethod
    def empty(cls) -> BackgroundLoad:
        return cls(np.zeros(0), np.zeros(0))


class PoissonMarkovLoad:
    """Markov-modulated Poisson arrivals with exponential (or deterministic) service times.

    Per slot of ``slot_s`` the level follows a Markov chain (started from its stationary
    distribution); within a slot, arrivals are Poisson with rate
    ``levels_utilisation[level] / mean_service_s``.
    """

    def __init__(
        self,
        levels_utilisation: tuple[float, ...] = DEFAULT_LEVELS_UTILISATION,
        transition: np.ndarray | None = None,
        slot_s: float = DEFAULT_LEVEL_SLOT_S,
        mean_service_s: float = DEFAULT_MEAN_SERVICE_S,
        service: str = "exponential",
    ):
        levels = np.array(levels_utilisation, dtype=np.float64)
        check(levels.ndim == 1 and levels.size > 0, "levels_utilisation", "non-empty", levels)
        ok = bool(np.all(np.isfinite(levels)) and np.all(levels >= 0))
        check(ok, "levels_utilisation", ">= 0 and finite", levels_utilisation)
        self.levels_utilisation = levels
        self.slot_s = check_positive("slot_s", slot_s)
        if transition is None:
            stay = max(0.0, 1.0 - self.slot_s / DEFAULT_LEVEL_MEAN_DWELL_S)
            transition = sticky_transition(levels.size, stay)
        self.transition = check_transition(transition, levels.size)
        self.mean_service_s = check_positive("mean_service_s", mean_service_s)
        ok = service in SERVICE_DISTRIBUTIONS
        check(ok, "service", f"one of {SERVICE_DISTRIBUTIONS}", service)
        self.service = service
        self.name = "poisson-markov"

    def sample(self, rng: np.random.Generator, duration_s: float) -> BackgroundLoad:
        """Background jobs arriving in ``[0, duration_s)``."""
        duration_s = check_non_negative("duration_s", duration_s)
        n_slots = max(1, math.ceil(duration_s / self.slot_s))
        levels = sample_markov_chain(rng, self.transition, n_slots)
        utilisation = self.levels_utilisation[levels]
        counts = rng.poisson(utilisation / self.mean_service_s * self.slot_s)
        starts_s = np.arange(n_slots) * self.slot_s
        arrival_s = np.sort(np.repeat(starts_s, counts) + rng.random(counts.sum()) * self.slot_s)
        arrival_s = arrival_s[arrival_s < duration_s]
        if self.service == "exponential":
            service_s = rng.exponential(self.mean_service_s, arrival_s.size)
        else:
            service_s = np.full(arrival_s.size, self.mean_service_s)
        return BackgroundLoad(arrival_s, service_s, self.slot_s, utilisation)


@lru_cache(maxsize=8)
def read_azure_trace(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an Azure LLM inference trace CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    Returns arrival times relative to the first request (s, sorted) and tokens per request
    (context + generated). Cached by path; the arrays are read-only.
    """
    path = Path(path)
    text = read_trace_text(path, "load trace")
    stamps: list[str] = []
    linenos: list[int] = []
    tokens: list[int] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
        if lineno == 1:
            header = [c.strip() for c in row]
            if header != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
                raise ValueError(
                    f"{path}:1: expected header TIMESTAMP,ContextTokens,GeneratedTokens, "
                    f"got {','.join(row)!r}"
                )
            continue
        if not row:
            continue
        if len(row) != 3:
            raise ValueError(f"{path}:{lineno}: expected 3 columns, got {len(row)}")
        try:
            n_tokens = [int(row[1]), int(row[2])]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: token counts are not integers: {row}") from None
        if min(n_tokens) < 0:
            raise ValueError(f"{path}:{lineno}: negative token count: {row}")
        stamps.append(row[0].strip())
        linenos.append(lineno)
        tokens.append(sum(n_tokens))
    if len(stamps) < 2:
        raise ValueError(f"{path}: need at least 2 requests, found {len(stamps)}")
    try:
        t_ns = np.array(stamps, dtype="datetime64[ns]").astype(np.int64)
    except ValueError:
        for lineno, stamp in zip(linenos, stamps, strict=True):
            try:
                np.datetime64(stamp, "ns")
            except ValueError:
                raise ValueError(f"{path}:{lineno}: bad timestamp {stamp!r}") from None
        raise
    order = np.argsort(t_ns, kind="stable")
    t_s = (t_ns[order] - t_ns[order[0]]) * 1e-9
    tok = np.asarray(tokens, dtype=np.float64)[order]
    if t_s[-1] <= 0:
        raise ValueError(f"{path}: all requests have the same timestamp")
    if tok.sum() <= 0:
        raise ValueError(f"{path}: every request has 0 tokens")
    t_s.flags.writeable = False
    tok.flags.writeable = False
    return t_s, tok


class TraceLoad:
    """Background arrivals replayed from the Azure LLM inference trace (Patel et al., ISCA 2024).

    Time is compressed so that the mean utilisation is ``target_utilisation``; a job's service
    time is proportional to its tokens (context + generated), with mean ``mean_service_s``.
    Each episode starts at a uniform random offset and the trace loops with period
    ``span * N / (N - 1)`` (the mean gap between requests wraps around).
    """

    def __init__(
        self,
        path: str | PathLike | None = None,
        target_utilisation: float = DEFAULT_TARGET_UTILISATION,
        mean_service_s: float = DEFAULT_MEAN_SERVICE_S,
        level_slot_s: float = DEFAULT_TRACE_LEVEL_SLOT_S,
    ):
        self.path = Path(path) if path is not None else DEFAULT_AZURE_TRACE
        self.target_utilisation = check_non_negative("target_utilisation", target_utilisation)
        self.mean_service_s = check_positive("mean_service_s", mean_service_s)
        self.level_slot_s = check_positive("level_slot_s", level_slot_s)
        raw_t_s, tokens = read_azure_trace(self.path.resolve())
        n = raw_t_s.size
        raw_period_s = raw_t_s[-1] * n / (n - 1)
        raw_rate = n / raw_period_s
        # Utilisation after compressing time by `speedup` = raw_rate * speedup * mean_service_s.
        self.speedup = self.target_utilisation / (raw_rate * self.mean_service_s)
        self.name = f"trace:{self.path.name}"
        self._t_s = raw_t_s
        self._raw_period_s = raw_period_s
        self._service_s = tokens * (self.mean_service_s / tokens.mean())

    def sample(self, rng: np.random.Generator, duration_s: float) -> BackgroundLoad:
        """Background jobs arriving in ``[0, duration_s)``."""
        duration_s = check_non_negative("duration_s", duration_s)
        n_levels = max(1, math.ceil(duration_s / self.level_slot_s))
        offset_raw_s = rng.random() * self._raw_period_s  # drawn even at zero load (same stream)
        if self.speedup <= 0 or duration_s <= 0:
            return BackgroundLoad(np.zeros(0), np.zeros(0), self.level_slot_s, np.zeros(n_levels))
        # The looped trace is the sorted sequence t[g % n] + (g // n) * period over g = 0, 1, ...
        n, period_s = self._t_s.size, self._raw_period_s
        raw_end_s = offset_raw_s + duration_s * self.speedup
        g0 = int(np.searchsorted(self._t_s, offset_raw_s))
        loop_end = int(raw_end_s // period_s)
        g1 = loop_end * n + int(np.searchsorted(self._t_s, raw_end_s - loop_end * period_s))
        g = np.arange(g0, g1)
        arrival_s = (self._t_s[g % n] + (g // n) * period_s - offset_raw_s) / self.speedup
        service_s = self._service_s[g % n]
        slot = np.minimum((arrival_s / self.level_slot_s).astype(np.int64), n_levels - 1)
        work_s = np.bincount(slot, weights=service_s, minlength=n_levels)
        return BackgroundLoad(arrival_s, service_s, self.level_slot_s, work_s / self.level_slot_s)


@dataclass(frozen=True, eq=False)
class OutageSchedule:
    """Down periods ``[down_start_s[k], down_end_s[k])``, sorted and disjoint (the last may end at
    ``math.inf``; touching periods are merged, empty ones dropped), with the prefix arrays that
    map wall time to the server's cumulative up time (``splitexit.envs.core.uptime_s``):
    ``cum_down_s[k]``, the downtime before period ``k`` (one more entry), and
    ``up_at_start_s[k]``, the up time when period ``k`` starts."""

    down_start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    down_end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cum_down_s: np.ndarray = field(init=False, repr=False)
    up_at_start_s: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        a = np.asarray(self.down_start_s, dtype=np.float64).reshape(-1)
        b = np.asarray(self.down_end_s, dtype=np.float64).reshape(-1)
        check(len(b) == len(a), "down_end_s", f"of length {len(a)}", self.down_end_s)
        # Sorted and disjoint: each period ends after it starts, and starts after every
        # earlier one ended.
        bad = np.flatnonzero(~(a <= b) | ~(a >= np.r_[-np.inf, np.maximum.accumulate(b)[:-1]]))
        if bad.size:
            k = int(bad[0])
            check(False, "down periods", "sorted and disjoint", (float(a[k]), float(b[k])))
        keep = a < b  # empty periods dropped
        a, b = a[keep], b[keep]
        first = np.ones(a.size, dtype=bool)  # touching periods are one outage
        first[1:] = a[1:] != b[:-1]
        last = np.ones(a.size, dtype=bool)
        last[:-1] = first[1:]
        starts, ends = a[first], b[last]
        cum = np.r_[0.0, np.cumsum(ends - starts)]  # sequential sums, as period after period
        up_at_start = starts - cum[:-1]
        for name, values in (
            ("down_start_s", starts),
            ("down_end_s", ends),
            ("cum_down_s", cum),
            ("up_at_start_s", up_at_start),
        ):
            array = np.array(values, dtype=np.float64)
            array.flags.writeable = False
            object.__setattr__(self, name, array)


class OutageProcess:
    """Alternating exponential up and down periods; with ``permanent`` the first failure lasts
    for ever. Without ``permanent`` the state at time 0 is drawn from the stationary
    probabilities (down with ``mean_down_s / (mean_up_s + mean_down_s)``)."""

    def __init__(
        self,
        mean_up_s: float = DEFAULT_MEAN_UP_S,
        mean_down_s: float = DEFAULT_MEAN_DOWN_S,
        permanent: bool = False,
    ):
        self.mean_up_s = check_positive("mean_up_s", mean_up_s)
        self.mean_down_s = check_positive("mean_down_s", mean_down_s)
        self.permanent = bool(permanent)
        self.name = "outage-permanent" if permanent else "outage"

    def sample(self, rng: np.random.Generator, duration_s: float) -> OutageSchedule:
        """Intermittent down periods starting in ``[0, duration_s)`` (a permanent failure is
        drawn per episode instead, by ``splitexit.envs.core.start_episodes``)."""
        duration_s = check_non_negative("duration_s", duration_s)
        if self.permanent:
            raise ValueError("a permanent failure is drawn per episode, not realised ahead")
        p_down = self.mean_down_s / (self.mean_up_s + self.mean_down_s)
        down = bool(rng.random() < p_down)
        # The loop "t += exponential(mean of the current state) until t >= duration_s", in
        # blocks: a block is drawn from a copy of the generator, then the generator is moved
        # on by exactly the draws the loop would have made (same numbers, same stream after).
        times = [np.zeros(1)]
        downs = []
        t_s = 0.0
        while t_s < duration_s:
            n = int(2 * (duration_s - t_s) / (self.mean_up_s + self.mean_down_s)) + 16
            state = rng.bit_generator.state
            scale = np.where((np.arange(n) % 2 == 0) == down, self.mean_down_s, self.mean_up_s)
            t = np.cumsum(np.r_[t_s, scale * rng.standard_exponential(n)])[1:]
            done = np.flatnonzero(t >= duration_s)
            m = int(done[0]) + 1 if done.size else n
            if m < n:
                rng.bit_generator.state = state
                rng.standard_exponential(m)
            times.append(t[:m])
            downs.append((np.arange(m) % 2 == 0) == down)
            down = down if m % 2 == 0 else not down
            t_s = float(t[m - 1])
        bounds = np.concatenate(times)
        is_down = np.concatenate(downs) if downs else np.zeros(0, dtype=bool)
        starts, ends = bounds[:-1][is_down], bounds[1:][is_down]
        return OutageSchedule(starts, ends)


@dataclass(frozen=True, eq=False)
class ServerWorld:
    """Background jobs and outages as the queue reads them, with its per-job prefix arrays
    (``work_before_s[j]``: work of jobs ``< j``; ``g_max[j]``: the running
    maximum of ``U(a_k) - work_before_s[k]`` over jobs ``k < j``, ``-inf`` first)."""

    background: BackgroundLoad
    schedule: OutageSchedule
    duration_s: float
    arrival_s: np.ndarray = field(init=False, repr=False)
    work_before_s: np.ndarray = field(init=False, repr=False)
    g_max: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arrival_s = np.asarray(self.background.arrival_s, dtype=np.float64)
        work_before_s = np.concatenate(([0.0], np.cumsum(self.background.service_s)))
        sched = self.schedule
        if sched.down_start_s.size:
            up_s = np.empty_like(arrival_s)
            uptimes_s(
                sched.down_start_s, sched.down_end_s, sched.cum_down_s, sched.up_at_start_s,
                arrival_s, up_s,
            )  # fmt: skip
        else:
            up_s = arrival_s
        g_max = np.concatenate(([-np.inf], np.maximum.accumulate(up_s - work_before_s[:-1])))
        for name, value in (("arrival_s", arrival_s), ("work_before_s", work_before_s)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        g_max.flags.writeable = False
        object.__setattr__(self, "g_max", g_max)

    @classmethod
    def realise(
        cls,
        load: PoissonMarkovLoad | TraceLoad | None,
        outages: OutageProcess | None,
        duration_s: float,
        seed: int,
    ) -> ServerWorld:
        """One long realisation from ``seed``, shared by the episodes (a permanent failure is
        drawn per episode instead)."""
        rng = np.random.default_rng(seed)
        background = load.sample(rng, duration_s) if load is not None else BackgroundLoad.empty()
        schedule = OutageSchedule()
        if outages is not None and not outages.permanent:
            schedule = outages.sample(rng, duration_s)
        return cls(background, schedule, duration_s)
