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


@dataclass(frozen=True)
class ObservationLayout:
    """Where each feature sits in an observation of a config with ``history`` throughputs."""

    history: int
    frame_s: float
    timeout_s: float

    @property
    def size(self) -> int:
        return self.history + len(FEATURES)

    @property
    def throughput(self) -> slice:
        return slice(0, self.history)

    def index(self, feature: str) -> int:
        """Position of one of :data:`FEATURES`."""
        return self.history + FEATURES.index(feature)

    @property
    def slices(self) -> dict[str, slice]:
        """Every feature's slice, the throughput history first."""
        h = self.history
        return {"uplink_throughput": self.throughput} | {
            name: slice(h + k, h + k + 1) for k, name in enumerate(FEATURES)
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

        return {
            "uplink_bps": np.expm1(obs[self.throughput] * np.log1p(MAX_THROUGHPUT_MBPS)) * 1e6,
            "rtt_s": obs[self.index("rtt")] * self.timeout_s,
            "server_queue_s": wait_s("server_queue"),
            "server_reachable": bool(obs[self.index("server_reachable")] > 0.5),
            "device_backlog_s": wait_s("device_backlog"),
            "battery_fraction": obs[self.index("battery")],
            "deadline_s": obs[self.index("deadline")] * self.timeout_s,
        }
