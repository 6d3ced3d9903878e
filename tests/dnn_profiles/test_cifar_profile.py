"""The shipped CIFAR-10 workload: the split multi-exit ResNet's profile holds what issue 18 asks
of it, and replay equals live execution on it (the model run on the real, corrupted frame)."""

import json

import numpy as np
import pytest

from splitexit.dnn_profiles import zoo
from splitexit.dnn_profiles.__main__ import main as cli
from splitexit.dnn_profiles.cifar10 import RAW_IMAGE_BYTES, load_cifar10
from splitexit.dnn_profiles.corruptions import CIFAR_CONDITIONS
from splitexit.dnn_profiles.model import torch_threads
from splitexit.dnn_profiles.profile import Profile
from splitexit.dnn_profiles.train import load_model
from splitexit.envs import SplitExitEnv
from tests.dnn_profiles.parity import CROSS_CPU_RTOL, replay_live_mismatches

NAME = "cifar10-multiexit-resnet"
SPEC = zoo.get_profile(NAME)
THRESHOLDS = np.array([0.0, 0.5, 0.7, 0.9, 0.99, 1.01], np.float32)
pytestmark = pytest.mark.skipif(
    not SPEC.path.is_file(), reason="the CIFAR-10 profile is not shipped yet (issue 18)"
)


@pytest.fixture(scope="module")
def shipped():
    prof = Profile.load(SPEC.path)
    model = load_model(zoo.get_model(NAME).weights[SPEC.variant], NAME)
    return prof, model


@pytest.fixture
def profile_threads(shipped):
    """The profiler's torch thread count: other counts move the last bits."""
    with torch_threads(shipped[0].torch_threads):
        yield


def test_the_profile_meets_the_workload_criteria(shipped):
    prof, _ = shipped
    assert prof.num_samples == 10_000 and prof.meta["dataset"] == "cifar-10/test"
    assert prof.conditions == tuple(c.name for c in CIFAR_CONDITIONS)
    clean = prof.exit_accuracy()
    assert clean[-1] >= 0.87  # the final exit on the clean test split (see below for 0.88)
    assert clean[0] <= clean[-1] - 0.15  # the device's exit is much worse than the final one
    int8 = prof.compressions.index("int8")
    assert prof.meta["block_output_shapes"][1] == [8, 16, 16]  # the bottleneck
    assert prof.payload_bytes[2, int8] == 8 * 16 * 16 + 4 < RAW_IMAGE_BYTES
    assert prof.payload_bytes[0, int8] == RAW_IMAGE_BYTES
    # under every camera condition the final exit stays ahead of the device's
    by_condition = prof.exit_accuracy_by_condition()
    assert (by_condition[:, -1] > by_condition[:, 0]).all()


@pytest.mark.xfail(
    strict=True,
    reason="issue 18: the shipped weights reach 0.877 on the clean test split; a longer "
    "schedule (a GPU session, or a CPU with bf16) is needed for 0.88",
)
def test_the_final_exit_reaches_the_issues_bar(shipped):
    assert shipped[0].exit_accuracy()[-1] >= 0.88


def test_replay_equals_live_execution_on_corrupted_frames(shipped, profile_threads):
    prof, model = shipped
    images = load_cifar10("test").images
    assert replay_live_mismatches(prof, model, images, CIFAR_CONDITIONS, THRESHOLDS, 6) == []


@pytest.mark.parametrize("world", ["profile's weights", "SplitExit-v1"])
def test_env_replay_equals_live_on_the_workload(profile_threads, world):
    """The env in live mode resolves model, weights and data set from the profile's names;
    SplitExit-v1 (its corruption-trained weights) in live mode is its replay."""
    import splitexit

    config = {**splitexit.V1_DRAFT, "profile": NAME, "weights": None, "device": "mcu"}
    if world == "SplitExit-v1":
        config = dict(splitexit.ENV_PRESETS[world])
    config["horizon"] = 30
    replay, live = SplitExitEnv(config), SplitExitEnv({**config, "mode": "live"})
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(replay.reset(seed=3)[0], live.reset(seed=3)[0])
    for _ in range(30):
        a = int(rng.integers(replay.n_actions))
        r1, r2 = replay.step(a), live.step(a)
        np.testing.assert_allclose(r1[0], r2[0], rtol=CROSS_CPU_RTOL, atol=1e-6)
        assert r1[1] == r2[1]
        i1, i2 = r1[4], r2[4]
        np.testing.assert_allclose(i1.pop("exit_confidences"), i2.pop("exit_confidences"), 1e-5)
        assert i1.pop("confidence") == pytest.approx(i2.pop("confidence"), rel=CROSS_CPU_RTOL)
        assert i1 == i2


def test_show_by_name_keeps_the_json_shape(capsys):
    assert cli(["show", NAME, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert cli(["show", "fmnist-multiexit-cnn-robust", "--json"]) == 0
    assert set(summary) == set(json.loads(capsys.readouterr().out))
    assert summary["model"] == NAME and summary["raw_input_bytes"] == RAW_IMAGE_BYTES
    assert len(summary["conditions"]) == len(CIFAR_CONDITIONS)
