"""Trace files: the formats (mahimahi, Pensieve) and the catalogue of the shipped traces.

The traces and their origins, papers and licences are in ``splitexit/envs/traces/README.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np

from splitexit.envs.capacity import CapacityTrace
from splitexit.envs.checks import check_positive
from splitexit.files import read_regular_file

TRACES_DIR = Path(__file__).parent / "traces"

# Mahimahi: one line = one delivery opportunity for one MTU-sized packet of 1500 bytes
# (Netravali et al., "Mahimahi", USENIX ATC 2015; traces/README.md).
MAHIMAHI_PACKET_BYTES = 1500
# Slot used to bin the 1 ms mahimahi timestamps. 10 ms keeps the exact packet count per slot
# while smoothing the 1 ms quantisation (one 1500-byte packet per ms is already 12 Mbit/s).
MAHIMAHI_SLOT_S = 0.01

# The longest a mahimahi trace may span (its slots are allocated over the span): a day, far
# beyond the shipped traces (a few minutes each).
MAX_TRACE_S = 86_400.0

# Bounds on Pensieve rows. The fastest radio in sight: IMT-2020 (5G) asks for a 20 Gbit/s
# downlink peak (ITU-R M.2410-0, 2017, Sec. 4.1); a rate 50 times that is a unit error. A
# nonzero rate below 1 bit/s, or a time step under 1 ms (the traces' steps are about 1 s, and
# mahimahi's resolution is 1 ms), cannot be a measurement either.
MAX_RATE_MBPS = 1e6  # 1 Tbit/s
MIN_RATE_MBPS = 1e-6  # 1 bit/s (0 is an outage, allowed)
MIN_TIME_STEP_S = 1e-3
# Slots of all the traces one env holds (about 24 bytes each, capacity and cumulative bits
# with the copies made): two day-long mahimahi traces at 10 ms; the shipped ones hold 0.3 M.
MAX_TOTAL_SLOTS = 20_000_000

# Bound on one trace file (the largest shipped: 1 MB; a day of mahimahi packets at 100 Mbit/s
# is about 60 MB).
MAX_TRACE_BYTES = 256 * 2**20

PathArg = str | PathLike


def read_trace_text(path: Path, what: str = "trace file") -> str:
    """The UTF-8 text of a trace file: a regular file of at most ``MAX_TRACE_BYTES``."""
    try:
        text = read_regular_file(path, MAX_TRACE_BYTES, what).decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err})") from None
    if not text.strip():
        raise ValueError(f"{path}: empty trace file")
    return text


def _parse_mahimahi(text: str, path: Path, slot_s: float) -> CapacityTrace:
    lines = text.splitlines()
    huge = 2**62  # (clipped here, so that int64 holds it; named below)
    try:
        ts_ms = np.array([min(int(s), huge) for s in lines if s.strip()], dtype=np.int64)
    except ValueError:
        for lineno, s in enumerate(lines, 1):
            if not s.strip():
                continue
            try:
                int(s)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not an integer: {s.strip()!r}") from None
        raise  # unreachable: some line failed above
    for bad, kind in (
        (ts_ms == huge, f"timestamp in ms is beyond the longest trace allowed ({MAX_TRACE_S:g} s)"),
        (ts_ms < 0, "negative timestamp"),
        (np.concatenate(([False], np.diff(ts_ms) < 0)), "timestamps decrease"),
    ):
        if bad.any():
            lineno = [i for i, s in enumerate(lines, 1) if s.strip()][int(np.argmax(bad))]
            raise ValueError(f"{path}:{lineno}: {kind} ({lines[lineno - 1].strip()[:40]})")
    # Mahimahi loops with period = last timestamp (its base time advances by it), so a delivery
    # at the last timestamp coincides with the first millisecond of the next loop.
    period_ms = max(int(ts_ms[-1]), 1)
    if period_ms > MAX_TRACE_S * 1e3:
        raise ValueError(
            f"{path}: the trace spans {period_ms / 1e3:g} s; at most {MAX_TRACE_S:g} s is allowed"
        )
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
        if v > MAX_RATE_MBPS or 0 < v < MIN_RATE_MBPS:
            raise ValueError(
                f"{path}:{lineno}: throughput {v!r} Mbit/s is outside 0 or "
                f"[{MIN_RATE_MBPS:g}, {MAX_RATE_MBPS:g}] (1 bit/s to 1 Tbit/s)"
            )
        if times_s and t < times_s[-1]:
            raise ValueError(f"{path}:{lineno}: timestamps decrease ({t!r} after {times_s[-1]!r})")
        times_s.append(t)
        mbps.append(v)
    if len(times_s) < 2:
        raise ValueError(f"{path}: need at least 2 rows to infer the time step")
    slot_s = float(np.median(np.diff(times_s)))
    if not slot_s >= MIN_TIME_STEP_S:
        raise ValueError(
            f"{path}: median time step is {slot_s!r} s, must be at least {MIN_TIME_STEP_S:g} s"
        )
    # One slot per row: the rows of a Pensieve trace are (nearly) evenly spaced measurements.
    return CapacityTrace(slot_s, np.asarray(mbps) * 1e6, path.name)


@lru_cache(maxsize=512)
def _load_cached(path: Path, mtime_ns: int, size: int, slot_s: float) -> CapacityTrace:
    del mtime_ns, size  # cache keys only: a changed file is read again
    text = read_trace_text(path)
    first = next(s for s in text.splitlines() if s.strip())
    if len(first.split()) == 1:
        return _parse_mahimahi(text, path, slot_s)
    return _parse_pensieve(text, path)


def load_trace(path: PathArg, slot_s: float = MAHIMAHI_SLOT_S) -> CapacityTrace:
    """Load one trace file, choosing the format from its first non-empty line.

    One field: mahimahi (binned into ``slot_s`` slots); two fields: Pensieve (``time_s Mbit/s``).
    Parsed traces are cached by path and modification time (they are immutable).
    """
    slot_s = check_positive("slot_s", slot_s)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trace file not found: {path}")
    stat = path.stat()
    return _load_cached(path.resolve(), stat.st_mtime_ns, stat.st_size, slot_s)


def load_mahimahi(path: PathArg, slot_s: float = MAHIMAHI_SLOT_S) -> CapacityTrace:
    """Load a mahimahi trace: one integer ms timestamp per line = one 1500-byte delivery."""
    slot_s = check_positive("slot_s", slot_s)
    path = Path(path)
    return _parse_mahimahi(read_trace_text(path), path, slot_s)


def load_pensieve(path: PathArg) -> CapacityTrace:
    """Load a Pensieve cooked trace: ``time_s Mbit/s`` per line; slot_s = median time step."""
    path = Path(path)
    return _parse_pensieve(read_trace_text(path), path)


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
    traces, slots = [], 0
    for f in files:
        traces.append(load_trace(f, slot_s))
        slots += traces[-1].capacity_bps.size
        if slots > MAX_TOTAL_SLOTS:
            raise ValueError(
                f"{f}: the traces up to this one hold {slots} slots of {slot_s:g} s; at most "
                f"{MAX_TOTAL_SLOTS} in all (two day-long traces)"
            )
    return traces


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
