"""The reference model: the world in plain Python, the differential oracle of the compiled core.

This is the package's pure-Python implementation of a request's path as it stood before the
compiled core (``splitexit/envs/core.py``) replaced it: the capacity trace's integration, the
server's outage schedule and Lindley queue, the radio's energy and the env's step, kept here
unchanged. Tests hold the core to it bit for bit, and hold it to hand computations and an
event-by-event simulation of the queue (``tests/envs/test_server.py``).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from splitexit.dnn_profiles.hardware import get_device_preset
from splitexit.envs import capacity as package_capacity
from splitexit.envs import channel as package_channel
from splitexit.envs import server as package_server
from splitexit.envs.checks import check, check_non_negative
from splitexit.envs.config import episode_duration_s
from splitexit.envs.energy import BITS_PER_MBIT, MW_PER_W, RadioModel, radio_model
from splitexit.envs.server import BackgroundLoad, OutageProcess, PoissonMarkovLoad, TraceLoad
from splitexit.envs.splitexit_env import SplitExitEnv
from splitexit.envs.world import (
    make_channel,
    make_server_world,
    server_processes,
)

MAX_OBS_THROUGHPUT_MBPS = 100.0
MAX_OBS_BACKLOG_FRAMES = 10.0
WAIT_UNIT_S = 1e-3
EPISODE_DRAWS = 4

# The ten worlds of the differential tests (vector == single == reference).
WORLDS = {
    "default": {},
    "battery (sub-envs end at different steps)": {"horizon": 50, "battery_j": 0.3},
    "markov channel": {"channel": "markov", "horizon": 60},
    "intermittent outages": {
        "outage": "intermittent",
        "outage_mean_up_s": 3.0,
        "outage_mean_down_s": 1.0,
        "horizon": 80,
    },
    "permanent outage": {"outage": "permanent", "outage_mean_up_s": 3.0, "horizon": 80},
    "lte tail, two compressions, multidiscrete": {
        "lte_tail": True,
        "capacity_scale": 0.2,
        "horizon": 70,
        "compressions": ["int8", "float32"],
        "action_type": "multidiscrete",
    },
    "azure load, pensieve traces": {"server_load": "trace", "traces": "pensieve", "horizon": 40},
    "zero capacity": {"capacity_scale": 0.0, "horizon": 30},
    "no background load": {"server_load": "none", "horizon": 30},
    "overloaded device (requests dropped)": {
        "frame_period_s": 0.02,
        "timeout_s": 0.3,
        "deadline_s": 0.02,
        "horizon": 60,
    },
}

# -- the uplink -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CapacityTrace(package_capacity.CapacityTrace):
    """The package's trace with its former integration methods, on lists (as they were)."""

    _cum_bits: list[float] = field(init=False, repr=False)
    _cap_bps: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_cum_bits", self.cum_bits_array.tolist())
        object.__setattr__(self, "_cap_bps", self.capacity_bps.tolist())

    def capacity_at_bps(self, t_s: float) -> float:
        """Instantaneous capacity at absolute time ``t_s`` (bit/s)."""
        x = t_s % self._duration_s
        return self._cap_bps[min(int(x / self.slot_s), len(self._cap_bps) - 1)]

    def cumulative_bits(self, t_s: float) -> float:
        """Bits deliverable in ``[0, t_s]`` (looping), a continuous non-decreasing function."""
        loops, x = divmod(t_s, self._duration_s)
        i = min(int(x / self.slot_s), len(self._cap_bps) - 1)
        return (
            loops * self._total_bits + self._cum_bits[i] + self._cap_bps[i] * (x - i * self.slot_s)
        )

    def cumulative_bits_many(self, t_s: np.ndarray) -> np.ndarray:
        """:meth:`cumulative_bits` at many times at once: the same arithmetic, element-wise, so
        the results are bit-for-bit equal."""
        loops, x = np.divmod(np.asarray(t_s, dtype=np.float64), self._duration_s)
        i = np.minimum((x / self.slot_s).astype(np.int64), self.capacity_bps.size - 1)
        cum = self.cum_bits_array
        return loops * self._total_bits + cum[i] + self.capacity_bps[i] * (x - i * self.slot_s)

    @property
    def cum_bits_array(self) -> np.ndarray:
        """Bits deliverable up to each slot boundary (read-only array of ``size + 1``)."""
        return self._cum_bits_array

    def time_at_bits_s(self, bits: float) -> float:
        """Earliest absolute time at which ``cumulative_bits`` reaches ``bits`` (s).

        ``math.inf`` if the trace never delivers anything and ``bits > 0``.
        """
        if bits <= 0:
            return 0.0
        total = self._total_bits
        if total <= 0:
            return math.inf
        loops = math.ceil(bits / total) - 1
        rest = bits - loops * total  # in (0, total] up to rounding
        if rest <= 0:
            loops -= 1
            rest += total
        elif rest > total:
            loops += 1
            rest -= total
        i = bisect_left(self._cum_bits, rest) - 1  # cum[i] < rest <= cum[i + 1], so cap[i] > 0
        return (
            loops * self._duration_s
            + i * self.slot_s
            + (rest - self._cum_bits[i]) / self._cap_bps[i]
        )

    def transfer_time_s(self, start_s: float, payload_bytes: float) -> float:
        """Time to push ``payload_bytes`` through the link starting at absolute ``start_s`` (s).

        ``math.inf`` if the trace's capacity is zero everywhere (the env caps it with a timeout).
        """
        if payload_bytes <= 0:
            return 0.0
        end_s = self.time_at_bits_s(self.cumulative_bits(start_s) + 8.0 * payload_bytes)
        return max(end_s - start_s, 0.0)

    def mean_capacity_bps(self, t0_s: float, t1_s: float) -> float:
        """Bits deliverable in ``[t0_s, t1_s]`` divided by ``t1_s - t0_s`` (bit/s).

        What the device would measure by saturating the link over that interval; the
        instantaneous capacity at ``t0_s`` if the interval is empty.
        """
        if t1_s < t0_s:
            raise ValueError(f"t1_s must be >= t0_s, got t0_s={t0_s!r}, t1_s={t1_s!r}")
        if t1_s == t0_s:
            return self.capacity_at_bps(t0_s)
        return (self.cumulative_bits(t1_s) - self.cumulative_bits(t0_s)) / (t1_s - t0_s)

    def window(self, start_slot: int, n_slots: int) -> CapacityTrace:
        """``n_slots`` slots from ``start_slot`` on, wrapping around the end of the trace."""
        check(n_slots >= 1, "n_slots", ">= 1", n_slots)
        idx = (int(start_slot) + np.arange(int(n_slots))) % self.capacity_bps.size
        name = f"{self.name}@{int(start_slot) * self.slot_s:g}s"
        return CapacityTrace(self.slot_s, self.capacity_bps[idx], name)


@dataclass(frozen=True, eq=False)
class ShiftedTrace:
    """A looping :class:`CapacityTrace` read from ``shift_s`` on: time ``t`` of the episode is
    time ``t + shift_s`` of ``base``. Nothing is copied, so drawing an episode costs nothing.

    ``cumulative_bits`` counts from the base's time 0; only its differences have a meaning.
    """

    base: CapacityTrace
    shift_s: float

    @property
    def name(self) -> str:
        return f"{self.base.name}@{self.shift_s:g}s"

    def capacity_at_bps(self, t_s: float) -> float:
        """Instantaneous capacity at episode time ``t_s`` (bit/s)."""
        return self.base.capacity_at_bps(t_s + self.shift_s)

    def cumulative_bits(self, t_s: float) -> float:
        """Bits deliverable up to episode time ``t_s``, from the base's time 0."""
        return self.base.cumulative_bits(t_s + self.shift_s)

    def cumulative_bits_many(self, t_s: np.ndarray) -> np.ndarray:
        """:meth:`cumulative_bits` at many times at once (bit-for-bit equal)."""
        return self.base.cumulative_bits_many(np.asarray(t_s, dtype=np.float64) + self.shift_s)

    def transfer_time_s(self, start_s: float, payload_bytes: float) -> float:
        """Time to push ``payload_bytes`` through the link from episode time ``start_s`` (s)."""
        return self.base.transfer_time_s(start_s + self.shift_s, payload_bytes)

    def mean_capacity_bps(self, t0_s: float, t1_s: float) -> float:
        """Mean capacity over episode times ``[t0_s, t1_s]`` (bit/s)."""
        return self.base.mean_capacity_bps(t0_s + self.shift_s, t1_s + self.shift_s)


def reference_trace(trace: package_channel.CapacityTrace) -> CapacityTrace:
    """The reference twin of a package trace (same slots, same capacities)."""
    return CapacityTrace(trace.slot_s, trace.capacity_bps, trace.name)


def sample_shifted(channel: package_channel.TraceChannel, u_trace: float, u_start: float):
    """``TraceChannel.sample_shifted`` of the reference: the episode's trace from two uniforms."""
    k = min(int(u_trace * len(channel.traces)), len(channel.traces) - 1)
    trace = reference_trace(channel.scaled_traces[k])
    start = min(int(u_start * trace.capacity_bps.size), trace.capacity_bps.size - 1)
    return ShiftedTrace(trace, start * trace.slot_s)


# -- the server ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OutageSchedule(package_server.OutageSchedule):
    """The package's outage schedule with its former queries, on lists (as they were)."""

    _starts: list[float] = field(init=False, repr=False)
    _ends: list[float] = field(init=False, repr=False)
    _cum_down_s: list[float] = field(init=False, repr=False)  # downtime before period k
    _up_at_start_s: list[float] = field(init=False, repr=False)  # up time at down_start_s[k]

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, array in (
            ("_starts", self.down_start_s),
            ("_ends", self.down_end_s),
            ("_cum_down_s", self.cum_down_s),
            ("_up_at_start_s", self.up_at_start_s),
        ):
            object.__setattr__(self, name, array.tolist())

    def is_down(self, t_s: float) -> bool:
        """Whether the server is down at ``t_s``."""
        k = bisect_right(self._starts, t_s) - 1
        return k >= 0 and t_s < self._ends[k]

    def down_until(self, t_s: float) -> float:
        """End of the down period containing ``t_s`` (``math.inf`` if permanent); ``t_s`` if up."""
        k = bisect_right(self._starts, t_s) - 1
        return self._ends[k] if k >= 0 and t_s < self._ends[k] else t_s

    def uptime_s(self, t_s: float) -> float:
        """Cumulative up time in ``[0, t_s]`` (s)."""
        k = bisect_right(self._starts, t_s) - 1
        if k < 0:
            return t_s
        if t_s < self._ends[k]:
            return self._up_at_start_s[k]  # flat while down (exactly, for the inverse below)
        return t_s - self._cum_down_s[k + 1]

    def time_at_uptime_s(self, up_s: float, after_down: bool) -> float:
        """Wall time at which the cumulative up time reaches ``up_s``: the first such moment, or
        with ``after_down`` the last (after a down period starting there; ``math.inf`` if it
        never ends)."""
        find = bisect_right if after_down else bisect_left
        k = find(self._up_at_start_s, up_s)
        return up_s + self._cum_down_s[k]


def reference_schedule(schedule) -> OutageSchedule:
    """The reference twin of a package outage schedule."""
    return OutageSchedule(schedule.down_start_s, schedule.down_end_s)


@dataclass(frozen=True, eq=False)
class ServerWorld(package_server.ServerWorld):
    """The package's server world, with its per-job prefix arrays as lists (as the reference
    queue reads them) and, for episodes realised per reset, no length."""

    duration_s: float = math.inf
    lists: tuple[list[float], list[float], list[float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        lists = (self.arrival_s.tolist(), self.work_before_s.tolist(), self.g_max.tolist())
        object.__setattr__(self, "lists", lists)


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
        self.horizon_s = check_non_negative("duration_s", duration_s)
        permanent = bool(getattr(self.outages, "permanent", False))
        if self.world is None:
            background = (
                self.load.sample(rng, duration_s)
                if self.load is not None
                else BackgroundLoad.empty()
            )
            schedule = (
                reference_schedule(self.outages.sample(rng, duration_s))
                if self.outages is not None
                else OutageSchedule()
            )
            world = ServerWorld(background, schedule)
            self.offset_s = 0.0
        else:
            world = self.world
            spare_s = world.duration_s - duration_s
            check(
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
        self._has_outages = bool(schedule.down_start_s.size)
        # After a permanent failure at F (in a shared world) the up time stays F, so the running
        # maximum past the first job at or after F is the constant max(g_max[k_F], F - S[k_F]).
        self._fail_k = len(self._g_max)
        if self.world is not None and permanent and self._has_outages:
            fail_s = float(schedule.down_start_s[0])
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


# -- the radio ----------------------------------------------------------------------------------


class ReferenceRadio:
    """``RadioModel``'s energy of a transmission and of the LTE tail."""

    def __init__(self, model: RadioModel) -> None:
        self.alpha_up_mw_per_mbps, self.beta_mw = model.alpha_up_mw_per_mbps, model.beta_mw
        self.tail_s, self.tail_power_mw = model.tail_s, model.tail_power_mw
        self.tail_enabled = model.tail_enabled

    def tx_energy_j(self, payload_bytes: float, duration_s: float) -> float:
        """Energy of sending ``payload_bytes`` in ``duration_s`` (J): the power at the achieved
        throughput times the duration, i.e. ``alpha_u * Mbit + beta * duration_s``."""
        if not (payload_bytes >= 0 and duration_s >= 0):
            raise ValueError(
                f"payload_bytes and duration_s must be >= 0, got {payload_bytes!r}, {duration_s!r}"
            )
        mbit = 8.0 * payload_bytes / BITS_PER_MBIT
        return (self.alpha_up_mw_per_mbps * mbit + self.beta_mw * duration_s) / MW_PER_W

    def tail_energy_j(self, gap_s: float) -> float:
        """Energy of the tail after a transmission, cut short by the next transmission
        ``gap_s`` later (J; ``gap_s = math.inf`` for the full tail). 0 without a tail."""
        if not self.tail_enabled or gap_s <= 0:
            return 0.0
        return min(gap_s, self.tail_s) * self.tail_power_mw / MW_PER_W


# -- the env ------------------------------------------------------------------------------------


class ReferenceEnv(gym.Env):
    """``SplitExitEnv`` in plain Python (same config, same seeds, same numbers)."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        config: dict | None = None,
        render_mode: str | None = None,
        preset: dict | None = None,
        **kwargs: Any,
    ) -> None:
        # The config, tables and spaces (no dynamics) as the package env makes them.
        spec = SplitExitEnv(config, render_mode, preset, **kwargs)
        self._spec = spec
        cfg = self.config = spec.config
        self.render_mode = render_mode
        self.profile, self.tables = spec.profile, spec.tables
        self.thresholds, self.compressions = spec.thresholds, spec.compressions
        self.num_splits, self.n_t, self.n_c = spec.num_splits, spec.n_t, spec.n_c
        self.n_actions, self.history = spec.n_actions, spec.history
        self.action_space, self.observation_space = spec.action_space, spec.observation_space

        self.device = get_device_preset(cfg["device"])
        # A request's energy is what it adds to the device's idle draw: compute above idle,
        # plus the radio (Huang et al. 2012 model, which is likewise power above idle).
        self._compute_above_idle_w = max(
            self.device.compute_power_w - self.device.idle_power_w, 0.0
        )
        self.radio = ReferenceRadio(radio_model(cfg["radio"], tail=cfg["lte_tail"]))
        self.channel = make_channel(cfg)
        world = make_server_world(cfg)
        world = ServerWorld(world.background, reference_schedule(world.schedule), world.duration_s)
        self.server = EdgeServer(*server_processes(cfg), world=world)
        self.frame_s, self.deadline_s = cfg["frame_period_s"], cfg["deadline_s"]
        self.timeout_s, self.half_rtt_s = cfg["timeout_s"], cfg["rtt_s"] / 2
        self.horizon = cfg["horizon"]
        self._max_backlog_s = MAX_OBS_BACKLOG_FRAMES * self.frame_s
        self._wait_scale = math.log1p(self._max_backlog_s / WAIT_UNIT_S)
        self.t0_s = self.history * self.frame_s  # the first request, after H measured periods
        self._duration_s = episode_duration_s(cfg)
        self.weights = cfg["reward"]
        self._live_mode = cfg["mode"] == "live"
        self._battery_j = cfg["battery_j"]
        self._model = None  # live mode: the torch model, loaded on first use
        self._images = None
        self._step_idx = -1

    # -- episode -----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        n = self.horizon
        # One call draws the episode (the vector env draws and uses it alike): the samples that
        # arrive, a trace and a slot in it, an offset into the server's world, a failure time.
        u = rng.random(n + EPISODE_DRAWS)
        n_samples = self.profile.num_samples
        self._samples = np.minimum((u[:n] * n_samples).astype(np.int64), n_samples - 1)
        # Long enough for the last request to time out: nothing is drawn after reset.
        duration_s = self._duration_s
        if isinstance(self.channel, package_channel.TraceChannel):
            self.trace = sample_shifted(self.channel, u[n], u[n + 1])
        else:
            trace = reference_trace(self.channel.sample(rng, duration_s))
            scale = self.config["capacity_scale"]
            self.trace = trace.scaled(scale) if scale != 1.0 else trace
        self.server.reset(rng, duration_s, u[n + 2 :])
        # Everything the device observes except its own backlog and battery is exogenous, so
        # the whole episode's observations are laid out here; step() fills in the two others.
        t = self.t0_s + self.frame_s * np.arange(-self.history, n + 1)
        mbps = np.diff(self.trace.cumulative_bits_many(t)) / self.frame_s / 1e6
        tp = (np.log1p(mbps) / np.log1p(MAX_OBS_THROUGHPUT_MBPS)).clip(0.0, 1.0)
        heard = t[self.history :] - self.frame_s  # the server's last heartbeat
        obs = np.empty((n + 1, self.observation_space.shape[0]), np.float32)
        obs[:, : self.history] = np.lib.stride_tricks.sliding_window_view(tp, self.history)
        h, cfg = self.history, self.config
        obs[:, h + 0] = min(cfg["rtt_s"] / self.timeout_s, 1.0)
        # The heartbeat reports the server's queueing delay (work waiting, s); our own jobs,
        # a fraction of a millisecond each, are not in it yet.
        queue_s = self.server.background_backlog_s(heard)
        obs[:, h + 1] = np.minimum(np.log1p(queue_s / WAIT_UNIT_S) / self._wait_scale, 1.0)
        if self.server.schedule.down_start_s.size:
            obs[:, h + 2] = [0.0 if self.server.is_down(x) else 1.0 for x in heard.tolist()]
        else:
            obs[:, h + 2] = 1.0
        obs[:, h + 3] = 0.0  # device backlog (set in step when the device is busy)
        obs[:, h + 4] = 1.0  # battery fraction (updated in step when there is a battery)
        obs[:, h + 5] = min(self.deadline_s / self.timeout_s, 1.0)
        self._obs = obs
        self._throughput_obs = tp
        self._step_idx = 0
        self._device_free_s = 0.0
        self._last_tx_end_s = -math.inf
        self._energy_j = 0.0
        self._last = None
        return self._observation(), {}

    def _arrival_s(self, i: int) -> float:
        return self.t0_s + i * self.frame_s

    @property
    def arrival_s(self) -> float:
        """Arrival time of the current request (s, episode time)."""
        return self._arrival_s(self._step_idx)

    def _observation(self) -> np.ndarray:
        i = self._step_idx
        obs = self._obs[i].copy()
        backlog_s = self._device_free_s - self._arrival_s(i)
        if backlog_s > 0.0:
            # np.log1p, not math.log1p: the vector env computes the same feature with numpy.
            obs[self.history + 3] = min(np.log1p(backlog_s / WAIT_UNIT_S) / self._wait_scale, 1.0)
        if self._battery_j is not None:
            obs[self.history + 4] = max(1.0 - self._energy_j / self._battery_j, 0.0)
        return obs

    def decode_action(self, action) -> tuple[int, int, int]:
        return self._spec.decode_action(action)

    # -- the world ---------------------------------------------------------------------------

    def _outcome(self, split: int, comp: int, exit_k: int, heads: bool, commit: bool) -> tuple:
        """Simulate the current request answered by exit ``exit_k``.

        Returns (latency_s, energy_j, timed_out, device_wait_s, tx_time_s, server_wait_s,
        payload_bytes, uplink_bps). With ``commit`` the device, radio and server state advance.
        """
        arrival = self._arrival_s(self._step_idx)
        timeout_at = arrival + self.timeout_s
        start = max(arrival, self._device_free_s)
        device_wait = start - arrival
        if start >= timeout_at:  # dropped: waited for the device until its timeout
            return self.timeout_s, 0.0, True, device_wait, 0.0, 0.0, 0, 0.0
        dev_time = self.tables.device_time_s[split][exit_k][heads]
        energy = self._compute_above_idle_w * dev_time
        sent = start + dev_time
        if self.tables.exit_blocks[exit_k] <= split:  # answered on the device
            done = min(sent, timeout_at)
            if commit:
                self._device_free_s = done
            return done - arrival, energy, sent > timeout_at, device_wait, 0.0, 0.0, 0, 0.0
        payload = self.tables.payload_bytes[split][comp]
        uploaded = sent + self.trace.transfer_time_s(sent, payload)  # inf at zero capacity
        if uploaded <= timeout_at:
            tx_time, bits = uploaded - sent, 8.0 * payload
        else:  # the upload is abandoned at the timeout
            tx_time = max(timeout_at - sent, 0.0)
            cum = self.trace.cumulative_bits
            bits = max(cum(sent + tx_time) - cum(sent), 0.0)
        energy += self.radio.tx_energy_j(min(bits / 8, payload), tx_time)
        if self.radio.tail_enabled and tx_time > 0 and self._last_tx_end_s > -math.inf:
            # the LTE tail of the previous transmission, cut short by this one
            energy += self.radio.tail_energy_j(sent - self._last_tx_end_s)
        uplink_bps = bits / tx_time if tx_time > 0 else self.trace.capacity_at_bps(sent)
        at_server = uploaded + self.half_rtt_s
        server_wait, answer = 0.0, math.inf
        if at_server < timeout_at and not self.server.is_down(at_server):
            service = self.tables.server_time_s[split][exit_k][heads]
            submit = self.server.submit if commit else self.server.peek
            server_wait, finish = submit(at_server, service)
            answer = finish + self.half_rtt_s
        if commit:
            self._device_free_s = sent + tx_time
            if tx_time > 0:
                self._last_tx_end_s = sent + tx_time
        timed_out = answer > timeout_at
        latency = min(answer, timeout_at) - arrival
        return latency, energy, timed_out, device_wait, tx_time, server_wait, payload, uplink_bps

    def _reward_parts(self, correct: bool, latency_s: float, energy_j: float, missed: bool):
        w = self.weights
        return {
            "accuracy": w["accuracy"] * correct,
            "latency": -w["latency"] * latency_s,
            "energy": -w["energy"] * energy_j,
            "deadline_miss": -w["deadline_miss"] * missed,
        }

    def step(self, action):
        if self._step_idx < 0:
            raise RuntimeError("call reset() before step()")
        if self._step_idx >= self.horizon:
            raise RuntimeError("the episode is over: call reset()")
        split, t, comp = self.decode_action(action)
        i = self._step_idx
        heads = t < self.n_t - 1
        if self._live_mode:
            exit_k, prediction = self._live(split, t, comp)
            correct = prediction == int(self.profile.labels[self._samples[i]])
        else:
            sample = self._samples[i]
            exit_k = int(self.tables.exit_index[sample, split, comp, t])
            correct = self.tables.correct[sample, split, comp, exit_k]
        latency, energy, timed_out, dev_wait, tx_time, srv_wait, payload, uplink = self._outcome(
            split, comp, exit_k, heads, commit=True
        )
        correct = bool(correct) and not timed_out
        missed = timed_out or latency > self.deadline_s
        parts = self._reward_parts(correct, latency, energy, missed)
        reward = parts["accuracy"] + parts["latency"] + parts["energy"] + parts["deadline_miss"]
        self._energy_j += energy
        self._step_idx += 1
        terminated = self._battery_j is not None and self._energy_j >= self._battery_j
        truncated = self._step_idx >= self.horizon and not terminated
        info = {
            "split": split,
            "threshold": self.thresholds[t],
            "compression": self.compressions[comp],
            "exit_block": self.tables.exit_blocks[exit_k],
            "correct": correct,
            "latency_s": latency,
            "energy_j": energy,
            "deadline_missed": missed,
            "timed_out": timed_out,
            "payload_bytes": payload,
            "uplink_bps": uplink,
            "tx_time_s": tx_time,
            "device_wait_s": dev_wait,
            "server_wait_s": srv_wait,
            "sample_index": int(self._samples[i]),
            "rewards": parts,
        }
        self._last = (info, reward)
        return self._observation(), reward, terminated, truncated, info

    # -- oracles -----------------------------------------------------------------------------

    def expected_rewards(self, hindsight: bool = False) -> np.ndarray:
        """Expected reward of every flat action for the current request, given the true state
        (channel capacity, server queue, device backlog), without changing it.

        Averaged over what the exits of a sample drawn from the data set would say; with
        ``hindsight`` the current sample's own exits are used (an upper bound, not deployable).
        """
        if not 0 <= self._step_idx < self.horizon:
            raise RuntimeError("expected_rewards() needs a request: call reset() first")
        n_e = len(self.tables.exit_blocks)
        values = np.empty((self.num_splits, self.n_t, self.n_c))
        sample = self._samples[self._step_idx]
        for s in range(self.num_splits):
            for c in range(self.n_c):
                costs = {}
                for heads in (False, True):
                    for e in range(n_e):
                        lat, en, to, *_ = self._outcome(s, c, e, heads, commit=False)
                        missed = to or lat > self.deadline_s
                        parts = self._reward_parts(False, lat, en, missed)
                        costs[heads, e] = (
                            parts["latency"] + parts["energy"] + parts["deadline_miss"],
                            to,
                        )
                for t in range(self.n_t):
                    heads = t < self.n_t - 1
                    if hindsight:
                        e = int(self.tables.exit_index[sample, s, c, t])
                        cost, to = costs[heads, e]
                        right = self.tables.correct[sample, s, c, e] and not to
                        values[s, t, c] = self.weights["accuracy"] * right + cost
                    else:
                        p = self.tables.exit_prob[s, c, t]
                        pc = self.tables.exit_correct_prob[s, c, t]
                        v = 0.0
                        for e in range(n_e):
                            if p[e] > 0:
                                cost, to = costs[heads, e]
                                v += p[e] * cost + (0.0 if to else self.weights["accuracy"] * pc[e])
                        values[s, t, c] = v
        return values.reshape(-1)

    # -- live mode ---------------------------------------------------------------------------

    def _live(self, split: int, t: int, comp: int) -> tuple[int, int]:
        """Run the torch model on the request's real image; (exit index, prediction)."""
        from splitexit.dnn_profiles.data import load_fashion_mnist
        from splitexit.dnn_profiles.model import split_inference
        from splitexit.dnn_profiles.train import WEIGHTS_PATH, load_model

        if self._model is None:
            self._model = load_model(self.config["weights"] or WEIGHTS_PATH)
            self._images = load_fashion_mnist("test").images
        sample = int(self._samples[self._step_idx])
        result = split_inference(
            self._model, self._images[sample], split, self.thresholds[t], self.compressions[comp]
        )
        return self.tables.exit_blocks.index(result.exit_block), result.prediction
