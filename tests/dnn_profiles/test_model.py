import numpy as np
import pytest
import torch

from splitexit.dnn_profiles.data import load_fashion_mnist
from splitexit.dnn_profiles.model import (
    COMPRESSIONS,
    RAW_INPUT_BYTES,
    decode_payload,
    encode_payload,
    images_to_input,
    payload_num_bytes,
    split_inference,
)
from splitexit.dnn_profiles.train import load_model


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def test_data():
    return load_fashion_mnist("test")


@torch.no_grad()
@pytest.mark.parametrize("split", range(6))
def test_head_then_tail_equals_whole_model(model, test_data, split):
    x = images_to_input(test_data.images[:64])
    whole = model(x)
    features, head_logits = model.run_blocks(x, 0, split)
    payload = torch.stack(
        [decode_payload(encode_payload(f, "float32"), "float32", f.shape) for f in features]
    )
    _, tail_logits = model.run_blocks(payload, split, model.num_blocks)
    split_logits = list({**head_logits, **tail_logits}.values())
    assert len(split_logits) == len(whole)
    for a, b in zip(split_logits, whole):
        assert torch.equal(a, b)


def test_split_inference_agrees_with_whole_model_at_float32(model, test_data):
    whole = model(images_to_input(test_data.images[:20]))[-1].argmax(-1)
    for split in range(model.num_blocks + 1):
        preds = [
            split_inference(model, img, split, 2.0).prediction for img in test_data.images[:20]
        ]
        assert preds == whole.tolist()


class BlockCounter:
    def __init__(self, model):
        self.count = 0
        self.handles = [b.register_forward_hook(self.hook) for b in model.blocks]

    def hook(self, *args):
        self.count += 1

    def close(self):
        for h in self.handles:
            h.remove()


def test_exits_stop_the_computation(model, test_data):
    counter = BlockCounter(model)
    try:
        result = split_inference(model, test_data.images[0], 5, threshold=0.0)
        assert result.exit_block == 1 and counter.count == 1
        assert result.payload == b"" and result.device_blocks == 1 and result.server_blocks == 0
        counter.count = 0
        result = split_inference(model, test_data.images[0], 5, threshold=2.0)
        assert result.exit_block == 5 and counter.count == 5
        counter.count = 0
        result = split_inference(model, test_data.images[0], 0, threshold=0.0)
        # the raw input goes to the server, whose first exit then answers
        assert len(result.payload) == RAW_INPUT_BYTES and result.exit_block == 1
        assert result.server_blocks == 1 and counter.count == 1
    finally:
        counter.close()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_payload_round_trip_and_byte_counts(compression):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 7, 7, generator=gen) * 3
    data = encode_payload(x, compression)
    assert len(data) == payload_num_bytes(x.numel(), compression)
    y = decode_payload(data, compression, x.shape)
    tol = {"float32": 0.0, "float16": 1e-3 * 3 * 4, "int8": x.abs().max().item() / 127 / 2 + 1e-6}
    assert torch.max((x - y).abs()).item() <= tol[compression]
    if compression == "float32":
        assert torch.equal(x, y)


def test_int8_payload_of_zeros_and_unknown_compression():
    zeros = torch.zeros(1, 4, 7, 7)
    assert torch.equal(decode_payload(encode_payload(zeros, "int8"), "int8", zeros.shape), zeros)
    with pytest.raises(ValueError, match="compression must be one of"):
        encode_payload(zeros, "bfloat8")
    with pytest.raises(ValueError, match="split must be in 0..5, got 6"):
        split_inference(load_model(), np.zeros((28, 28), np.uint8), 6, 0.5)


def test_bottleneck_payload_is_smaller_than_raw_input(model):
    x = model.run_blocks(images_to_input(np.zeros((1, 28, 28), np.uint8)), 0, 2)[0]
    assert len(encode_payload(x, "int8")) < RAW_INPUT_BYTES


def test_weights_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model(bad)


def test_training_is_deterministic_for_a_seed(tmp_path):
    from splitexit.dnn_profiles.train import train

    data = load_fashion_mnist("test").subset(256)
    records = [
        train(
            data,
            epochs=1,
            batch_size=64,
            seed=3,
            out_path=tmp_path / f"{k}.safetensors",
            log=lambda _: None,
        )
        for k in range(2)
    ]
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    other = train(
        data,
        epochs=1,
        batch_size=64,
        seed=4,
        out_path=tmp_path / "o.safetensors",
        log=lambda _: None,
    )
    assert other["weights_sha256"] != records[0]["weights_sha256"]
