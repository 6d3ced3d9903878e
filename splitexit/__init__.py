"""splitexit: a Gymnasium environment for split computing and early exiting of DNN inference.

Importing the package registers the environment ids (idempotently), so
``gym.make("splitexit:SplitExit-v0")`` works in any process.
"""

from __future__ import annotations

import gymnasium as gym

__version__ = "0.1.0"

ENTRY_POINT = "splitexit.envs.splitexit_env:SplitExitEnv"
# The native vector env: ``gym.make_vec(id, num_envs=N)`` uses it by default.
VECTOR_ENTRY_POINT = "splitexit.envs.vector:SplitExitVectorEnv"

# The draft of SplitExit-v1 (issue 12), on Fashion-MNIST, where it has no headroom
# (splitexit/benchmarks/bench_v1.py and bench_ceiling.py, docs/results.md); V1 below is it on
# CIFAR-10.
# As a config: gym.make("splitexit:SplitExit-v0", config=splitexit.V1_DRAFT).
# The request's context (splitexit/envs/context.py): camera conditions on the
# corruption-trained model, application demands, a battery budget that drops requests when
# spent (a day's share of a 1000 mAh cell, context.episode_budget_j), and what the device
# observes of them; 60 s episodes, so that phases and regimes change within one.
V1_DRAFT: dict = {
    "profile": "robust",
    "weights": "robust",
    "camera": "markov",
    "demands": "markov",
    "observation": "context",
    "horizon": 600,
    "frame_period_s": 0.1,  # as v0's
    "battery_j": 9.25,  # envs.context.episode_budget_j(600, 0.1): 154 mW for 60 s (tested)
    "battery_empty": "drop",
}

# SplitExit-v1 (issue 20): the draft's mechanisms on the CIFAR-10 workload, in the world whose
# headroom `splitexit bench ceiling` measures: the split multi-exit ResNet's profile under
# the nine camera conditions (its corruption-trained weights for live mode) on the MLPerf Tiny
# CIFAR-10 board (``mcu``, an STM32H7 Cortex-M7), which runs the 10-MFLOP head within the frame
# period but not the 135-MFLOP whole net: a device that can afford only the head, as in the
# split-computing works the survey reviews (docs/world.md, "SplitExit-v1"). Its Fashion-MNIST form
# is one config away: {"profile": "robust", "weights": "robust", "device": "mcu-m4"}.
# gym.make("splitexit:SplitExit-v1") is gym.make("splitexit:SplitExit-v0", config=splitexit.V1).
V1: dict = {
    **V1_DRAFT,
    "profile": "cifar10-multiexit-resnet",
    "weights": "robust",
    "device": "mcu",
}

# Env ids are presets of the one config (splitexit.envs.default_config()).
ENV_PRESETS: dict[str, dict] = {
    "SplitExit-v0": {},
    "SplitExitMarkov-v0": {"channel": "markov"},
    "SplitExitFading-v0": {"channel": "fading"},
    "SplitExitLive-v0": {"mode": "live"},
    "SplitExitOutage-v0": {"outage": "intermittent"},
    "SplitExit-v1": V1,
}
# Live mode runs torch per request and the fading channel draws a trace per episode: these ids
# vectorise with vectorization_mode="sync" or "async" only.
NOT_VECTORISED = ("SplitExitFading-v0", "SplitExitLive-v0")


def register_envs() -> None:
    """Register every id of ``ENV_PRESETS`` that is not registered yet, also under its
    ``splitexit:`` form: ``gym.make`` resolves that form by itself, but tools that look the id
    up in the registry first (the RL Zoo's ``--env splitexit:SplitExit-v0``) need the entry."""
    for env_id, preset in ENV_PRESETS.items():
        for name in (env_id, f"splitexit:{env_id}"):
            if name not in gym.registry:
                gym.register(
                    id=name,
                    entry_point=ENTRY_POINT,
                    vector_entry_point=None if env_id in NOT_VECTORISED else VECTOR_ENTRY_POINT,
                    kwargs={"preset": dict(preset)},
                )


register_envs()
