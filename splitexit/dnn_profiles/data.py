"""Fashion-MNIST read from its idx ``.gz`` files, with magic numbers and shapes checked.

The test split ships inside the package (``data/t10k-*.gz``, MIT licence, Zalando SE 2017);
the train split is read from a path: an argument, ``$SPLITEXIT_FASHION_MNIST``, or the Debian
package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE_DATA_DIR = Path(__file__).parent / "data"
DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "SPLITEXIT_FASHION_MNIST"

IMAGE_MAGIC = 2051  # idx3, unsigned byte (LeCun et al., MNIST file format)
LABEL_MAGIC = 2049  # idx1, unsigned byte
IMAGE_SIDE = 28
NUM_CLASSES = 10
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class Dataset:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one split."""

    name: str
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int) -> Dataset:
        """The first ``n`` samples."""
        return Dataset(f"{self.name}[:{n}]", self.images[:n], self.labels[:n])


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: Fashion-MNIST file not found") from None
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable gzip file ({err})") from None
    header_bytes = 4 * (1 + ndim)
    if len(raw) < header_bytes:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} bytes)")
    header = np.frombuffer(raw[:header_bytes], dtype=">u4")
    if header[0] != magic:
        raise ValueError(f"{path}: bad idx magic number {header[0]}, expected {magic}")
    shape = tuple(int(d) for d in header[1:])
    expected = int(np.prod(shape))
    if len(raw) - header_bytes != expected:
        raise ValueError(
            f"{path}: idx header says shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw) - header_bytes} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_bytes).reshape(shape)


def load_idx_pair(images_path: Path, labels_path: Path, name: str) -> Dataset:
    """Load one split from an idx3 image file and an idx1 label file."""
    images = _read_idx(Path(images_path), IMAGE_MAGIC, 3)
    labels = _read_idx(Path(labels_path), LABEL_MAGIC, 1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise ValueError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    if labels.max(initial=0) >= NUM_CLASSES:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..{NUM_CLASSES - 1}")
    return Dataset(name, images.copy(), labels.astype(np.int64))


def default_data_dir(split: str) -> Path:
    """Where a split is read from when no path is given."""
    if split == "test":
        return PACKAGE_DATA_DIR
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEBIAN_DATA_DIR


def load_fashion_mnist(split: str = "test", data_dir: str | Path | None = None) -> Dataset:
    """Load the ``"train"`` or ``"test"`` split of Fashion-MNIST."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    folder = Path(data_dir) if data_dir is not None else default_data_dir(split)
    images_file, labels_file = _FILES[split]
    return load_idx_pair(folder / images_file, folder / labels_file, f"fashion-mnist/{split}")
