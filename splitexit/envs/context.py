"""The request's context in SplitExit-v1: the camera's conditions and the application's demands.

Two Markov chains in time, sampled at the requests (``splitexit.envs.core.start_contexts``):

* the **camera regime**: which corruption of ``splitexit.dnn_profiles.corruptions`` the frames
  go through (the profile records every exit's answer under each; live mode corrupts the real
  image alike). The regime lasts an exponential time of mean ``camera_dwell_s`` and then jumps
  to another, drawn by ``camera_mix``;
* the **application phase** (idle monitoring, an event that needs accurate answers, an
  interactive session), each with a mean dwell time; each request draws its demand class from
  its phase's mix, and the class sets its deadline and what a correct answer is worth.

The deadlines come from human-factors limits; the mixes and dwell times are the scenario of
SplitExit-v1 (config keys, switched off with ``camera="none"`` / ``demands="none"``), set here
once and never tuned against an agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from splitexit.envs import core
from splitexit.envs.observation import MAX_VALUE


@dataclass(frozen=True)
class DemandClass:
    """What one kind of request asks for."""

    name: str
    deadline_s: float
    value: float  # a correct answer's worth, as a multiple of the accuracy weight
    source: str


DEMAND_CLASSES = (
    DemandClass(
        "interactive",
        0.1,
        1.0,
        "0.1 s: the limit for a response to feel instantaneous (Nielsen, Usability Engineering, "
        "1993, ch. 5; Card, Robertson and Mackinlay, CHI 1991), as for an AR overlay that "
        "labels what the camera sees",
    ),
    DemandClass(
        "alert",
        0.3,
        4.0,
        "an event whose answer matters: issue 12's accuracy-critical class (a correct answer "
        "worth 4x, 300 ms deadline), about a human's simple visual reaction time (~0.2-0.3 s; "
        "Kosinski, A literature review on reaction time, 2008): later than that, a person "
        "watching would have reacted first",
    ),
    DemandClass(
        "monitoring",
        1.0,
        1.0,
        "1 s: the limit for the user's flow of thought to stay uninterrupted (Nielsen 1993); "
        "background logging of what the camera sees",
    ),
)


@dataclass(frozen=True)
class Phase:
    """A phase of the application: how long it lasts and the demands it makes."""

    name: str
    weight: float  # the initial mix and the jumps' weights
    mean_dwell_s: float
    mix: tuple[float, ...]  # over DEMAND_CLASSES


# The scenario of SplitExit-v1 (an assumption, stated): mostly idle monitoring, with
# interactive sessions and short events that need accurate answers.
PHASES = (
    Phase("idle", 0.5, 20.0, (0.1, 0.0, 0.9)),
    Phase("event", 0.2, 5.0, (0.0, 0.8, 0.2)),
    Phase("interactive", 0.3, 15.0, (0.9, 0.0, 0.1)),
)

# The camera regime's mean dwell: the average shot length of recent feature films, ~4-5 s
# (Cutting, DeLong and Nothelfer, Psychological Science 2010), as a proxy for how long a moving
# camera keeps one visual condition.
CAMERA_DWELL_S = 5.0
# Its mix (an assumption, stated): clean frames half of the time, each adverse condition alike.
CLEAN_SHARE = 0.5


# The energy budget of SplitExit-v1: a small camera's battery, 1000 mAh at 3.7 V (a common
# single-cell LiPo of wearable and ESP32-CAM-class cameras; 3.7 V is the cell's nominal
# voltage), that must last a day of operation (24 h between charges), spent evenly: the
# inference's share of each second is BATTERY_WH * 3600 / LIFETIME_S joules (~154 mW), and an
# episode gets that many joules per second it lasts.
BATTERY_WH = 1.0 * 3.7  # 1000 mAh x 3.7 V
LIFETIME_S = 24 * 3600.0
BUDGET_W = BATTERY_WH * 3600.0 / LIFETIME_S


def episode_budget_j(horizon: int, frame_s: float) -> float:
    """The battery budget of an episode of ``horizon`` requests every ``frame_s`` (J)."""
    return BUDGET_W * horizon * frame_s


def camera_mix(conditions: tuple[str, ...]) -> np.ndarray:
    """The default weights of a profile's conditions: :data:`CLEAN_SHARE` on "clean", the rest
    evenly on the others."""
    k = len(conditions)
    if k == 1:
        return np.ones(1)
    mix = np.full(k, (1.0 - CLEAN_SHARE) / (k - 1))
    mix[conditions.index("clean")] = CLEAN_SHARE
    return mix


def stay_probability(mean_dwell_s: np.ndarray, frame_s: float) -> np.ndarray:
    """Probability that an exponential dwell of mean ``mean_dwell_s`` outlasts one frame."""
    return np.exp(-frame_s / np.asarray(mean_dwell_s, dtype=np.float64))


def demand_table(cfg: dict) -> np.ndarray:
    """The :data:`splitexit.envs.core.DEMAND` rows of a config: :data:`DEMAND_CLASSES` with
    ``demands="markov"``, else one class with the config's deadline, worth 1."""
    if cfg["demands"] == "none":
        classes = [(cfg["deadline_s"], 1.0)]
    else:
        classes = [(d.deadline_s, d.value) for d in DEMAND_CLASSES]
    table = np.zeros(len(classes), core.DEMAND)
    for k, (deadline_s, value) in enumerate(classes):
        table[k] = (
            deadline_s,
            value,
            min(deadline_s / cfg["timeout_s"], 1.0),
            min(value / MAX_VALUE, 1.0),
        )
    return table


@dataclass(frozen=True)
class ContextChains:
    """The chains' tables, as ``splitexit.envs.core.start_contexts`` takes them."""

    camera_cum: np.ndarray
    camera_stay: np.ndarray
    phase_cum: np.ndarray
    phase_stay: np.ndarray
    phase_mix_cum: np.ndarray

    def __iter__(self):
        return iter(
            (self.camera_cum, self.camera_stay, self.phase_cum, self.phase_stay, self.phase_mix_cum)
        )


def context_chains(cfg: dict, conditions: tuple[str, ...]) -> ContextChains:
    """The chains of a config whose profile records ``conditions``."""
    frame_s = cfg["frame_period_s"]
    if cfg["camera"] == "none":
        cam_mix, cam_stay = np.ones(1), np.ones(1)
    else:
        cam_mix = camera_mix(conditions)
        cam_stay = stay_probability(np.full(len(conditions), cfg["camera_dwell_s"]), frame_s)
    if cfg["demands"] == "none":
        ph_mix, ph_stay, mixes = np.ones(1), np.ones(1), np.ones((1, 1))
    else:
        ph_mix = np.array([ph.weight for ph in PHASES])
        ph_stay = stay_probability([ph.mean_dwell_s for ph in PHASES], frame_s)
        mixes = np.array([ph.mix for ph in PHASES])

    def cum(weights: np.ndarray) -> np.ndarray:
        c = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
        c[..., -1] = 1.0
        return c

    chains = ContextChains(cum(cam_mix), cam_stay, cum(ph_mix), ph_stay, cum(mixes))
    for array in chains:
        array.flags.writeable = False
    assert all(math.isfinite(x) for x in np.concatenate([a.ravel() for a in chains]))
    return chains
