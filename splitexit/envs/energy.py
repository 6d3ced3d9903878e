"""Radio energy of the mobile device's uplink transmissions.

Power model of J. Huang, F. Qian, A. Gerber, Z. M. Mao, S. Sen, O. Spatscheck, "A Close
Examination of Performance and Power Characteristics of 4G LTE Networks", ACM MobiSys 2012:
``P (mW) = alpha_u * t_u + alpha_d * t_d + beta`` with uplink / downlink throughput ``t_u``,
``t_d`` in Mbit/s, measured on a smartphone for LTE, WiFi and 3G. After a transmission, an LTE
radio stays in a high-power "tail" (RRC_CONNECTED with DRX) until an inactivity timer expires.

The constants below are the paper's (Table 4 for the power model, Table 3 for the LTE tail) as
widely quoted; they could not be checked against the paper's text from this workplace, so
compare them with the original before relying on the last digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from numba import njit

MW_PER_W = 1e3
BITS_PER_MBIT = 1e6

# Huang et al. 2012, Table 4: data-transfer power model parameters.
LTE_ALPHA_UP_MW_PER_MBPS = 438.39
LTE_ALPHA_DOWN_MW_PER_MBPS = 51.97
LTE_BETA_MW = 1288.04
WIFI_ALPHA_UP_MW_PER_MBPS = 283.17
WIFI_ALPHA_DOWN_MW_PER_MBPS = 137.01
WIFI_BETA_MW = 132.86
UMTS_3G_ALPHA_UP_MW_PER_MBPS = 868.98
UMTS_3G_ALPHA_DOWN_MW_PER_MBPS = 122.12
UMTS_3G_BETA_MW = 817.88
# Huang et al. 2012, Table 3: LTE tail base power and tail timer (RRC_CONNECTED -> RRC_IDLE).
# The paper also reports shorter 3G and WiFi tails; they are not modelled here (tail 0).
LTE_TAIL_POWER_MW = 1060.0
LTE_TAIL_S = 11.576


@njit(cache=True, _nrt=False)
def tx_energy_j(alpha_up_mw_per_mbps, beta_mw, payload_bytes, duration_s):
    """Energy of sending ``payload_bytes`` in ``duration_s`` (J): the power at the achieved
    throughput times the duration, ``alpha_u * Mbit + beta * duration_s`` (compiled: the
    core's step uses it; callable from Python)."""
    mbit = 8.0 * payload_bytes / BITS_PER_MBIT
    return (alpha_up_mw_per_mbps * mbit + beta_mw * duration_s) / MW_PER_W


@njit(cache=True, _nrt=False)
def tail_energy_j(tail_s, tail_power_mw, gap_s):
    """Energy of the LTE tail after a transmission, cut short by the next one ``gap_s`` > 0
    later (J)."""
    return (gap_s if gap_s < tail_s else tail_s) * tail_power_mw / MW_PER_W


@dataclass(frozen=True)
class RadioModel:
    """Linear throughput-to-power model of one radio technology, with an optional tail."""

    name: str
    alpha_up_mw_per_mbps: float
    alpha_down_mw_per_mbps: float
    beta_mw: float
    tail_s: float = 0.0
    tail_power_mw: float = 0.0
    tail_enabled: bool = True

    def __post_init__(self) -> None:
        keys = ("alpha_up_mw_per_mbps", "alpha_down_mw_per_mbps", "beta_mw", "tail_s")
        for key in (*keys, "tail_power_mw"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be >= 0 and finite, got {value!r}")

    def power_w(self, up_bps: float, down_bps: float = 0.0) -> float:
        """Radio power while sending at ``up_bps`` and receiving at ``down_bps`` (W)."""
        up_mbps, down_mbps = up_bps / BITS_PER_MBIT, down_bps / BITS_PER_MBIT
        power_mw = self.alpha_up_mw_per_mbps * up_mbps + self.alpha_down_mw_per_mbps * down_mbps
        return (power_mw + self.beta_mw) / MW_PER_W

    def without_tail(self) -> RadioModel:
        """The same model with the tail disabled."""
        return replace(self, tail_enabled=False)


RADIO_MODELS: dict[str, RadioModel] = {
    "lte": RadioModel(
        "lte",
        LTE_ALPHA_UP_MW_PER_MBPS,
        LTE_ALPHA_DOWN_MW_PER_MBPS,
        LTE_BETA_MW,
        tail_s=LTE_TAIL_S,
        tail_power_mw=LTE_TAIL_POWER_MW,
    ),
    "wifi": RadioModel(
        "wifi", WIFI_ALPHA_UP_MW_PER_MBPS, WIFI_ALPHA_DOWN_MW_PER_MBPS, WIFI_BETA_MW
    ),
    "3g": RadioModel(
        "3g", UMTS_3G_ALPHA_UP_MW_PER_MBPS, UMTS_3G_ALPHA_DOWN_MW_PER_MBPS, UMTS_3G_BETA_MW
    ),
}


def radio_model(name: str, tail: bool = True) -> RadioModel:
    """The radio model ``name`` (one of ``RADIO_MODELS``), with or without its tail."""
    if name not in RADIO_MODELS:
        raise ValueError(f"radio must be one of {sorted(RADIO_MODELS)}, got {name!r}")
    model = RADIO_MODELS[name]
    return model if tail else model.without_tail()
