"""Hardware presets: how fast, and at what power, a device or an edge server runs the DNN.

How a block's latency on a preset is derived
--------------------------------------------
The profiler counts the FLOPs of every block and of every exit head with
``torch.utils.flop_counter`` (convolutions and matmuls, 2 FLOPs per multiply-accumulate). On a
preset, the latency of a block (or of an exit head) is

    latency_s = flops / effective_flops_per_s + per_block_overhead_s      (0 FLOPs -> 0 s)

``effective_flops_per_s`` is a *sustained* rate measured on whole small CNNs at batch 1 on that
class of hardware (MLPerf Tiny / MLPerf Inference results, vendor or published measurements),
never a datasheet peak unless no measurement was found (then the assumed efficiency is stated).
Where the source is a whole-model latency, fixed per-layer costs are already folded into the rate
and ``per_block_overhead_s`` is 0; GPU presets keep a separate per-block kernel-launch cost,
because on a GPU a 0.1-MFLOP block costs about as much as a 7-MFLOP one.

The host latency the profiler measures is kept in the profile as a reference but is *not* used
for presets: the host (a workstation CPU running PyTorch eagerly) is not the target hardware.

Scale check (not a fit)
-----------------------
The project's model is a small Fashion-MNIST multi-exit CNN of about 18 MFLOP in 5 blocks
(roughly 0.5, 7.2, 0.03, 7.5 and 2.7 MFLOP; exit heads 0.003-0.02 MFLOP). With the figures below
the whole model takes about 39 ms on the Cortex-M7 MCU and 280 ms on the Cortex-M4 one, 3.8 ms
on the Raspberry Pi 4, 0.3 ms on the Jetson Nano and 0.35 ms on the phone; about 0.4 ms on the
edge CPU and 0.1 ms on the edge GPU. The figures were taken from the sources, not tuned to give
these numbers.

FLOP counts of the reference models used below (2 FLOPs per MAC, as flop_counter counts):
ResNet-8 of MLPerf Tiny 25.0 MFLOP (counted here with flop_counter on the mlcommons/tiny
topology); MobileNetV3-Small-1.0-224 56 M MAdds = 112 MFLOP (Howard et al., ICCV 2019, Table 3);
MobileNet-v1-1.0-224 569 M and MobileNet-v1-0.25-128 14 M mult-adds (Howard et al., arXiv
1704.04861, Tables 7-8); ResNet-18 1.814 G MACs at 224x224 (He et al., CVPR 2016; torchvision
model card), scaled by (256/224)^2 for 256x256 inputs.

Radio power is not here: it is modelled in ``envs`` (Huang et al., MobiSys 2012).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from splitexit.registry import by_name

# --------------------------------------------------------------------------------------------
# Source figures, each with its citation where it is defined; the presets below use them.

# MLPerf Tiny v1.0, closed, STMicroelectronics, NUCLEO-H7A3ZI-Q (Cortex-M7 @ 280 MHz,
# X-CUBE-AI 7.3, int8), image classification (ResNet-8, CIFAR-10): performance run median
# throughput 18.401 inf/s; energy run median 8707.284 uJ/inf at 18.443 inf/s, 160.6 mW.
# mlcommons/tiny_results_v1.0: closed/STMicroelectronics/results/NUCLEO-H7A3ZI-Q/ic/
RESNET8_FLOPS = 25.0e6
MLPERF_TINY_H7A3_IC_INF_PER_S = 18.401
MLPERF_TINY_H7A3_IC_POWER_W = 0.1606
# MLPerf Tiny v1.0, closed, OctoML, NUCLEO-L4R5ZI (STM32L4R5ZIT6U, Cortex-M4 @ 120 MHz, microTVM
# + CMSIS-NN, Zephyr 2.7.3, int8), image classification (ResNet-8, CIFAR-10): performance run
# median throughput 2.567 inf/s (389.6 ms/inf); energy run median 20236.298 uJ/inf at
# 2.566 inf/s -> 20236.298e-6 * 2.566 = 51.9 mW (the runner reports 51.93 mW; LPM01A energy
# monitor at 1.8 V). mlcommons/tiny_results_v1.0:
# closed/OctoML/results/microtvm_cmsis_nn/NUCLEO_L4R5ZI/ic/{performance,energy}/results.txt
MLPERF_TINY_L4R5_IC_INF_PER_S = 2.567
MLPERF_TINY_L4R5_IC_ENERGY_J = 20236.298e-6
MLPERF_TINY_L4R5_IC_ENERGY_RUN_INF_PER_S = 2.566
MLPERF_TINY_L4R5_IC_POWER_W = (
    MLPERF_TINY_L4R5_IC_ENERGY_J * MLPERF_TINY_L4R5_IC_ENERGY_RUN_INF_PER_S
)
# MLPerf Inference v0.7, open, dividiti, rpi4-tflite-v2.2.0-ruy, mobilenet-v3-small_224_1.0_float,
# single stream: 42.37 QPS w/o loadgen overhead (mean 23.6 ms, median 21.8 ms, p90 29.1 ms).
MOBILENET_V3_SMALL_FLOPS = 112e6
MLPERF_RPI4_MNV3_SMALL_QPS = 42.37
# RasPi.TV, "How much power does Raspberry Pi 4B use?" (A. Eames, 2019), at the 5 V input:
# idle 540 mA = 2.7 W; stress --cpu 4 (all four cores busy) 1280 mA = 6.4 W.
RPI4_IDLE_POWER_W = 2.7
RPI4_ALL_CORE_POWER_W = 6.4
# kentaroy47/benchmark-FP32-FP16-INT8-with-TensorRT README: Jetson Nano, TensorRT FP32,
# ResNet-18 on 1x3x256x256: 26 ms.
RESNET18_256_FLOPS = 2 * 1.814e9 * (256 / 224) ** 2
JETSON_NANO_TRT_FP32_RESNET18_S = 0.026
# NVIDIA Jetson Nano L4T developer guide, "Supported Modes and Power Efficiency": nvpmodel MaxN
# (mode 0) power budget 10 W (4 CPU cores @ 1479 MHz, GPU @ 921.6 MHz); 5 W mode budget 5 W.
JETSON_NANO_MAXN_BUDGET_W = 10.0
# freedomtan/glDelegateBenchmark README (K.-S. Tan): iPhone 11 Pro (Apple A13), TFLite,
# MobileNet-v1-1.0-224, CPU 2 threads: 18.21 ms.
MOBILENET_V1_1_0_224_FLOPS = 2 * 569e6
IPHONE11PRO_TFLITE_CPU2_MNV1_S = 0.01821
# MLPerf Inference v5.0, open, GATEOverflow (cTuning CM), aws_m8g.xlarge (4 vCPU AWS Graviton4,
# Neoverse V2), TFLite FP32, single stream, p90 latency: mobilenet-v1 0.25-128 0.608 ms,
# mobilenet-v1 1.0-224 20.35 ms.
MOBILENET_V1_0_25_128_FLOPS = 2 * 14e6
GRAVITON4_MNV1_025_128_S = 0.000608
GRAVITON4_MNV1_100_224_S = 0.02035
# Small-model / large-model efficiency ratio of TFLite FP32 on an Arm CPU (same machine, same
# runtime, Graviton4 above): (28 MFLOP / 0.608 ms) / (1138 MFLOP / 20.35 ms) = 0.82.
TFLITE_ARM_SMALL_MODEL_EFFICIENCY = (MOBILENET_V1_0_25_128_FLOPS / GRAVITON4_MNV1_025_128_S) / (
    MOBILENET_V1_1_0_224_FLOPS / GRAVITON4_MNV1_100_224_S
)
# CUDA kernel launch overhead: about 4-6 us per launch on a desktop GPU (RTX 5070 Ti, CUDA 13),
# "pegainfer (3): From Launch Overhead to CUDA Graph", susun-blog.com; NVIDIA's "Getting Started
# with CUDA Graphs" blog (2019) describes the same few-microsecond per-kernel cost.
CUDA_LAUNCH_OVERHEAD_S = 5e-6
# A block of the project's CNN is about 2 kernels after TensorRT fusion (conv+BN+ReLU fused, pool
# separate; block 4 has two convs and a pool): an assumption about the deployed engine.
KERNELS_PER_BLOCK = 2
# NVIDIA T4 datasheet: 8.1 TFLOPS FP32 peak, 65 TFLOPS FP16, 130 TOPS INT8, 70 W.
T4_FP32_PEAK_FLOPS = 8.1e12

# Round-trip time between an LTE device and an edge server (network only, no compute), seconds.
# J. Blakley, "Opening Edge Computing's Black Box", CMU Living Edge Lab, 25 May 2022
# (cmu.edu/scs/edgecomputing/articles/latency-segmentation.html; per-segment measurements in
# Smith et al., "Segmenting Latency in a Private 4G LTE Network", CMU-CS-22-115, 2022): the
# lab's private outdoor CBRS 4G LTE network, built for device-to-edge (cloudlet) computing,
# measured a "predictable 30 to 35ms round-trip latency"; the midpoint 32.5 ms is used. The same
# post reports 50-200 ms over commercial LTE (congestion, out-of-metro interconnects).
LTE_EDGE_RTT_S = 0.0325

# Assumptions where no figure was retrieved (each explained in the preset's ``source``).
MCU_SLEEP_POWER_FRACTION = 0.3  # Cortex-M Sleep (WFI) power / run power (M7 and M4 presets)
JETSON_LAUNCH_SLOWDOWN = 2.0  # kernel launch from a Cortex-A57 vs a desktop CPU
JETSON_NANO_IDLE_POWER_W = 2.0
PHONE_COMPUTE_POWER_W = 3.0  # SoC + DRAM, two big cores busy
PHONE_IDLE_POWER_W = 0.3  # awake, screen off, radio excluded
T4_SMALL_CNN_EFFICIENCY = 0.10  # fraction of FP32 peak at batch 1 on <= 28x28 feature maps


@dataclass(frozen=True)
class DevicePreset:
    """A mobile/embedded device that runs the head of the DNN.

    Attributes:
        name: preset key, e.g. ``"mcu"``.
        description: the hardware and runtime the figures come from.
        effective_flops_per_s: sustained FLOP/s (FP32, or int8 ops for the MCU) on small CNNs
            at batch 1.
        per_block_overhead_s: fixed dispatch cost per executed block or exit head, in seconds
            (0 where the rate already includes it).
        compute_power_w: board power while computing, in watts.
        idle_power_w: board power while idle / waiting for the answer, in watts (no radio).
        source: citations and the arithmetic behind every figure.
    """

    name: str
    description: str
    effective_flops_per_s: float
    per_block_overhead_s: float
    compute_power_w: float
    idle_power_w: float
    source: str

    def __post_init__(self) -> None:
        _check_figures(
            self.name,
            effective_flops_per_s=self.effective_flops_per_s,
            per_block_overhead_s=self.per_block_overhead_s,
            compute_power_w=self.compute_power_w,
            idle_power_w=self.idle_power_w,
        )


@dataclass(frozen=True)
class ServerPreset:
    """An edge server that runs the tail of the DNN.

    Attributes:
        name: preset key, e.g. ``"edge-gpu"``.
        description: the hardware and runtime the figures come from.
        effective_flops_per_s: sustained FLOP/s on small CNNs at batch 1.
        per_block_overhead_s: fixed cost per executed block or exit head (e.g. GPU kernel
            launches), in seconds.
        source: citations and the arithmetic behind every figure.
    """

    name: str
    description: str
    effective_flops_per_s: float
    per_block_overhead_s: float
    source: str

    def __post_init__(self) -> None:
        _check_figures(
            self.name,
            effective_flops_per_s=self.effective_flops_per_s,
            per_block_overhead_s=self.per_block_overhead_s,
        )


def _check_figures(name: str, **figures: float) -> None:
    for key, value in figures.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"preset {name!r}: {key} must be finite and >= 0, got {value!r}")
    if figures["effective_flops_per_s"] <= 0:
        raise ValueError(f"preset {name!r}: effective_flops_per_s must be > 0")


def _mlperf_tiny_mcu(
    name: str, description: str, inf_per_s: float, power_w: float, source: str
) -> DevicePreset:
    """A microcontroller preset from its MLPerf Tiny image-classification submission: the
    rate of ResNet-8's FLOPs it sustains, its run power, and idle at the sleep fraction of it
    (per-layer dispatch is inside the measured rate: no overhead per block)."""
    return DevicePreset(
        name=name,
        description=description,
        effective_flops_per_s=RESNET8_FLOPS * inf_per_s,
        per_block_overhead_s=0.0,
        compute_power_w=power_w,
        idle_power_w=MCU_SLEEP_POWER_FRACTION * power_w,
        source=source,
    )


DEVICE_PRESETS: dict[str, DevicePreset] = by_name(
    _mlperf_tiny_mcu(
        name="mcu",
        description="STM32H7A3 Cortex-M7 @ 280 MHz (NUCLEO-H7A3ZI-Q), X-CUBE-AI 7.3, int8",
        inf_per_s=MLPERF_TINY_H7A3_IC_INF_PER_S,  # 0.46 GOP/s
        power_w=MLPERF_TINY_H7A3_IC_POWER_W,
        source=(
            "MLPerf Tiny v1.0 closed, STMicroelectronics NUCLEO-H7A3ZI-Q, image "
            "classification (ResNet-8, 25.0 MFLOP by flop_counter): median 18.401 inf/s "
            "(54.3 ms) -> 25.0e6 * 18.401 = 0.46 G int8 OP/s; per-layer dispatch is a C "
            "function call in the generated code and is inside that rate, so overhead 0. "
            "Power: same submission's energy run, 8707 uJ/inf at 18.44 inf/s = 160.6 mW "
            "(MCU supply only, 3.3 V). Idle: ASSUMPTION, no datasheet figure retrieved: "
            "30% of run power (Sleep/WFI stops the core clock but keeps buses and "
            "peripherals clocked) = 48 mW."
        ),
    ),
    _mlperf_tiny_mcu(
        name="mcu-m4",
        description=(
            "STM32L4R5 Cortex-M4 @ 120 MHz (NUCLEO-L4R5ZI), microTVM + CMSIS-NN, Zephyr, int8"
        ),
        inf_per_s=MLPERF_TINY_L4R5_IC_INF_PER_S,  # 64 MOP/s
        power_w=MLPERF_TINY_L4R5_IC_POWER_W,
        source=(
            "MLPerf Tiny v1.0 closed, OctoML NUCLEO-L4R5ZI (STM32L4R5, Cortex-M4 @ 120 "
            "MHz, microTVM + CMSIS-NN, Zephyr 2.7.3), image classification (ResNet-8, "
            "25.0 MFLOP by flop_counter): median 2.567 inf/s (389.6 ms) -> 25.0e6 * 2.567 "
            "= 64.2 M int8 OP/s (7.2x below the Cortex-M7 'mcu' preset); per-layer "
            "dispatch is a call into the generated C code and is inside that rate, so "
            "overhead 0. Power: same submission's energy run, 20236 uJ/inf at 2.566 inf/s "
            "= 51.9 mW (MCU supply only, 1.8 V). Idle: ASSUMPTION as for 'mcu', no "
            "datasheet figure retrieved: 30% of run power (Sleep/WFI stops the core clock "
            "but keeps buses and peripherals clocked) = 15.6 mW."
        ),
    ),
    DevicePreset(
        name="rpi4",
        description="Raspberry Pi 4 B, 4x Cortex-A72 @ 1.5 GHz, TFLite 2.2 (ruy) FP32",
        effective_flops_per_s=MOBILENET_V3_SMALL_FLOPS * MLPERF_RPI4_MNV3_SMALL_QPS,
        per_block_overhead_s=0.0,
        compute_power_w=RPI4_ALL_CORE_POWER_W,
        idle_power_w=RPI4_IDLE_POWER_W,
        source=(
            "MLPerf Inference v0.7 open, dividiti rpi4-tflite-v2.2.0-ruy, "
            "mobilenet-v3-small_224_1.0_float single stream: 42.37 QPS (mean 23.6 ms); "
            "MobileNetV3-Small 56 M MAdds = 112 MFLOP (Howard et al., ICCV 2019) -> "
            "112e6 * 42.37 = 4.7 GFLOP/s (whole-model rate, TFLite op dispatch included, "
            "so overhead 0). For comparison ResNet-50 FP32 takes 312 ms with ArmNN 21.05 "
            "(Krai, MLPerf Inference v1.1 open), i.e. 26 GFLOP/s on large convolutions: "
            "small models run far below that. Power: RasPi.TV 'How much power does "
            "Raspberry Pi 4B use?' (Eames, 2019): stress --cpu 4 1280 mA = 6.4 W, idle "
            "540 mA = 2.7 W at 5 V."
        ),
    ),
    DevicePreset(
        name="jetson-nano",
        description="NVIDIA Jetson Nano (128-core Maxwell @ 921.6 MHz), TensorRT FP32, MaxN",
        effective_flops_per_s=RESNET18_256_FLOPS / JETSON_NANO_TRT_FP32_RESNET18_S,
        per_block_overhead_s=KERNELS_PER_BLOCK * JETSON_LAUNCH_SLOWDOWN * CUDA_LAUNCH_OVERHEAD_S,
        compute_power_w=JETSON_NANO_MAXN_BUDGET_W,
        idle_power_w=JETSON_NANO_IDLE_POWER_W,
        source=(
            "kentaroy47/benchmark-FP32-FP16-INT8-with-TensorRT: Jetson Nano, TensorRT FP32, "
            "ResNet-18 at 256x256 in 26 ms; 2 * 1.814e9 * (256/224)^2 = 4.74 GFLOP -> "
            "182 GFLOP/s, 77% of the 236 GFLOP/s FP32 peak (128 cores * 2 * 921.6 MHz; "
            "NVIDIA lists 472 GFLOPS FP16), an upper-end rate for the small convolutions "
            "here. Overhead: ASSUMPTION 2 kernels per block (TensorRT conv+BN+ReLU fusion) "
            "* 10 us per launch, twice the 4-6 us measured on a desktop CPU+GPU "
            "(susun-blog.com 'pegainfer (3)') because the Nano launches from a "
            "Cortex-A57 -> 20 us. Power: NVIDIA Jetson Nano L4T guide, nvpmodel MaxN "
            "budget 10 W (an upper bound for the module under load). Idle: ASSUMPTION "
            "2.0 W, no citable measurement retrieved (below the 5 W mode budget and "
            "the Raspberry Pi 4's measured 2.7 W idle)."
        ),
    ),
    DevicePreset(
        name="phone",
        description="Apple iPhone 11 Pro (A13), TFLite CPU 2 threads FP32",
        effective_flops_per_s=(
            MOBILENET_V1_1_0_224_FLOPS
            / IPHONE11PRO_TFLITE_CPU2_MNV1_S
            * TFLITE_ARM_SMALL_MODEL_EFFICIENCY
        ),
        per_block_overhead_s=0.0,
        compute_power_w=PHONE_COMPUTE_POWER_W,
        idle_power_w=PHONE_IDLE_POWER_W,
        source=(
            "freedomtan/glDelegateBenchmark (K.-S. Tan): iPhone 11 Pro, TFLite, "
            "MobileNet-v1-1.0-224 (569 M mult-adds = 1.138 GFLOP, Howard et al. 2017) on "
            "2 CPU threads in 18.21 ms -> 62.5 GFLOP/s; scaled by 0.82, the small/large "
            "model efficiency ratio of TFLite FP32 on Graviton4 in MLPerf Inference v5.0 "
            "open (GATEOverflow aws_m8g.xlarge: MobileNet-v1-0.25-128 46.1 GFLOP/s vs "
            "1.0-224 55.9 GFLOP/s) -> 51.5 GFLOP/s; CPU, overhead 0. Power: ASSUMPTION, "
            "no measurement retrieved: 3.0 W SoC+DRAM with two big cores busy (AnandTech's "
            "iPhone 11 review, Frumusanu 2019, reports A13 peak per-core SPEC power almost "
            "1 W above the A12's, i.e. several W); idle 0.3 W awake, screen off, radio "
            "excluded (order of magnitude of Carroll and Heiser, USENIX ATC 2010)."
        ),
    ),
)

SERVER_PRESETS: dict[str, ServerPreset] = by_name(
    ServerPreset(
        name="edge-cpu",
        description="Edge VM, 4 vCPU AWS Graviton4 (m8g.xlarge, Neoverse V2), TFLite FP32",
        effective_flops_per_s=MOBILENET_V1_0_25_128_FLOPS / GRAVITON4_MNV1_025_128_S,
        per_block_overhead_s=0.0,
        source=(
            "MLPerf Inference v5.0 open, GATEOverflow (cTuning CM) "
            "aws_m8g.xlarge-ctuning_cpp_tflite: MobileNet-v1-0.25-128 FP32 single stream "
            "p90 latency 0.608 ms; 14 M mult-adds = 28 MFLOP (Howard et al. 2017) -> "
            "28e6 / 0.608e-3 = 46.1 GFLOP/s, a model of the same size class as this "
            "project's (whole-model rate, so overhead 0)."
        ),
    ),
    ServerPreset(
        name="edge-gpu",
        description="NVIDIA T4 (70 W) edge inference GPU, TensorRT FP32",
        effective_flops_per_s=T4_SMALL_CNN_EFFICIENCY * T4_FP32_PEAK_FLOPS,
        per_block_overhead_s=KERNELS_PER_BLOCK * CUDA_LAUNCH_OVERHEAD_S,
        source=(
            "DERIVED: NVIDIA T4 datasheet 8.1 TFLOPS FP32 peak; ASSUMED 10% efficiency at "
            "batch 1 on 28x28-and-smaller feature maps (a 14x14x64 output has 12.5 k "
            "elements for 2560 CUDA cores, so most of the GPU idles; no small-model "
            "measurement retrieved) -> 0.81 TFLOP/s. Overhead: 2 kernels per block "
            "(TensorRT conv+BN+ReLU fusion, ASSUMPTION) * 5 us per CUDA launch (4-6 us "
            "measured, susun-blog.com 'pegainfer (3): From Launch Overhead to CUDA "
            "Graph') = 10 us."
        ),
    ),
)


def compute_latency_s(
    flops: np.ndarray | float, preset: DevicePreset | ServerPreset
) -> np.ndarray | float:
    """Latency of a block (or exit head) on a preset, in seconds.

    ``flops / effective_flops_per_s + per_block_overhead_s``, and exactly 0 s for 0 FLOPs (a
    block that is not executed). Vectorised: an array of FLOPs gives an array of latencies of
    the same shape; a scalar gives a float.

    Raises:
        ValueError: if any FLOP count is negative or not finite.
    """
    f = np.asarray(flops, dtype=np.float64)
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError(f"flops must be finite and >= 0, got {flops!r}")
    latency = np.where(f > 0, f / preset.effective_flops_per_s + preset.per_block_overhead_s, 0.0)
    if np.ndim(flops) == 0:
        return float(latency)
    return latency


def get_device_preset(name: str) -> DevicePreset:
    """The device preset called ``name``; ``ValueError`` naming it and the allowed ones."""
    try:
        return DEVICE_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown device preset {name!r}; allowed: {sorted(DEVICE_PRESETS)}"
        ) from None


def get_server_preset(name: str) -> ServerPreset:
    """The server preset called ``name``; ``ValueError`` naming it and the allowed ones."""
    try:
        return SERVER_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown server preset {name!r}; allowed: {sorted(SERVER_PRESETS)}"
        ) from None
