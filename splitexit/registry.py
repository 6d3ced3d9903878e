"""Registries keyed by name (data sets, models, profiles, hardware presets)."""

from __future__ import annotations

from typing import Protocol, TypeVar


class _Named(Protocol):
    name: str


T = TypeVar("T", bound=_Named)


def by_name(*entries: T) -> dict[str, T]:
    """The entries keyed by their ``name``, in order; a name given twice is an error."""
    registry: dict[str, T] = {}
    for entry in entries:
        if entry.name in registry:
            raise ValueError(f"{entry.name!r} is registered twice")
        registry[entry.name] = entry
    return registry
