"""A split multi-exit ResNet for CIFAR-10, deployed as split computing deploys it.

Four blocks; split ``s`` runs blocks 1..s on the device and the rest on the edge server:

1. the device-side head: a 3x3 stem and one residual block of 16 channels at 32 x 32 (the first
   stage of a CIFAR ResNet, He et al., CVPR 2016, Sec. 4.2), about 10 MFLOP, with an early exit;
2. a learned bottleneck encoder (BottleNet, Eshratifar et al., ISLPED 2019; head network
   distillation, Matsubara et al., 2019): a stride-2 convolution to 8 x 16 x 16, whose int8
   payload (2,052 bytes) is two thirds of the 3,072-byte raw image;
3. on the server: the matching decoder (a 3x3 convolution to 48 channels) and three residual
   blocks at 16 x 16, with an exit;
4. three residual blocks of 96 channels at 8 x 8 (the first one strided), global average
   pooling and the final classifier.

The tail (blocks 3 and 4, about 125 MFLOP) is a ResNet-20's second and third stages at 1.5x
width: ResNet-20 reaches 91.25% on CIFAR-10 (He et al., Table 6).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from splitexit.dnn_profiles.cifar10 import IMAGE_SHAPE, NUM_CLASSES, RAW_IMAGE_BYTES
from splitexit.dnn_profiles.model import MultiExitNet

# CIFAR-10 train-split per-channel mean and standard deviation of x / 255 (the JPEG images,
# measured here; the original pixels give 0.4914 / 0.4822 / 0.4465 and 0.2470 / 0.2435 /
# 0.2616 for the std over all pixels).
CHANNEL_MEAN = (0.4913, 0.4821, 0.4465)
CHANNEL_STD = (0.2452, 0.2428, 0.2606)
HEAD_CHANNELS = 16
BOTTLENECK_CHANNELS = 8
MID_CHANNELS = 48
TAIL_CHANNELS = 96


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (a strided 1x1 projection where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(c_in, c_out, stride), nn.ReLU(), *_conv_bn(c_out, c_out)
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class _Normalise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CHANNEL_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class CifarMultiExitResNet(MultiExitNet):
    """Four blocks, exits after blocks 1, 3 and 4 (the final classifier)."""

    name = "cifar10-multiexit-resnet"
    dataset = "cifar-10"
    exit_blocks: tuple[int, ...] = (1, 3, 4)
    raw_input_bytes = RAW_IMAGE_BYTES

    def __init__(self) -> None:
        super().__init__()
        h, c, m, t = HEAD_CHANNELS, BOTTLENECK_CHANNELS, MID_CHANNELS, TAIL_CHANNELS
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(_Normalise(), *_conv_bn(3, h), nn.ReLU(), BasicBlock(h, h)),
                nn.Sequential(*_conv_bn(h, c, stride=2)),  # bottleneck: 8x16x16
                nn.Sequential(*_conv_bn(c, m), nn.ReLU(), *(BasicBlock(m, m) for _ in range(3))),
                nn.Sequential(
                    BasicBlock(m, t, stride=2),
                    BasicBlock(t, t),
                    BasicBlock(t, t),
                    nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(),
                ),
            ]
        )
        self.exits = nn.ModuleDict(
            {
                "1": nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(h * 16, 10)),
                "3": nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(m * 4, 10)),
                "4": nn.Linear(t, NUM_CLASSES),
            }
        )

    @staticmethod
    def images_to_input(images: np.ndarray) -> torch.Tensor:
        """uint8 images (N, 32, 32, 3) or (32, 32, 3) -> float input (N, 3, 32, 32) in [0, 1]."""
        t = torch.from_numpy(np.array(images, dtype=np.uint8)).reshape(-1, *IMAGE_SHAPE)
        return t.permute(0, 3, 1, 2).contiguous().to(torch.float32) / 255.0
