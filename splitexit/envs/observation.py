"""What the device observes: one layout that names every feature and its place.

An observation is ``H`` uplink throughputs (the last ``H`` frame periods, oldest first) followed
by the features of :data:`FEATURES`, each in ``[0, 1]``. Throughputs are on a log scale,
``log1p(Mbit/s) / log1p(MAX_THROUGHPUT_MBPS)``; waits (the server's reported queue, the device's
own backlog) as ``log1p(wait / WAIT_UNIT_S) / log1p(MAX_BACKLOG_FRAMES * frame_period_s /
WAIT_UNIT_S)``, where the differences that matter (a few ms to a deadline) stay visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_THROUGHPUT_MBPS = 100.0  # throughput features saturate here (log scale)
MAX_BACKLOG_FRAMES = 10.0  # waits saturate at this many frame periods
WAIT_UNIT_S = 1e-3  # waits are observed on a log scale from 1 ms

# The features after the throughput history, in order (offsets for the compiled core).
FEATURES = ("rtt", "server_queue", "server_reachable", "device_backlog", "battery", "deadline")
OBS_RTT, OBS_SERVER_QUEUE, OBS_SERVER_REACHABLE, OBS_DEVICE_BACKLOG, OBS_BATTERY, OBS_DEADLINE = (
    range(len(FEATURES))
)
# The request's context (config "observation": "context", SplitExit-v1), after FEATURES: the
# share of the episode's requests still to come, what a correct answer to this one is worth,
# statistics of the current frame the device computes before deciding (FRAME_STATS), and the
# confidence and exit of the latest answer back on the device.
FRAME_STATS = ("brightness", "contrast", "sharpness")
CONTEXT_FEATURES = ("requests_left", "value", *FRAME_STATS, "last_confidence", "last_exit")
OBS_REQUESTS_LEFT = len(FEATURES)
OBS_VALUE = OBS_REQUESTS_LEFT + 1
OBS_STATS = OBS_VALUE + 1
OBS_LAST_CONFIDENCE = OBS_STATS + len(FRAME_STATS)
OBS_LAST_EXIT = OBS_LAST_CONFIDENCE + 1
MAX_VALUE = 10.0  # the value feature saturates here (value / MAX_VALUE)


@dataclass(frozen=True)
class ObservationLayout:
    """Where each feature sits in an observation of a config with ``history`` throughputs."""

    history: int
    frame_s: float
    timeout_s: float
    context: bool = False  # with CONTEXT_FEATURES

    @property
    def features(self) -> tuple[str, ...]:
        """The features after the throughput history, in order."""
        return FEATURES + CONTEXT_FEATURES if self.context else FEATURES

    @property
    def size(self) -> int:
        return self.history + len(self.features)

    @property
    def throughput(self) -> slice:
        return slice(0, self.history)

    def index(self, feature: str) -> int:
        """Position of one of :attr:`features`."""
        if feature not in self.features:
            raise ValueError(f"feature must be one of {list(self.features)}, got {feature!r}")
        return self.history + self.features.index(feature)

    @property
    def slices(self) -> dict[str, slice]:
        """Every feature's slice, the throughput history first."""
        h = self.history
        return {"uplink_throughput": self.throughput} | {
            name: slice(h + k, h + k + 1) for k, name in enumerate(self.features)
        }

    @property
    def wait_scale(self) -> float:
        """``log1p`` of the longest observed wait, in wait units."""
        return math.log1p(MAX_BACKLOG_FRAMES * self.frame_s / WAIT_UNIT_S)

    def decode(self, observation: np.ndarray) -> dict[str, Any]:
        """An observation in physical units (what a heuristic policy may use)."""
        obs = np.asarray(observation, dtype=np.float64)

        def wait_s(feature: str) -> float:
            return math.expm1(obs[self.index(feature)] * self.wait_scale) * WAIT_UNIT_S

        decoded = {
            "uplink_bps": np.expm1(obs[self.throughput] * np.log1p(MAX_THROUGHPUT_MBPS)) * 1e6,
            "rtt_s": obs[self.index("rtt")] * self.timeout_s,
            "server_queue_s": wait_s("server_queue"),
            "server_reachable": bool(obs[self.index("server_reachable")] > 0.5),
            "device_backlog_s": wait_s("device_backlog"),
            "battery_fraction": obs[self.index("battery")],
            "deadline_s": obs[self.index("deadline")] * self.timeout_s,
        }
        if self.context:
            decoded |= {
                "requests_left_fraction": obs[self.index("requests_left")],
                "value": obs[self.index("value")] * MAX_VALUE,
                **{name: obs[self.index(name)] for name in FRAME_STATS},
                "last_confidence": obs[self.index("last_confidence")],
                "last_exit_fraction": obs[self.index("last_exit")],
            }
        return decoded
