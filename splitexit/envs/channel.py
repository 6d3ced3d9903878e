"""The uplink's channel models: real traces, a Markov channel fitted to them, a fading model.

A :class:`TraceChannel` replays trace files (``splitexit.envs.traces``) and the Markov channel
is one long path realised once per config; the fading channel draws a trace per episode. Each
yields :class:`~splitexit.envs.capacity.CapacityTrace` s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from splitexit.envs.capacity import CapacityTrace
from splitexit.envs.checks import check, check_non_negative, check_positive
from splitexit.envs.markov import check_transition, sample_markov_chain, stationary_distribution
from splitexit.envs.traces import (
    MAHIMAHI_SLOT_S,
    PathArg,
    load_traces,
    shipped_trace_paths,
)

# Markov channel fitted to the shipped mahimahi uplink traces. 100 ms slots resolve changes on
# the time scale of one inference request (tens to hundreds of ms) while averaging out the
# packet-level quantisation of the trace (a 1500-byte packet takes 12 ms at 1 Mbit/s); 8
# quantile bins give states from deep fades to the peak rates. Modelling choices, not measured.
DEFAULT_MARKOV_SLOT_S = 0.1
DEFAULT_MARKOV_N_STATES = 8


def _n_slots(duration_s: float, slot_s: float) -> int:
    duration_s = check_non_negative("duration_s", duration_s)
    return max(1, math.ceil(duration_s / slot_s - 1e-9))


class TraceChannel:
    """Replays real traces: each episode reads a uniformly chosen trace (scaled) from a
    uniformly chosen slot on, looping (``splitexit.envs.core.start_episodes``)."""

    def __init__(self, traces: Sequence[CapacityTrace], scale: float = 1.0, name: str = "trace"):
        check(len(traces) > 0, "traces", "a non-empty list of CapacityTrace", traces)
        for tr in traces:
            check(isinstance(tr, CapacityTrace), "traces", "a list of CapacityTrace", tr)
        self.traces = list(traces)
        self.scale = check_non_negative("scale", scale)
        self.name = name
        # The traces as episodes read them (scaled once here, not per episode).
        self.scaled_traces = (
            [tr.scaled(self.scale) for tr in self.traces] if self.scale != 1.0 else self.traces
        )

    @classmethod
    def from_paths(
        cls, paths: PathArg | Iterable[PathArg], scale: float = 1.0, slot_s: float = MAHIMAHI_SLOT_S
    ) -> TraceChannel:
        """A channel over the trace files and folders ``paths`` (see :func:`load_traces`)."""
        return cls(load_traces(paths, slot_s), scale)


class MarkovChannel:
    """Finite-state Markov channel: the capacity is ``states_bps[s_k]`` in slot ``k``."""

    def __init__(
        self,
        states_bps: np.ndarray,
        transition: np.ndarray,
        slot_s: float,
        name: str = "markov",
    ):
        states = np.array(states_bps, dtype=np.float64)
        check(states.ndim == 1 and states.size > 0, "states_bps", "a non-empty 1-D array", states)
        ok = bool(np.all(np.isfinite(states)) and np.all(states >= 0))
        check(ok, "states_bps", ">= 0 and finite", states)
        self.states_bps = states
        self.transition = check_transition(transition, states.size)
        self.slot_s = check_positive("slot_s", slot_s)
        self.name = name
        self.stationary = stationary_distribution(self.transition)

    @property
    def mean_bps(self) -> float:
        """Stationary mean capacity (bit/s)."""
        return float(self.stationary @ self.states_bps)

    def sample(self, rng: np.random.Generator, duration_s: float) -> CapacityTrace:
        """A stationary path of at least ``duration_s`` as a trace."""
        path = sample_markov_chain(rng, self.transition, _n_slots(duration_s, self.slot_s))
        return CapacityTrace(self.slot_s, self.states_bps[path], self.name)


def fit_markov_channel(
    traces: Sequence[CapacityTrace],
    n_states: int = DEFAULT_MARKOV_N_STATES,
    slot_s: float = DEFAULT_MARKOV_SLOT_S,
    name: str = "markov-fit",
) -> MarkovChannel:
    """Fit a Markov channel to traces resampled to ``slot_s``.

    The pooled slot capacities are cut at their ``n_states``-quantiles (ties go to the lower
    bin; empty bins are dropped), a state's capacity is the mean of its bin, and transitions are
    counted within each trace with add-one (Laplace) smoothing, rows normalised.
    """
    check(len(traces) > 0, "traces", "a non-empty list of CapacityTrace", traces)
    check(int(n_states) >= 1, "n_states", ">= 1", n_states)
    slot_s = check_positive("slot_s", slot_s)
    series = [tr.resampled(slot_s).capacity_bps for tr in traces]
    pooled = np.concatenate(series)
    edges = np.quantile(pooled, np.linspace(0.0, 1.0, int(n_states) + 1)[1:-1])
    labels = [np.searchsorted(edges, s, side="left") for s in series]
    used, pooled_labels = np.unique(np.concatenate(labels), return_inverse=True)
    states = np.bincount(pooled_labels, weights=pooled) / np.bincount(pooled_labels)
    n = used.size
    counts = np.ones((n, n))
    for lab in labels:
        lab = np.searchsorted(used, lab)
        np.add.at(counts, (lab[:-1], lab[1:]), 1.0)
    return MarkovChannel(states, counts / counts.sum(axis=1, keepdims=True), slot_s, name)


@lru_cache(maxsize=1)
def default_markov_channel() -> MarkovChannel:
    """The Markov channel fitted to the shipped mahimahi LTE uplink traces (cached)."""
    traces = load_traces(shipped_trace_paths("mahimahi-up"))
    return fit_markov_channel(traces, DEFAULT_MARKOV_N_STATES, DEFAULT_MARKOV_SLOT_S, "markov")


# Fading channel defaults. 3GPP TR 36.814 V9.0.0, Table A.2.1.1-2 (macro cell, case 1),
# "Further advancements for E-UTRA physical layer aspects". Values as commonly quoted from these
# documents; they could not be checked against the document text from this workplace.
PATHLOSS_DB_AT_1KM = 128.1  # L = 128.1 + 37.6 log10(R), R in km (2 GHz carrier)
PATHLOSS_EXPONENT = 3.76  # the 37.6 dB/decade slope of the same formula
SHADOWING_STD_DB = 8.0  # log-normal shadowing standard deviation
PENETRATION_LOSS_DB = 20.0  # building penetration loss (indoor UE)
ENB_NOISE_FIGURE_DB = 5.0  # eNB receiver noise figure (the uplink receiver; UE NF is 9 dB)
CARRIER_HZ = 2.0e9  # carrier frequency
UE_SPEED_KMH = 3.0  # UE speed (pedestrian)
MIN_DISTANCE_M = 35.0  # minimum distance between UE and cell
CELL_RADIUS_M = 500.0 / math.sqrt(3.0)  # hexagonal cell radius for the 500 m inter-site distance
# 3GPP TS 36.101, Table 6.2.2-1: UE power class 3 maximum output power 23 dBm.
UE_TX_POWER_DBM = 23.0
# Thermal noise power spectral density kT at 290 K: -174 dBm/Hz (also TR 36.814 Table A.2.1.1-2).
NOISE_PSD_DBM_HZ = -174.0
# Uplink share: 25 of the 50 resource blocks of a 10 MHz LTE carrier (TS 36.101 Table 5.6-1),
# 180 kHz each (TS 36.211). A scheduling assumption: the UE shares the cell with others.
UPLINK_BANDWIDTH_HZ = 25 * 180e3
# Coherence time T_c = 0.423 / f_D for Rayleigh fading (T. S. Rappaport, "Wireless
# Communications: Principles and Practice", 2nd ed., 2002, eq. 5.40.c), f_D = v f_c / c.
COHERENCE_FACTOR = 0.423
SPEED_OF_LIGHT_M_S = 299_792_458.0


class FadingChannel:
    """Rayleigh block fading + log-distance path loss + log-normal shadowing, Shannon capacity.

    Per episode: a distance (fixed, or uniform over the annulus ``distance_m = (min, max)``) and
    one shadowing draw; per coherence block: an exponential (Rayleigh) power gain. Capacity per
    block ``C = B log2(1 + SNR)`` with
    ``SNR_dB = P_tx - PL(d) - shadowing - penetration + 10 log10(|h|^2) - (N0 + 10 log10 B + NF)``
    and ``PL(d) = PL(1 km) + 10 n log10(d / 1 km)``. Shannon capacity is an upper bound on what
    LTE link adaptation achieves.
    """

    def __init__(
        self,
        distance_m: float | tuple[float, float] = (MIN_DISTANCE_M, CELL_RADIUS_M),
        bandwidth_hz: float = UPLINK_BANDWIDTH_HZ,
        tx_power_dbm: float = UE_TX_POWER_DBM,
        noise_psd_dbm_hz: float = NOISE_PSD_DBM_HZ,
        noise_figure_db: float = ENB_NOISE_FIGURE_DB,
        pathloss_db_at_1km: float = PATHLOSS_DB_AT_1KM,
        pathloss_exponent: float = PATHLOSS_EXPONENT,
        shadowing_std_db: float = SHADOWING_STD_DB,
        penetration_loss_db: float = PENETRATION_LOSS_DB,
        carrier_hz: float = CARRIER_HZ,
        speed_kmh: float = UE_SPEED_KMH,
        coherence_time_s: float | None = None,
        name: str = "fading",
    ):
        if isinstance(distance_m, (int, float)):
            distance_m = (float(distance_m), float(distance_m))
        d_min, d_max = (float(d) for d in distance_m)
        ok = 0 < d_min <= d_max < math.inf
        check(ok, "distance_m", "> 0, or a range (min, max) with 0 < min <= max", distance_m)
        self.distance_m = (d_min, d_max)
        self.bandwidth_hz = check_positive("bandwidth_hz", bandwidth_hz)
        for key, value in (
            ("tx_power_dbm", tx_power_dbm),
            ("noise_psd_dbm_hz", noise_psd_dbm_hz),
            ("noise_figure_db", noise_figure_db),
            ("pathloss_db_at_1km", pathloss_db_at_1km),
            ("penetration_loss_db", penetration_loss_db),
        ):
            check(math.isfinite(value), key, "finite", value)
        self.tx_power_dbm = float(tx_power_dbm)
        self.noise_dbm = float(noise_psd_dbm_hz) + 10 * math.log10(bandwidth_hz) + noise_figure_db
        self.pathloss_db_at_1km = float(pathloss_db_at_1km)
        self.pathloss_exponent = check_positive("pathloss_exponent", pathloss_exponent)
        self.shadowing_std_db = check_non_negative("shadowing_std_db", shadowing_std_db)
        self.penetration_loss_db = float(penetration_loss_db)
        carrier_hz = check_positive("carrier_hz", carrier_hz)
        if coherence_time_s is None:
            doppler_hz = check_positive("speed_kmh", speed_kmh) / 3.6 * carrier_hz
            coherence_time_s = COHERENCE_FACTOR / (doppler_hz / SPEED_OF_LIGHT_M_S)
        self.coherence_time_s = check_positive("coherence_time_s", coherence_time_s)
        self.name = name

    def mean_snr_db(self, distance_m: float) -> float:
        """SNR without shadowing and fast fading at ``distance_m`` (dB)."""
        pathloss_db = self.pathloss_db_at_1km + 10 * self.pathloss_exponent * math.log10(
            distance_m / 1e3
        )
        return self.tx_power_dbm - pathloss_db - self.penetration_loss_db - self.noise_dbm

    def sample(self, rng: np.random.Generator, duration_s: float) -> CapacityTrace:
        """Per-coherence-block Shannon capacity for at least ``duration_s``."""
        n = _n_slots(duration_s, self.coherence_time_s)
        d_min, d_max = self.distance_m
        # Uniform over the annulus area: P(D <= d) proportional to d^2 - d_min^2.
        distance_m = math.sqrt(d_min**2 + rng.random() * (d_max**2 - d_min**2))
        shadowing_db = self.shadowing_std_db * rng.standard_normal()
        gain = rng.exponential(1.0, n)  # |h|^2 of Rayleigh fading, unit mean
        snr = 10 ** ((self.mean_snr_db(distance_m) - shadowing_db) / 10) * gain
        cap = self.bandwidth_hz * np.log2(1.0 + snr)
        return CapacityTrace(self.coherence_time_s, cap, f"{self.name}@{distance_m:.0f}m")
