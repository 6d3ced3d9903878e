"""The environment's configuration: one ``default_config()``, validated with clear errors.

Every world constant that is not a config choice lives with its source in the module that uses
it (``dnn_profiles.hardware``, ``envs.channel``, ``envs.server``, ``envs.energy``). The defaults
here are the scenario; their rationale is given beside each key.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from splitexit.dnn_profiles import zoo
from splitexit.dnn_profiles.hardware import DEVICE_PRESETS, LTE_EDGE_RTT_S, SERVER_PRESETS
from splitexit.dnn_profiles.profile import COMPRESSIONS
from splitexit.envs.context import CAMERA_DWELL_S
from splitexit.envs.core import REWARD_KEYS
from splitexit.envs.energy import RADIO_MODELS
from splitexit.envs.server import DEFAULT_MEAN_DOWN_S, DEFAULT_MEAN_UP_S

CHANNELS = ("trace", "markov", "fading")
SERVER_LOADS = ("none", "markov", "trace")
OUTAGES = ("none", "intermittent", "permanent")
BATTERY_EMPTY = ("terminate", "drop")
CAMERAS = ("none", "markov")
DEMANDS = ("none", "markov")
OBSERVATIONS = ("basic", "context")
MODES = ("replay", "live")
ACTION_TYPES = ("discrete", "multidiscrete")

# Reward weights: reward = accuracy * correct - latency * latency_s - energy * energy_j
#                          - deadline_miss * missed   (per request; latency in s, energy in J).
# The presets weigh a 1-point accuracy gain (0.01) like 20 ms of latency ("balanced"), 5 ms
# ("latency-critical") or 1 mJ of energy ("battery-saver").
REWARD_PRESETS: dict[str, dict[str, float]] = {
    "balanced": {"accuracy": 1.0, "latency": 0.5, "energy": 1.0, "deadline_miss": 0.5},
    "latency-critical": {"accuracy": 1.0, "latency": 2.0, "energy": 0.5, "deadline_miss": 1.0},
    "battery-saver": {"accuracy": 1.0, "latency": 0.25, "energy": 10.0, "deadline_miss": 0.25},
}


def default_config() -> dict[str, Any]:
    """The default configuration of ``SplitExit-v0`` (units in the key names)."""
    return {
        # What runs: "replay" steps from the profile, "live" executes the torch model.
        "mode": "replay",
        # The profile: a .json path, None (the shipped clean model's) or "robust" (the shipped
        # corruption-trained model's, under every camera condition); live mode's weights alike.
        "profile": None,
        "weights": None,
        # Hardware presets (dnn_profiles/hardware.py) and radio (envs/energy.py): a Cortex-M4
        # sensor board (MLPerf Tiny figures) with an LTE modem, next to an edge GPU.
        "device": "mcu-m4",
        "server": "edge-gpu",
        "radio": "lte",
        "lte_tail": False,
        # Uplink channel.
        "channel": "trace",
        "traces": "mahimahi-up",  # a shipped set, or a list of trace files / folders
        "capacity_scale": 1.0,
        "rtt_s": LTE_EDGE_RTT_S,  # device <-> edge server over LTE (CMU Living Edge Lab 2022)
        # Edge server.
        "server_load": "markov",
        "outage": "none",
        "outage_mean_up_s": DEFAULT_MEAN_UP_S,
        "outage_mean_down_s": DEFAULT_MEAN_DOWN_S,
        # Requests: a 10 frame/s camera, each answer due before the next frame.
        "frame_period_s": 0.1,
        "deadline_s": 0.1,
        "timeout_s": 1.0,
        "horizon": 200,
        # Actions.
        "thresholds": [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99],  # + "never exit early", always
        "compressions": ["int8"],
        "action_type": "discrete",
        # Reward: a preset name or a dict with the keys of REWARD_KEYS.
        "reward": "balanced",
        # Observation: how many past frame periods of measured uplink throughput.
        "throughput_history": 4,
        "battery_j": None,  # None = mains-powered; else a budget per episode (J)
        # When it is spent: "terminate" the episode, or "drop" every later request (no energy
        # to compute or send: no answer, a missed deadline) until the horizon.
        "battery_empty": "terminate",
        # The request's context (SplitExit-v1, splitexit/envs/context.py): camera conditions
        # ("markov": corruptions of the profile's frames, changing regime; the profile must
        # record conditions), application demands ("markov": per-request deadline and value),
        # and what the device observes of them ("context": the features of
        # observation.CONTEXT_FEATURES after the basic ones).
        "camera": "none",
        "camera_dwell_s": CAMERA_DWELL_S,
        "demands": "none",
        "observation": "basic",
        # Seed of the long realisations that every episode reads from a random offset (server
        # background load, intermittent outages, the Markov channel); the env's own seed
        # draws the offsets. Change it to train or evaluate in another realised world.
        "world_seed": 0,
    }


# What each key of ``default_config()`` means, with its units and sources: the one source of the
# documentation site's configuration table (docs/configuration.md, generated at build time).
# tests/envs/test_config.py holds it to the keys of ``default_config()``, both ways.
CONFIG_DOCS: dict[str, str] = {
    "mode": '``"replay"`` (from the profile) or ``"live"`` (runs the model).',
    "profile": (
        'Path of a profile ``.json`` (None: the shipped one; ``"robust"``: the '
        "corruption-trained model's, under every camera condition; or a name of the model zoo's "
        "``zoo.PROFILES``)."
    ),
    "weights": (
        'Live mode: ``.safetensors`` weights (None: the shipped ones; ``"robust"``: the '
        "corruption-trained model)."
    ),
    "device": (
        "Device preset (``splitexit.dnn_profiles.hardware.DEVICE_PRESETS``: ``mcu-m4``, ``mcu``, "
        "``rpi4``, ``jetson-nano``, ``phone``); the default is a Cortex-M4 board (MLPerf Tiny "
        "v1.0 figures)."
    ),
    "server": "Edge-server preset (``SERVER_PRESETS``).",
    "radio": '``"lte"``, ``"wifi"`` or ``"3g"`` power model (Huang et al. 2012).',
    "lte_tail": "Add the LTE tail energy (11.576 s at 1060 mW) between transmissions.",
    "channel": '``"trace"``, ``"markov"`` or ``"fading"``.',
    "traces": (
        'A shipped set (``"mahimahi-up"``, ``"pensieve"``) or a list of trace files/folders '
        "(mahimahi or Pensieve format)."
    ),
    "capacity_scale": ("Multiplies the uplink capacity: 0 (no uplink) or in [0.001, 1000]."),
    "rtt_s": "Round trip device <-> edge server over LTE, s (CMU Living Edge Lab, 2022).",
    "server_load": (
        'Background load: ``"none"``, ``"markov"`` (Markov-modulated Poisson) or ``"trace"`` '
        "(Azure LLM inference arrivals)."
    ),
    "outage": '``"none"``, ``"intermittent"`` or ``"permanent"``.',
    "outage_mean_up_s": "Mean up period of the outage process, s.",
    "outage_mean_down_s": "Mean down period of the outage process, s.",
    "frame_period_s": "Time between requests (a 10 frame/s camera), s.",
    "deadline_s": (
        "A request later than this counts as a deadline miss (before the next frame), s."
    ),
    "timeout_s": "A request is dropped after this, s.",
    "horizon": "Requests per episode.",
    "thresholds": ('Early-exit thresholds on the max softmax; "never exit early" is always added.'),
    "compressions": (
        "Payload formats the agent may choose from (``float32``, ``float16``, ``int8``)."
    ),
    "action_type": '``"discrete"`` or ``"multidiscrete"``.',
    "reward": (
        '``"balanced"``, ``"latency-critical"``, ``"battery-saver"`` (``REWARD_PRESETS``) or a '
        "dict of the four weights."
    ),
    "throughput_history": "Frame periods of measured throughput in the observation.",
    "battery_j": "Energy budget of an episode, J (None: mains powered).",
    "battery_empty": (
        'When the budget is spent: end the episode (``"terminate"``), or ``"drop"`` every later '
        "request (no answer, deadline missed) until the horizon."
    ),
    "camera": (
        '``"markov"``: the frames go through the profile\'s camera conditions (a regime that '
        "changes); needs a profile with conditions."
    ),
    "camera_dwell_s": (
        "Mean time a camera regime lasts, s (the average shot length of recent films, Cutting "
        "et al. 2010, as a proxy)."
    ),
    "demands": ("``\"markov\"``: each request's deadline and value from its application's phase."),
    "observation": '``"context"`` adds the request\'s context to the observation.',
    "world_seed": (
        "Seed of the long realisations episodes are cut from (server background load, "
        "intermittent outages, the Markov channel)."
    ),
}

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


# Bounds on what a config may make the world realise (time and memory), each far beyond the
# scenarios of this project. An episode of at most a day: its server world holds ~7 million
# background jobs at the heaviest default load (0.8 / 10 ms), ~170 MB.
MAX_EPISODE_S = 86_400.0
# Intermittent outages: at most a million up/down periods in a realisation (~50 MB).
MAX_OUTAGE_PERIODS = 1_000_000
# Capacity scale: beyond 1000 the shipped LTE uplinks (0.8-13 Mbit/s) exceed any cellular
# uplink by orders of magnitude (and far scales overflow the traces' bit counts).
MAX_CAPACITY_SCALE = 1_000.0
# ... and below 1/1000 (but above 0, no uplink at all) a payload would take more laps of a trace
# than float64 counts exactly: 0.8 kbit/s at the least is already far below any usable uplink.
MIN_CAPACITY_SCALE = 1e-3


# At most this many thresholds: the world's tables grow by ~4.4 MB per threshold on the
# shipped v0 profile and ~44 MB on a profile with nine camera conditions (1.4 GB at 32), four
# times the default grid.
MAX_THRESHOLDS = 32
# Reward weights up to 1e6: with latencies up to 60 s, a request's energy below 1e3 J and the
# indicators 0/1, every reward stays within 1e11 in magnitude, finite in float32 and float64.
MAX_REWARD_WEIGHT = 1e6


def _fail(key: str, allowed: str, value: Any) -> ValueError:
    return ValueError(f"config key {key!r} must be {allowed}, got {value!r}")


def _choice(cfg: dict, key: str, options: Sequence[str]) -> None:
    if not isinstance(cfg[key], str) or cfg[key] not in options:
        raise _fail(key, f"one of {list(options)}", cfg[key])


def _is_finite_number(v: Any) -> bool:
    """A finite int or float (an int too large for a float is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


# Names config keys "profile" and "weights" take besides paths (envs.world.SHIPPED_PROFILES).
SHIPPED_NAMES = frozenset({"robust", "clean", *zoo.PROFILES})


def _is_path(v: Any) -> bool:
    """A non-empty string or path (the empty string would name the working directory)."""
    return isinstance(v, (str, os.PathLike)) and str(v) != ""


def _number(cfg: dict, key: str, lo: float, hi: float = math.inf, lo_open=False) -> None:
    v = cfg[key]
    ok = _is_finite_number(v)
    ok = ok and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise _fail(key, f"a finite number {bound}" + (f" and <= {hi}" if hi < math.inf else ""), v)


def make_config(config: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """``default_config()`` updated with ``config`` and ``kwargs``, validated."""
    cfg = default_config()
    overrides = {**dict(config or {}), **kwargs}
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown config key {unknown[0]!r}; known keys: {sorted(cfg)}")
    cfg.update(copy.deepcopy(overrides))
    _choice(cfg, "mode", MODES)
    _choice(cfg, "device", list(DEVICE_PRESETS))
    _choice(cfg, "server", list(SERVER_PRESETS))
    _choice(cfg, "radio", list(RADIO_MODELS))
    _choice(cfg, "channel", CHANNELS)
    _choice(cfg, "server_load", SERVER_LOADS)
    _choice(cfg, "outage", OUTAGES)
    _choice(cfg, "action_type", ACTION_TYPES)
    _choice(cfg, "battery_empty", BATTERY_EMPTY)
    _choice(cfg, "camera", CAMERAS)
    _choice(cfg, "demands", DEMANDS)
    _choice(cfg, "observation", OBSERVATIONS)
    _number(cfg, "camera_dwell_s", 0.0, MAX_EPISODE_S, lo_open=True)
    if not isinstance(cfg["lte_tail"], bool):
        raise _fail("lte_tail", "True or False", cfg["lte_tail"])
    _number(cfg, "capacity_scale", 0.0, MAX_CAPACITY_SCALE)
    if 0 < cfg["capacity_scale"] < MIN_CAPACITY_SCALE:
        raise _fail(
            "capacity_scale",
            f"0 (no uplink) or a number in [{MIN_CAPACITY_SCALE}, {MAX_CAPACITY_SCALE}]",
            cfg["capacity_scale"],
        )
    _number(cfg, "rtt_s", 0.0, 10.0)
    _number(cfg, "outage_mean_up_s", 0.0, lo_open=True)
    _number(cfg, "outage_mean_down_s", 0.0, lo_open=True)
    _number(cfg, "frame_period_s", 0.0, 60.0, lo_open=True)
    _number(cfg, "deadline_s", 0.0, 60.0)
    _number(cfg, "timeout_s", 0.0, 60.0, lo_open=True)
    h = cfg["horizon"]
    if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 1_000_000:
        raise _fail("horizon", "an integer in 1..1000000", h)
    ws = cfg["world_seed"]
    if isinstance(ws, bool) or not isinstance(ws, int) or ws < 0:
        raise _fail("world_seed", "an integer >= 0", ws)
    n = cfg["throughput_history"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
        raise _fail("throughput_history", "an integer in 1..64", n)
    thr = cfg["thresholds"]
    if (
        not isinstance(thr, (list, tuple))
        or len(thr) > MAX_THRESHOLDS
        or not all(_is_finite_number(t) and 0.0 <= t <= 1.0 for t in thr)
        or list(thr) != sorted(set(thr))
    ):
        raise _fail(
            "thresholds",
            f"a strictly increasing list of at most {MAX_THRESHOLDS} numbers in [0, 1]",
            thr,
        )
    comps = cfg["compressions"]
    if (
        not isinstance(comps, (list, tuple))
        or not comps
        or not all(c in COMPRESSIONS for c in comps)
        or len(set(comps)) != len(comps)
    ):
        raise _fail("compressions", f"a non-empty list of distinct items of {COMPRESSIONS}", comps)
    cfg["reward"] = reward_weights(cfg["reward"])
    if cfg["battery_j"] is not None:
        _number(cfg, "battery_j", 0.0, lo_open=True)
    traces = cfg["traces"]
    if not (
        _is_path(traces)
        or (isinstance(traces, (list, tuple)) and traces and all(_is_path(t) for t in traces))
    ):
        raise _fail("traces", "a shipped trace set name or a non-empty list of paths", traces)
    for key in ("profile", "weights"):
        v = cfg[key]
        if v is not None and not _is_path(v):
            raise _fail(key, "None, a shipped name or the path of a file", v)
        if v is not None and str(v) not in SHIPPED_NAMES and Path(v).is_dir():
            raise _fail(key, "None, a shipped name or the path of a file (not a folder)", v)
    _check_bounded(cfg)
    return cfg


def _check_bounded(cfg: dict) -> None:
    """Reject configs whose world would take unbounded time or memory to realise."""
    duration_s = episode_duration_s(cfg)
    if duration_s > MAX_EPISODE_S:
        raise ValueError(
            f"config keys 'horizon', 'frame_period_s' (and 'throughput_history', 'timeout_s') "
            f"make an episode of {duration_s:g} s; at most {MAX_EPISODE_S:g} s is allowed"
        )
    if cfg["outage"] == "intermittent":
        periods = realisation_s(cfg) / (cfg["outage_mean_up_s"] + cfg["outage_mean_down_s"])
        if periods > MAX_OUTAGE_PERIODS:
            raise ValueError(
                f"config keys 'outage_mean_up_s' + 'outage_mean_down_s' = "
                f"{cfg['outage_mean_up_s'] + cfg['outage_mean_down_s']:g} s give "
                f"{periods:.3g} outages per {realisation_s(cfg):g} s realisation; at most "
                f"{MAX_OUTAGE_PERIODS} are allowed (make the periods longer)"
            )


def reward_weights(reward: str | Mapping[str, float]) -> dict[str, float]:
    """Weights of a reward preset name, or a validated dict of weights."""
    if isinstance(reward, str):
        if reward not in REWARD_PRESETS:
            raise _fail("reward", f"one of {list(REWARD_PRESETS)} or a dict of weights", reward)
        return dict(REWARD_PRESETS[reward])
    if not isinstance(reward, Mapping) or set(reward) != set(REWARD_KEYS):
        raise _fail(
            "reward", f"a preset name or a dict with exactly the keys {REWARD_KEYS}", reward
        )
    for k, v in reward.items():
        if not _is_finite_number(v) or not 0 <= v <= MAX_REWARD_WEIGHT:
            raise _fail(f"reward.{k}", f"a number in [0, {MAX_REWARD_WEIGHT:g}]", v)
    return {k: float(reward[k]) for k in REWARD_KEYS}
