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
    """A phase of the application: its share of the time, how long it lasts, its demands."""

    name: str
    share: float  # of the time, in the long run
    mean_dwell_s: float
    mix: tuple[float, ...]  # over DEMAND_CLASSES


# The scenario of SplitExit-v1 (an assumption, stated): mostly idle monitoring, with
# interactive sessions and short events that need accurate answers.
PHASES = (
    Phase("idle", 0.5, 20.0, (0.1, 0.0, 0.9)),
    Phase("event", 0.2, 5.0, (0.0, 0.8, 0.2)),
    Phase("interactive", 0.3, 15.0, (0.9, 0.0, 0.1)),
)  # the shares of time sum to 1

# The camera regime's mean dwell: the average shot length of recent feature films, ~4-5 s
# (Cutting, DeLong and Nothelfer, Psychological Science 2010), as a proxy for how long a moving
# camera keeps one visual condition.
CAMERA_DWELL_S = 5.0
# Its shares of the time (an assumption, stated): clean frames half of the time, each adverse
# condition alike.
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
    if "clean" not in conditions:
        raise ValueError(
            f"config key 'camera' is 'markov', but the profile's conditions {list(conditions)} "
            "have none named 'clean' (the camera's regime spends its clean share there)"
        )
    mix = np.full(k, (1.0 - CLEAN_SHARE) / (k - 1))
    mix[conditions.index("clean")] = CLEAN_SHARE
    return mix


def jump_matrix(shares: np.ndarray, mean_dwell_s: np.ndarray) -> np.ndarray:
    """``(K, K)`` probabilities that a chain leaving state ``i`` jumps to ``j`` (never to
    ``i``) so that, with exponential dwells of means ``mean_dwell_s``, it spends ``shares`` of
    the time in each state.

    The visits must follow the law ``nu`` proportional to ``shares / mean_dwell_s``; a jump
    chain without self-jumps has it only if no state has more than half of the visits
    (``ValueError`` otherwise). At exactly half, the chain alternates between that state and
    the others (drawn by ``nu``). Below, jumps go to ``j`` with ``w_j / (1 - w_i)``, whose jump
    chain's law is proportional to ``w_i (1 - w_i)``: ``w`` solves ``w (1 - w) = c nu`` with
    ``sum(w) = 1`` (bisection on ``c``; the root above 1/2 for the most visited state when the
    roots below cannot sum to 1)."""
    nu = np.asarray(shares, np.float64) / np.asarray(mean_dwell_s, np.float64)
    nu = nu / nu.sum()
    k = nu.size
    if k == 1:
        return np.ones((1, 1))
    top = int(np.argmax(nu))
    if nu[top] > 0.5 + 1e-9:
        raise ValueError(
            f"shares {list(shares)} with mean dwells {list(mean_dwell_s)} s: a state would need "
            "over half of the visits (make its dwell longer)"
        )
    if nu[top] >= 0.5 - 1e-9:  # alternate: the top state, then one of the others
        jump = np.zeros((k, k))
        jump[:, top] = 1.0
        jump[top] = nu / (1.0 - nu[top])
        jump[top, top] = 0.0
        return jump

    def weights(c: float, big: bool) -> np.ndarray:
        root = np.sqrt(np.maximum(1.0 - 4.0 * c * nu, 0.0))
        w = (1.0 - root) / 2.0
        if big:
            w[top] = (1.0 + root[top]) / 2.0
        return w

    c_max = 1.0 / (4.0 * nu[top])
    big = weights(c_max, False).sum() < 1.0
    lo, hi = (c_max * 1e-12, c_max) if big else (0.0, c_max)
    for _ in range(200):  # the sum rises with c on the small roots, falls with the big one
        mid = (lo + hi) / 2.0
        if (weights(mid, big).sum() < 1.0) != big:
            lo = mid
        else:
            hi = mid
    w = weights((lo + hi) / 2.0, big)
    jump = np.tile(w, (k, 1))
    np.fill_diagonal(jump, 0.0)
    return jump / jump.sum(axis=1, keepdims=True)


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
    """The chains' tables, as ``splitexit.envs.core.start_contexts`` takes them (cumulative
    distributions: the first state's, by the shares of time; the jumps' from each state)."""

    camera_start_cum: np.ndarray
    camera_jump_cum: np.ndarray
    camera_stay: np.ndarray
    phase_start_cum: np.ndarray
    phase_jump_cum: np.ndarray
    phase_stay: np.ndarray
    phase_mix_cum: np.ndarray

    def __iter__(self):
        return iter(
            (
                self.camera_start_cum, self.camera_jump_cum, self.camera_stay,
                self.phase_start_cum, self.phase_jump_cum, self.phase_stay, self.phase_mix_cum,
            )
        )  # fmt: skip


def context_chains(cfg: dict, conditions: tuple[str, ...]) -> ContextChains:
    """The chains of a config whose profile records ``conditions``."""
    frame_s = cfg["frame_period_s"]
    if cfg["camera"] == "none":
        cam_share, cam_dwell = np.ones(1), np.ones(1)
    else:
        cam_share = camera_mix(conditions)
        cam_dwell = np.full(len(conditions), cfg["camera_dwell_s"])
    if cfg["demands"] == "none":
        ph_share, ph_dwell, mixes = np.ones(1), np.ones(1), np.ones((1, 1))
    else:
        ph_share = np.array([ph.share for ph in PHASES])
        ph_dwell = np.array([ph.mean_dwell_s for ph in PHASES])
        mixes = np.array([ph.mix for ph in PHASES])

    def cum(weights: np.ndarray) -> np.ndarray:
        c = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
        c[..., -1] = 1.0
        return c

    chains = ContextChains(
        cum(cam_share), cum(jump_matrix(cam_share, cam_dwell)),
        stay_probability(cam_dwell, frame_s) if cam_share.size > 1 else np.ones(1),
        cum(ph_share), cum(jump_matrix(ph_share, ph_dwell)),
        stay_probability(ph_dwell, frame_s) if ph_share.size > 1 else np.ones(1),
        cum(mixes),
    )  # fmt: skip
    for array in chains:
        array.flags.writeable = False
    assert all(math.isfinite(x) for x in np.concatenate([a.ravel() for a in chains]))
    return chains
