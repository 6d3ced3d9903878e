import gzip

import numpy as np
import pytest

from splitexit.dnn_profiles.data import load_fashion_mnist, load_idx_pair


def write_idx(path, magic, shape, payload=None):
    header = np.array([magic, *shape], dtype=">u4").tobytes()
    data = payload if payload is not None else bytes(int(np.prod(shape)))
    with gzip.open(path, "wb") as f:
        f.write(header + data)
    return path


def test_shipped_test_split_loads():
    data = load_fashion_mnist("test")
    assert data.images.shape == (10000, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.shape == (10000,)
    assert np.bincount(data.labels).tolist() == [1000] * 10  # balanced test split


def test_valid_pair(tmp_path):
    imgs = write_idx(tmp_path / "i.gz", 2051, (3, 28, 28))
    labs = write_idx(tmp_path / "l.gz", 2049, (3,), bytes([0, 9, 4]))
    data = load_idx_pair(imgs, labs, "tiny")
    assert len(data) == 3 and data.labels.tolist() == [0, 9, 4]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist("train", tmp_path)


@pytest.mark.parametrize(
    "magic, shape, payload, message",
    [
        (2049, (3, 28, 28), None, "bad idx magic number 2049, expected 2051"),
        (2051, (3, 28, 28), bytes(100), "holds 100 bytes"),
        (2051, (3, 27, 28), None, "expected 28x28"),
    ],
)
def test_corrupt_image_file(tmp_path, magic, shape, payload, message):
    imgs = write_idx(tmp_path / "bad-images.gz", magic, shape, payload)
    labs = write_idx(tmp_path / "l.gz", 2049, (3,))
    with pytest.raises(ValueError, match=message) as err:
        load_idx_pair(imgs, labs, "bad")
    assert "bad-images.gz" in str(err.value)


def test_not_gzip_and_bad_labels(tmp_path):
    imgs = write_idx(tmp_path / "i.gz", 2051, (2, 28, 28))
    (tmp_path / "plain.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="plain.gz: not a readable gzip"):
        load_idx_pair(imgs, tmp_path / "plain.gz", "x")
    labs = write_idx(tmp_path / "l.gz", 2049, (2,), bytes([1, 12]))
    with pytest.raises(ValueError, match="label 12 outside"):
        load_idx_pair(imgs, labs, "x")
    labs3 = write_idx(tmp_path / "l3.gz", 2049, (3,))
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        load_idx_pair(imgs, labs3, "x")


def test_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        load_fashion_mnist("validation")
