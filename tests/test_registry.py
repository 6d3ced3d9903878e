from dataclasses import dataclass

import pytest

from splitexit.dnn_profiles import hardware, zoo
from splitexit.registry import by_name


@dataclass(frozen=True)
class _Entry:
    name: str
    value: int = 0


def test_by_name_keys_entries_in_order():
    registry = by_name(_Entry("b", 1), _Entry("a", 2))
    assert list(registry) == ["b", "a"] and registry["a"].value == 2


def test_a_name_registered_twice_is_an_error():
    with pytest.raises(ValueError, match="'a' is registered twice"):
        by_name(_Entry("a"), _Entry("a", 1))


def test_the_registries_are_keyed_by_their_entries_names():
    for registry in (zoo.DATASETS, zoo.MODELS, zoo.PROFILES, hardware.DEVICE_PRESETS):
        assert all(key == entry.name for key, entry in registry.items())
