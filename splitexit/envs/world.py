"""The world one request passes through, precomputed from a profile and a config.

``WorldTables`` turns a profile into lookup tables that a step reads in O(1): which exit
answers each sample for every (split, compression, threshold), whether it is right, and how long
the device and the server compute for every (split, answering exit, heads on/off).
:func:`build_world` lays them out, with the uplink's traces, the server's realised background
load and outages, and the config's constants, as the arrays of the compiled core
(:class:`splitexit.envs.core.World`), once per config and process.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from splitexit.dnn_profiles import zoo
from splitexit.dnn_profiles.corruptions import IMAGE_STATS_FLOPS
from splitexit.dnn_profiles.hardware import (
    compute_latency_s,
    get_device_preset,
    get_server_preset,
)
from splitexit.dnn_profiles.profile import DEFAULT_PROFILE_PATH, ROBUST_PROFILE_PATH, Profile
from splitexit.envs import core
from splitexit.envs.capacity import CapacityTrace
from splitexit.envs.channel import FadingChannel, TraceChannel, default_markov_channel
from splitexit.envs.config import episode_duration_s, realisation_s
from splitexit.envs.context import demand_table
from splitexit.envs.energy import radio_model
from splitexit.envs.observation import FRAME_STATS, WAIT_UNIT_S
from splitexit.envs.server import (
    OutageProcess,
    PoissonMarkovLoad,
    ServerWorld,
    TraceLoad,
)
from splitexit.envs.traces import SHIPPED_TRACE_KINDS, load_traces, shipped_trace_paths
from splitexit.files import read_regular_file

NEVER_EXIT = float("inf")  # the top threshold: no early exit, exit heads are not even run


# The shipped profiles by name (config "profile"): the clean model's (None, SplitExit-v0), the
# corruption-trained model's under every camera condition ("robust"), and every profile of the
# model zoo by its registered name (``splitexit.dnn_profiles.zoo.PROFILES``).
SHIPPED_PROFILES = {"robust": ROBUST_PROFILE_PATH, **{n: p.path for n, p in zoo.PROFILES.items()}}


@lru_cache(maxsize=8)
def load_profile(path: str | None) -> Profile:
    """A profile by path or shipped name (None = the default), cached per process."""
    if path is None:
        return Profile.load(DEFAULT_PROFILE_PATH)
    return Profile.load(SHIPPED_PROFILES.get(path, Path(path)))


# The largest weights file live mode reads (the shipped ones: 1.1 and 2.4 MB).
MAX_WEIGHTS_BYTES = 256 << 20


def live_model(profile: Profile, weights: str | None) -> tuple[zoo.ModelSpec, Path]:
    """The registered model a profile was made of (its ``meta["model"]``) and the weights file
    live mode runs: config ``weights`` as a path, or a shipped variant's name (``"robust"``),
    or None for the model's clean weights (its only ones where it ships one variant). The file
    must be the one the profile recorded (its sha256), or live and replay would differ."""
    try:
        spec = zoo.get_model(profile.meta["model"])
    except ValueError as err:
        raise ValueError(f"{profile.source}: live mode needs a registered model ({err})") from None
    if weights is None:
        path = spec.weights.get("clean", next(iter(spec.weights.values())))
    else:
        path = spec.weights.get(weights, Path(weights))
    try:
        data = read_regular_file(path, MAX_WEIGHTS_BYTES, "weights file")
    except (OSError, ValueError) as err:
        raise ValueError(f"config key 'weights' ({weights!r}): {err}") from None
    recorded = profile.meta.get("weights_sha256")
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise ValueError(
            f"config key 'weights' ({weights!r}: {path}) is not the model the profile "
            f"({profile.source}) was made with: live and replay would differ"
        )
    return spec, Path(path)


@dataclass(frozen=True)
class WorldTables:
    """Lookup tables of one (profile, thresholds, compressions, device, server) combination.

    Shapes: N samples, S blocks, E exits, C compressions, T thresholds (the last never exits),
    K camera conditions of the profile (1 without a condition axis). The frames are the
    (condition, sample) pairs, condition-major: frame ``k * N + n`` is sample ``n`` under
    condition ``k``.
    """

    exit_index: np.ndarray  # (K*N, S+1, C, T) int8: which exit answers
    correct: np.ndarray  # (K*N, S+1, C, E) bool: whether that exit is right
    prediction: np.ndarray  # (K*N, S+1, C, E) int8
    confidence: np.ndarray  # (K*N, S+1, C, E) float32: each exit's max-softmax confidence
    exit_prob: np.ndarray  # (S+1, C, T, E) P(exit e answers), over all frames
    exit_correct_prob: np.ndarray  # (S+1, C, T, E) P(exit e answers and is right)
    exit_prob_by_condition: np.ndarray  # (K, S+1, C, T, E), over one condition's frames
    exit_correct_prob_by_condition: np.ndarray  # (K, S+1, C, T, E)
    conditions: tuple[str, ...]  # the names of the K conditions
    num_samples: int  # N
    frame_stats: np.ndarray  # (K*N, F) float32 image statistics in [0, 1]; (K*N, 0) without
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
    missing = [c for c in compressions if c not in profile.compressions]
    if missing:
        raise ValueError(
            f"config key 'compressions' asks for {missing}, but the profile ({profile.source}) "
            f"records only {list(profile.compressions)}"
        )
    comp_idx = [profile.compressions.index(c) for c in compressions]
    grid = np.asarray((*thresholds, NEVER_EXIT), np.float32)
    k, n = profile.num_conditions, profile.num_samples
    by = profile.by_condition is not None
    # (K*N, S+1, C, E): the frames of every condition, condition-major (the profile's own arrays
    # without a condition axis)
    confidence = profile.confidence_by_condition.reshape(k * n, *profile.confidence.shape[1:])
    passes = confidence[..., None, :] >= grid[:, None]  # (K*N, S+1, C, T, E), as Profile.answers
    passes[..., -1] = True
    exit_index = passes.argmax(-1).astype(np.int8)[:, :, comp_idx]
    if by:
        labels = np.tile(profile.labels, k)
        prediction = profile.prediction_by_condition.reshape(confidence.shape)[:, :, comp_idx]
        correct = prediction == labels[:, None, None, None]
    else:
        correct = profile.correct[:, :, comp_idx]
        prediction = profile.prediction[:, :, comp_idx]
    confidence = confidence[:, :, comp_idx]
    e = len(profile.exit_blocks)
    one_hot = np.eye(e, dtype=np.float64)[exit_index]  # (K*N, S+1, C, T, E)
    right = np.take_along_axis(correct, exit_index.astype(np.int64), axis=3)  # (K*N, S+1, C, T)
    right_hot = one_hot * right[..., None]
    exit_prob = one_hot.mean(0)
    exit_correct_prob = right_hot.mean(0)
    by_prob = np.stack([one_hot[j * n : (j + 1) * n].mean(0) for j in range(k)])
    by_correct = np.stack([right_hot[j * n : (j + 1) * n].mean(0) for j in range(k)])
    if profile.image_stats is not None:  # each statistic over its largest value in the profile
        stats = profile.image_stats.reshape(k * n, -1).astype(np.float64)
        frame_stats = np.clip(stats / np.maximum(stats.max(0), 1e-12), 0.0, 1.0)
        frame_stats = frame_stats.astype(np.float32)
    else:
        frame_stats = np.zeros((k * n, 0), np.float32)
    payload = profile.payload_bytes[:, comp_idx].copy()
    for table in (
        exit_index, correct, prediction, confidence, exit_prob, exit_correct_prob, by_prob,
        by_correct, frame_stats, payload,
    ):  # fmt: skip
        table.flags.writeable = False
    return WorldTables(
        exit_index=exit_index,
        correct=correct,
        prediction=prediction,
        confidence=confidence,
        exit_prob=exit_prob,
        exit_correct_prob=exit_correct_prob,
        exit_prob_by_condition=by_prob,
        exit_correct_prob_by_condition=by_correct,
        conditions=profile.conditions,
        num_samples=n,
        frame_stats=frame_stats,
        device_time_s=_compute_times(profile, get_device_preset(device), True),
        server_time_s=_compute_times(profile, get_server_preset(server), False),
        payload_bytes=payload.tolist(),
        exit_blocks=profile.exit_blocks,
    )


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
    (``splitexit.envs.core.start_episodes``; the Markov channel as one long path realised from
    ``world_seed``), with ``capacity_scale`` applied. The fading channel draws a distance, a
    shadowing and the fading of each episode (``sample``), unscaled: the env scales it.
    """
    scale = float(cfg["capacity_scale"])
    if cfg["channel"] == "trace":
        traces = cfg["traces"]
        traces = (traces,) if isinstance(traces, (str, Path)) else tuple(traces)
        return _trace_channel(tuple(str(t) for t in traces), scale)
    if cfg["channel"] == "markov":
        return _markov_channel(realisation_s(cfg), cfg["world_seed"], scale)
    return FadingChannel()


def server_processes(cfg: dict):
    load = {"none": None, "markov": PoissonMarkovLoad, "trace": TraceLoad}[cfg["server_load"]]
    outages = None
    if cfg["outage"] != "none":
        outages = OutageProcess(
            cfg["outage_mean_up_s"], cfg["outage_mean_down_s"], cfg["outage"] == "permanent"
        )
    return (load() if load else None), outages


@lru_cache(maxsize=16)
def _server_world(key: tuple, duration_s: float, seed: int) -> ServerWorld:
    load, outages = server_processes(dict(key))
    return ServerWorld.realise(load, outages, duration_s, seed)


def make_server_world(cfg: dict) -> ServerWorld:
    """The edge server's background load and outages of a config, realised once from
    ``world_seed`` (cached per process); each episode reads them from a random offset."""
    keys = ("server_load", "outage", "outage_mean_up_s", "outage_mean_down_s")
    key = tuple((k, cfg[k]) for k in keys)
    return _server_world(key, realisation_s(cfg), cfg["world_seed"])


def trace_bank(traces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Traces as the core's bank: one :data:`~splitexit.envs.core.TRACE` record per trace over
    the flat ``cum_bits`` and ``capacity_bps`` (a 0 after each trace's slots)."""
    bank = np.zeros(len(traces), core.TRACE)
    bank["size"] = [tr.capacity_bps.size for tr in traces]
    bank["offset"] = np.concatenate(([0], np.cumsum(bank["size"] + 1)[:-1]))
    bank["slot_s"] = [tr.slot_s for tr in traces]
    bank["duration_s"] = [tr.duration_s for tr in traces]
    bank["total_bits"] = [tr.cum_bits_array[-1] for tr in traces]
    cum = np.concatenate([tr.cum_bits_array for tr in traces])
    cap = np.concatenate([np.append(tr.capacity_bps, 0.0) for tr in traces])
    for array in (bank, cum, cap):
        array.flags.writeable = False
    return bank, cum, cap


def _world_key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def build_world(cfg: dict) -> core.World:
    """The compiled core's tables of a validated config, cached per process (read-only)."""
    return _build_world(_world_key(cfg))


@lru_cache(maxsize=16)
def _build_world(key: str) -> core.World:
    cfg = json.loads(key)
    profile = load_profile(cfg["profile"])
    tables = world_tables(
        cfg["profile"],
        tuple(cfg["thresholds"]),
        tuple(cfg["compressions"]),
        cfg["device"],
        cfg["server"],
    )
    n_t, n_c = len(cfg["thresholds"]) + 1, len(cfg["compressions"])
    n_splits, n_exits = profile.num_blocks + 1, len(tables.exit_blocks)
    n_actions = n_splits * n_t * n_c
    a = np.arange(n_actions)
    split, thr, comp = a // (n_t * n_c), (a // n_c) % n_t, a % n_c
    actions = np.zeros(n_actions, core.ACTION)
    actions["split"], actions["threshold_idx"], actions["compression_idx"] = split, thr, comp
    actions["threshold"] = np.asarray((*cfg["thresholds"], NEVER_EXIT), np.float64)[thr]
    actions["payload_bytes"] = np.asarray(tables.payload_bytes, np.int64)[split, comp]

    if cfg["camera"] != "none" and len(tables.conditions) == 1:
        raise ValueError(
            "config key 'camera' is 'markov', but the profile records no camera conditions "
            "(set 'profile' to one with conditions, e.g. the robust model's)"
        )
    answers = np.zeros(n_splits * n_exits * 2, core.ANSWER)  # by (split * E + exit) * 2 + heads
    answers["exit_block"] = np.repeat(np.tile(tables.exit_blocks, n_splits), 2)
    answers["device_time_s"] = np.asarray(tables.device_time_s, np.float64).reshape(-1)
    context_obs = cfg["observation"] == "context"
    if context_obs and tables.frame_stats.shape[1]:
        # the device computes its frame's statistics before deciding, on every request
        flops = profile.meta.get("image_stats_flops", IMAGE_STATS_FLOPS)
        stats_s = compute_latency_s(float(flops), get_device_preset(cfg["device"]))
        answers["device_time_s"] += stats_s
    answers["server_time_s"] = np.asarray(tables.server_time_s, np.float64).reshape(-1)
    exit_k = tables.exit_index[:, split, comp, thr].astype(np.int64)  # (N, A)
    correct = np.take_along_axis(tables.correct[:, split, comp, :], exit_k[..., None], 2)[..., 0]
    heads = (thr < n_t - 1).astype(np.int64)
    answer = core.answer_index(split, exit_k, heads, n_exits)
    answer_code = core.pack_answer(answer, correct.astype(np.int64)).astype(np.int16)
    conf = np.take_along_axis(tables.confidence[:, split, comp, :], exit_k[..., None], 2)[..., 0]
    frame_stats = tables.frame_stats
    names = tuple(profile.meta.get("image_stats_names", ()))
    if context_obs and names and names != FRAME_STATS:
        raise ValueError(
            f"config key 'observation' is 'context', which observes the frame statistics "
            f"{list(FRAME_STATS)}, but the profile {cfg['profile']!r} records {list(names)}"
        )
    if frame_stats.shape[1] != len(FRAME_STATS):  # a profile without them: zeros
        frame_stats = np.zeros((frame_stats.shape[0], len(FRAME_STATS)), np.float32)

    if cfg["channel"] == "fading":  # a trace per episode: the env lays it out at reset
        bank = trace_bank([CapacityTrace(1.0, np.zeros(1))])
    else:
        bank = trace_bank(make_channel(cfg).scaled_traces)
    server = make_server_world(cfg)
    schedule = server.schedule
    permanent = cfg["outage"] == "permanent"
    device = get_device_preset(cfg["device"])
    radio = radio_model(cfg["radio"], tail=cfg["lte_tail"])
    frame_s, timeout_s, w = cfg["frame_period_s"], cfg["timeout_s"], cfg["reward"]
    params = np.zeros(1, core.PARAMS)
    p = params[0]
    p["t0_s"] = cfg["throughput_history"] * frame_s
    p["frame_s"], p["timeout_s"], p["deadline_s"] = frame_s, timeout_s, cfg["deadline_s"]
    p["half_rtt_s"] = cfg["rtt_s"] / 2
    # A request's energy is what it adds to the device's idle draw: compute above idle, plus
    # the radio (Huang et al. 2012 model, which is likewise power above idle).
    p["compute_above_idle_w"] = max(device.compute_power_w - device.idle_power_w, 0.0)
    p["alpha_up_mw_per_mbps"], p["beta_mw"] = radio.alpha_up_mw_per_mbps, radio.beta_mw
    p["tail_enabled"], p["tail_s"] = radio.tail_enabled, radio.tail_s
    p["tail_power_mw"] = radio.tail_power_mw
    p["w_accuracy"], p["w_latency"] = w["accuracy"], w["latency"]
    p["w_energy"], p["w_deadline_miss"] = w["energy"], w["deadline_miss"]
    p["battery_j"] = math.inf if cfg["battery_j"] is None else cfg["battery_j"]
    p["horizon"], p["history"] = cfg["horizon"], cfg["throughput_history"]
    p["n_samples"], p["n_actions"], p["n_exits"] = profile.num_samples, n_actions, n_exits
    p["outage_mode"] = (
        core.PERMANENT
        if permanent
        else core.INTERMITTENT
        if schedule.down_start_s.size
        else core.NO_OUTAGES
    )
    p["duration_s"] = episode_duration_s(cfg)
    p["spare_s"] = server.duration_s - p["duration_s"]
    if not 0.0 <= p["spare_s"] < math.inf:  # (realisation_s makes it so)
        raise ValueError(f"the server's world ({server.duration_s} s) is shorter than an episode")
    p["shift_traces"] = cfg["channel"] != "fading"
    p["wait_unit_s"] = WAIT_UNIT_S
    p["obs_rtt"] = min(cfg["rtt_s"] / timeout_s, 1.0)
    p["obs_deadline"] = min(cfg["deadline_s"] / timeout_s, 1.0)
    p["battery_drop"] = cfg["battery_empty"] == "drop"
    p["context_obs"] = context_obs
    world = core.World(
        params=params,
        actions=actions,
        answers=answers,
        answer_code=answer_code.reshape(-1),
        traces=bank[0],
        cum_bits=bank[1],
        capacity_bps=bank[2],
        job_arrival_s=np.append(server.arrival_s, np.full(core.ARRIVAL_SENTINELS, np.inf)),
        job_work_before_s=server.work_before_s,
        job_g_max=server.g_max,
        down_start_s=schedule.down_start_s,
        down_end_s=schedule.down_end_s,
        cum_down_s=schedule.cum_down_s,
        up_at_start_s=schedule.up_at_start_s,
        demands=demand_table(cfg),
        answer_conf=np.ascontiguousarray(conf, np.float32).reshape(-1),
        frame_stats=np.ascontiguousarray(frame_stats),
    )
    for array in world:
        array.flags.writeable = False
    return world
