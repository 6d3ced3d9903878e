"""An executable multi-exit CNN that can be split at any block boundary.

Blocks 1..S run in order; split point ``s`` runs blocks 1..s on the device and s+1..S on the
server (0 = send the raw input, S = everything on the device). Exits are small classifiers after
some blocks; the last block's classifier is the final exit. Block 2 is a learned bottleneck
encoder (BottleNet, Eshratifar et al. ISLPED 2019; head network distillation, Matsubara et al.
2019): its 8x7x7 output is the payload of split 2 (396 bytes at int8, half the 784-byte raw
input), and block 3 starts with the matching decoder on the server side.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from splitexit.dnn_profiles.data import IMAGE_SIDE, NUM_CLASSES
from splitexit.dnn_profiles.profile import COMPRESSIONS

INT8_MAX = 127
RAW_INPUT_BYTES = IMAGE_SIDE * IMAGE_SIDE  # one uint8 grey-scale image as captured
# Fashion-MNIST training-set pixel mean and standard deviation (of x / 255).
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530
BOTTLENECK_CHANNELS = 8


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch at ``n`` CPU threads inside the block, then at the count before: a profile's
    numbers are reproduced bit for bit (on the CPU that made it) at the thread count it was
    made at (``Profile.torch_threads``), whatever the process uses elsewhere. The count is
    process-wide: torch work in other Python threads meanwhile runs at ``n`` too."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


class MultiExitModel(Protocol):
    """What the profiler, live execution and training need of a multi-exit model (a torch
    module): blocks run in order, exits after some of them, the last block's is the final."""

    name: str  # registered name (splitexit.dnn_profiles.zoo.MODELS)
    dataset: str  # registered data set it takes frames of
    exit_blocks: tuple[int, ...]
    raw_input_bytes: int  # bytes of one uint8 frame as captured (split 0's payload)
    blocks: nn.ModuleList
    exits: nn.ModuleDict

    @property
    def num_blocks(self) -> int: ...

    def exit_logits(self, block: int, features: torch.Tensor) -> torch.Tensor: ...

    def run_blocks(self, x: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, dict]: ...

    def images_to_input(self, images: np.ndarray) -> torch.Tensor: ...


class MultiExitNet(nn.Module):
    """The execution every registered model shares: a subclass sets ``blocks`` (run in order)
    and ``exits`` (keyed by the block they follow, as a string) and the class attributes of
    :class:`MultiExitModel`."""

    exit_blocks: tuple[int, ...]
    blocks: nn.ModuleList
    exits: nn.ModuleDict

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def exit_logits(self, block: int, features: torch.Tensor) -> torch.Tensor:
        return self.exits[str(block)](features)

    def run_blocks(self, x: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, dict]:
        """Run blocks start+1..stop on ``x``; return the features and the exits' logits."""
        logits = {}
        for b, block in enumerate(self.blocks[start:stop], start=start + 1):
            x = block(x)
            if b in self.exit_blocks:
                logits[b] = self.exit_logits(b, x)
        return x, logits

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, in block order (training and profiling)."""
        return list(self.run_blocks(x, 0, self.num_blocks)[1].values())


def _conv(c_in: int, c_out: int, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


class _Normalise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - PIXEL_MEAN) / PIXEL_STD


class MultiExitCNN(MultiExitNet):
    """Five blocks, exits after blocks 1, 3, 4 and 5 (the final classifier).

    Block 2 is the bottleneck encoder, right after the first block as in head network
    distillation, so that the device-side head stays light (about 0.6 MFLOP)."""

    name = "fmnist-multiexit-cnn"
    dataset = "fashion-mnist"
    raw_input_bytes = RAW_INPUT_BYTES
    exit_blocks: tuple[int, ...] = (1, 3, 4, 5)

    def __init__(self) -> None:
        super().__init__()
        c = BOTTLENECK_CHANNELS
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(_Normalise(), *_conv(1, 32), nn.ReLU(), nn.MaxPool2d(2)),  # 32x14x14
                nn.Sequential(  # bottleneck encoder: 8x7x7
                    nn.Conv2d(32, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c)
                ),
                nn.Sequential(*_conv(c, 64), nn.ReLU(), *_conv(64, 64), nn.ReLU()),  # 64x7x7
                nn.Sequential(*_conv(64, 128), nn.ReLU(), nn.MaxPool2d(2)),  # 128x3x3
                nn.Sequential(  # 128
                    *_conv(128, 128), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
                ),
            ]
        )
        self.exits = nn.ModuleDict(
            {
                "1": nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 10)),
                "3": nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, 10)),
                "4": nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)),
                "5": nn.Sequential(nn.Dropout(0.2), nn.Linear(128, NUM_CLASSES)),
            }
        )

    @staticmethod
    def images_to_input(images: np.ndarray) -> torch.Tensor:
        return images_to_input(images)


def images_to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float input (N, 1, 28, 28) in [0, 1]."""
    t = torch.from_numpy(np.array(images, dtype=np.uint8))
    return t.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE).to(torch.float32) / 255.0


def max_softmax(logits: torch.Tensor) -> tuple[float, int]:
    """Confidence (max softmax, as SDN: Kaya et al., ICML 2019) and prediction (argmax of the
    logits) of one sample's exit logits (1, classes). Live execution and the profiler both
    call this."""
    return float(torch.softmax(logits[0], dim=-1).max()), int(logits[0].argmax())


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax divided by log(classes), in [0, 1] (as BranchyNet:
    Teerapittayanon et al., ICPR 2016); low means confident."""
    p = torch.softmax(logits, dim=-1)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    return (entropy / float(np.log(p.shape[-1]))).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Payloads: what really goes over the uplink.


def encode_payload(features: torch.Tensor, compression: str) -> bytes:
    """Serialise one sample's split tensor. int8 is symmetric per tensor: a float32 scale
    followed by the int8 values (Jacob et al., CVPR 2018)."""
    x = np.ascontiguousarray(features.detach().numpy(), dtype=np.float32).reshape(-1)
    if compression == "float32":
        return x.tobytes()
    if compression == "float16":
        return x.astype(np.float16).tobytes()
    if compression == "int8":
        peak = float(np.abs(x).max()) if x.size else 0.0
        scale = np.float32(peak / INT8_MAX if peak > 0 else 1.0)
        q = np.clip(np.rint(x / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
        return scale.tobytes() + q.tobytes()
    raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")


def decode_payload(data: bytes, compression: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`encode_payload` (dequantised to float32). Decodes into memory that
    torch allocated: convolutions on arbitrarily aligned numpy buffers run slower."""
    out = torch.empty(shape, dtype=torch.float32)
    view = out.numpy().reshape(-1)
    if compression == "float32":
        view[:] = np.frombuffer(data, dtype=np.float32)
    elif compression == "float16":
        view[:] = np.frombuffer(data, dtype=np.float16)
    elif compression == "int8":
        scale = np.frombuffer(data[:4], dtype=np.float32)[0]
        np.multiply(np.frombuffer(data[4:], dtype=np.int8), scale, out=view)
    else:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    return out


def payload_num_bytes(numel: int, compression: str) -> int:
    """Bytes of :func:`encode_payload` for a tensor of ``numel`` values."""
    return {"float32": 4 * numel, "float16": 2 * numel, "int8": 4 + numel}[compression]


@dataclass
class Inference:
    """What one split inference did."""

    prediction: int
    exit_block: int  # block whose exit answered
    confidence: float  # max softmax of the answering exit
    payload: bytes  # b"" when nothing was sent
    device_blocks: int  # blocks run on the device
    server_blocks: int  # blocks run on the server


@torch.no_grad()
def split_inference(
    model: MultiExitModel,
    image: np.ndarray,
    split: int,
    threshold: float,
    compression: str = "float32",
) -> Inference:
    """Run one uint8 frame of the model's data set split at ``split`` with exit threshold
    ``threshold`` on the max-softmax confidence. The device stops at the first exit that
    reaches the threshold; otherwise it sends the payload and the server runs the rest, whose
    exits apply too."""
    num_blocks = model.num_blocks
    if not 0 <= split <= num_blocks:
        raise ValueError(f"split must be in 0..{num_blocks}, got {split}")
    if split == 0:  # the raw uint8 image goes over the uplink
        payload = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
        x = model.images_to_input(np.frombuffer(payload, dtype=np.uint8))
    else:
        payload, x = b"", model.images_to_input(image)
    answer = None
    for b, block in enumerate(model.blocks, start=1):  # (ModuleList indexing is slow)
        if b == split + 1 and split > 0:  # the uplink: serialise, send, deserialise
            payload = encode_payload(x, compression)
            x = decode_payload(payload, compression, tuple(x.shape))
        x = block(x)
        # An exit head runs only if it can answer: thresholds above 1 never exit early, and
        # the final exit answers whatever its confidence (returned with the answer).
        if b == num_blocks:
            conf, pred = max_softmax(model.exit_logits(b, x))
            answer = (pred, b, conf)
        elif b in model.exit_blocks and threshold <= 1.0:
            conf, pred = max_softmax(model.exit_logits(b, x))
            if conf >= threshold:
                answer = (pred, b, conf)
                break
    pred, exit_block, conf = answer
    return Inference(
        prediction=pred,
        exit_block=exit_block,
        confidence=conf,
        payload=payload,
        device_blocks=min(split, exit_block),
        server_blocks=max(0, exit_block - split),
    )
