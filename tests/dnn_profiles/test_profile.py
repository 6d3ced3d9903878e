import hashlib
import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import torch

from splitexit.dnn_profiles.__main__ import main as cli
from splitexit.dnn_profiles.data import load_fashion_mnist
from splitexit.dnn_profiles.model import COMPRESSIONS, MultiExitCNN, split_inference
from splitexit.dnn_profiles.profile import DEFAULT_PROFILE_PATH, Profile
from splitexit.dnn_profiles.profiler import profile
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
    meta["arrays_sha256"] = _sha256(tmp_path / "edited.npz")
    out.write_text(json.dumps(meta))
    return out


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_profile_records_the_thread_count_its_samples_ran_at(small_profile, tmp_path):
    """Live execution runs at it (issue 19, item 7); older profiles say it in "host" only."""
    meta = Profile.load(small_profile).meta
    assert (
        meta["torch_threads"]
        == torch.get_num_threads()
        == Profile.load(small_profile).torch_threads
    )
    host_only = _copy_shipped(tmp_path)  # the shipped Fashion-MNIST profile: no field
    assert "torch_threads" not in json.loads(host_only.read_text())
    assert Profile.load(host_only).torch_threads == 2  # "x86_64 Linux, 2 torch threads, ..."
    made_by_workers = _copy_shipped(tmp_path, meta_change=lambda m: m.update(torch_threads=1))
    assert Profile.load(made_by_workers).torch_threads == 1


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


# -- integrity and metadata checks, on copies of the shipped profile ----------------------------

SHIPPED_NPZ = DEFAULT_PROFILE_PATH.with_suffix(".npz")


def _copy_shipped(tmp_path, meta_change=None, array_change=None, npz_bytes=None, rehash=True):
    """A copy of the shipped profile as ``copy.json`` + ``copy.npz``, edited. The recorded
    ``arrays_sha256`` follows the edited arrays when ``rehash``, else stays the shipped one."""
    meta = json.loads(DEFAULT_PROFILE_PATH.read_text())
    npz = tmp_path / "copy.npz"
    if array_change:
        with np.load(SHIPPED_NPZ, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        array_change(arrays)
        np.savez(npz, **arrays)
    elif npz_bytes:
        npz.write_bytes(npz_bytes(SHIPPED_NPZ.read_bytes()))
    else:
        shutil.copy(SHIPPED_NPZ, npz)
    meta["arrays_file"] = npz.name
    if rehash:
        meta["arrays_sha256"] = _sha256(npz)
    if meta_change:
        meta_change(meta)
    out = tmp_path / "copy.json"
    out.write_text(json.dumps(meta))
    return out


def test_shipped_hash_is_of_the_npz_file_and_copies_load(tmp_path):
    meta = json.loads(DEFAULT_PROFILE_PATH.read_text())
    assert meta["arrays_sha256"] == _sha256(SHIPPED_NPZ)
    assert Profile.load(_copy_shipped(tmp_path)).num_samples == 10000
    # a re-saved profile (a different but recorded hash) loads too
    edited = _copy_shipped(tmp_path, array_change=lambda a: a["labels"].__setitem__(0, 3))
    assert Profile.load(edited).labels[0] == 3


@pytest.mark.parametrize(
    "array_change",
    [
        lambda a: a["labels"].__setitem__(0, (a["labels"][0] + 1) % 10),
        lambda a: a["confidence"].__setitem__((5, 0, 0, 0), 0.5),
        lambda a: a.update(block_latency_s=a["block_latency_s"] * 0.5),
    ],
    ids=["labels", "confidence", "latency"],
)
def test_tampered_arrays_rejected(tmp_path, array_change):
    bad = _copy_shipped(tmp_path, array_change=array_change, rehash=False)
    with pytest.raises(ValueError, match=r"copy\.npz: .*do not match field 'arrays_sha256'"):
        Profile.load(bad)


@pytest.mark.parametrize("keep", [0, 10, 1000, 777_777, -22, -1])
@pytest.mark.parametrize("rehash", [False, True], ids=["hash-kept", "hash-of-truncated"])
def test_truncated_npz_names_the_file(tmp_path, keep, rehash):
    bad = _copy_shipped(tmp_path, npz_bytes=lambda b: b[:keep], rehash=rehash)
    expected = "not a readable .npz file" if rehash else "do not match field 'arrays_sha256'"
    with pytest.raises(ValueError, match=r"copy\.npz: ") as err:
        Profile.load(bad)
    assert expected in str(err.value)


def test_corrupt_npz_with_matching_hash_names_the_file(tmp_path):
    def flip(b):  # a byte inside the compressed 'confidence' member: CRC or zlib error
        i = len(b) // 2
        return b[:i] + bytes([b[i] ^ 0xFF]) + b[i + 1 :]

    with pytest.raises(ValueError, match=r"copy\.npz: not a readable \.npz file"):
        Profile.load(_copy_shipped(tmp_path, npz_bytes=flip))


@pytest.mark.parametrize(
    "blocks",
    [
        [3, 1, 4, 5],
        [1, 3, 3, 5],
        [0, 3, 4, 5],
        [1, 3, 4, 6],
        [-1, 3, 4, 5],
        [1, 2, 3, 4],
        [],
        "1345",
        [1.0, 3, 4, 5],
        [True, 3, 4, 5],
        [[1], 3, 4, 5],
    ],
)
def test_bad_exit_blocks_rejected(tmp_path, blocks):
    bad = _copy_shipped(tmp_path, meta_change=lambda m: m.update(exit_blocks=blocks))
    with pytest.raises(
        ValueError, match=r"copy\.json: field 'exit_blocks' is .*strictly increasing"
    ):
        Profile.load(bad)


def _no_samples(a):
    for name in ("labels", "confidence", "entropy", "prediction"):
        a[name] = a[name][:0]


@pytest.mark.parametrize(
    "num_samples, array_change, message",
    [
        (0, _no_samples, "copy.json: field 'num_samples' is 0 (int), expected an integer >= 1"),
        (10000, _no_samples, "copy.npz: array 'labels' is empty"),
        (
            9999,
            None,
            "copy.npz: array 'labels' has 10000 samples, field 'num_samples' says 9999",
        ),
    ],
)
def test_zero_or_wrong_sample_counts_rejected(tmp_path, num_samples, array_change, message):
    bad = _copy_shipped(
        tmp_path, meta_change=lambda m: m.update(num_samples=num_samples), array_change=array_change
    )
    with pytest.raises(ValueError) as err:
        Profile.load(bad)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("num_blocks", "5", "an integer >= 1"),
        ("num_blocks", [5], "an integer >= 1"),
        ("num_blocks", 5.0, "an integer >= 1"),
        ("num_blocks", True, "an integer >= 1"),
        ("num_samples", "10000", "an integer >= 1"),
        ("num_samples", [10000], "an integer >= 1"),
        ("raw_input_bytes", "784", "an integer >= 1"),
        ("model", 3, "a string"),
        ("dataset", None, "a string"),
        ("compressions", "int8", "distinct items"),
        ("compressions", ["float32", "float32", "int8"], "distinct items"),
        ("compressions", ["float32", "float16", "bf16"], "distinct items"),
        ("compressions", [], "distinct items"),
        ("arrays_file", 5, "a file name"),
        ("arrays_file", "../copy.npz", "a file name"),
        ("arrays_sha256", 123, "a SHA-256 hex digest"),
        ("arrays_sha256", "abc", "a SHA-256 hex digest"),
        ("block_output_shapes", "32x14x14", "lists of integers"),
        ("block_output_shapes", [[32, 14, 14]], "lists of integers"),
        ("profile_time_s", "fast", "a finite number"),
        ("sources", ["x"], "a JSON object"),
    ],
)
def test_wrong_metadata_types_rejected(tmp_path, key, value, expected):
    bad = _copy_shipped(tmp_path, meta_change=lambda m: m.update({key: value}))
    with pytest.raises(ValueError, match=rf"copy\.json: field '{key}' is ") as err:
        Profile.load(bad)
    assert expected in str(err.value)


@pytest.mark.parametrize("value", [True, "1", 1.0])
def test_schema_version_must_be_the_integer(tmp_path, value):
    bad = _copy_shipped(tmp_path, meta_change=lambda m: m.update(schema_version=value))
    with pytest.raises(ValueError, match=r"copy\.json: field 'schema_version' is "):
        Profile.load(bad)


@pytest.mark.parametrize("key", ["arrays_sha256", "num_samples"])
def test_integrity_fields_required(tmp_path, key):
    bad = _copy_shipped(tmp_path, meta_change=lambda m: m.pop(key))
    with pytest.raises(ValueError, match=rf"copy\.json: missing field '{key}'"):
        Profile.load(bad)


def test_oversized_member_rejected_before_decompression(tmp_path):
    """A member bigger than the metadata's shapes allow is refused from its declared size."""
    bad = _copy_shipped(tmp_path, array_change=lambda a: a.update(labels=np.zeros(10**6, np.int64)))
    with pytest.raises(ValueError, match=r"copy\.npz: array 'labels' is \d+ bytes uncompressed"):
        Profile.load(bad)


def test_a_member_declaring_a_huge_shape_is_refused_before_allocation(tmp_path):
    """Issue 19, item 19: the .npy header's shape drives numpy's allocation (745 GiB here)."""

    def huge_labels(npz_bytes: bytes) -> bytes:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<i8", "fortran_order": False, "shape": (10**11,)}
        )
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(npz_bytes)) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                dst.writestr(
                    item.filename, header.getvalue() if item.filename == "labels.npy" else data
                )
        return out.getvalue()

    bad = _copy_shipped(tmp_path, npz_bytes=huge_labels)
    with pytest.raises(
        ValueError, match=r"copy\.npz: array 'labels' is declared int64\(100000000000,\)"
    ):
        Profile.load(bad)


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


def _hostile(path, kind):
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "long-number":
        path.write_text('{"schema_version": ' + "9" * 5000 + "}")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder", "deep", "long-number"])
def test_hostile_profile_files_are_refused_naming_the_file(tmp_path, kind):
    """Neither read until memory runs out, nor blocked on, nor a bare RecursionError."""
    path = tmp_path / "p.json"
    _hostile(path, kind)
    with pytest.raises(ValueError, match="p.json: "):
        Profile.load(path)


def test_a_symlinked_profile_reads_the_arrays_beside_its_target(tmp_path):
    link = tmp_path / "elsewhere" / "link.json"
    link.parent.mkdir()
    link.symlink_to(DEFAULT_PROFILE_PATH)
    assert Profile.load(link).num_samples == Profile.load(DEFAULT_PROFILE_PATH).num_samples
