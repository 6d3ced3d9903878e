"""Camera conditions: real image corruptions of 28x28 uint8 images, and cheap image statistics.

The corruptions follow ImageNet-C (Hendrycks and Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019; reference code
``hendrycks/robustness``, ``ImageNet-C/create_c/make_imagenet_c.py``), whose parameters MNIST-C
(Mu and Gilmer, ICML 2019 workshop; ``google-research/mnist-c``, ``corruptions.py``) applies
unchanged to 28x28 images. Low light follows 3D Common Corruptions (Kar et al., CVPR 2022;
``EPFL-VILAB/3DCommonCorruptions``, ``create_3dcc/create_non3d.py``). Each has severities 1..5.

A corrupted image is a pure function of (image, sample index, condition): the noise of sample
``i`` comes from its own generator, ``np.random.default_rng([*salt, corruption id, severity,
i])``, never from a global one, and every per-pixel operation is an exactly rounded IEEE
operation (+, -, *, /, sqrt, floor) applied in a fixed order, with per-image statistics taken
in exact integer arithmetic. So one image (live mode) and a batch (profiling) give the same
bytes. Outputs are uint8, like the camera's frame: ImageNet-C quantises with ``np.uint8``
(truncation); here values are rounded to the nearest level, so that an unchanged pixel maps to
itself and no half-level darkening is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

IMAGE_SIDE_PX = 28  # Fashion-MNIST (as splitexit.dnn_profiles.data.IMAGE_SIDE)
IMAGENET_C_SIDE_PX = 224  # ImageNet-C's image side: its blur radii are in these pixels
LEVELS = 255.0  # uint8 full scale
NUM_SEVERITIES = 5

# The seed of the corruptions a profile records and live mode applies: an arbitrary fixed
# constant (changing it changes every recorded noise pattern). Training uses other salts.
EVAL_SALT = 20190  # "ImageNet-C, 2019"

# Stable integer ids of the corruptions, part of every noise seed: adding a corruption or a
# condition never changes the noise of an existing one.
CORRUPTION_IDS = {
    "none": 0,
    "gaussian_noise": 1,
    "shot_noise": 2,
    "defocus_blur": 3,
    "contrast": 4,
    "brightness_down": 5,
    "low_light": 6,
}

# -- parameters per severity 1..5 ---------------------------------------------------------------

# ImageNet-C gaussian_noise: additive noise, std as a fraction of full scale (also MNIST-C).
GAUSSIAN_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
# ImageNet-C shot_noise: Poisson noise with this many photons at full scale (also MNIST-C).
SHOT_NOISE_PHOTONS = (60, 25, 12, 5, 3)
# ImageNet-C defocus_blur: disk radius in 224-pixel images (c[0]; c[1] is the anti-aliasing
# Gaussian's sigma, 0.1-0.5 px, which scaled by 28/224 is under 0.07 px and is omitted).
DEFOCUS_RADIUS_224_PX = (3, 4, 6, 8, 10)
# Scaled to 28-pixel images by 28/224 = 1/8, the same blur relative to the frame: 0.375, 0.5,
# 0.75, 1.0, 1.25 px. (CIFAR-10-C, ``make_cifar_c.py``, uses 0.3, 0.4, 0.5, 1, 1.5 px on
# 32-pixel images: about the same. MNIST-C keeps the 224-pixel radii on 28-pixel images.)
DEFOCUS_RADIUS_PX = tuple(r * IMAGE_SIDE_PX / IMAGENET_C_SIDE_PX for r in DEFOCUS_RADIUS_224_PX)
# ImageNet-C contrast: (x - mean) * c + mean, a uniform veil like thin fog (also MNIST-C).
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)
# ImageNet-C brightness adds c to HSV value (V = x for grey images); here it is subtracted:
# the scene darker, nothing else changed.
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)
# 3DCC low_light: tone curve y = ((x - min) / (max - min)) ** gamma * peak, then the
# Poisson-Gaussian sensor noise of its severity 3: 10 * 12 photons at full scale (10 times
# ImageNet-C's shot noise c[2]) and read noise std 0.1 * 0.18 (ImageNet-C's Gaussian c[2]).
LOW_LIGHT_PEAK = (0.60, 0.50, 0.40, 0.30, 0.20)
LOW_LIGHT_GAMMA = 2  # applied as t * t (exact), as 3DCC's imadjust(..., gamma=2.)
LOW_LIGHT_PHOTONS = 10 * SHOT_NOISE_PHOTONS[2]  # 120
LOW_LIGHT_READ_STD = 0.1 * GAUSSIAN_NOISE_STD[2]  # 0.018

CORRUPTION_SOURCES = {
    "gaussian_noise": "ImageNet-C gaussian_noise, std (0.08, 0.12, 0.18, 0.26, 0.38)",
    "shot_noise": "ImageNet-C shot_noise, photons (60, 25, 12, 5, 3)",
    "defocus_blur": "ImageNet-C defocus_blur, disk radius (3, 4, 6, 8, 10) px at 224 px scaled "
    "by 28/224; area-sampled disk (pixel box * disk * pixel box)",
    "contrast": "ImageNet-C contrast, factor (0.4, 0.3, 0.2, 0.1, 0.05)",
    "brightness_down": "ImageNet-C brightness, shift (0.1, 0.2, 0.3, 0.4, 0.5) subtracted",
    "low_light": "3D Common Corruptions low_light (Kar et al., CVPR 2022): gamma 2, peak (0.6, "
    "0.5, 0.4, 0.3, 0.2), Poisson 120 photons + Gaussian std 0.018",
}


@dataclass(frozen=True)
class Condition:
    """A camera condition: one corruption at one severity (``"none"``, 0 for clean)."""

    name: str
    corruption: str
    severity: int

    def describe(self) -> dict:
        """The condition as JSON data, with its source."""
        return {
            "name": self.name,
            "corruption": self.corruption,
            "severity": self.severity,
            "source": CORRUPTION_SOURCES.get(self.corruption, "the image as captured"),
        }


CLEAN = Condition("clean", "none", 0)

# The conditions a v1 world draws from and the robust model is trained on: clean and eight
# corruptions, a mild and a harsh one per kind (sensor noise, defocus, fog-like veil, light).
# Chosen on the shipped clean model's first exit (3,000 test images, clean 0.869): the mild
# ones cost it 7-15 points, the harsh ones 12-46 (defocus stays mild at severity 5 once its
# radius is scaled to 28 px). Darkness appears twice: a darker scene at "dusk" (brightness
# down) and 3DCC's low light with its sensor noise at "night".
CONDITIONS: tuple[Condition, ...] = (
    CLEAN,
    Condition("noise_mild", "gaussian_noise", 1),
    Condition("noise_harsh", "gaussian_noise", 3),
    Condition("blur_mild", "defocus_blur", 3),
    Condition("blur_harsh", "defocus_blur", 5),
    Condition("fog_mild", "contrast", 1),
    Condition("fog_harsh", "contrast", 3),
    Condition("dusk", "brightness_down", 3),
    Condition("night", "low_light", 4),
)
CONDITION_NAMES = tuple(c.name for c in CONDITIONS)


def get_condition(condition: Condition | str) -> Condition:
    """A condition of :data:`CONDITIONS` by name (a :class:`Condition` passes through)."""
    if isinstance(condition, Condition):
        return condition
    for c in CONDITIONS:
        if c.name == condition:
            return c
    raise ValueError(f"condition must be one of {list(CONDITION_NAMES)}, got {condition!r}")


# -- helpers ------------------------------------------------------------------------------------


def _as_batch(images: np.ndarray) -> tuple[np.ndarray, bool]:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    single = images.ndim == 2
    batch = images[None] if single else images
    if batch.ndim != 3 or batch.shape[1:] != (IMAGE_SIDE_PX, IMAGE_SIDE_PX):
        raise ValueError(f"images must be (28, 28) or (N, 28, 28), got {images.shape}")
    return batch, single


def _quantise(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats (clipped here) -> uint8 levels, rounded to nearest (half up)."""
    return np.floor(np.clip(x, 0.0, 1.0) * LEVELS + 0.5).astype(np.uint8)


def _generators(salt: Sequence[int], corruption: str, severity: int, indices: np.ndarray):
    code = CORRUPTION_IDS[corruption]
    for i in indices:
        yield np.random.default_rng([*salt, code, severity, int(i)])


def _standard_normal(gens, n: int) -> np.ndarray:
    out = np.empty((n, IMAGE_SIDE_PX, IMAGE_SIDE_PX))
    for k, rng in enumerate(gens):
        out[k] = rng.standard_normal((IMAGE_SIDE_PX, IMAGE_SIDE_PX))
    return out


def _image_sums(batch: np.ndarray) -> np.ndarray:
    """(N,) exact int64 pixel sums."""
    return batch.reshape(len(batch), -1).sum(axis=1, dtype=np.int64)


@cache
def defocus_kernel(radius_px: float, subsamples: int = 256) -> np.ndarray:
    """The defocus point-spread function on the pixel grid: a uniform disk of ``radius_px``
    convolved with the pixel box twice (the input pixel's area and the output pixel's), i.e.
    ``K(d) = mean over the disk of tent(d - v)``, tent = box * box. It sums to 1 (the tent's
    integer translates sum to 1) and is the identity at radius 0. The disk is sampled on a
    fixed ``subsamples`` x ``subsamples`` midpoint grid (deterministic)."""
    half = int(np.ceil(1.0 + radius_px)) - 1  # tent * disk vanishes at |d| >= 1 + r
    ticks = (np.arange(subsamples) + 0.5) / subsamples * 2.0 - 1.0
    vx, vy = np.meshgrid(ticks * radius_px, ticks * radius_px)
    inside = vx**2 + vy**2 <= radius_px**2
    vx, vy = vx[inside], vy[inside]
    offsets = np.arange(-half, half + 1)
    tent_x = np.clip(1.0 - np.abs(offsets[:, None] - vx[None]), 0.0, None)  # (2h+1, M)
    tent_y = np.clip(1.0 - np.abs(offsets[:, None] - vy[None]), 0.0, None)
    kernel = tent_y @ tent_x.T / len(vx)  # (2h+1, 2h+1), rows = dy
    kernel /= kernel.sum()
    kernel.flags.writeable = False
    return kernel


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Same-size 2-D correlation of (N, H, W) floats with a small kernel, borders mirrored
    without repeating the edge (cv2.filter2D's default, BORDER_REFLECT_101). Taps are summed
    in a fixed order, elementwise: each output pixel is the same whatever N is."""
    h = kernel.shape[0] // 2
    padded = np.pad(x, ((0, 0), (h, h), (h, h)), mode="reflect")
    side = x.shape[1]
    out = np.zeros_like(x)
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            out += kernel[dy, dx] * padded[:, dy : dy + side, dx : dx + side]
    return out


# -- the corruptions ----------------------------------------------------------------------------


def corrupt(
    images: np.ndarray,
    corruption: str,
    severity: int,
    sample_indices: int | Sequence[int] | np.ndarray,
    salt: int | Sequence[int] = EVAL_SALT,
) -> np.ndarray:
    """Apply ``corruption`` at ``severity`` (1..5; 0 or ``"none"`` returns a copy) to uint8
    images (28, 28) or (N, 28, 28), whose sample indices (into their data set) seed the noise.
    Returns uint8 of the input's shape."""
    if corruption not in CORRUPTION_IDS:
        raise ValueError(f"corruption must be one of {sorted(CORRUPTION_IDS)}, got {corruption!r}")
    batch, single = _as_batch(images)
    n = len(batch)
    indices = np.atleast_1d(np.asarray(sample_indices, dtype=np.int64))
    if indices.shape != (n,):
        raise ValueError(f"need one sample index per image ({n}), got shape {indices.shape}")
    salt = (salt,) if isinstance(salt, (int, np.integer)) else tuple(int(s) for s in salt)
    if corruption == "none" or severity == 0:
        if not (corruption == "none" and severity == 0):
            raise ValueError(f"severity 0 goes with corruption 'none', got {corruption!r}")
        out = batch.copy()
        return out[0] if single else out
    if not 1 <= severity <= NUM_SEVERITIES:
        raise ValueError(f"severity must be in 1..{NUM_SEVERITIES}, got {severity}")
    s = severity - 1
    x = batch / LEVELS  # float64 in [0, 1]
    gens = _generators(salt, corruption, severity, indices)

    if corruption == "gaussian_noise":
        y = x + GAUSSIAN_NOISE_STD[s] * _standard_normal(gens, n)
    elif corruption == "shot_noise":
        photons = float(SHOT_NOISE_PHOTONS[s])
        lam = x * photons
        counts = np.empty_like(lam)
        for k, rng in enumerate(gens):
            counts[k] = rng.poisson(lam[k])
        y = counts / photons
    elif corruption == "defocus_blur":
        y = _convolve(x, defocus_kernel(DEFOCUS_RADIUS_PX[s]))
    elif corruption == "contrast":
        mean = (_image_sums(batch) / (LEVELS * IMAGE_SIDE_PX * IMAGE_SIDE_PX))[:, None, None]
        y = (x - mean) * CONTRAST_FACTOR[s] + mean
    elif corruption == "brightness_down":
        y = x - BRIGHTNESS_SHIFT[s]
    else:  # low_light
        flat = batch.reshape(n, -1)
        lo = flat.min(axis=1).astype(np.float64)[:, None, None]
        span = (flat.max(axis=1).astype(np.float64) - flat.min(axis=1))[:, None, None]
        t = np.divide(batch - lo, span, out=np.zeros_like(x), where=span > 0)
        y = t * t * LOW_LIGHT_PEAK[s]  # gamma 2
        lam = y * float(LOW_LIGHT_PHOTONS)
        for k, rng in enumerate(gens):  # Poisson first, then read noise, as 3DCC
            shot = np.clip(rng.poisson(lam[k]) / float(LOW_LIGHT_PHOTONS), 0.0, 1.0)
            y[k] = shot + LOW_LIGHT_READ_STD * rng.standard_normal(shot.shape)
    out = _quantise(y)
    return out[0] if single else out


def apply_condition(
    images: np.ndarray,
    condition: Condition | str,
    sample_indices: int | Sequence[int] | np.ndarray,
    salt: int | Sequence[int] = EVAL_SALT,
) -> np.ndarray:
    """:func:`corrupt` with a :class:`Condition` (or the name of one in :data:`CONDITIONS`)."""
    c = get_condition(condition)
    return corrupt(images, c.corruption, c.severity, sample_indices, salt)


# -- image statistics a device can compute on its frame ----------------------------------------

IMAGE_STATS_NAMES = ("brightness", "contrast", "sharpness")
_PIXELS = IMAGE_SIDE_PX * IMAGE_SIDE_PX
_INTERIOR = (IMAGE_SIDE_PX - 2) ** 2
# Operations per image (adds, subtracts, multiplies, divides, abs, sqrt), integer or float:
IMAGE_STATS_FLOPS = (
    _PIXELS  # brightness: sum of pixels (783 adds) and one divide
    + 2 * _PIXELS
    + 4  # contrast: square and sum every pixel; n*sumsq - sum^2, sqrt, divide
    + 7 * _INTERIOR
    + 1  # sharpness: 4*c - 4 neighbours, abs, sum per interior pixel; divide
)


def image_stats(images: np.ndarray) -> np.ndarray:
    """(N, 3) float32 statistics of uint8 frames (28, 28) or (N, 28, 28), as fractions of full
    scale: mean brightness and contrast (pixel standard deviation), in [0, 1], and sharpness
    (mean absolute 4-neighbour Laplacian over the interior pixels / 255, in [0, 4]). Darkness
    lowers the first, fog the second, blur the third and noise raises it. Exact integer sums,
    so one frame and a batch give the same bits. Cost: :data:`IMAGE_STATS_FLOPS` operations
    per frame."""
    batch, _ = _as_batch(images)
    n = len(batch)
    flat = batch.reshape(n, -1).astype(np.int64)
    total = flat.sum(axis=1)
    squares = (flat * flat).sum(axis=1)
    var_num = _PIXELS * squares - total * total  # = PIXELS^2 * variance, exact
    v = batch.astype(np.int32)
    lap = 4 * v[:, 1:-1, 1:-1] - v[:, :-2, 1:-1] - v[:, 2:, 1:-1] - v[:, 1:-1, :-2] - v[:, 1:-1, 2:]
    lap_sum = np.abs(lap).reshape(n, -1).sum(axis=1, dtype=np.int64)
    out = np.empty((n, len(IMAGE_STATS_NAMES)), np.float32)
    out[:, 0] = total / (LEVELS * _PIXELS)
    out[:, 1] = np.sqrt(var_num.astype(np.float64)) / (LEVELS * _PIXELS)
    out[:, 2] = lap_sum / (LEVELS * _INTERIOR)
    return out
