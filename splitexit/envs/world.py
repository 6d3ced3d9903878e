"""The world one request passes through, precomputed from a profile and a config.

``WorldTables`` turns a profile into lookup tables that ``env.step`` reads in O(1): which exit
answers each sample for every (split, compression, threshold), whether it is right, and how long
the device and the server compute for every (split, answering exit, heads on/off).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from splitexit.dnn_profiles.hardware import (
    compute_latency_s,
    get_device_preset,
    get_server_preset,
)
from splitexit.dnn_profiles.profile import DEFAULT_PROFILE_PATH, Profile
from splitexit.envs.channel import (
    SHIPPED_TRACE_KINDS,
    FadingChannel,
    TraceChannel,
    default_markov_channel,
    load_traces,
    shipped_trace_paths,
)
from splitexit.envs.server import (
    EdgeServer,
    OutageProcess,
    PoissonMarkovLoad,
    ServerWorld,
    TraceLoad,
)

NEVER_EXIT = float("inf")  # the top threshold: no early exit, exit heads are not even run


@lru_cache(maxsize=8)
def load_profile(path: str | None) -> Profile:
    """A profile by path (None = the shipped default), cached per process."""
    return Profile.load(DEFAULT_PROFILE_PATH if path is None else Path(path))


@dataclass(frozen=True)
class WorldTables:
    """Lookup tables of one (profile, thresholds, compressions, device, server) combination.

    Shapes: N samples, S blocks, E exits, C compressions, T thresholds (the last never exits).
    """

    exit_index: np.ndarray  # (N, S+1, C, T) int8: which exit answers
    correct: np.ndarray  # (N, S+1, C, E) bool: whether that exit is right
    prediction: np.ndarray  # (N, S+1, C, E) int8
    exit_prob: np.ndarray  # (S+1, C, T, E) P(exit e answers)
    exit_correct_prob: np.ndarray  # (S+1, C, T, E) P(exit e answers and is right)
    device_time_s: list  # [s][e][heads] device compute for split s, answering exit e
    server_time_s: list  # [s][e][heads] server compute
    payload_bytes: list  # [s][c]
    exit_blocks: tuple[int, ...]


def _compute_times(profile: Profile, preset, device_side: bool) -> list:
    blocks = np.asarray(compute_latency_s(profile.block_flops.astype(np.float64), preset))
    heads = np.asarray(compute_latency_s(profile.exit_flops.astype(np.float64), preset))
    s_max, exit_blocks = profile.num_blocks, profile.exit_blocks
    table = []
    for s in range(s_max + 1):
        row = []
        for e, eb in enumerate(exit_blocks):
            lo, hi = (0, min(s, eb)) if device_side else (s, eb)
            t_blocks = float(blocks[lo:hi].sum()) if hi > lo else 0.0
            # exit heads run on this side: all those passed (heads on), or only the final one
            run = [k for k, b in enumerate(exit_blocks[: e + 1]) if lo < b <= hi]
            with_heads = t_blocks + float(heads[run].sum())
            final_here = e == len(exit_blocks) - 1 and lo < eb <= hi
            final_only = t_blocks + (float(heads[e]) if final_here else 0.0)
            row.append((final_only, with_heads))
        table.append(row)
    return table


@lru_cache(maxsize=8)
def world_tables(
    profile_path: str | None,
    thresholds: tuple[float, ...],
    compressions: tuple[str, ...],
    device: str,
    server: str,
) -> WorldTables:
    """Tables for a config, cached per process (many envs share them)."""
    profile = load_profile(profile_path)
    comp_idx = [profile.compressions.index(c) for c in compressions]
    grid = np.asarray((*thresholds, NEVER_EXIT), np.float32)
    exit_index = profile.answers(grid)[:, :, comp_idx]
    correct = profile.correct[:, :, comp_idx]
    prediction = profile.prediction[:, :, comp_idx]
    e = len(profile.exit_blocks)
    one_hot = np.eye(e, dtype=np.float64)[exit_index]  # (N, S+1, C, T, E)
    exit_prob = one_hot.mean(0)
    right = np.take_along_axis(correct, exit_index.astype(np.int64), axis=3)  # (N, S+1, C, T)
    exit_correct_prob = (one_hot * right[..., None]).mean(0)
    payload = profile.payload_bytes[:, comp_idx].copy()
    for table in (exit_index, correct, prediction, exit_prob, exit_correct_prob, payload):
        table.flags.writeable = False
    return WorldTables(
        exit_index=exit_index,
        correct=correct,
        prediction=prediction,
        exit_prob=exit_prob,
        exit_correct_prob=exit_correct_prob,
        device_time_s=_compute_times(profile, get_device_preset(device), True),
        server_time_s=_compute_times(profile, get_server_preset(server), False),
        payload_bytes=payload.tolist(),
        exit_blocks=profile.exit_blocks,
    )


# Length of the long realisations that episodes read from a random offset (background load,
# intermittent outages, the Markov channel): one hour holds ~160 default episodes end to end.
# A modelling choice, long enough that episodes rarely overlap, short enough to realise in
# 0.1-0.3 s once per process (measured for the default, Azure, outage and Markov worlds).
WORLD_REALISATION_S = 3600.0


def episode_duration_s(cfg: dict) -> float:
    """The longest time an episode can reach: its last request's timeout (s)."""
    frame_s = cfg["frame_period_s"]
    return cfg["throughput_history"] * frame_s + cfg["horizon"] * frame_s + 2 * cfg["timeout_s"]


def realisation_s(cfg: dict) -> float:
    """Length of the shared realisations of a config (s)."""
    return max(WORLD_REALISATION_S, 2 * episode_duration_s(cfg))


@lru_cache(maxsize=16)
def _trace_channel(traces: tuple[str, ...], scale: float) -> TraceChannel:
    if len(traces) == 1 and traces[0] in SHIPPED_TRACE_KINDS:
        return TraceChannel(load_traces(shipped_trace_paths(traces[0])), scale, name=traces[0])
    return TraceChannel.from_paths(list(traces), scale)


@lru_cache(maxsize=16)
def _markov_channel(duration_s: float, seed: int, scale: float) -> TraceChannel:
    trace = default_markov_channel().sample(np.random.default_rng(seed), duration_s)
    return TraceChannel([trace], scale, name="markov")


def make_channel(cfg: dict) -> TraceChannel | FadingChannel:
    """The channel model of a config, cached per process.

    Trace and Markov channels are :class:`TraceChannel` s that episodes read from a random slot
    (``sample_shifted``; the Markov channel as one long path realised from ``world_seed``),
    with ``capacity_scale`` applied. The fading channel draws a distance, a shadowing and the
    fading of each episode (``sample``), unscaled: the env scales it.
    """
    scale = float(cfg["capacity_scale"])
    if cfg["channel"] == "trace":
        traces = cfg["traces"]
        traces = (traces,) if isinstance(traces, (str, Path)) else tuple(traces)
        return _trace_channel(tuple(str(t) for t in traces), scale)
    if cfg["channel"] == "markov":
        return _markov_channel(realisation_s(cfg), cfg["world_seed"], scale)
    return FadingChannel()


def _load_and_outages(cfg: dict):
    load = {"none": None, "markov": PoissonMarkovLoad, "trace": TraceLoad}[cfg["server_load"]]
    outages = None
    if cfg["outage"] != "none":
        outages = OutageProcess(
            cfg["outage_mean_up_s"], cfg["outage_mean_down_s"], cfg["outage"] == "permanent"
        )
    return (load() if load else None), outages


@lru_cache(maxsize=16)
def _server_world(key: tuple, duration_s: float, seed: int) -> ServerWorld:
    load, outages = _load_and_outages(dict(key))
    return ServerWorld.realise(load, outages, duration_s, seed)


def make_server(cfg: dict) -> EdgeServer:
    """The edge server of a config: background load and outages realised once from
    ``world_seed`` (cached per process), read by each episode from a random offset."""
    keys = ("server_load", "outage", "outage_mean_up_s", "outage_mean_down_s")
    key = tuple((k, cfg[k]) for k in keys)
    world = _server_world(key, realisation_s(cfg), cfg["world_seed"])
    return EdgeServer(*_load_and_outages(cfg), world=world)
