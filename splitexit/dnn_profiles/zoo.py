"""The model zoo: data sets, models and profiles by registered name (torch-free).

Profiles record the names of their model and data set (``meta["model"]``, ``meta["dataset"]``);
this registry turns them back into a loader, a model builder, shipped weights and the camera
conditions, as torchvision and sc2bench resolve models by name. Builders and loaders are
``"module:attribute"`` strings imported on use, so that reading the registry needs no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from splitexit.registry import by_name

DATA_DIR = Path(__file__).parent / "data"


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its frames, classes and where its splits come from."""

    name: str
    image_shape: tuple[int, ...]  # one frame: (H, W) grey or (H, W, 3) RGB, uint8
    num_classes: int
    channel_mean: tuple[float, ...]  # of x / 255 on the train split
    channel_std: tuple[float, ...]
    loader: str  # "module:function(split, data_dir)"
    citation: str

    @property
    def raw_input_bytes(self) -> int:
        """Bytes of one uint8 frame as captured (the payload of split 0)."""
        n = 1
        for d in self.image_shape:
            n *= d
        return n

    def load(self, split: str = "test", data_dir: str | Path | None = None):
        """One split as a :class:`splitexit.dnn_profiles.data.Dataset`."""
        return _resolve(self.loader)(split, data_dir)


@dataclass(frozen=True)
class ModelSpec:
    """A multi-exit model: its data set, builder, shipped weights and training recipe."""

    name: str
    dataset: str
    builder: str  # "module:Class", a torch module following the multi-exit protocol
    weights: dict[str, Path]  # variant ("clean", "robust") -> shipped safetensors
    train_defaults: dict = field(default_factory=dict)

    def build(self):
        """A freshly initialised model (imports torch)."""
        return _resolve(self.builder)()


@dataclass(frozen=True)
class ProfileSpec:
    """A shipped profile: the model and weights it was made with, and its file."""

    name: str
    model: str
    variant: str
    path: Path


DATASETS: dict[str, DatasetSpec] = by_name(
    DatasetSpec(
        name="fashion-mnist",
        image_shape=(28, 28),
        num_classes=10,
        channel_mean=(0.2860,),
        channel_std=(0.3530,),
        loader="splitexit.dnn_profiles.data:load_fashion_mnist",
        citation="H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST, arXiv 1708.07747, 2017",
    ),
    DatasetSpec(
        name="cifar-10",
        image_shape=(32, 32, 3),
        num_classes=10,
        channel_mean=(0.4913, 0.4821, 0.4465),
        channel_std=(0.2452, 0.2428, 0.2606),
        loader="splitexit.dnn_profiles.cifar10:load_cifar10",
        citation="A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, "
        "tech. report, University of Toronto, 2009",
    ),
)

MODELS: dict[str, ModelSpec] = by_name(
    ModelSpec(
        name="fmnist-multiexit-cnn",
        dataset="fashion-mnist",
        builder="splitexit.dnn_profiles.model:MultiExitCNN",
        weights={
            "clean": DATA_DIR / "fmnist_multiexit_cnn.safetensors",
            "robust": DATA_DIR / "fmnist_multiexit_cnn_robust.safetensors",
        },
        train_defaults={"epochs": 10, "batch_size": 128, "lr": 3e-3, "optimizer": "adamw"},
    ),
    ModelSpec(
        name="cifar10-multiexit-resnet",
        dataset="cifar-10",
        builder="splitexit.dnn_profiles.resnet:CifarMultiExitResNet",
        weights={"robust": DATA_DIR / "cifar10_multiexit_resnet.safetensors"},
        train_defaults={
            "epochs": 45,
            "batch_size": 128,
            "lr": 0.1,
            "optimizer": "sgd",
            "crop_padding_px": 4,
            "bf16": True,
            "corruption_share": 0.5,
        },
    ),
)

PROFILES: dict[str, ProfileSpec] = by_name(
    ProfileSpec(
        "fmnist-multiexit-cnn",
        "fmnist-multiexit-cnn",
        "clean",
        DATA_DIR / "fmnist_multiexit_cnn.profile.json",
    ),
    ProfileSpec(
        "fmnist-multiexit-cnn-robust",
        "fmnist-multiexit-cnn",
        "robust",
        DATA_DIR / "fmnist_multiexit_cnn_robust.profile.json",
    ),
    ProfileSpec(
        "cifar10-multiexit-resnet",
        "cifar10-multiexit-resnet",
        "robust",
        DATA_DIR / "cifar10_multiexit_resnet.profile.json",
    ),
)


def _get(registry: dict, kind: str, name):
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} {name!r}; registered: {sorted(registry)}") from None


def get_dataset(name: str) -> DatasetSpec:
    return _get(DATASETS, "data set", name)


def get_model(name: str) -> ModelSpec:
    return _get(MODELS, "model", name)


def get_profile(name: str) -> ProfileSpec:
    return _get(PROFILES, "profile", name)


def dataset_of(model: str) -> DatasetSpec:
    """The data set a registered model was made for."""
    return get_dataset(get_model(model).dataset)
