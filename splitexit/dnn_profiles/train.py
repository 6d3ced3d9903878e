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

from splitexit.dnn_profiles.corruptions import (
    CONDITIONS,
    EVAL_SALT,
    Condition,
    apply_condition,
    corrupt,
)
from splitexit.dnn_profiles.data import Dataset
from splitexit.dnn_profiles.model import MultiExitCNN, images_to_input
from splitexit.files import atomic_write_bytes

WEIGHTS_PATH = Path(__file__).parent / "data" / "fmnist_multiexit_cnn.safetensors"
# The model trained with corruption augmentation (the camera conditions of SplitExit-v1).
ROBUST_WEIGHTS_PATH = Path(__file__).parent / "data" / "fmnist_multiexit_cnn_robust.safetensors"
# Seeds of the augmentation (arbitrary fixed constants, distinct from the profile's EVAL_SALT):
# which samples of a batch are corrupted and how, and the noise of those corruptions.
AUGMENT_PICK_SALT = 20201
AUGMENT_NOISE_SALT = 20202
DEFAULT_AUGMENT_CONDITIONS = tuple(c for c in CONDITIONS if c.corruption != "none")


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


def condition_accuracies(
    model: MultiExitCNN, data: Dataset, conditions: tuple[Condition, ...] = CONDITIONS
) -> dict[str, list[float]]:
    """Top-1 accuracy of every exit on ``data`` under every condition (the profile's noise)."""
    index = np.arange(len(data))
    return {
        c.name: exit_accuracies(
            model, Dataset(data.name, apply_condition(data.images, c, index), data.labels)
        )
        for c in conditions
    }


def _corrupt_batch(
    images: np.ndarray,
    indices: np.ndarray,
    pick_rng: np.random.Generator,
    share: float,
    conditions: tuple[Condition, ...],
    noise_salt: tuple[int, ...],
) -> np.ndarray:
    """A copy of a batch's uint8 images with a ``share`` of them (each independently) under a
    condition drawn uniformly from ``conditions``; the noise is seeded by the sample's index."""
    out = images.copy()
    picked = pick_rng.random(len(images)) < share
    which = pick_rng.integers(len(conditions), size=len(images))
    for k, c in enumerate(conditions):
        sel = picked & (which == k)
        if sel.any():
            out[sel] = corrupt(out[sel], c.corruption, c.severity, indices[sel], noise_salt)
    return out


def train(
    train_data: Dataset,
    test_data: Dataset | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    out_path: str | Path = WEIGHTS_PATH,
    log=print,
    corruption_share: float = 0.0,
    corruption_conditions: tuple[Condition, ...] = DEFAULT_AUGMENT_CONDITIONS,
    command: str | None = None,
) -> dict:
    """Train with AdamW + one-cycle LR, sum of cross-entropies over all exits, horizontal flips.

    With ``corruption_share`` > 0 (corruption augmentation), each training image of a batch is
    replaced, with that probability, by its corrupted version under a condition drawn uniformly
    from ``corruption_conditions``; draws come from a numpy generator seeded by ``seed`` and the
    noise from ``[AUGMENT_NOISE_SALT, seed, epoch, ...]``, so the torch random stream (order,
    flips, dropout) is the one of plain training. At 0 (the default) training is unchanged.

    Deterministic for a seed on CPU (fixed thread count, deterministic algorithms). Writes the
    weights (safetensors) and a ``.json`` record beside them; returns that record.
    """
    if not 0.0 <= corruption_share <= 1.0:
        raise ValueError(f"corruption_share must be in [0, 1], got {corruption_share}")
    augment = corruption_share > 0.0
    if augment and not corruption_conditions:
        raise ValueError("corruption augmentation needs at least one condition")
    pick_rng = np.random.default_rng([AUGMENT_PICK_SALT, seed])
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(seed)
    model = MultiExitCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = len(train_data) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    x_all = None if augment else images_to_input(train_data.images)
    y_all = torch.as_tensor(train_data.labels)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_data), generator=gen)
        flips = torch.rand(len(train_data), generator=gen) < 0.5
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            if augment:
                idx_np = idx.numpy()
                x = images_to_input(
                    _corrupt_batch(
                        train_data.images[idx_np],
                        idx_np,
                        pick_rng,
                        corruption_share,
                        corruption_conditions,
                        (AUGMENT_NOISE_SALT, seed, epoch),
                    )
                )
            else:
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
    if augment:
        record["corruption_augmentation"] = {
            "share": corruption_share,
            "conditions": [c.describe() for c in corruption_conditions],
            "draws": f"np.random.default_rng([{AUGMENT_PICK_SALT}, seed]): per image, corrupted "
            "with probability share, condition uniform",
            "noise_seed": f"np.random.default_rng([{AUGMENT_NOISE_SALT}, seed, epoch, "
            "corruption id, severity, train index])",
        }
        if test_data is not None:
            record["test_accuracy_per_exit_by_condition"] = condition_accuracies(model, test_data)
            record["test_condition_noise_salt"] = EVAL_SALT
    if command is not None:
        record["command"] = command
    atomic_write_bytes(out_path.with_suffix(".json"), json.dumps(record, indent=2).encode())
    return record
