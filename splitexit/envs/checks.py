"""Validation of constructor arguments: a ``ValueError`` that names the argument."""

from __future__ import annotations

import math


def check(ok: bool, name: str, requirement: str, value: object) -> None:
    """Raise ``ValueError("<name> must be <requirement>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {requirement}, got {value!r}")


def check_positive(name: str, value: float) -> float:
    value = float(value)
    check(math.isfinite(value) and value > 0, name, "> 0 and finite", value)
    return value


def check_non_negative(name: str, value: float) -> float:
    value = float(value)
    check(math.isfinite(value) and value >= 0, name, ">= 0 and finite", value)
    return value
