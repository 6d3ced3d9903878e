"""Deterministic CPU training of the multi-exit CNN with a joint loss over its exits."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from splitexit.dnn_profiles.data import Dataset
from splitexit.dnn_profiles.model import MultiExitCNN, images_to_input
from splitexit.files import atomic_write_bytes

WEIGHTS_PATH = Path(__file__).parent / "data" / "fmnist_multiexit_cnn.safetensors"


def weights_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_model(path: str | Path = WEIGHTS_PATH) -> MultiExitCNN:
    """The multi-exit CNN with weights from a safetensors file, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    model = MultiExitCNN()
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as err:  # safetensors and torch raise several types
        raise ValueError(f"{path}: not weights of {MultiExitCNN.name} ({err})") from None
    return model.eval()


@torch.no_grad()
def exit_accuracies(model: MultiExitCNN, data: Dataset, batch_size: int = 1000) -> list[float]:
    """Top-1 accuracy of every exit on ``data``."""
    model.eval()
    correct = np.zeros(len(model.exit_blocks))
    for i in range(0, len(data), batch_size):
        x = images_to_input(data.images[i : i + batch_size])
        y = torch.as_tensor(data.labels[i : i + batch_size])
        for e, logits in enumerate(model(x)):
            correct[e] += (logits.argmax(-1) == y).sum().item()
    return (correct / len(data)).tolist()


def train(
    train_data: Dataset,
    test_data: Dataset | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    out_path: str | Path = WEIGHTS_PATH,
    log=print,
) -> dict:
    """Train with AdamW + one-cycle LR, sum of cross-entropies over all exits, horizontal flips.

    Deterministic for a seed on CPU (fixed thread count, deterministic algorithms). Writes the
    weights (safetensors) and a ``.json`` record beside them; returns that record.
    """
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(seed)
    model = MultiExitCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = len(train_data) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    x_all = images_to_input(train_data.images)
    y_all = torch.as_tensor(train_data.labels)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_data), generator=gen)
        flips = torch.rand(len(train_data), generator=gen) < 0.5
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x = x_all[idx]
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
            loss = sum(loss_fn(logits, y_all[idx]) for logits in model(x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        msg = f"epoch {epoch + 1}/{epochs} loss {total / steps_per_epoch:.4f}"
        if test_data is not None:
            accs = exit_accuracies(model, test_data)
            msg += " test acc " + " ".join(f"{a:.4f}" for a in accs)
        log(f"{msg} ({time.perf_counter() - start:.0f} s)")
    model.eval()
    out_path = Path(out_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        save_file(state, f"{tmp}/w.safetensors", metadata={"model": MultiExitCNN.name})
        atomic_write_bytes(out_path, Path(f"{tmp}/w.safetensors").read_bytes())
    record = {
        "model": MultiExitCNN.name,
        "weights_sha256": weights_sha256(out_path),
        "train_data": train_data.name,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_time_s": round(time.perf_counter() - start, 1),
        "test_accuracy_per_exit": exit_accuracies(model, test_data) if test_data else None,
    }
    atomic_write_bytes(out_path.with_suffix(".json"), json.dumps(record, indent=2).encode())
    return record
