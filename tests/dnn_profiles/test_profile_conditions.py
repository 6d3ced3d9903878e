"""Profiles with a camera-condition axis (schema version 2), the v0 profile left as it was, and
the robust model's profile held to live execution on corrupted images."""

import hashlib
import json

import numpy as np
import pytest
import torch

from splitexit.dnn_profiles.__main__ import main as cli
from splitexit.dnn_profiles.corruptions import (
    CONDITION_NAMES,
    CONDITIONS,
    IMAGE_STATS_NAMES,
    Condition,
)
from splitexit.dnn_profiles.data import load_fashion_mnist
from splitexit.dnn_profiles.model import MultiExitCNN, torch_threads
from splitexit.dnn_profiles.profile import (
    DEFAULT_PROFILE_PATH,
    ROBUST_PROFILE_PATH,
    Profile,
)
from splitexit.dnn_profiles.profiler import profile
from splitexit.dnn_profiles.train import (
    ROBUST_WEIGHTS_PATH,
    WEIGHTS_PATH,
    load_model,
    weights_sha256,
)
from tests.dnn_profiles.parity import replay_live_mismatches

THRESHOLDS = np.array([0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01], np.float32)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- SplitExit-v0's files and profile, bit for bit ---------------------------------------------

SHIPPED_V0_FILES = {  # sha256 of the files SplitExit-v0 ships; they must never change
    WEIGHTS_PATH: "1b0032778239d8129d05b281bd4481d23b7c8fe7aefd4f6af9450c77a30ad778",
    WEIGHTS_PATH.with_suffix(".json"): (
        "75e88c4816863ee2661123bc7f8f095c05b29aeacfd0e67d9e368025a07f9479"
    ),
    DEFAULT_PROFILE_PATH: "9e8dad035a84ef6459db793ce1d189d2ab50d024cfc032a88cf2a60a773b3b10",
    DEFAULT_PROFILE_PATH.with_suffix(".npz"): (
        "05f3064fb446837de07ec707650c3cddd6959f6c07e38b8e3469be7505bda423"
    ),
}
V0_ARRAYS = {  # sha256 of the loaded arrays' bytes, as the loader before conditions gave them
    "confidence": "ca6fdf0e5dd46b375d25b405485dc710c54b928ea4471701889d400cd361049e",
    "entropy": "987a829dcd532ca10f98e328c278f579e632a7bbee44c941526590638bc89483",
    "prediction": "87012183d6628a90275236f3c3ab17a1b0bc739436b34fddd2512ea8c286f151",
    "payload_bytes": "6ab07c2fc1ddb740fa99b8e1de5331fd855506a90fdea380e3fc211fa9d3a9ac",
    "labels": "d51d859896c55775b9e9e219b77ff03bcec1b6ac322f313544dc3f9e7bc94fae",
}


@pytest.mark.parametrize("path", list(SHIPPED_V0_FILES), ids=lambda p: p.name)
def test_v0_files_unchanged(path):
    assert _sha256(path.read_bytes()) == SHIPPED_V0_FILES[path]


def test_v0_profile_loads_as_before_as_the_single_condition_clean():
    prof = Profile.load()
    assert prof.meta["schema_version"] == 1 and "conditions" not in prof.meta
    for name, digest in V0_ARRAYS.items():
        a = getattr(prof, name)
        assert _sha256(np.ascontiguousarray(a).tobytes()) == digest, name
    assert prof.conditions == ("clean",) and prof.num_conditions == 1
    assert prof.by_condition is None and prof.image_stats is None
    assert prof.confidence_by_condition.shape == (1, *prof.confidence.shape)
    assert np.shares_memory(prof.confidence_by_condition, prof.confidence)
    assert prof.at_condition("clean") is prof and prof.at_condition(0) is prof
    assert np.array_equal(prof.exit_accuracy_by_condition()[0], prof.exit_accuracy())


# -- a small profile with conditions (an untrained model) --------------------------------------

SMALL_CONDITIONS = (CONDITIONS[0], CONDITIONS[2], Condition("x", "defocus_blur", 5))


@pytest.fixture(scope="module")
def cond_profile(tmp_path_factory):
    torch.manual_seed(0)
    model = MultiExitCNN().eval()
    data = load_fashion_mnist("test").subset(4)
    prof = profile(model, data, latency_repeats=1, conditions=SMALL_CONDITIONS)
    path = tmp_path_factory.mktemp("cprof") / "small.json"
    prof.save(path)
    plain = profile(model, data, latency_repeats=1)
    return path, prof, plain


def test_condition_profile_round_trip(cond_profile):
    path, prof, plain = cond_profile
    loaded = Profile.load(path)
    assert loaded.meta["schema_version"] == 2
    assert loaded.conditions == ("clean", "noise_harsh", "x") and loaded.num_samples == 4
    assert loaded.confidence_by_condition.shape == (3, 4, 6, 3, 4)
    assert loaded.image_stats.shape == (3, 4, len(IMAGE_STATS_NAMES))
    assert loaded.meta["image_stats_names"] == list(IMAGE_STATS_NAMES)
    for name in ("confidence", "entropy", "prediction"):
        assert np.array_equal(getattr(loaded, f"{name}_by_condition"), prof.by_condition[name])
        # the 4-D arrays are the clean condition, the same as a profile without conditions
        assert np.array_equal(getattr(loaded, name), getattr(plain, name))
    assert np.array_equal(loaded.payload_bytes, plain.payload_bytes)
    assert [c["name"] for c in loaded.meta["conditions"]] == list(loaded.conditions)
    assert loaded.meta["corruption_noise"]["salt"] == 20190


def test_at_condition_is_a_single_condition_profile(cond_profile, tmp_path):
    path, _, _ = cond_profile
    loaded = Profile.load(path)
    x = loaded.at_condition("x")
    assert x.num_conditions == 1 and x.meta["condition"]["corruption"] == "defocus_blur"
    assert np.array_equal(x.confidence, loaded.confidence_by_condition[2])
    assert np.array_equal(x.answers(THRESHOLDS), loaded.at_condition(2).answers(THRESHOLDS))
    x.save(tmp_path / "x.json")
    again = Profile.load(tmp_path / "x.json")
    assert again.meta["schema_version"] == 1 and np.array_equal(again.prediction, x.prediction)
    with pytest.raises(ValueError, match="condition must be one of"):
        loaded.at_condition("fog")
    with pytest.raises(ValueError, match="condition index must be in 0..2"):
        loaded.at_condition(3)


def test_conditions_must_start_clean():
    model = MultiExitCNN().eval()
    data = load_fashion_mnist("test").subset(1)
    with pytest.raises(ValueError, match="start with the clean one"):
        profile(model, data, latency_repeats=1, conditions=CONDITIONS[1:])


def _rewrite(path, tmp_path, meta_change=None, array_change=None):
    meta = json.loads(path.read_text())
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if meta_change:
        meta_change(meta)
    if array_change:
        array_change(arrays)
    np.savez(tmp_path / "edited.npz", **arrays)
    meta["arrays_file"] = "edited.npz"
    meta["arrays_sha256"] = _sha256((tmp_path / "edited.npz").read_bytes())
    (tmp_path / "edited.json").write_text(json.dumps(meta))
    return tmp_path / "edited.json"


def _set_condition(i, **change):
    return lambda m: m["conditions"][i].update(change)


@pytest.mark.parametrize(
    "meta_change, array_change, message",
    [
        (lambda m: m.update(schema_version=1), None, "field 'conditions' goes with"),
        (lambda m: m.pop("conditions"), None, "field 'conditions' goes with"),
        (lambda m: m.update(conditions=[]), None, "field 'conditions' is"),
        (_set_condition(0, corruption="contrast", severity=1), None, "the first one clean"),
        (_set_condition(1, severity=0), None, "field 'conditions' is"),
        (_set_condition(1, corruption="fog"), None, "field 'conditions' is"),
        (_set_condition(2, name="clean"), None, "field 'conditions' is"),
        (lambda m: m.pop("image_stats_names"), None, "missing field 'image_stats_names'"),
        (lambda m: m.update(image_stats_names="abc"), None, "field 'image_stats_names' is"),
        (
            None,
            lambda a: a.update(confidence=a["confidence"][:2]),
            "array 'confidence' has shape (2, 4, 6, 3, 4), expected (3, 4, 6, 3, 4)",
        ),
        (
            None,
            lambda a: a.update(prediction=a["prediction"][0]),
            "array 'prediction' is int8(4, 6, 3, 4), expected 5-D",
        ),
        (None, lambda a: a.pop("image_stats"), "missing array 'image_stats'"),
        (
            None,
            lambda a: a["image_stats"].__setitem__((1, 2, 0), np.nan),
            "array 'image_stats' has value nan at index (1, 2, 0)",
        ),
    ],
)
def test_condition_validation(cond_profile, tmp_path, meta_change, array_change, message):
    path, _, _ = cond_profile
    bad = _rewrite(path, tmp_path, meta_change, array_change)
    with pytest.raises(ValueError, match="edited") as err:
        Profile.load(bad)
    assert message in str(err.value)


def test_condition_profile_tampering_detected(cond_profile, tmp_path):
    path, _, _ = cond_profile
    meta = json.loads(path.read_text())
    bad = _rewrite(
        path, tmp_path, array_change=lambda a: a["image_stats"].__setitem__((2, 0, 0), 0.5)
    )
    edited = json.loads(bad.read_text())
    edited["arrays_sha256"] = meta["arrays_sha256"]
    bad.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="do not match field 'arrays_sha256'"):
        Profile.load(bad)


# -- the shipped robust model and its profile --------------------------------------------------


@pytest.fixture(scope="module")
def robust():
    return Profile.load(ROBUST_PROFILE_PATH), load_model(ROBUST_WEIGHTS_PATH)


def test_robust_profile_matches_its_weights_and_the_table(robust):
    prof, _ = robust
    assert prof.meta["weights_sha256"] == weights_sha256(ROBUST_WEIGHTS_PATH)
    assert prof.conditions == CONDITION_NAMES
    assert prof.meta["conditions"] == [c.describe() for c in CONDITIONS]
    record = json.loads(ROBUST_WEIGHTS_PATH.with_suffix(".json").read_text())
    assert record["weights_sha256"] == prof.meta["weights_sha256"]
    assert record["corruption_augmentation"]["share"] > 0


def test_robust_model_early_exits_degrade_more_than_the_final_one(robust):
    prof, _ = robust
    acc = prof.exit_accuracy_by_condition()  # (K, E)
    drop = acc[0] - acc[1:]  # accuracy lost under each condition, per exit
    assert acc[0, -1] >= 0.9
    assert (drop[:, 0] > drop[:, -1]).mean() >= 0.75, drop  # first exit loses more, mostly
    assert drop[:, 0].mean() > 1.5 * drop[:, -1].mean(), drop


def test_robust_profile_agrees_with_live_execution_on_corrupted_images(robust):
    """Replay/live parity under conditions: live mode corrupts the frame of sample i under
    condition c and runs it; the profile recorded the same exit, prediction, confidence and
    bytes for 12 samples under every condition, at a random split and compression and every
    threshold of a grid, and the same image statistics."""
    prof, model = robust
    with torch_threads(prof.torch_threads):
        mismatches = replay_live_mismatches(
            prof, model, load_fashion_mnist("test").images, CONDITIONS, THRESHOLDS, 12
        )
    assert mismatches == []


def test_cli_show_lists_conditions(capsys):
    assert cli(["show", str(ROBUST_PROFILE_PATH), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in out["conditions"]] == list(CONDITION_NAMES)
    assert len(out["conditions"][0]["exit_accuracy"]) == 4
    assert cli(["show", str(ROBUST_PROFILE_PATH)]) == 0
    assert "night" in capsys.readouterr().out
