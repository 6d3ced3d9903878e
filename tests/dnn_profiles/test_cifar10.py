"""CIFAR-10: the JPEG-tree and binary loaders on tiny files made here, the shipped test split,
and the CIFAR-10-C camera conditions on RGB frames."""

import io

import numpy as np
import pytest
from PIL import Image

from splitexit.dnn_profiles import cifar10
from splitexit.dnn_profiles.cifar10 import (
    CLASS_NAMES,
    load_binary,
    load_cifar10,
    load_jpeg_tree,
    write_test_split,
)
from splitexit.dnn_profiles.corruptions import (
    CIFAR_CONDITIONS,
    CIFAR_DEFOCUS,
    CORRUPTION_IDS,
    apply_condition,
    cifar_defocus_kernel,
    corrupt,
    image_stats,
    image_stats_flops,
)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def make_tree(root, split="test", per_class=2):
    """A JPEG tree of ``per_class`` random images per class; returns their decoded pixels."""
    decoded = []
    for k, name in enumerate(CLASS_NAMES):
        folder = root / split / name
        folder.mkdir(parents=True)
        for j in range(per_class):
            buf = io.BytesIO()
            Image.fromarray(_image(10 * k + j)).save(buf, format="JPEG", quality=75)
            (folder / f"{j:04d}.jpg").write_bytes(buf.getvalue())
            decoded.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(decoded)


def test_jpeg_tree_in_class_then_file_order(tmp_path):
    decoded = make_tree(tmp_path, "train")
    data = load_jpeg_tree(tmp_path, "train")
    assert data.name == "cifar-10/train" and data.images.shape == (20, 32, 32, 3)
    assert data.labels.tolist() == [k for k in range(10) for _ in range(2)]
    assert np.array_equal(data.images, decoded)
    assert load_cifar10("train", tmp_path).images.tobytes() == data.images.tobytes()


def test_jpeg_tree_errors_name_the_file_or_folder(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "test" / "cat" / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cat/0001.jpg: not a readable JPEG"):
        load_jpeg_tree(tmp_path, "test")
    (tmp_path / "test" / "cat" / "0001.jpg").unlink()
    (tmp_path / "test" / "ufo").mkdir()
    with pytest.raises(ValueError, match="unknown class folders"):
        load_jpeg_tree(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="train: CIFAR-10 JPEG folder not found"):
        load_jpeg_tree(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_jpeg_tree(tmp_path, "val")


def test_jpeg_of_another_size_is_refused(tmp_path):
    make_tree(tmp_path)
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "test" / "dog" / "0000.jpg")
    with pytest.raises(ValueError, match=r"dog/0000.jpg: image is \(28, 28, 3\)"):
        load_jpeg_tree(tmp_path, "test")


def _records(labels, images) -> bytes:
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R, G, B planes
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1).tobytes()


def test_binary_version_reads_label_then_planes(tmp_path):
    images = np.stack([_image(i) for i in range(5)])
    (tmp_path / "test_batch.bin").write_bytes(_records([3, 1, 4, 1, 5], images))
    data = load_binary(tmp_path, "test")
    assert data.labels.tolist() == [3, 1, 4, 1, 5]
    assert np.array_equal(data.images, images) and data.images.flags.c_contiguous
    assert load_cifar10("test", tmp_path).labels.tolist() == [3, 1, 4, 1, 5]  # detected


def test_binary_version_errors(tmp_path):
    images = np.stack([_image(i) for i in range(2)])
    path = tmp_path / "test_batch.bin"
    path.write_bytes(_records([1, 2], images)[:-7])
    with pytest.raises(ValueError, match="test_batch.bin: 6139 bytes is not a whole number"):
        load_binary(tmp_path, "test")
    path.write_bytes(_records([1, 12], images))
    with pytest.raises(ValueError, match="record 1 has label 12"):
        load_binary(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        load_binary(tmp_path, "train")


def test_packed_split_round_trips_and_checks_its_hashes(tmp_path):
    decoded = make_tree(tmp_path / "tree")
    out = tmp_path / "packed.npz"
    digests = write_test_split(tmp_path / "tree", out)
    data = cifar10._load_packed(str(out), digests["file_sha256"], digests["pixels_sha256"])
    assert np.array_equal(data.images, decoded) and data.labels.tolist() == sorted(data.labels)
    with pytest.raises(ValueError, match="is not the shipped"):
        cifar10._load_packed(str(out), "0" * 64, None)
    with pytest.raises(ValueError, match="decoded pixels differ"):
        cifar10._load_packed(str(out), digests["file_sha256"], "0" * 64)


def test_shipped_test_split():
    data = load_cifar10("test")
    assert data.images.shape == (10000, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert not data.images.flags.writeable  # shared by every caller of the process


def test_train_split_needs_a_path(monkeypatch):
    monkeypatch.delenv(cifar10.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="SPLITEXIT_CIFAR10"):
        load_cifar10("train")


# -- camera conditions on RGB frames --------------------------------------------------------------


@pytest.fixture(scope="module")
def frames():
    return load_cifar10("test").images[::500][:16]  # a spread of classes


@pytest.mark.parametrize("corruption", [c for c in CORRUPTION_IDS if c != "none"])
def test_rgb_single_frame_equals_its_row_of_a_batch(frames, corruption):
    index = np.arange(7, 7 + len(frames))
    for severity in (1, 3, 5):
        batch = corrupt(frames, corruption, severity, index, dataset="cifar-10")
        assert batch.shape == frames.shape and batch.dtype == np.uint8
        single = corrupt(frames[5], corruption, severity, 12, dataset="cifar-10")
        assert single.tobytes() == batch[5].tobytes()


def test_rgb_frames_are_refused_as_fashion_mnist_and_vice_versa(frames):
    with pytest.raises(ValueError, match=r"images must be \(28, 28\)"):
        corrupt(frames, "contrast", 1, np.arange(len(frames)))
    with pytest.raises(ValueError, match=r"images must be \(32, 32, 3\)"):
        corrupt(np.zeros((2, 28, 28), np.uint8), "contrast", 1, [0, 1], dataset="cifar-10")
    with pytest.raises(ValueError, match="no camera conditions for data set 'imagenet'"):
        corrupt(frames, "contrast", 1, np.arange(len(frames)), dataset="imagenet")


def test_cifar_defocus_kernels_are_cifar10c_disks():
    for radius, sigma in CIFAR_DEFOCUS:
        k = cifar_defocus_kernel(radius, sigma)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert np.isclose(k.sum(), 1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    # radius < 1: only the centre pixel, smoothed by the 3x3 Gaussian of sigma 0.4
    g = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * 0.4**2))
    assert np.allclose(cifar_defocus_kernel(0.3, 0.4), np.outer(g, g) / g.sum() ** 2)
    # harsher severities spread more of the light away from the centre
    centres = [cifar_defocus_kernel(r, s).max() for r, s in CIFAR_DEFOCUS]
    assert centres == sorted(centres, reverse=True)


def test_cifar_conditions_move_the_statistics_they_should(frames):
    index = np.arange(len(frames))
    stats = {
        c.name: image_stats(apply_condition(frames, c, index, dataset="cifar-10"), "cifar-10")
        for c in CIFAR_CONDITIONS
    }
    clean = stats["clean"].mean(0)
    assert stats["noise_harsh"].mean(0)[2] > stats["noise_mild"].mean(0)[2] > clean[2]
    assert stats["blur_harsh"].mean(0)[2] < stats["blur_mild"].mean(0)[2] < clean[2]
    assert stats["fog_harsh"].mean(0)[1] < stats["fog_mild"].mean(0)[1] < clean[1]
    assert stats["night"].mean(0)[0] < stats["dusk"].mean(0)[0] < clean[0]
    # contrast keeps each channel's mean (to the rounding of the levels)
    fog = apply_condition(frames, "fog_harsh", index, dataset="cifar-10")
    assert np.abs(fog.mean((1, 2)) - frames.mean((1, 2))).max() < 0.6
    # dusk lowers HSV value and keeps the hue: the channels' order within a pixel stays
    dusk = apply_condition(frames, "dusk", index, dataset="cifar-10").astype(int)
    f = frames.astype(int)
    assert (
        np.sign(dusk[..., 0] - dusk[..., 1]) * np.sign(f[..., 0] - f[..., 1]) >= 0
    ).mean() > 0.95


def test_rgb_image_stats_are_those_of_the_grey_level(frames):
    grey_sum = frames.astype(np.int64).sum(-1)
    stats = image_stats(frames, "cifar-10")
    assert np.allclose(stats[:, 0], grey_sum.mean((1, 2)) / 765.0)
    assert np.allclose(stats[:, 1], grey_sum.std((1, 2)) / 765.0, atol=1e-6)
    assert image_stats(frames[3], "cifar-10").tobytes() == stats[3:4].tobytes()
    assert image_stats_flops("cifar-10") == 2 * 1024 + 1024 + 2 * 1024 + 4 + 7 * 900 + 1
