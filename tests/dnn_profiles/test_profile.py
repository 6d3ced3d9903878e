import json

import numpy as np
import pytest
import torch

from splitexit.dnn_profiles.__main__ import main as cli
from splitexit.dnn_profiles.data import load_fashion_mnist
from splitexit.dnn_profiles.model import COMPRESSIONS, MultiExitCNN, split_inference
from splitexit.dnn_profiles.profile import Profile, profile
from splitexit.dnn_profiles.train import WEIGHTS_PATH, load_model, weights_sha256

THRESHOLDS = np.array([0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01], np.float32)


@pytest.fixture(scope="module")
def small_profile(tmp_path_factory):
    torch.manual_seed(0)
    model = MultiExitCNN().eval()
    prof = profile(model, load_fashion_mnist("test").subset(4), latency_repeats=1)
    path = tmp_path_factory.mktemp("prof") / "small.json"
    prof.save(path)
    return path


def test_save_load_round_trip(small_profile):
    loaded = Profile.load(small_profile)
    again = Profile.load(small_profile)
    assert loaded.meta == again.meta and loaded.num_samples == 4
    for name in ("confidence", "prediction", "payload_bytes", "block_flops", "labels"):
        assert np.array_equal(getattr(loaded, name), getattr(again, name))
    assert loaded.payload_bytes[0].tolist() == [784, 784, 784]
    assert loaded.payload_bytes[-1].tolist() == [0, 0, 0]
    assert (loaded.block_flops > 0).all() and (loaded.block_latency_s > 0).all()


def _rewrite(path, tmp_path, meta_change=None, array_change=None):
    meta = json.loads(path.read_text())
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if meta_change:
        meta_change(meta)
    if array_change:
        array_change(arrays)
    out = tmp_path / "edited.json"
    meta["arrays_file"] = "edited.npz"
    np.savez(tmp_path / "edited.npz", **arrays)
    out.write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize(
    "meta_change, array_change, message",
    [
        (lambda m: m.update(schema_version=99), None, "'schema_version' is 99"),
        (lambda m: m.pop("exit_blocks"), None, "missing field 'exit_blocks'"),
        (
            None,
            lambda a: a.update(confidence=a["confidence"][:, :3]),
            "array 'confidence' has shape",
        ),
        (
            None,
            lambda a: a["confidence"].__setitem__((1, 2, 0, 3), 1.5),
            "'confidence' has value 1.5",
        ),
        (None, lambda a: a["labels"].__setitem__(0, 10), "'labels' has value 10 at index (0,)"),
        (None, lambda a: a.pop("entropy"), "missing array 'entropy'"),
        (None, lambda a: a.update(block_flops=a["block_flops"] * 0.5), "'block_flops' is float64"),
    ],
)
def test_validation_names_file_and_field(
    small_profile, tmp_path, meta_change, array_change, message
):
    bad = _rewrite(small_profile, tmp_path, meta_change, array_change)
    with pytest.raises(ValueError, match="edited") as err:
        Profile.load(bad)
    assert message in str(err.value)


def test_missing_and_corrupt_files(small_profile, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Profile.load(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        Profile.load(tmp_path / "broken.json")
    meta = json.loads(small_profile.read_text())
    meta["arrays_file"] = "gone.npz"
    (tmp_path / "dangling.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="gone.npz"):
        Profile.load(tmp_path / "dangling.json")


def test_shipped_profile_matches_shipped_weights():
    prof = Profile.load()
    assert prof.meta["weights_sha256"] == weights_sha256(WEIGHTS_PATH)
    assert prof.num_samples == 10000
    acc = prof.exit_accuracy()
    assert acc[-1] >= 0.92 and acc[0] >= 0.75
    assert all(b >= a for a, b in zip(acc, acc[1:])), acc


def test_shipped_profile_agrees_with_live_execution():
    """Replay is a faithful cache: same exit, prediction and bytes for 500 samples, each at a
    random split and compression and at every threshold of a grid."""
    prof, model = Profile.load(), load_model()
    images = load_fashion_mnist("test").images
    answers = prof.answers(THRESHOLDS)
    rng = np.random.default_rng(0)
    mismatches = []
    for i in range(500):
        split = int(rng.integers(prof.num_blocks + 1))
        ci = int(rng.integers(len(COMPRESSIONS)))
        for t, threshold in enumerate(THRESHOLDS):
            live = split_inference(model, images[i], split, float(threshold), COMPRESSIONS[ci])
            k = answers[i, split, ci, t]
            sent = prof.payload_bytes[split, ci] if prof.exit_blocks[k] > split else 0
            replay = (prof.exit_blocks[k], int(prof.prediction[i, split, ci, k]), int(sent))
            if replay != (live.exit_block, live.prediction, len(live.payload)):
                mismatches.append((i, split, ci, t, replay, live))
    assert mismatches == []


def test_cli_show_json(capsys):
    assert cli(["show", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["block"] for e in out["exits"]] == [1, 3, 4, 5]
    assert out["exits"][-1]["accuracy"] >= 0.92
    split2 = out["splits"][2]["payload_bytes"]
    assert set(split2) == {"float32", "float16", "int8"} and split2["int8"] < 784
    assert cli(["show"]) == 0
    assert "threshold" in capsys.readouterr().out
