"""The edge server: a FIFO single-server queue, measured in seconds of work.

Background load (other clients' jobs) and outages are realised for the whole episode at
:meth:`EdgeServer.reset` from a ``np.random.Generator``; our requests are then fed in arrival
order through :meth:`EdgeServer.submit`, which advances a Lindley recursion over the background
jobs that arrived before each request. While the server is down it does no work; jobs resume
where they stopped (preemptive resume).
"""

from __future__ import annotations

import csv
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np

from splitexit.envs.channel import (
    TRACES_DIR,
    _check,
    _check_non_negative,
    _check_positive,
    _check_transition,
    sample_markov_chain,
)

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
# Outage scenario defaults (fault injection, not measured): up 10 min, down 10 s on average.
DEFAULT_MEAN_UP_S = 600.0
DEFAULT_MEAN_DOWN_S = 10.0

SERVICE_DISTRIBUTIONS = ("exponential", "deterministic")


def sticky_transition(n_levels: int, stay_prob: float) -> np.ndarray:
    """Transition matrix that stays with ``stay_prob`` and otherwise moves uniformly."""
    _check(n_levels >= 1, "n_levels", ">= 1", n_levels)
    _check(0.0 <= stay_prob <= 1.0, "stay_prob", "in [0, 1]", stay_prob)
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
        _check(levels.ndim == 1 and levels.size > 0, "levels_utilisation", "non-empty", levels)
        ok = bool(np.all(np.isfinite(levels)) and np.all(levels >= 0))
        _check(ok, "levels_utilisation", ">= 0 and finite", levels_utilisation)
        self.levels_utilisation = levels
        self.slot_s = _check_positive("slot_s", slot_s)
        if transition is None:
            stay = max(0.0, 1.0 - self.slot_s / DEFAULT_LEVEL_MEAN_DWELL_S)
            transition = sticky_transition(levels.size, stay)
        self.transition = _check_transition(transition, levels.size)
        self.mean_service_s = _check_positive("mean_service_s", mean_service_s)
        ok = service in SERVICE_DISTRIBUTIONS
        _check(ok, "service", f"one of {SERVICE_DISTRIBUTIONS}", service)
        self.service = service
        self.name = "poisson-markov"

    def sample(self, rng: np.random.Generator, duration_s: float) -> BackgroundLoad:
        """Background jobs arriving in ``[0, duration_s)``."""
        duration_s = _check_non_negative("duration_s", duration_s)
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
    if not path.is_file():
        raise FileNotFoundError(f"load trace not found: {path}")
    stamps: list[str] = []
    linenos: list[int] = []
    tokens: list[int] = []
    with path.open(newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
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
        self.target_utilisation = _check_non_negative("target_utilisation", target_utilisation)
        self.mean_service_s = _check_positive("mean_service_s", mean_service_s)
        self.level_slot_s = _check_positive("level_slot_s", level_slot_s)
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
        duration_s = _check_non_negative("duration_s", duration_s)
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
    ``math.inf``; touching periods are merged). Also maps wall time to cumulative up time (the
    work the server can do)."""

    down_start_s: tuple[float, ...] = ()
    down_end_s: tuple[float, ...] = ()
    _cum_down_s: list[float] = field(init=False, repr=False)  # downtime before period k
    _up_at_start_s: list[float] = field(init=False, repr=False)  # up time at down_start_s[k]

    def __post_init__(self) -> None:
        n = len(self.down_start_s)
        _check(len(self.down_end_s) == n, "down_end_s", f"of length {n}", self.down_end_s)
        starts: list[float] = []
        ends: list[float] = []
        for a, b in zip(map(float, self.down_start_s), map(float, self.down_end_s), strict=True):
            ok = a <= b and (not ends or a >= ends[-1])
            _check(ok, "down periods", "sorted and disjoint", (a, b))
            if a == b:
                continue  # empty
            if ends and a == ends[-1]:
                ends[-1] = b  # touching periods are one outage
            else:
                starts.append(a)
                ends.append(b)
        cum = [0.0]
        for a, b in zip(starts, ends, strict=True):
            cum.append(cum[-1] + (b - a))
        object.__setattr__(self, "down_start_s", tuple(starts))
        object.__setattr__(self, "down_end_s", tuple(ends))
        object.__setattr__(self, "_cum_down_s", cum)
        object.__setattr__(
            self, "_up_at_start_s", [a - c for a, c in zip(starts, cum, strict=False)]
        )

    def is_down(self, t_s: float) -> bool:
        """Whether the server is down at ``t_s``."""
        k = bisect_right(self.down_start_s, t_s) - 1
        return k >= 0 and t_s < self.down_end_s[k]

    def down_until(self, t_s: float) -> float:
        """End of the down period containing ``t_s`` (``math.inf`` if permanent); ``t_s`` if up."""
        k = bisect_right(self.down_start_s, t_s) - 1
        return self.down_end_s[k] if k >= 0 and t_s < self.down_end_s[k] else t_s

    def uptime_s(self, t_s: float) -> float:
        """Cumulative up time in ``[0, t_s]`` (s)."""
        k = bisect_right(self.down_start_s, t_s) - 1
        if k < 0:
            return t_s
        if t_s < self.down_end_s[k]:
            return self._up_at_start_s[k]  # flat while down (exactly, for the inverse below)
        return t_s - self._cum_down_s[k + 1]

    def time_at_uptime_s(self, up_s: float, after_down: bool) -> float:
        """Wall time at which the cumulative up time reaches ``up_s``: the first such moment, or
        with ``after_down`` the last (after a down period starting there; ``math.inf`` if it
        never ends)."""
        find = bisect_right if after_down else bisect_left
        k = find(self._up_at_start_s, up_s)
        return up_s + self._cum_down_s[k]


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
        self.mean_up_s = _check_positive("mean_up_s", mean_up_s)
        self.mean_down_s = _check_positive("mean_down_s", mean_down_s)
        self.permanent = bool(permanent)
        self.name = "outage-permanent" if permanent else "outage"

    def sample(self, rng: np.random.Generator, duration_s: float) -> OutageSchedule:
        """Down periods starting in ``[0, duration_s)``."""
        duration_s = _check_non_negative("duration_s", duration_s)
        if self.permanent:
            t_fail_s = rng.exponential(self.mean_up_s)
            return (
                OutageSchedule((t_fail_s,), (math.inf,))
                if t_fail_s < duration_s
                else OutageSchedule()
            )
        p_down = self.mean_down_s / (self.mean_up_s + self.mean_down_s)
        down = bool(rng.random() < p_down)
        t_s = 0.0
        starts: list[float] = []
        ends: list[float] = []
        while t_s < duration_s:
            if down:
                end_s = t_s + rng.exponential(self.mean_down_s)
                starts.append(t_s)
                ends.append(end_s)
                t_s = end_s
            else:
                t_s += rng.exponential(self.mean_up_s)
            down = not down
        return OutageSchedule(tuple(starts), tuple(ends))


@dataclass(frozen=True, eq=False)
class ServerWorld:
    """Background jobs and outages as the queue reads them, with the per-job prefix arrays of
    :class:`EdgeServer` (``work_before_s[j]``: work of jobs ``< j``; ``g_max[j]``: the running
    maximum of ``U(a_k) - work_before_s[k]`` over jobs ``k < j``, ``-inf`` first)."""

    background: BackgroundLoad
    schedule: OutageSchedule
    duration_s: float = math.inf
    arrival_s: np.ndarray = field(init=False, repr=False)
    work_before_s: np.ndarray = field(init=False, repr=False)
    g_max: np.ndarray = field(init=False, repr=False)
    lists: tuple[list[float], list[float], list[float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arrival_s = np.asarray(self.background.arrival_s, dtype=np.float64)
        work_before_s = np.concatenate(([0.0], np.cumsum(self.background.service_s)))
        if self.schedule.down_start_s:
            up_s = np.array([self.schedule.uptime_s(a) for a in arrival_s.tolist()])
        else:
            up_s = arrival_s
        g_max = np.concatenate(([-np.inf], np.maximum.accumulate(up_s - work_before_s[:-1])))
        for name, value in (("arrival_s", arrival_s), ("work_before_s", work_before_s)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        g_max.flags.writeable = False
        object.__setattr__(self, "g_max", g_max)
        lists = (arrival_s.tolist(), work_before_s.tolist(), g_max.tolist())
        object.__setattr__(self, "lists", lists)

    @classmethod
    def realise(
        cls,
        load: PoissonMarkovLoad | TraceLoad | None,
        outages: OutageProcess | None,
        duration_s: float,
        seed: int,
    ) -> ServerWorld:
        """One long realisation from ``seed``, shared by the episodes of :class:`EdgeServer`
        (a permanent failure is drawn per episode instead)."""
        rng = np.random.default_rng(seed)
        background = load.sample(rng, duration_s) if load is not None else BackgroundLoad.empty()
        schedule = OutageSchedule()
        if outages is not None and not outages.permanent:
            schedule = outages.sample(rng, duration_s)
        return cls(background, schedule, duration_s)


class EdgeServer:
    """FIFO single-server queue with background load and outages.

    The state is one number ``m`` and a pointer into the background jobs: the unfinished work
    at time ``t`` (after all jobs that arrived at or before ``t``) is
    ``max(0, S[i] - U(t) + m)``, where ``S[i]`` is the background work that arrived so far and
    ``U(t)`` the server's cumulative up time. A job of ``s`` seconds arriving at ``a`` updates
    ``m <- max(m, U(a) - S[i]) + s`` (Lindley's recursion in these coordinates), so a batch of
    background jobs is a running maximum, precomputed per job.

    Two ways to realise an episode:

    * ``world=None``: background jobs and outages are drawn for each episode at :meth:`reset`
      and the queue starts empty.
    * ``world``: a long :class:`ServerWorld` realised once; each episode starts at a random
      offset into it, with whatever backlog the server has there (the stationary regime), and
      costs one draw (two with a permanent failure). Server time is episode time plus
      ``offset_s``; the methods take and return episode times.
    """

    def __init__(
        self,
        load: PoissonMarkovLoad | TraceLoad | None = None,
        outages: OutageProcess | None = None,
        world: ServerWorld | None = None,
    ):
        self.load = load
        self.outages = outages
        self.world = world
        self.reset(np.random.default_rng(0), 0.0)

    def reset(
        self, rng: np.random.Generator, duration_s: float, draws: np.ndarray | None = None
    ) -> None:
        """Start an episode of ``duration_s`` (the longest time the episode can reach).

        Without a shared world: realise background arrivals and outages for ``[0, duration_s)``
        and empty the queue; nothing is realised beyond ``duration_s`` (no more background jobs,
        the server stays up, or down after a permanent failure). With one: the offset is
        ``draws[0] * (world length - duration_s)`` and a permanent failure comes after an
        exponential time ``-mean_up_s * log1p(-draws[1])`` (``draws``: two uniforms in
        ``[0, 1)``, drawn from ``rng`` if not given).
        """
        self.horizon_s = _check_non_negative("duration_s", duration_s)
        permanent = bool(getattr(self.outages, "permanent", False))
        if self.world is None:
            background = (
                self.load.sample(rng, duration_s)
                if self.load is not None
                else BackgroundLoad.empty()
            )
            schedule = (
                self.outages.sample(rng, duration_s)
                if self.outages is not None
                else OutageSchedule()
            )
            world = ServerWorld(background, schedule)
            self.offset_s = 0.0
        else:
            world = self.world
            spare_s = world.duration_s - duration_s
            _check(
                spare_s >= 0,
                "duration_s",
                f"<= the shared world's {world.duration_s} s",
                duration_s,
            )
            u = rng.random(2) if draws is None else draws
            self.offset_s = float(u[0]) * spare_s
            schedule = world.schedule
            if permanent:
                t_fail_s = float(-self.outages.mean_up_s * np.log1p(-u[1]))
                if t_fail_s < duration_s:
                    schedule = OutageSchedule((self.offset_s + t_fail_s,), (math.inf,))
        self.background = world.background
        self.schedule = schedule  # in server time
        self._arrival_s, self._work_before_s, self._g_max = world.lists
        self._bg_arrival_s, self._bg_work_before_s = world.arrival_s, world.work_before_s
        self._bg_g_max = world.g_max
        self._has_outages = bool(schedule.down_start_s)
        # After a permanent failure at F (in a shared world) the up time stays F, so the running
        # maximum past the first job at or after F is the constant max(g_max[k_F], F - S[k_F]).
        self._fail_k = len(self._g_max)
        if self.world is not None and permanent and self._has_outages:
            fail_s = schedule.down_start_s[0]
            k = bisect_left(self._arrival_s, fail_s)
            self._fail_k = k
            self._fail_g = max(self._g_max[k], fail_s - self._work_before_s[k])
        self._i = bisect_right(self._arrival_s, self.offset_s)
        self._m = self._gmax(self._i)
        self._last_arrival_s = 0.0

    def _gmax(self, j: int) -> float:
        return self._fail_g if j > self._fail_k else self._g_max[j]

    def _up(self, t_s: float) -> float:
        """Cumulative up time at server time ``t_s``."""
        return self.schedule.uptime_s(t_s) if self._has_outages else t_s

    def _state_at(self, t_s: float) -> tuple[int, float]:
        """Pointer and ``m`` after the background jobs that arrived at or before server time
        ``t_s`` (``m`` is already at least the running maximum up to the pointer)."""
        i = self._i
        j = bisect_right(self._arrival_s, t_s, i)
        m = self._m
        if j > i:
            m = max(m, self._gmax(j))
        return j, m

    def backlog_s(self, t_s: float) -> float:
        """Unfinished work at ``t_s`` (s), without changing the state. ``t_s`` must not be
        before the last submitted arrival."""
        if t_s < self._last_arrival_s:
            raise ValueError(f"t_s must be >= the last arrival {self._last_arrival_s}, got {t_s}")
        t_s = t_s + self.offset_s
        j, m = self._state_at(t_s)
        return max(0.0, self._work_before_s[j] - self._up(t_s) + m)

    def background_backlog_s(self, t_s: np.ndarray) -> np.ndarray:
        """Unfinished background work at each of the times ``t_s`` (s), vectorised: what
        :meth:`backlog_s` gives before any job of ours is submitted."""
        t = np.asarray(t_s, dtype=np.float64) + self.offset_s
        j = np.searchsorted(self._bg_arrival_s, t, side="right")
        up = np.array([self._up(x) for x in t.tolist()]) if self._has_outages else t
        g_max = self._bg_g_max[j]
        if self._fail_k < len(self._g_max):
            g_max = np.where(j > self._fail_k, self._fail_g, g_max)
        return np.maximum(0.0, self._bg_work_before_s[j] - up + g_max)

    def submit(self, arrival_s: float, service_s: float) -> tuple[float, float]:
        """Queue our job (``service_s`` of work, arriving at ``arrival_s``) behind the work
        already there. Returns ``(wait_s, finish_s)``: time from arrival until service starts,
        and the absolute completion time (``math.inf`` if a permanent outage stops it)."""
        wait_s, finish_s, self._i, self._m = self._serve(arrival_s, service_s)
        self._last_arrival_s = arrival_s
        return wait_s, finish_s

    def peek(self, arrival_s: float, service_s: float) -> tuple[float, float]:
        """What :meth:`submit` would return, without queueing the job (for what-if queries)."""
        return self._serve(arrival_s, service_s)[:2]

    def _serve(self, arrival_s: float, service_s: float) -> tuple[float, float, int, float]:
        """``(wait_s, finish_s)`` of the job and the state ``(pointer, m)`` after it."""
        if not arrival_s >= self._last_arrival_s:
            raise ValueError(
                f"arrival_s must be >= the previous arrival {self._last_arrival_s}, got {arrival_s}"
            )
        if not 0.0 <= service_s < math.inf:
            raise ValueError(f"service_s must be >= 0 and finite, got {service_s}")
        t_s = arrival_s + self.offset_s
        j, m = self._state_at(t_s)
        up_s = self._up(t_s)
        backlog_s = max(0.0, self._work_before_s[j] - up_s + m)
        m = max(m, up_s - self._work_before_s[j]) + service_s
        if not self._has_outages:
            return backlog_s, t_s + backlog_s + service_s - self.offset_s, j, m
        start_s = max(t_s, self.schedule.time_at_uptime_s(up_s + backlog_s, after_down=True))
        finish_s = max(start_s, self.schedule.time_at_uptime_s(up_s + backlog_s + service_s, False))
        return start_s - t_s, finish_s - self.offset_s, j, m

    def is_down(self, t_s: float) -> bool:
        """Whether the server is down at episode time ``t_s``."""
        return self.schedule.is_down(t_s + self.offset_s)

    def down_until(self, t_s: float) -> float:
        """End of the outage containing ``t_s`` (``math.inf`` if permanent); ``t_s`` if up."""
        t = t_s + self.offset_s
        end = self.schedule.down_until(t)
        return t_s if end == t else end - self.offset_s

    def utilisation_level(self, t_s: float) -> float:
        """The background load level at ``t_s``: the Markov level's utilisation, or for a trace
        the offered utilisation in the current window; 0 beyond the realised horizon."""
        bg = self.background
        t = t_s + self.offset_s
        k = int(t // bg.level_slot_s)
        if k < 0 or k >= bg.level_utilisation.size or t_s >= self.horizon_s:
            return 0.0
        return float(bg.level_utilisation[k])
