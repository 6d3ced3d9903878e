"""The model zoo: every registered name resolves, and the CLI lists and shows profiles by name."""

import json

import numpy as np
import pytest
import torch

from splitexit.dnn_profiles import zoo
from splitexit.dnn_profiles.__main__ import main as cli
from splitexit.dnn_profiles.model import split_inference
from splitexit.dnn_profiles.profile import Profile


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_model_builds_for_its_data_set(name):
    spec = zoo.get_model(name)
    data = zoo.dataset_of(name)
    model = spec.build().eval()
    assert (model.name, model.dataset) == (name, data.name)
    assert model.raw_input_bytes == data.raw_input_bytes
    frames = np.zeros((2, *data.image_shape), np.uint8)
    with torch.no_grad():
        logits = model(model.images_to_input(frames))
    assert len(logits) == len(model.exit_blocks) and logits[-1].shape == (2, data.num_classes)
    assert model.exit_blocks[-1] == model.num_blocks


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_head_then_tail_equals_the_whole_model(name):
    """Split parity: blocks 1..s, then s+1..S on the features, give the whole model's exits, bit
    for bit, at every split; so does split_inference with a float32 payload."""
    spec = zoo.get_model(name)
    torch.manual_seed(0)
    model = spec.build().eval()
    frame = np.random.default_rng(1).integers(0, 256, zoo.dataset_of(name).image_shape, np.uint8)
    with torch.no_grad():
        whole = model(model.images_to_input(frame[None]))
        for s in range(model.num_blocks + 1):
            features, head = model.run_blocks(model.images_to_input(frame[None]), 0, s)
            _, tail = model.run_blocks(features, s, model.num_blocks)
            parts = {**head, **tail}
            for k, b in enumerate(model.exit_blocks):
                assert torch.equal(parts[b], whole[k]), (s, b)
            answer = split_inference(model, frame, s, 2.0, "float32")
            assert answer.exit_block == model.num_blocks
            assert answer.prediction == int(whole[-1].argmax())
            assert answer.device_blocks == s and answer.server_blocks == model.num_blocks - s


def test_registered_profiles_record_their_model_and_data_set():
    for spec in zoo.PROFILES.values():
        if not spec.path.is_file():
            continue
        prof = Profile.load(spec.path)
        assert prof.meta["model"] == spec.model
        assert prof.meta["dataset"].split("/")[0] == zoo.get_model(spec.model).dataset
        assert prof.meta["raw_input_bytes"] == zoo.dataset_of(spec.model).raw_input_bytes


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet-9000'; registered: \["):
        zoo.get_model("resnet-9000")
    with pytest.raises(ValueError, match="unknown data set"):
        zoo.get_dataset("mnist")


def test_list_json_names_model_and_data_set(capsys):
    assert cli(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(zoo.PROFILES)
    for r in rows:
        assert r["model"] in zoo.MODELS and r["dataset"] in zoo.DATASETS
    assert {"fmnist-multiexit-cnn", "cifar10-multiexit-resnet"} <= {r["name"] for r in rows}
    assert cli(["list"]) == 0
    assert "cifar10-multiexit-resnet" in capsys.readouterr().out


def test_show_by_name_equals_show_by_path(capsys):
    spec = zoo.get_profile("fmnist-multiexit-cnn")
    assert cli(["show", spec.name, "--json"]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert cli(["show", str(spec.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_name
    assert by_name["model"] == "fmnist-multiexit-cnn"


@pytest.mark.parametrize(
    ("flags", "bf16", "lr"), [((), True, 0.1), (("--no-bf16", "--lr", "0.02"), False, 0.02)]
)
def test_train_cli_runs_the_models_recipe_with_the_flags_over_it(
    tmp_path, monkeypatch, flags, bf16, lr
):
    from splitexit.dnn_profiles import __main__ as main_module
    from tests.dnn_profiles.test_cifar10 import make_tree

    make_tree(tmp_path, "train", per_class=1)
    calls = []
    monkeypatch.setattr(main_module, "train", lambda *a, **kw: calls.append(kw) or {})
    out = str(tmp_path / "w.safetensors")
    args = ["train", "--model", "cifar10-multiexit-resnet", "--data-dir", str(tmp_path)]
    assert cli([*args, "--out", out, *flags]) == 0
    recipe = zoo.get_model("cifar10-multiexit-resnet").train_defaults
    assert calls[0]["bf16"] is bf16 and calls[0]["lr"] == lr
    assert calls[0]["epochs"] == recipe["epochs"] and calls[0]["out_path"] == out
