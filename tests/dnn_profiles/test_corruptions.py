"""Camera conditions: determinism, single/batch identity, severity order, image statistics, and
corruption-augmented training."""

import numpy as np
import pytest

from splitexit.dnn_profiles.corruptions import (
    CONDITION_NAMES,
    CONDITIONS,
    CORRUPTION_IDS,
    CORRUPTION_SOURCES,
    DEFOCUS_RADIUS_PX,
    EVAL_SALT,
    IMAGE_STATS_FLOPS,
    IMAGE_STATS_NAMES,
    apply_condition,
    corrupt,
    defocus_kernel,
    get_condition,
    image_stats,
)
from splitexit.dnn_profiles.data import load_fashion_mnist

CORRUPTIONS = [c for c in CORRUPTION_IDS if c != "none"]
SEVERITIES = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def test_images():
    data = load_fashion_mnist("test")
    return data.images[:64], data.labels[:64]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_single_image_equals_its_row_of_a_batch(test_images, corruption):
    """Live mode corrupts one frame, the profiler a batch: same bytes, every severity, and the
    result does not depend on which other images share the batch or in what order."""
    images, _ = test_images
    index = np.arange(100, 100 + len(images))
    for severity in SEVERITIES:
        batch = corrupt(images, corruption, severity, index)
        assert batch.dtype == np.uint8 and batch.shape == images.shape
        for i in (0, 17, 63):
            single = corrupt(images[i], corruption, severity, int(index[i]))
            assert single.shape == (28, 28)
            assert single.tobytes() == batch[i].tobytes(), (corruption, severity, i)
        order = np.random.default_rng(severity).permutation(len(images))[:20]
        assert np.array_equal(
            corrupt(images[order], corruption, severity, index[order]), batch[order]
        )


@pytest.mark.parametrize("condition", CONDITIONS, ids=CONDITION_NAMES)
def test_same_sample_and_condition_same_bytes(test_images, condition):
    images, _ = test_images
    index = np.arange(len(images))
    first = apply_condition(images, condition, index)
    assert apply_condition(images, condition.name, index).tobytes() == first.tobytes()
    assert apply_condition(images.copy(), condition, index, salt=(EVAL_SALT,)).tobytes() == (
        first.tobytes()
    )


def test_noise_depends_on_sample_index_and_salt(test_images):
    images, _ = test_images
    same = np.repeat(images[:1], 4, axis=0)
    out = corrupt(same, "gaussian_noise", 3, [0, 1, 2, 0])
    assert np.array_equal(out[0], out[3])
    assert not np.array_equal(out[0], out[1]) and not np.array_equal(out[1], out[2])
    other_salt = corrupt(same, "gaussian_noise", 3, [0, 1, 2, 0], salt=(1, 2, 3))
    assert not np.array_equal(other_salt[0], out[0])
    # deterministic corruptions do not depend on the index
    blur = corrupt(same, "defocus_blur", 4, [0, 1, 2, 3])
    assert all(np.array_equal(blur[0], b) for b in blur)


def test_global_random_state_is_neither_used_nor_changed(test_images):
    images, _ = test_images
    index = np.arange(len(images))
    saved = np.random.get_state()  # noqa: NPY002 (the legacy global state is what is tested)
    try:
        np.random.seed(0)  # noqa: NPY002
        before = np.random.get_state()[1].copy()  # noqa: NPY002
        a = corrupt(images, "shot_noise", 2, index)
        assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
        np.random.seed(123)  # noqa: NPY002
        assert np.array_equal(corrupt(images, "shot_noise", 2, index), a)
    finally:
        np.random.set_state(saved)  # noqa: NPY002


def test_clean_condition_is_the_identity_and_a_copy(test_images):
    images, _ = test_images
    out = apply_condition(images, "clean", np.arange(len(images)))
    assert np.array_equal(out, images) and not np.shares_memory(out, images)
    assert CONDITIONS[0] == get_condition("clean") and CONDITIONS[0].corruption == "none"


def _mean_abs_change(images, corruption, severity):
    out = corrupt(images, corruption, severity, np.arange(len(images)))
    return np.abs(out.astype(np.int32) - images).mean()


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_higher_severity_changes_images_more(test_images, corruption):
    images, _ = test_images
    change = [_mean_abs_change(images, corruption, s) for s in SEVERITIES]
    assert all(b > a for a, b in zip(change, change[1:])), change


@pytest.mark.parametrize(
    "corruption, stat, direction",
    [
        ("gaussian_noise", "sharpness", +1),  # noise adds high frequencies
        ("shot_noise", "sharpness", +1),
        ("defocus_blur", "sharpness", -1),  # blur removes them
        ("contrast", "contrast", -1),
        ("brightness_down", "brightness", -1),
        ("low_light", "brightness", -1),
    ],
)
def test_severity_moves_the_image_statistic(test_images, corruption, stat, direction):
    images, _ = test_images
    k = IMAGE_STATS_NAMES.index(stat)
    clean = image_stats(images)[:, k].mean()
    values = [
        image_stats(corrupt(images, corruption, s, np.arange(len(images))))[:, k].mean()
        for s in SEVERITIES
    ]
    steps = np.diff([clean, *values]) * direction
    assert (steps > 0).all(), (clean, values)


def test_defocus_kernel():
    assert DEFOCUS_RADIUS_PX == (0.375, 0.5, 0.75, 1.0, 1.25)  # ImageNet-C's 3..10 px * 28/224
    centres = []
    for r in DEFOCUS_RADIUS_PX:
        k = defocus_kernel(r)
        assert k.sum() == pytest.approx(1.0, abs=1e-12) and (k >= 0).all()
        assert np.allclose(k, k.T) and np.allclose(k, k[::-1]) and np.allclose(k, k[:, ::-1])
        centres.append(k[k.shape[0] // 2, k.shape[1] // 2])
    assert all(b < a for a, b in zip(centres, centres[1:]))  # wider disk, more blur
    tiny = defocus_kernel(1e-6)
    assert tiny[1, 1] == pytest.approx(1.0, abs=1e-5)  # radius 0: the identity


def test_contrast_keeps_the_mean_and_scales_the_spread(test_images):
    images, _ = test_images
    stats = image_stats(images)
    out = image_stats(corrupt(images, "contrast", 2, np.arange(len(images))))
    assert np.allclose(out[:, 0], stats[:, 0], atol=1 / 255)
    assert np.allclose(out[:, 1], 0.3 * stats[:, 1], atol=1 / 255)  # ImageNet-C c = 0.3


def test_gaussian_noise_std_on_a_grey_frame():
    grey = np.full((200, 28, 28), 128, np.uint8)  # away from the clip at 0 and 255
    for severity, std in zip((1, 2), (0.08, 0.12)):
        out = corrupt(grey, "gaussian_noise", severity, np.arange(200)) / 255.0
        assert out.std() == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda im: corrupt(im.astype(np.float32), "contrast", 1, 0), "uint8"),
        (lambda im: corrupt(im[:, :27], "contrast", 1, 0), r"\(28, 28\)"),
        (lambda im: corrupt(im, "fog", 1, 0), "corruption must be one of"),
        (lambda im: corrupt(im, "contrast", 6, 0), "severity must be in 1..5"),
        (lambda im: corrupt(im, "contrast", 0, 0), "severity 0 goes with"),
        (lambda im: corrupt(im[None].repeat(2, 0), "contrast", 1, [0]), "one sample index"),
        (lambda im: apply_condition(im, "sunny", 0), "condition must be one of"),
    ],
)
def test_bad_arguments_raise(test_images, call, message):
    images, _ = test_images
    with pytest.raises(ValueError, match=message):
        call(images[0])


def test_condition_table():
    assert len(CONDITIONS) == len(set(CONDITION_NAMES)) == 9
    for c in CONDITIONS[1:]:
        assert c.corruption in CORRUPTION_SOURCES and 1 <= c.severity <= 5
        assert c.describe()["source"] == CORRUPTION_SOURCES[c.corruption]
    kinds = {c.corruption for c in CONDITIONS}
    assert {"gaussian_noise", "defocus_blur", "contrast", "brightness_down", "low_light"} <= kinds


def test_image_stats_values_and_batch_identity(test_images):
    images, _ = test_images
    stats = image_stats(images)
    assert stats.dtype == np.float32 and stats.shape == (len(images), len(IMAGE_STATS_NAMES))
    for i in (0, 31):
        assert image_stats(images[i]).tobytes() == stats[i : i + 1].tobytes()
    flat = np.full((28, 28), 51, np.uint8)
    assert image_stats(flat)[0].tolist() == pytest.approx([0.2, 0.0, 0.0])
    checker = ((np.indices((28, 28)).sum(0) % 2) * 255).astype(np.uint8)
    assert image_stats(checker)[0].tolist() == pytest.approx([0.5, 0.5, 4.0])  # |4 * 255| / 255
    assert isinstance(IMAGE_STATS_FLOPS, int) and 5_000 < IMAGE_STATS_FLOPS < 10_000


# -- corruption-augmented training (tiny runs on a slice of the test split) --------------------


def test_augmented_training_is_deterministic_and_off_by_default(tmp_path):
    import torch

    from splitexit.dnn_profiles.train import train

    torch.set_num_threads(1)
    data = load_fashion_mnist("test").subset(128)
    quiet = dict(epochs=1, batch_size=64, log=lambda _: None)
    plain = train(data, out_path=tmp_path / "plain.safetensors", **quiet)
    assert "corruption_augmentation" not in plain
    runs = [
        train(
            data,
            data.subset(32),
            out_path=tmp_path / f"aug{k}.safetensors",
            corruption_share=0.5,
            command="test",
            **quiet,
        )
        for k in range(2)
    ]
    assert runs[0]["weights_sha256"] == runs[1]["weights_sha256"] != plain["weights_sha256"]
    record = runs[0]
    assert record["command"] == "test" and record["corruption_augmentation"]["share"] == 0.5
    assert list(record["test_accuracy_per_exit_by_condition"]) == list(CONDITION_NAMES)
    with pytest.raises(ValueError, match="corruption_share"):
        train(data, out_path=tmp_path / "x.safetensors", corruption_share=1.5, **quiet)
