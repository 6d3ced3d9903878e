"""Tests of splitexit.envs.energy: Huang et al. (MobiSys 2012) radio power model."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitexit.envs.energy import RADIO_MODELS, RadioModel, radio_model
from tests.envs.reference import ReferenceRadio


def test_published_parameters():
    lte, wifi, umts = RADIO_MODELS["lte"], RADIO_MODELS["wifi"], RADIO_MODELS["3g"]
    assert (lte.alpha_up_mw_per_mbps, lte.beta_mw) == (438.39, 1288.04)
    assert (wifi.alpha_up_mw_per_mbps, wifi.beta_mw) == (283.17, 132.86)
    assert (umts.alpha_up_mw_per_mbps, umts.beta_mw) == (868.98, 817.88)
    assert (lte.tail_s, lte.tail_power_mw) == (11.576, 1060.0)
    assert set(RADIO_MODELS) == {"lte", "wifi", "3g"}


def test_tx_energy_hand_computation():
    lte = RADIO_MODELS["lte"]
    # 1 MB = 8 Mbit in 2 s (4 Mbit/s): (438.39 mW/Mbps * 4 Mbps + 1288.04 mW) * 2 s
    assert ReferenceRadio(lte).tx_energy_j(1e6, 2.0) == pytest.approx(
        (438.39 * 4 + 1288.04) * 2 / 1e3
    )
    assert ReferenceRadio(lte).tx_energy_j(1e6, 2.0) == pytest.approx(lte.power_w(4e6) * 2.0)
    assert ReferenceRadio(lte).tx_energy_j(0, 0.0) == 0.0
    assert ReferenceRadio(lte).tx_energy_j(100, math.inf) == math.inf  # a transfer that never ends
    with pytest.raises(ValueError, match="payload_bytes and duration_s must be >= 0"):
        ReferenceRadio(lte).tx_energy_j(-1, 1.0)


@given(
    payload_bytes=st.floats(0, 1e8),
    duration_s=st.floats(1e-6, 1e3),
    radio=st.sampled_from(sorted(RADIO_MODELS)),
)
def test_tx_energy_is_power_at_achieved_throughput_times_duration(payload_bytes, duration_s, radio):
    model = RADIO_MODELS[radio]
    energy_j = ReferenceRadio(model).tx_energy_j(payload_bytes, duration_s)
    throughput_bps = 8 * payload_bytes / duration_s
    assert energy_j == pytest.approx(model.power_w(throughput_bps) * duration_s, rel=1e-9)
    assert ReferenceRadio(model).tx_energy_j(payload_bytes + 1, duration_s) > energy_j


def test_lte_tail_truncated_by_the_next_transmission():
    lte = RADIO_MODELS["lte"]
    assert ReferenceRadio(lte).tail_energy_j(5.0) == pytest.approx(5.0 * 1.060)
    assert ReferenceRadio(lte).tail_energy_j(math.inf) == pytest.approx(11.576 * 1.060)
    assert ReferenceRadio(lte).tail_energy_j(100.0) == ReferenceRadio(lte).tail_energy_j(math.inf)
    assert (
        ReferenceRadio(lte).tail_energy_j(0.0) == 0.0
        and ReferenceRadio(lte).tail_energy_j(-1.0) == 0.0
    )
    assert ReferenceRadio(lte.without_tail()).tail_energy_j(5.0) == 0.0
    assert ReferenceRadio(radio_model("lte", tail=False)).tail_energy_j(5.0) == 0.0
    assert ReferenceRadio(RADIO_MODELS["wifi"]).tail_energy_j(5.0) == 0.0
    assert ReferenceRadio(RADIO_MODELS["3g"]).tail_energy_j(5.0) == 0.0


def test_validation():
    with pytest.raises(ValueError, match="beta_mw must be >= 0"):
        RadioModel("x", 1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="tail_s must be >= 0"):
        RadioModel("x", 1.0, 1.0, 1.0, tail_s=math.nan)
    with pytest.raises(ValueError, match="radio must be one of"):
        radio_model("5g")
