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

from splitexit.dnn_profiles import zoo
from splitexit.dnn_profiles.corruptions import (
    CONDITIONS,
    EVAL_SALT,
    Condition,
    apply_condition,
    corrupt,
    corruption_set,
)
from splitexit.dnn_profiles.data import Dataset
from splitexit.files import atomic_write_bytes

DEFAULT_MODEL = "fmnist-multiexit-cnn"

WEIGHTS_PATH = Path(__file__).parent / "data" / "fmnist_multiexit_cnn.safetensors"
# The model trained with corruption augmentation (the camera conditions of SplitExit-v1).
ROBUST_WEIGHTS_PATH = Path(__file__).parent / "data" / "fmnist_multiexit_cnn_robust.safetensors"
# Seeds of the augmentation (arbitrary fixed constants, distinct from the profile's EVAL_SALT):
# which samples of a batch are corrupted and how, and the noise of those corruptions.
AUGMENT_PICK_SALT = 20201
AUGMENT_NOISE_SALT = 20202
DEFAULT_AUGMENT_CONDITIONS = tuple(c for c in CONDITIONS if c.corruption != "none")


def augment_conditions(dataset: str) -> tuple[Condition, ...]:
    """A data set's camera conditions but the clean one (what augmentation draws from)."""
    return tuple(c for c in corruption_set(dataset).conditions if c.corruption != "none")


def weights_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_model(path: str | Path = WEIGHTS_PATH, model: str = DEFAULT_MODEL) -> nn.Module:
    """The registered multi-exit ``model`` with weights from a safetensors file, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    net = zoo.get_model(model).build()
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as err:  # safetensors and torch raise several types
        raise ValueError(f"{path}: not weights of {model} ({err})") from None
    return net.eval()


@torch.no_grad()
def exit_accuracies(model: nn.Module, data: Dataset, batch_size: int = 1000) -> list[float]:
    """Top-1 accuracy of every exit on ``data``."""
    model.eval()
    correct = np.zeros(len(model.exit_blocks))
    for i in range(0, len(data), batch_size):
        x = model.images_to_input(data.images[i : i + batch_size])
        y = torch.as_tensor(data.labels[i : i + batch_size])
        for e, logits in enumerate(model(x)):
            correct[e] += (logits.argmax(-1) == y).sum().item()
    return (correct / len(data)).tolist()


def condition_accuracies(
    model: nn.Module, data: Dataset, conditions: tuple[Condition, ...] | None = None
) -> dict[str, list[float]]:
    """Top-1 accuracy of every exit on ``data`` under every condition (the profile's noise)."""
    index = np.arange(len(data))
    spec = corruption_set(model.dataset)
    return {
        c.name: exit_accuracies(
            model,
            Dataset(data.name, apply_condition(data.images, c, index, dataset=spec), data.labels),
        )
        for c in (spec.conditions if conditions is None else conditions)
    }


def _corrupt_batch(
    images: np.ndarray,
    indices: np.ndarray,
    pick_rng: np.random.Generator,
    share: float,
    conditions: tuple[Condition, ...],
    noise_salt: tuple[int, ...],
    dataset: str = "fashion-mnist",
) -> np.ndarray:
    """A copy of a batch's uint8 images with a ``share`` of them (each independently) under a
    condition drawn uniformly from ``conditions``; the noise is seeded by the sample's index."""
    out = images.copy()
    picked = pick_rng.random(len(images)) < share
    which = pick_rng.integers(len(conditions), size=len(images))
    for k, c in enumerate(conditions):
        sel = picked & (which == k)
        if sel.any():
            out[sel] = corrupt(
                out[sel], c.corruption, c.severity, indices[sel], noise_salt, dataset
            )
    return out


def _random_crops(
    x: torch.Tensor, padding_px: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random crops of a zero-padded batch (N, C, H, W), as He et al. (CVPR 2016,
    Sec. 4.2) augment CIFAR-10: offsets (N, 2) drawn from ``gen``."""
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding_px + 1, (n, 2), generator=gen)
    padded = nn.functional.pad(x, (padding_px,) * 4)
    rows = offsets[:, :1] + torch.arange(h)  # (N, H)
    cols = offsets[:, 1:] + torch.arange(w)  # (N, W)
    batch = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous(), offsets


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
    corruption_conditions: tuple[Condition, ...] | None = None,
    command: str | None = None,
    model: str = DEFAULT_MODEL,
    optimizer: str = "adamw",
    crop_padding_px: int = 0,
    bf16: bool = False,
    eval_every: int = 1,
    init_from: str | Path | None = None,
    pct_start: float = 0.3,
) -> dict:
    """Train a registered multi-exit ``model`` with one-cycle LR, the sum of cross-entropies
    over all exits, and horizontal flips.

    ``optimizer``: ``"adamw"`` (weight decay 5e-4; the Fashion-MNIST CNN) or ``"sgd"``
    (Nesterov momentum 0.9, weight decay 5e-4, as CIFAR ResNets are trained: He et al. 2016).
    ``lr`` is the one-cycle peak. ``crop_padding_px`` > 0 adds per-sample random crops of the
    zero-padded image; ``bf16`` runs the forward pass under CPU bfloat16 autocast (weights,
    optimizer and the saved model stay float32).

    With ``corruption_share`` > 0 (corruption augmentation), each training image of a batch is
    replaced, with that probability, by its corrupted version under a condition drawn uniformly
    from ``corruption_conditions`` (default: the data set's conditions but clean); draws come
    from a numpy generator seeded by ``seed`` and the noise from ``[AUGMENT_NOISE_SALT, seed,
    epoch, ...]``, so the torch random stream (order, flips, crops, dropout) is the one of plain
    training. At 0 (the default) training is unchanged.

    ``init_from``: start from these weights (a second, fine-tuning stage; its record keeps the
    first stage's); ``pct_start``: the share of the one-cycle schedule spent warming up.

    Deterministic for a seed on CPU (fixed thread count, deterministic algorithms). Writes the
    weights (safetensors) and a ``.json`` record beside them; returns that record.
    """
    spec = zoo.get_model(model)
    if corruption_conditions is None:
        corruption_conditions = augment_conditions(spec.dataset)
    if not 0.0 <= corruption_share <= 1.0:
        raise ValueError(f"corruption_share must be in [0, 1], got {corruption_share}")
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    augment = corruption_share > 0.0
    if augment and not corruption_conditions:
        raise ValueError("corruption augmentation needs at least one condition")
    pick_rng = np.random.default_rng([AUGMENT_PICK_SALT, seed])
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(seed)
    net = spec.build()
    init_record = None
    if init_from is not None:
        net = load_model(init_from, model)
        init_json = Path(init_from).with_suffix(".json")
        init_record = json.loads(init_json.read_text()) if init_json.is_file() else {}
        init_record["weights_sha256"] = weights_sha256(init_from)
    to_input = net.images_to_input
    if optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    else:
        opt = torch.optim.SGD(
            net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
    steps_per_epoch = len(train_data) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, lr, total_steps=epochs * steps_per_epoch, pct_start=pct_start
    )
    loss_fn = nn.CrossEntropyLoss()
    x_all = None if augment else to_input(train_data.images)
    y_all = torch.as_tensor(train_data.labels)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_data), generator=gen)
        flips = torch.rand(len(train_data), generator=gen) < 0.5
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            if augment:
                idx_np = idx.numpy()
                x = to_input(
                    _corrupt_batch(
                        train_data.images[idx_np],
                        idx_np,
                        pick_rng,
                        corruption_share,
                        corruption_conditions,
                        (AUGMENT_NOISE_SALT, seed, epoch),
                        spec.dataset,
                    )
                )
            else:
                x = x_all[idx]
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
            if crop_padding_px > 0:
                x, _ = _random_crops(x, crop_padding_px, gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = sum(loss_fn(logits.float(), y_all[idx]) for logits in net(x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        msg = f"epoch {epoch + 1}/{epochs} loss {total / steps_per_epoch:.4f}"
        if test_data is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            accs = exit_accuracies(net, test_data)
            msg += " test acc " + " ".join(f"{a:.4f}" for a in accs)
        log(f"{msg} ({time.perf_counter() - start:.0f} s)")
    net.eval()
    out_path = Path(out_path)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        save_file(state, f"{tmp}/w.safetensors", metadata={"model": model})
        atomic_write_bytes(out_path, Path(f"{tmp}/w.safetensors").read_bytes())
    record = {
        "model": model,
        "weights_sha256": weights_sha256(out_path),
        "train_data": train_data.name,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_time_s": round(time.perf_counter() - start, 1),
        "test_accuracy_per_exit": exit_accuracies(net, test_data) if test_data else None,
    }
    if (optimizer, crop_padding_px, bf16) != ("adamw", 0, False):
        record["optimizer"] = optimizer
        record["crop_padding_px"] = crop_padding_px
        record["bf16_autocast"] = bf16
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
            record["test_accuracy_per_exit_by_condition"] = condition_accuracies(net, test_data)
            record["test_condition_noise_salt"] = EVAL_SALT
    if init_record is not None:
        record["pct_start"] = pct_start
        record["init_from"] = init_record
    if command is not None:
        record["command"] = command
    atomic_write_bytes(out_path.with_suffix(".json"), json.dumps(record, indent=2).encode())
    return record
