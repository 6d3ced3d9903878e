"""Uplink capacity over time: a piecewise-constant trace that loops at its end.

Every channel model (``splitexit.envs.channel``) yields :class:`CapacityTrace` s; the compiled
core integrates a transfer over one (``splitexit.envs.core.time_at_bits_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splitexit.envs.checks import check, check_non_negative, check_positive


@dataclass(frozen=True, eq=False)
class CapacityTrace:
    """Piecewise-constant uplink capacity that loops at its end.

    Slot ``k`` covers ``[k * slot_s, (k + 1) * slot_s)`` and carries ``capacity_bps[k]`` bit/s.
    The bits deliverable up to each slot boundary are precomputed (``cum_bits_array``): the
    compiled core (``splitexit.envs.core``) integrates transfers over them exactly.
    """

    slot_s: float
    capacity_bps: np.ndarray
    name: str = "trace"
    _cum_bits_array: np.ndarray = field(init=False, repr=False)
    _total_bits: float = field(init=False, repr=False)
    _duration_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        slot_s = check_positive("slot_s", self.slot_s)
        cap = np.array(self.capacity_bps, dtype=np.float64)  # a private copy
        check(cap.ndim == 1 and cap.size > 0, "capacity_bps", "a non-empty 1-D array", cap.shape)
        check(bool(np.all(np.isfinite(cap))), "capacity_bps", "finite", "a non-finite value")
        check(bool(np.all(cap >= 0)), "capacity_bps", ">= 0", float(cap.min()))
        cap.flags.writeable = False
        cum = np.concatenate(([0.0], np.cumsum(cap * slot_s)))
        object.__setattr__(self, "slot_s", slot_s)
        object.__setattr__(self, "capacity_bps", cap)
        cum.flags.writeable = False
        object.__setattr__(self, "_cum_bits_array", cum)
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

    @property
    def cum_bits_array(self) -> np.ndarray:
        """Bits deliverable up to each slot boundary (read-only array of ``size + 1``)."""
        return self._cum_bits_array

    def scaled(self, factor: float) -> CapacityTrace:
        """The same trace with every capacity multiplied by ``factor`` (>= 0)."""
        factor = check_non_negative("factor", factor)
        return type(self)(self.slot_s, self.capacity_bps * factor, self.name)

    def resampled(self, slot_s: float) -> CapacityTrace:
        """The mean capacity over consecutive slots of ``slot_s`` (the partial tail is dropped)."""
        slot_s = check_positive("slot_s", slot_s)
        n = max(1, int(self._duration_s / slot_s + 1e-9))
        edges_s = np.arange(n + 1) * slot_s
        knots_s = np.arange(self.capacity_bps.size + 1) * self.slot_s
        bits = np.interp(edges_s, knots_s, self._cum_bits_array)
        cap = np.maximum(np.diff(bits) / slot_s, 0.0)
        return type(self)(slot_s, cap, self.name)
