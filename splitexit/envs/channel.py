"""Uplink capacity over time: real traces, a fitted Markov channel and a fading model.

Every channel model produces a :class:`CapacityTrace` (piecewise-constant capacity in bit/s) for
a whole episode from a ``np.random.Generator`` at reset. :meth:`CapacityTrace.transfer_time_s` is
the one routine that integrates capacity over time; the trace loops at its end, like mahimahi.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np

TRACES_DIR = Path(__file__).parent / "traces"

# Mahimahi: one line = one delivery opportunity for one MTU-sized packet of 1500 bytes
# (Netravali et al., "Mahimahi", USENIX ATC 2015; traces/README.md).
MAHIMAHI_PACKET_BYTES = 1500
# Slot used to bin the 1 ms mahimahi timestamps. 10 ms keeps the exact packet count per slot
# while smoothing the 1 ms quantisation (one 1500-byte packet per ms is already 12 Mbit/s).
MAHIMAHI_SLOT_S = 0.01

# Markov channel fitted to the shipped mahimahi uplink traces. 100 ms slots resolve changes on
# the time scale of one inference request (tens to hundreds of ms) while averaging out the
# packet-level quantisation of the trace (a 1500-byte packet takes 12 ms at 1 Mbit/s); 8
# quantile bins give states from deep fades to the peak rates. Modelling choices, not measured.
DEFAULT_MARKOV_SLOT_S = 0.1
DEFAULT_MARKOV_N_STATES = 8

PathArg = str | PathLike


def _check(ok: bool, name: str, requirement: str, value: object) -> None:
    """Raise ``ValueError("<name> must be <requirement>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {requirement}, got {value!r}")


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    _check(math.isfinite(value) and value > 0, name, "> 0 and finite", value)
    return value


def _check_non_negative(name: str, value: float) -> float:
    value = float(value)
    _check(math.isfinite(value) and value >= 0, name, ">= 0 and finite", value)
    return value


# --------------------------------------------------------------------------------------------
# CapacityTrace: piecewise-constant capacity and its exact integration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CapacityTrace:
    """Piecewise-constant uplink capacity that loops at its end.

    Slot ``k`` covers ``[k * slot_s, (k + 1) * slot_s)`` and carries ``capacity_bps[k]`` bit/s.
    The bits delivered up to each slot boundary are precomputed, so a transfer time is one
    binary search (exact for piecewise-constant capacity).
    """

    slot_s: float
    capacity_bps: np.ndarray
    name: str = "trace"
    _cum_bits: list[float] = field(init=False, repr=False)
    _cap_bps: list[float] = field(init=False, repr=False)
    _cum_bits_array: np.ndarray = field(init=False, repr=False)
    _total_bits: float = field(init=False, repr=False)
    _duration_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        slot_s = _check_positive("slot_s", self.slot_s)
        cap = np.array(self.capacity_bps, dtype=np.float64)  # a private copy
        _check(cap.ndim == 1 and cap.size > 0, "capacity_bps", "a non-empty 1-D array", cap.shape)
        _check(bool(np.all(np.isfinite(cap))), "capacity_bps", "finite", "a non-finite value")
        _check(bool(np.all(cap >= 0)), "capacity_bps", ">= 0", float(cap.min()))
        cap.flags.writeable = False
        cum = np.concatenate(([0.0], np.cumsum(cap * slot_s)))
        object.__setattr__(self, "slot_s", slot_s)
        object.__setattr__(self, "capacity_bps", cap)
        cum.flags.writeable = False
        object.__setattr__(self, "_cum_bits", cum.tolist())
        object.__setattr__(self, "_cum_bits_array", cum)
        object.__setattr__(self, "_cap_bps", cap.tolist())
        object.__setattr__(self, "_total_bits", float(cum[-1]))
        object.__setattr__(self, "_duration_s", cap.size * slot_s)

    @property
    def duration_s(self) -> float:
        """Length of one loop of the trace (s)."""
        return self._duration_s

    @property
    def mean_bps(self) -> float:
        """Time-average capacity over one loop (bit/s)."""
        return self._total_bits / self._duration_s

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

    def scaled(self, factor: float) -> CapacityTrace:
        """The same trace with every capacity multiplied by ``factor`` (>= 0)."""
        factor = _check_non_negative("factor", factor)
        return CapacityTrace(self.slot_s, self.capacity_bps * factor, self.name)

    def window(self, start_slot: int, n_slots: int) -> CapacityTrace:
        """``n_slots`` slots from ``start_slot`` on, wrapping around the end of the trace."""
        _check(n_slots >= 1, "n_slots", ">= 1", n_slots)
        idx = (int(start_slot) + np.arange(int(n_slots))) % self.capacity_bps.size
        name = f"{self.name}@{int(start_slot) * self.slot_s:g}s"
        return CapacityTrace(self.slot_s, self.capacity_bps[idx], name)

    def resampled(self, slot_s: float) -> CapacityTrace:
        """The mean capacity over consecutive slots of ``slot_s`` (the partial tail is dropped)."""
        slot_s = _check_positive("slot_s", slot_s)
        n = max(1, int(self._duration_s / slot_s + 1e-9))
        edges_s = np.arange(n + 1) * slot_s
        knots_s = np.arange(self.capacity_bps.size + 1) * self.slot_s
        bits = np.interp(edges_s, knots_s, np.asarray(self._cum_bits))
        cap = np.maximum(np.diff(bits) / slot_s, 0.0)
        return CapacityTrace(slot_s, cap, self.name)


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


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"trace file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err})") from None
    if not text.strip():
        raise ValueError(f"{path}: empty trace file")
    return text


def _parse_mahimahi(text: str, path: Path, slot_s: float) -> CapacityTrace:
    lines = text.splitlines()
    try:
        ts_ms = np.array([int(s) for s in lines if s.strip()], dtype=np.int64)
    except ValueError:
        for lineno, s in enumerate(lines, 1):
            if not s.strip():
                continue
            try:
                int(s)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not an integer: {s.strip()!r}") from None
        raise  # unreachable: some line failed above
    bad = np.flatnonzero(ts_ms < 0)
    kind = "negative timestamp"
    if bad.size == 0:
        bad = np.flatnonzero(np.diff(ts_ms) < 0) + 1
        kind = "timestamps decrease"
    if bad.size:
        lineno = [i for i, s in enumerate(lines, 1) if s.strip()][bad[0]]
        raise ValueError(f"{path}:{lineno}: {kind} ({lines[lineno - 1].strip()})")
    # Mahimahi loops with period = last timestamp (its base time advances by it), so a delivery
    # at the last timestamp coincides with the first millisecond of the next loop.
    period_ms = max(int(ts_ms[-1]), 1)
    slot_ms = slot_s * 1e3
    n_slots = math.ceil(period_ms / slot_ms - 1e-9)
    idx = np.floor(ts_ms / slot_ms + 1e-9).astype(np.int64) % n_slots
    counts = np.bincount(idx, minlength=n_slots)
    return CapacityTrace(slot_s, counts * (MAHIMAHI_PACKET_BYTES * 8 / slot_s), path.name)


def _parse_pensieve(text: str, path: Path) -> CapacityTrace:
    times_s: list[float] = []
    mbps: list[float] = []
    for lineno, s in enumerate(text.splitlines(), 1):
        fields = s.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected 2 columns (time_s Mbit/s), got {s!r}")
        try:
            t, v = float(fields[0]), float(fields[1])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: not a number: {s.strip()!r}") from None
        if not (math.isfinite(t) and math.isfinite(v)):
            raise ValueError(f"{path}:{lineno}: not finite: {s.strip()!r}")
        if v < 0:
            raise ValueError(f"{path}:{lineno}: negative throughput {v!r}")
        if times_s and t < times_s[-1]:
            raise ValueError(f"{path}:{lineno}: timestamps decrease ({t!r} after {times_s[-1]!r})")
        times_s.append(t)
        mbps.append(v)
    if len(times_s) < 2:
        raise ValueError(f"{path}: need at least 2 rows to infer the time step")
    slot_s = float(np.median(np.diff(times_s)))
    if slot_s <= 0:
        raise ValueError(f"{path}: median time step is {slot_s!r} s, must be > 0")
    # One slot per row: the rows of a Pensieve trace are (nearly) evenly spaced measurements.
    return CapacityTrace(slot_s, np.asarray(mbps) * 1e6, path.name)


@lru_cache(maxsize=512)
def _load_cached(path: Path, mtime_ns: int, size: int, slot_s: float) -> CapacityTrace:
    del mtime_ns, size  # cache keys only: a changed file is read again
    text = _read_text(path)
    first = next(s for s in text.splitlines() if s.strip())
    if len(first.split()) == 1:
        return _parse_mahimahi(text, path, slot_s)
    return _parse_pensieve(text, path)


def load_trace(path: PathArg, slot_s: float = MAHIMAHI_SLOT_S) -> CapacityTrace:
    """Load one trace file, choosing the format from its first non-empty line.

    One field: mahimahi (binned into ``slot_s`` slots); two fields: Pensieve (``time_s Mbit/s``).
    Parsed traces are cached by path and modification time (they are immutable).
    """
    slot_s = _check_positive("slot_s", slot_s)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file not found: {path}")
    stat = path.stat()
    return _load_cached(path.resolve(), stat.st_mtime_ns, stat.st_size, slot_s)


def load_mahimahi(path: PathArg, slot_s: float = MAHIMAHI_SLOT_S) -> CapacityTrace:
    """Load a mahimahi trace: one integer ms timestamp per line = one 1500-byte delivery."""
    slot_s = _check_positive("slot_s", slot_s)
    path = Path(path)
    return _parse_mahimahi(_read_text(path), path, slot_s)


def load_pensieve(path: PathArg) -> CapacityTrace:
    """Load a Pensieve cooked trace: ``time_s Mbit/s`` per line; slot_s = median time step."""
    path = Path(path)
    return _parse_pensieve(_read_text(path), path)


def _trace_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(("LICENSE", "README", "."))
    )


def load_traces(
    paths_or_dirs: PathArg | Iterable[PathArg], slot_s: float = MAHIMAHI_SLOT_S
) -> list[CapacityTrace]:
    """Load trace files; a folder contributes its regular files (not LICENSE*/README*) by name."""
    if isinstance(paths_or_dirs, (str, PathLike)):
        paths_or_dirs = [paths_or_dirs]
    files: list[Path] = []
    for p in map(Path, paths_or_dirs):
        if p.is_dir():
            found = _trace_files(p)
            if not found:
                raise ValueError(f"{p}: folder holds no trace files")
            files.extend(found)
        else:
            files.append(p)
    if not files:
        raise ValueError("no trace paths given")
    return [load_trace(f, slot_s) for f in files]


SHIPPED_TRACE_KINDS = ("mahimahi-up", "mahimahi-up-train", "mahimahi-up-eval", "pensieve")
# Held out from training by train_agent.py, so that agents are evaluated on an unseen trace:
# a 120 s drive with a 1.91 Mbit/s mean, between the other three (0.83, 5.95, 13.3 Mbit/s).
EVAL_TRACE = "ATT-LTE-driving-2016.up"


def shipped_trace_paths(kind: str) -> list[Path]:
    """Paths of the traces shipped in ``splitexit/envs/traces`` (see its README for origins).

    ``"mahimahi-up"``: the 4 LTE uplink saturator traces, ``"mahimahi-up-eval"`` the one held
    out for evaluation (``EVAL_TRACE``), ``"mahimahi-up-train"`` the other three;
    ``"pensieve"``: the 127 cooked (downlink) throughput traces of Pensieve.
    """
    if kind.startswith("mahimahi-up"):
        paths = sorted((TRACES_DIR / "mahimahi").glob("*.up"))
        if kind == "mahimahi-up":
            return paths
        if kind == "mahimahi-up-eval":
            return [p for p in paths if p.name == EVAL_TRACE]
        if kind == "mahimahi-up-train":
            return [p for p in paths if p.name != EVAL_TRACE]
    if kind == "pensieve":
        return _trace_files(TRACES_DIR / "pensieve" / "cooked_traces")
    raise ValueError(f"kind must be one of {SHIPPED_TRACE_KINDS}, got {kind!r}")


# --------------------------------------------------------------------------------------------
# Channel generators: each returns a CapacityTrace for one episode
# --------------------------------------------------------------------------------------------


def _n_slots(duration_s: float, slot_s: float) -> int:
    duration_s = _check_non_negative("duration_s", duration_s)
    return max(1, math.ceil(duration_s / slot_s - 1e-9))


class TraceChannel:
    """Replays a real trace: a uniformly chosen trace from a uniformly chosen slot, scaled."""

    def __init__(self, traces: Sequence[CapacityTrace], scale: float = 1.0, name: str = "trace"):
        _check(len(traces) > 0, "traces", "a non-empty list of CapacityTrace", traces)
        for tr in traces:
            _check(isinstance(tr, CapacityTrace), "traces", "a list of CapacityTrace", tr)
        self.traces = list(traces)
        self.scale = _check_non_negative("scale", scale)
        self.name = name
        # The traces as episodes read them (scaled once here, not per episode).
        self.scaled_traces = (
            [tr.scaled(self.scale) for tr in self.traces] if self.scale != 1.0 else self.traces
        )

    @classmethod
    def from_paths(
        cls, paths: PathArg | Iterable[PathArg], scale: float = 1.0, slot_s: float = MAHIMAHI_SLOT_S
    ) -> TraceChannel:
        """A channel over the trace files and folders ``paths`` (see :func:`load_traces`)."""
        return cls(load_traces(paths, slot_s), scale)

    @classmethod
    def shipped(cls, kind: str = "mahimahi-up", scale: float = 1.0) -> TraceChannel:
        """A channel over the shipped traces of ``kind`` (see :func:`shipped_trace_paths`)."""
        return cls(load_traces(shipped_trace_paths(kind)), scale, name=kind)

    def sample(self, rng: np.random.Generator, duration_s: float) -> CapacityTrace:
        """The episode's capacity: at least ``duration_s`` long (wrapping), then looping."""
        trace = self.traces[int(rng.integers(len(self.traces)))]
        start = int(rng.integers(trace.capacity_bps.size))
        window = trace.window(start, _n_slots(duration_s, trace.slot_s))
        return window.scaled(self.scale) if self.scale != 1.0 else window

    def sample_shifted(self, u_trace: float, u_start: float) -> ShiftedTrace:
        """The episode's capacity without copying, from two uniforms in ``[0, 1)``: trace
        ``floor(u_trace * n)`` (scaled), read from slot ``floor(u_start * size)`` on, looping."""
        k = min(int(u_trace * len(self.traces)), len(self.traces) - 1)
        trace = self.scaled_traces[k]
        start = min(int(u_start * trace.capacity_bps.size), trace.capacity_bps.size - 1)
        return ShiftedTrace(trace, start * trace.slot_s)


def _check_transition(transition: np.ndarray, n: int) -> np.ndarray:
    p = np.array(transition, dtype=np.float64)
    _check(p.shape == (n, n), "transition", f"of shape ({n}, {n})", p.shape)
    ok = bool(np.all(np.isfinite(p)) and np.all(p >= 0))
    _check(ok, "transition", ">= 0 and finite", p.tolist())
    _check(bool(np.allclose(p.sum(axis=1), 1.0, atol=1e-6)), "transition", "row-stochastic", p)
    return p / p.sum(axis=1, keepdims=True)


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """Stationary distribution ``pi = pi P`` of a row-stochastic matrix (least squares)."""
    p = np.asarray(transition, dtype=np.float64)
    n = p.shape[0]
    a = np.vstack([p.T - np.eye(n), np.ones((1, n))])
    b = np.concatenate([np.zeros(n), [1.0]])
    pi = np.clip(np.linalg.lstsq(a, b, rcond=None)[0], 0.0, None)
    return pi / pi.sum()


def sample_markov_chain(
    rng: np.random.Generator, transition: np.ndarray, n_steps: int, initial: int | None = None
) -> np.ndarray:
    """A path of ``n_steps`` states of the chain; the initial state from ``initial`` or else the
    stationary distribution. One uniform draw per step, so a path is fixed by the rng state."""
    p = np.asarray(transition, dtype=np.float64)
    cum_rows = np.cumsum(p, axis=1)
    cum_rows[:, -1] = np.inf  # absorb rounding: a draw in [0, 1) always lands on a state
    rows = cum_rows.tolist()
    u = rng.random(n_steps).tolist()
    if initial is None:
        pi_cum = np.cumsum(stationary_distribution(p))
        pi_cum[-1] = np.inf
        state = bisect_right(pi_cum.tolist(), u[0])
    else:
        state = int(initial)
    path = [state] * n_steps
    for k in range(1, n_steps):
        state = bisect_right(rows[state], u[k])
        path[k] = state
    return np.asarray(path, dtype=np.int64)


class MarkovChannel:
    """Finite-state Markov channel: the capacity is ``states_bps[s_k]`` in slot ``k``."""

    def __init__(
        self,
        states_bps: np.ndarray,
        transition: np.ndarray,
        slot_s: float,
        name: str = "markov",
    ):
        states = np.array(states_bps, dtype=np.float64)
        _check(states.ndim == 1 and states.size > 0, "states_bps", "a non-empty 1-D array", states)
        ok = bool(np.all(np.isfinite(states)) and np.all(states >= 0))
        _check(ok, "states_bps", ">= 0 and finite", states)
        self.states_bps = states
        self.transition = _check_transition(transition, states.size)
        self.slot_s = _check_positive("slot_s", slot_s)
        self.name = name
        self.stationary = stationary_distribution(self.transition)

    @property
    def mean_bps(self) -> float:
        """Stationary mean capacity (bit/s)."""
        return float(self.stationary @ self.states_bps)

    def sample(self, rng: np.random.Generator, duration_s: float) -> CapacityTrace:
        """A stationary path of at least ``duration_s`` as a trace."""
        path = sample_markov_chain(rng, self.transition, _n_slots(duration_s, self.slot_s))
        return CapacityTrace(self.slot_s, self.states_bps[path], self.name)


def fit_markov_channel(
    traces: Sequence[CapacityTrace],
    n_states: int = DEFAULT_MARKOV_N_STATES,
    slot_s: float = DEFAULT_MARKOV_SLOT_S,
    name: str = "markov-fit",
) -> MarkovChannel:
    """Fit a Markov channel to traces resampled to ``slot_s``.

    The pooled slot capacities are cut at their ``n_states``-quantiles (ties go to the lower
    bin; empty bins are dropped), a state's capacity is the mean of its bin, and transitions are
    counted within each trace with add-one (Laplace) smoothing, rows normalised.
    """
    _check(len(traces) > 0, "traces", "a non-empty list of CapacityTrace", traces)
    _check(int(n_states) >= 1, "n_states", ">= 1", n_states)
    slot_s = _check_positive("slot_s", slot_s)
    series = [tr.resampled(slot_s).capacity_bps for tr in traces]
    pooled = np.concatenate(series)
    edges = np.quantile(pooled, np.linspace(0.0, 1.0, int(n_states) + 1)[1:-1])
    labels = [np.searchsorted(edges, s, side="left") for s in series]
    used, pooled_labels = np.unique(np.concatenate(labels), return_inverse=True)
    states = np.bincount(pooled_labels, weights=pooled) / np.bincount(pooled_labels)
    n = used.size
    counts = np.ones((n, n))
    for lab in labels:
        lab = np.searchsorted(used, lab)
        np.add.at(counts, (lab[:-1], lab[1:]), 1.0)
    return MarkovChannel(states, counts / counts.sum(axis=1, keepdims=True), slot_s, name)


@lru_cache(maxsize=1)
def default_markov_channel() -> MarkovChannel:
    """The Markov channel fitted to the shipped mahimahi LTE uplink traces (cached)."""
    traces = load_traces(shipped_trace_paths("mahimahi-up"))
    return fit_markov_channel(traces, DEFAULT_MARKOV_N_STATES, DEFAULT_MARKOV_SLOT_S, "markov")


# Fading channel defaults. 3GPP TR 36.814 V9.0.0, Table A.2.1.1-2 (macro cell, case 1),
# "Further advancements for E-UTRA physical layer aspects". Values as commonly quoted from these
# documents; they could not be checked against the document text from this workplace.
PATHLOSS_DB_AT_1KM = 128.1  # L = 128.1 + 37.6 log10(R), R in km (2 GHz carrier)
PATHLOSS_EXPONENT = 3.76  # the 37.6 dB/decade slope of the same formula
SHADOWING_STD_DB = 8.0  # log-normal shadowing standard deviation
PENETRATION_LOSS_DB = 20.0  # building penetration loss (indoor UE)
ENB_NOISE_FIGURE_DB = 5.0  # eNB receiver noise figure (the uplink receiver; UE NF is 9 dB)
CARRIER_HZ = 2.0e9  # carrier frequency
UE_SPEED_KMH = 3.0  # UE speed (pedestrian)
MIN_DISTANCE_M = 35.0  # minimum distance between UE and cell
CELL_RADIUS_M = 500.0 / math.sqrt(3.0)  # hexagonal cell radius for the 500 m inter-site distance
# 3GPP TS 36.101, Table 6.2.2-1: UE power class 3 maximum output power 23 dBm.
UE_TX_POWER_DBM = 23.0
# Thermal noise power spectral density kT at 290 K: -174 dBm/Hz (also TR 36.814 Table A.2.1.1-2).
NOISE_PSD_DBM_HZ = -174.0
# Uplink share: 25 of the 50 resource blocks of a 10 MHz LTE carrier (TS 36.101 Table 5.6-1),
# 180 kHz each (TS 36.211). A scheduling assumption: the UE shares the cell with others.
UPLINK_BANDWIDTH_HZ = 25 * 180e3
# Coherence time T_c = 0.423 / f_D for Rayleigh fading (T. S. Rappaport, "Wireless
# Communications: Principles and Practice", 2nd ed., 2002, eq. 5.40.c), f_D = v f_c / c.
COHERENCE_FACTOR = 0.423
SPEED_OF_LIGHT_M_S = 299_792_458.0


class FadingChannel:
    """Rayleigh block fading + log-distance path loss + log-normal shadowing, Shannon capacity.

    Per episode: a distance (fixed, or uniform over the annulus ``distance_m = (min, max)``) and
    one shadowing draw; per coherence block: an exponential (Rayleigh) power gain. Capacity per
    block ``C = B log2(1 + SNR)`` with
    ``SNR_dB = P_tx - PL(d) - shadowing - penetration + 10 log10(|h|^2) - (N0 + 10 log10 B + NF)``
    and ``PL(d) = PL(1 km) + 10 n log10(d / 1 km)``. Shannon capacity is an upper bound on what
    LTE link adaptation achieves.
    """

    def __init__(
        self,
        distance_m: float | tuple[float, float] = (MIN_DISTANCE_M, CELL_RADIUS_M),
        bandwidth_hz: float = UPLINK_BANDWIDTH_HZ,
        tx_power_dbm: float = UE_TX_POWER_DBM,
        noise_psd_dbm_hz: float = NOISE_PSD_DBM_HZ,
        noise_figure_db: float = ENB_NOISE_FIGURE_DB,
        pathloss_db_at_1km: float = PATHLOSS_DB_AT_1KM,
        pathloss_exponent: float = PATHLOSS_EXPONENT,
        shadowing_std_db: float = SHADOWING_STD_DB,
        penetration_loss_db: float = PENETRATION_LOSS_DB,
        carrier_hz: float = CARRIER_HZ,
        speed_kmh: float = UE_SPEED_KMH,
        coherence_time_s: float | None = None,
        name: str = "fading",
    ):
        if isinstance(distance_m, (int, float)):
            distance_m = (float(distance_m), float(distance_m))
        d_min, d_max = (float(d) for d in distance_m)
        ok = 0 < d_min <= d_max < math.inf
        _check(ok, "distance_m", "> 0, or a range (min, max) with 0 < min <= max", distance_m)
        self.distance_m = (d_min, d_max)
        self.bandwidth_hz = _check_positive("bandwidth_hz", bandwidth_hz)
        for key, value in (
            ("tx_power_dbm", tx_power_dbm),
            ("noise_psd_dbm_hz", noise_psd_dbm_hz),
            ("noise_figure_db", noise_figure_db),
            ("pathloss_db_at_1km", pathloss_db_at_1km),
            ("penetration_loss_db", penetration_loss_db),
        ):
            _check(math.isfinite(value), key, "finite", value)
        self.tx_power_dbm = float(tx_power_dbm)
        self.noise_dbm = float(noise_psd_dbm_hz) + 10 * math.log10(bandwidth_hz) + noise_figure_db
        self.pathloss_db_at_1km = float(pathloss_db_at_1km)
        self.pathloss_exponent = _check_positive("pathloss_exponent", pathloss_exponent)
        self.shadowing_std_db = _check_non_negative("shadowing_std_db", shadowing_std_db)
        self.penetration_loss_db = float(penetration_loss_db)
        carrier_hz = _check_positive("carrier_hz", carrier_hz)
        if coherence_time_s is None:
            doppler_hz = _check_positive("speed_kmh", speed_kmh) / 3.6 * carrier_hz
            coherence_time_s = COHERENCE_FACTOR / (doppler_hz / SPEED_OF_LIGHT_M_S)
        self.coherence_time_s = _check_positive("coherence_time_s", coherence_time_s)
        self.name = name

    def mean_snr_db(self, distance_m: float) -> float:
        """SNR without shadowing and fast fading at ``distance_m`` (dB)."""
        pathloss_db = self.pathloss_db_at_1km + 10 * self.pathloss_exponent * math.log10(
            distance_m / 1e3
        )
        return self.tx_power_dbm - pathloss_db - self.penetration_loss_db - self.noise_dbm

    def sample(self, rng: np.random.Generator, duration_s: float) -> CapacityTrace:
        """Per-coherence-block Shannon capacity for at least ``duration_s``."""
        n = _n_slots(duration_s, self.coherence_time_s)
        d_min, d_max = self.distance_m
        # Uniform over the annulus area: P(D <= d) proportional to d^2 - d_min^2.
        distance_m = math.sqrt(d_min**2 + rng.random() * (d_max**2 - d_min**2))
        shadowing_db = self.shadowing_std_db * rng.standard_normal()
        gain = rng.exponential(1.0, n)  # |h|^2 of Rayleigh fading, unit mean
        snr = 10 ** ((self.mean_snr_db(distance_m) - shadowing_db) / 10) * gain
        cap = self.bandwidth_hz * np.log2(1.0 + snr)
        return CapacityTrace(self.coherence_time_s, cap, f"{self.name}@{distance_m:.0f}m")
