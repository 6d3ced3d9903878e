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
    source: str = ""  # where its parameters come from ("": Fashion-MNIST's, below)

    def describe(self) -> dict:
        """The condition as JSON data, with its source."""
        return {
            "name": self.name,
            "corruption": self.corruption,
            "severity": self.severity,
            "source": self.source
            or CORRUPTION_SOURCES.get(self.corruption, "the image as captured"),
        }


CLEAN = Condition("clean", "none", 0)

# (name, corruption) of the eight non-clean conditions; each data set sets their severities.
CONDITION_KINDS: tuple[tuple[str, str], ...] = (
    ("noise_mild", "gaussian_noise"),
    ("noise_harsh", "gaussian_noise"),
    ("blur_mild", "defocus_blur"),
    ("blur_harsh", "defocus_blur"),
    ("fog_mild", "contrast"),
    ("fog_harsh", "contrast"),
    ("dusk", "brightness_down"),
    ("night", "low_light"),
)


def _conditions(
    severities: tuple[int, ...], sources: dict[str, str] | None = None
) -> tuple[Condition, ...]:
    """Clean and CONDITION_KINDS at ``severities``, with ``sources`` (None: Fashion-MNIST's)."""
    return (CLEAN,) + tuple(
        Condition(name, corruption, severity, sources[corruption] if sources else "")
        for (name, corruption), severity in zip(CONDITION_KINDS, severities, strict=True)
    )


# The conditions a v1 world draws from and the robust model is trained on: clean and eight
# corruptions, a mild and a harsh one per kind (sensor noise, defocus, fog-like veil, light).
# Chosen on the shipped clean model's first exit (3,000 test images, clean 0.869): the mild
# ones cost it 7-15 points, the harsh ones 12-46 (defocus stays mild at severity 5 once its
# radius is scaled to 28 px). Darkness appears twice: a darker scene at "dusk" (brightness
# down) and 3DCC's low light with its sensor noise at "night".
CONDITIONS: tuple[Condition, ...] = _conditions((1, 3, 3, 5, 1, 3, 3, 4))
CONDITION_NAMES = tuple(c.name for c in CONDITIONS)


# -- CIFAR-10: RGB 32 x 32 frames, CIFAR-10-C's own parameters ---------------------------------
# Hendrycks and Dietterich (ICLR 2019), ``ImageNet-C/create_c/make_cifar_c.py``: the parameters
# its authors set for 32-pixel images (milder than ImageNet-C's, which assume 224 pixels).
CIFAR_SIDE_PX = 32
CIFAR_GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
CIFAR_SHOT_NOISE_PHOTONS = (500, 250, 100, 75, 50)
# defocus_blur: (disk radius px, anti-aliasing Gaussian sigma px) on 32-pixel images.
CIFAR_DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
# contrast: (x - per-channel mean) * c + per-channel mean.
CIFAR_CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)
# brightness: CIFAR-10-C adds c to HSV value; here it is subtracted (a darker scene).
CIFAR_BRIGHTNESS_SHIFT = (0.05, 0.1, 0.15, 0.2, 0.3)
# 3DCC low_light has no image-size parameter: the same tone curve and sensor noise as above.

CIFAR_CORRUPTION_SOURCES = {
    "gaussian_noise": "CIFAR-10-C gaussian_noise, std (0.04, 0.06, 0.08, 0.09, 0.10)",
    "shot_noise": "CIFAR-10-C shot_noise, photons (500, 250, 100, 75, 50)",
    "defocus_blur": "CIFAR-10-C defocus_blur, aliased disk radius (0.3, 0.4, 0.5, 1, 1.5) px "
    "smoothed by a 3x3 Gaussian of sigma (0.4, 0.5, 0.6, 0.2, 0.1) px, per channel",
    "contrast": "CIFAR-10-C contrast, factor (0.75, 0.5, 0.4, 0.3, 0.15) about the "
    "per-channel means",
    "brightness_down": "CIFAR-10-C brightness, HSV value shift (0.05, 0.1, 0.15, 0.2, 0.3) "
    "subtracted",
    "low_light": CORRUPTION_SOURCES["low_light"],
}


# The same nine camera conditions by name as Fashion-MNIST's (a v1 world's regimes), at
# CIFAR-10-C's severities: mild = severity 2, harsh = severity 5 for noise, blur and veil (the
# benchmark's range, as no clean model existed to choose on); dusk and night as above.
CIFAR_CONDITIONS: tuple[Condition, ...] = _conditions(
    (2, 5, 2, 5, 2, 5, 3, 4), CIFAR_CORRUPTION_SOURCES
)


@dataclass(frozen=True)
class CorruptionSet:
    """The corruptions of one data set's frames: their shape and parameters per severity."""

    dataset: str
    image_shape: tuple[int, ...]  # (H, W) grey or (H, W, 3) RGB
    gaussian_noise_std: tuple[float, ...]
    shot_noise_photons: tuple[int, ...]
    defocus_kernels: tuple  # a function of the severity -> 2-D kernel
    contrast_factor: tuple[float, ...]
    brightness_shift: tuple[float, ...]
    conditions: tuple[Condition, ...]
    sources: dict  # corruption -> where its parameters come from

    @property
    def channels(self) -> int:
        return self.image_shape[2] if len(self.image_shape) == 3 else 1

    @property
    def pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


@cache
def cifar_defocus_kernel(radius_px: float, alias_sigma_px: float) -> np.ndarray:
    """CIFAR-10-C's defocus kernel: the aliased disk ``x^2 + y^2 <= r^2`` on the integer grid,
    normalised, then smoothed by a 3x3 Gaussian of ``alias_sigma_px`` (cv2.GaussianBlur with
    ksize 3, whose taps are exp(-d^2 / 2 sigma^2) normalised); zero rows cut away."""
    half = int(np.floor(radius_px)) + 1
    grid = np.arange(-half, half + 1)
    x, y = np.meshgrid(grid, grid)
    disk = (x**2 + y**2 <= radius_px**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-(np.arange(-1, 2) ** 2) / (2.0 * alias_sigma_px**2))
    taps /= taps.sum()
    padded = np.pad(disk, 1)
    kernel = np.zeros_like(padded)
    for dy in range(3):
        for dx in range(3):
            kernel[1:-1, 1:-1] += (
                taps[dy] * taps[dx] * padded[dy : dy + len(disk), dx : dx + len(disk)]
            )
    keep = np.flatnonzero(kernel.sum(axis=0) > 0)
    lo, hi = keep.min(), keep.max() + 1
    lo, hi = min(lo, len(kernel) - hi), max(hi, len(kernel) - lo)  # stay centred
    kernel = kernel[lo:hi, lo:hi] / kernel.sum()
    kernel.flags.writeable = False
    return kernel


def corruption_set(dataset: str | CorruptionSet = "fashion-mnist") -> CorruptionSet:
    """The corruptions of a data set by name (a :class:`CorruptionSet` passes through)."""
    if isinstance(dataset, CorruptionSet):
        return dataset
    try:
        return CORRUPTION_SETS[dataset]
    except (KeyError, TypeError):
        raise ValueError(
            f"no camera conditions for data set {dataset!r}; known: {sorted(CORRUPTION_SETS)}"
        ) from None


def get_condition(
    condition: Condition | str, dataset: str | CorruptionSet = "fashion-mnist"
) -> Condition:
    """A condition of the data set's conditions by name (a :class:`Condition` passes through)."""
    if isinstance(condition, Condition):
        return condition
    conditions = corruption_set(dataset).conditions
    for c in conditions:
        if c.name == condition:
            return c
    names = [c.name for c in conditions]
    raise ValueError(f"condition must be one of {names}, got {condition!r}")


# -- helpers ------------------------------------------------------------------------------------


def _as_batch(images: np.ndarray, spec: CorruptionSet) -> tuple[np.ndarray, bool]:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    shape = spec.image_shape
    single = images.shape == shape
    batch = images[None] if single else images
    if batch.ndim != len(shape) + 1 or batch.shape[1:] != shape:
        raise ValueError(f"images must be {shape} or (N, *{shape}), got {images.shape}")
    return batch, single


def _quantise(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats (clipped here) -> uint8 levels, rounded to nearest (half up)."""
    return np.floor(np.clip(x, 0.0, 1.0) * LEVELS + 0.5).astype(np.uint8)


def _generators(salt: Sequence[int], corruption: str, severity: int, indices: np.ndarray):
    code = CORRUPTION_IDS[corruption]
    for i in indices:
        yield np.random.default_rng([*salt, code, severity, int(i)])


def _standard_normal(gens, n: int, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty((n, *shape))
    for k, rng in enumerate(gens):
        out[k] = rng.standard_normal(shape)
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
    """Same-size 2-D correlation of (N, H, W) or (N, H, W, C) floats with a small kernel, per
    channel, borders mirrored without repeating the edge (cv2.filter2D's default,
    BORDER_REFLECT_101). Taps are summed in a fixed order, elementwise: each output pixel is
    the same whatever N is."""
    h = kernel.shape[0] // 2
    pad = ((0, 0), (h, h), (h, h)) + ((0, 0),) * (x.ndim - 3)
    padded = np.pad(x, pad, mode="reflect")
    side = x.shape[1]
    out = np.zeros_like(x)
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            out += kernel[dy, dx] * padded[:, dy : dy + side, dx : dx + side]
    return out


FMNIST_CORRUPTIONS = CorruptionSet(
    dataset="fashion-mnist",
    image_shape=(IMAGE_SIDE_PX, IMAGE_SIDE_PX),
    gaussian_noise_std=GAUSSIAN_NOISE_STD,
    shot_noise_photons=SHOT_NOISE_PHOTONS,
    defocus_kernels=tuple((defocus_kernel, (r,)) for r in DEFOCUS_RADIUS_PX),
    contrast_factor=CONTRAST_FACTOR,
    brightness_shift=BRIGHTNESS_SHIFT,
    conditions=CONDITIONS,
    sources=CORRUPTION_SOURCES,
)
CIFAR_CORRUPTIONS = CorruptionSet(
    dataset="cifar-10",
    image_shape=(CIFAR_SIDE_PX, CIFAR_SIDE_PX, 3),
    gaussian_noise_std=CIFAR_GAUSSIAN_NOISE_STD,
    shot_noise_photons=CIFAR_SHOT_NOISE_PHOTONS,
    defocus_kernels=tuple((cifar_defocus_kernel, rs) for rs in CIFAR_DEFOCUS),
    contrast_factor=CIFAR_CONTRAST_FACTOR,
    brightness_shift=CIFAR_BRIGHTNESS_SHIFT,
    conditions=CIFAR_CONDITIONS,
    sources=CIFAR_CORRUPTION_SOURCES,
)
CORRUPTION_SETS = {c.dataset: c for c in (FMNIST_CORRUPTIONS, CIFAR_CORRUPTIONS)}


# -- the corruptions ----------------------------------------------------------------------------


def corrupt(
    images: np.ndarray,
    corruption: str,
    severity: int,
    sample_indices: int | Sequence[int] | np.ndarray,
    salt: int | Sequence[int] = EVAL_SALT,
    dataset: str | CorruptionSet = "fashion-mnist",
) -> np.ndarray:
    """Apply ``corruption`` at ``severity`` (1..5; 0 or ``"none"`` returns a copy) to uint8
    frames of ``dataset`` (one frame or a batch: (28, 28) / (N, 28, 28) for Fashion-MNIST,
    (32, 32, 3) / (N, 32, 32, 3) for CIFAR-10), whose sample indices (into their data set)
    seed the noise. Returns uint8 of the input's shape."""
    spec = corruption_set(dataset)
    if corruption not in CORRUPTION_IDS:
        raise ValueError(f"corruption must be one of {sorted(CORRUPTION_IDS)}, got {corruption!r}")
    batch, single = _as_batch(images, spec)
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
    rgb = spec.channels > 1

    if corruption == "gaussian_noise":
        y = x + spec.gaussian_noise_std[s] * _standard_normal(gens, n, spec.image_shape)
    elif corruption == "shot_noise":
        photons = float(spec.shot_noise_photons[s])
        lam = x * photons
        counts = np.empty_like(lam)
        for k, rng in enumerate(gens):
            counts[k] = rng.poisson(lam[k])
        y = counts / photons
    elif corruption == "defocus_blur":
        kernel_fn, args = spec.defocus_kernels[s]
        y = _convolve(x, kernel_fn(*args))
    elif corruption == "contrast":
        if rgb:  # per-channel means, as CIFAR-10-C (exact integer sums)
            sums = batch.sum(axis=(1, 2), dtype=np.int64)
            mean = (sums / (LEVELS * spec.pixels))[:, None, None, :]
        else:
            mean = (_image_sums(batch) / (LEVELS * spec.pixels))[:, None, None]
        y = (x - mean) * spec.contrast_factor[s] + mean
    elif corruption == "brightness_down":
        if rgb:  # HSV value V = max channel lowered, hue and saturation kept: rgb * V' / V
            value = batch.max(axis=-1, keepdims=True) / LEVELS
            lowered = np.clip(value - spec.brightness_shift[s], 0.0, None)
            ratio = np.divide(lowered, value, out=np.zeros_like(value), where=value > 0)
            y = x * ratio
        else:
            y = x - spec.brightness_shift[s]
    else:  # low_light
        flat = batch.reshape(n, -1)
        shape = (n,) + (1,) * (batch.ndim - 1)
        lo = flat.min(axis=1).astype(np.float64).reshape(shape)
        span = (flat.max(axis=1).astype(np.float64) - flat.min(axis=1)).reshape(shape)
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
    dataset: str | CorruptionSet = "fashion-mnist",
) -> np.ndarray:
    """:func:`corrupt` with a :class:`Condition` (or the name of one of the data set's)."""
    c = get_condition(condition, dataset)
    return corrupt(images, c.corruption, c.severity, sample_indices, salt, dataset)


# -- image statistics a device can compute on its frame ----------------------------------------

IMAGE_STATS_NAMES = ("brightness", "contrast", "sharpness")


def image_stats_flops(dataset: str | CorruptionSet = "fashion-mnist") -> int:
    """Operations per frame of :func:`image_stats` (adds, subtracts, multiplies, divides, abs,
    sqrt), integer or float."""
    spec = corruption_set(dataset)
    h, w = spec.image_shape[:2]
    pixels, interior = h * w, (h - 2) * (w - 2)
    return (
        (spec.channels - 1) * pixels  # RGB: the grey level R + G + B, 2 adds per pixel
        + pixels  # brightness: sum of pixels (N - 1 adds) and one divide
        + 2 * pixels
        + 4  # contrast: square and sum every pixel; n*sumsq - sum^2, sqrt, divide
        + 7 * interior
        + 1  # sharpness: 4*c - 4 neighbours, abs, sum per interior pixel; divide
    )


IMAGE_STATS_FLOPS = image_stats_flops("fashion-mnist")


def image_stats(images: np.ndarray, dataset: str | CorruptionSet = "fashion-mnist") -> np.ndarray:
    """(N, 3) float32 statistics of uint8 frames (one or a batch), as fractions of full scale,
    on the grey level (RGB: R + G + B, full scale 3 x 255): mean brightness and contrast (pixel
    standard deviation), in [0, 1], and sharpness (mean absolute 4-neighbour Laplacian over the
    interior pixels / full scale, in [0, 4]). Darkness lowers the first, fog the second, blur
    the third and noise raises it. Exact integer sums, so one frame and a batch give the same
    bits. Cost: :func:`image_stats_flops` operations per frame."""
    spec = corruption_set(dataset)
    batch, _ = _as_batch(images, spec)
    if spec.channels > 1:
        batch = batch.sum(axis=-1, dtype=np.int32)
    n = len(batch)
    full_scale = LEVELS * spec.channels
    h, w = batch.shape[1:]
    pixels, interior = h * w, (h - 2) * (w - 2)
    flat = batch.reshape(n, -1).astype(np.int64)
    total = flat.sum(axis=1)
    squares = (flat * flat).sum(axis=1)
    var_num = pixels * squares - total * total  # = PIXELS^2 * variance, exact
    v = batch.astype(np.int32)
    lap = 4 * v[:, 1:-1, 1:-1] - v[:, :-2, 1:-1] - v[:, 2:, 1:-1] - v[:, 1:-1, :-2] - v[:, 1:-1, 2:]
    lap_sum = np.abs(lap).reshape(n, -1).sum(axis=1, dtype=np.int64)
    out = np.empty((n, len(IMAGE_STATS_NAMES)), np.float32)
    out[:, 0] = total / (full_scale * pixels)
    out[:, 1] = np.sqrt(var_num.astype(np.float64)) / (full_scale * pixels)
    out[:, 2] = lap_sum / (full_scale * interior)
    return out
