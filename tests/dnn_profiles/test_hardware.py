"""Tests of the hardware presets and the FLOPs -> latency rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from splitexit.dnn_profiles.hardware import (
    DEVICE_PRESETS,
    LTE_EDGE_RTT_S,
    SERVER_PRESETS,
    DevicePreset,
    ServerPreset,
    compute_latency_s,
    get_device_preset,
    get_server_preset,
)

ALL_PRESETS = [*DEVICE_PRESETS.values(), *SERVER_PRESETS.values()]
# Per-block and per-exit FLOPs of the project's Fashion-MNIST multi-exit CNN (about 18 MFLOP).
MODEL_BLOCK_FLOPS = np.array([0.45e6, 7.2e6, 0.025e6, 7.45e6, 2.65e6])
MODEL_EXIT_FLOPS = np.array([0.010e6, 0.005e6, 0.023e6, 0.003e6])
# A citation names a benchmark, a datasheet, a paper, a repository or a web page.
CITATION = re.compile(
    r"MLPerf|datasheet|et al\.|\d{4}|github|\.com|[\w-]+/[\w-]+|L4T|guide", re.IGNORECASE
)


def model_latency_s(preset: DevicePreset | ServerPreset) -> float:
    """Whole-model latency (all blocks and all exits), in seconds."""
    return float(
        np.sum(compute_latency_s(MODEL_BLOCK_FLOPS, preset))
        + np.sum(compute_latency_s(MODEL_EXIT_FLOPS, preset))
    )


def test_required_presets_exist() -> None:
    assert {"mcu", "mcu-m4", "rpi4", "jetson-nano", "phone"} <= set(DEVICE_PRESETS)
    assert {"edge-cpu", "edge-gpu"} <= set(SERVER_PRESETS)
    for key, preset in [*DEVICE_PRESETS.items(), *SERVER_PRESETS.items()]:
        assert preset.name == key


@pytest.mark.parametrize("preset", ALL_PRESETS, ids=lambda p: p.name)
def test_figures_positive_finite_and_sourced(preset: DevicePreset | ServerPreset) -> None:
    assert math.isfinite(preset.effective_flops_per_s) and preset.effective_flops_per_s > 0
    assert math.isfinite(preset.per_block_overhead_s) and preset.per_block_overhead_s >= 0
    if isinstance(preset, DevicePreset):
        for watts in (preset.compute_power_w, preset.idle_power_w):
            assert math.isfinite(watts) and watts > 0
        assert preset.idle_power_w < preset.compute_power_w
    assert preset.description.strip()
    assert preset.source.strip()
    assert CITATION.search(preset.source), preset.source


def test_invalid_figures_rejected() -> None:
    with pytest.raises(ValueError, match="effective_flops_per_s"):
        ServerPreset("bad", "bad", 0.0, 0.0, "x")
    with pytest.raises(ValueError, match="idle_power_w"):
        DevicePreset("bad", "bad", 1e9, 0.0, 1.0, float("nan"), "x")


@pytest.mark.parametrize("preset", ALL_PRESETS, ids=lambda p: p.name)
def test_latency_zero_monotone_and_formula(preset: DevicePreset | ServerPreset) -> None:
    assert compute_latency_s(0, preset) == 0.0
    assert compute_latency_s(0.0, preset) == 0.0
    flops = np.array([0.0, 1.0, 1e3, 1e5, 1e6, 7.5e6, 1e8])
    lat = compute_latency_s(flops, preset)
    assert isinstance(lat, np.ndarray) and lat.shape == flops.shape
    assert np.all(np.diff(lat) > 0)
    expected = 7.5e6 / preset.effective_flops_per_s + preset.per_block_overhead_s
    assert compute_latency_s(7.5e6, preset) == pytest.approx(expected)


def test_latency_vectorised_matches_scalar() -> None:
    preset = get_device_preset("rpi4")
    flops = np.array([[0.0, 1e6], [2e6, 3e6]])
    lat = compute_latency_s(flops, preset)
    assert lat.shape == (2, 2)
    for idx in np.ndindex(flops.shape):
        assert lat[idx] == pytest.approx(compute_latency_s(float(flops[idx]), preset))
    assert isinstance(compute_latency_s(1e6, preset), float)
    assert isinstance(compute_latency_s(np.float64(1e6), preset), float)


def test_negative_or_nonfinite_flops_rejected() -> None:
    preset = get_server_preset("edge-cpu")
    with pytest.raises(ValueError, match="flops"):
        compute_latency_s(-1.0, preset)
    with pytest.raises(ValueError, match="flops"):
        compute_latency_s(np.array([1.0, np.inf]), preset)


def test_ordering_sanity() -> None:
    lat = {p.name: model_latency_s(p) for p in ALL_PRESETS}
    assert lat["mcu-m4"] > lat["mcu"] > lat["rpi4"] > max(lat["jetson-nano"], lat["phone"])
    assert lat["edge-gpu"] < lat["rpi4"]
    assert lat["edge-cpu"] < lat["rpi4"]


def test_whole_model_latencies_plausible() -> None:
    """The small ~18 MFLOP model: tens of ms on an MCU, ms on a Pi, sub-ms elsewhere."""
    assert 10e-3 < model_latency_s(get_device_preset("mcu")) < 100e-3
    assert 100e-3 < model_latency_s(get_device_preset("mcu-m4")) < 1.0
    assert 1e-3 < model_latency_s(get_device_preset("rpi4")) < 10e-3
    for name in ("jetson-nano", "phone"):
        assert model_latency_s(get_device_preset(name)) < 1.5e-3
    for name in ("edge-cpu", "edge-gpu"):
        assert model_latency_s(get_server_preset(name)) < 1e-3


def test_mcu_m4_figures_follow_from_mlperf_tiny() -> None:
    """ResNet-8 (25 MFLOP) at 2.567 inf/s; power = energy per inference * inference rate."""
    m4 = get_device_preset("mcu-m4")
    assert m4.effective_flops_per_s == pytest.approx(25.0e6 * 2.567)
    assert m4.compute_power_w == pytest.approx(20236.298e-6 * 2.566)
    assert m4.compute_power_w < get_device_preset("mcu").compute_power_w
    assert m4.per_block_overhead_s == 0.0


def test_lte_edge_rtt_plausible() -> None:
    assert isinstance(LTE_EDGE_RTT_S, float)
    assert math.isfinite(LTE_EDGE_RTT_S)
    assert 0.0 < LTE_EDGE_RTT_S < 0.2


def test_unknown_names_raise_value_error() -> None:
    with pytest.raises(ValueError, match="toaster") as err:
        get_device_preset("toaster")
    assert "rpi4" in str(err.value)
    with pytest.raises(ValueError, match="cloud-tpu") as err:
        get_server_preset("cloud-tpu")
    assert "edge-gpu" in str(err.value)
    with pytest.raises(ValueError, match="edge-gpu"):
        get_device_preset("edge-gpu")  # a server is not a device
