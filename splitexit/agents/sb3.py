"""stable-baselines3 agent factories: algorithms, hyperparameter files, vector envs."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"
ALGOS = ("ppo", "dqn", "maskable_ppo")


def algo_class(algo: str):
    """The SB3 (or sb3-contrib) class of ``algo``."""
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if algo == "dqn":
        from stable_baselines3 import DQN

        return DQN
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    raise ValueError(f"--algo must be one of {list(ALGOS)}, got {algo!r}")


def parse_env_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """RL Zoo style ``key:value`` pairs; values are Python literals, else plain strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ValueError(f"--env-kwargs item {item!r} must look like key:value")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def load_hyperparams(algo: str, env_id: str, conf_file: str | Path | None = None) -> dict:
    """Hyperparameters of ``env_id`` from a YAML file keyed by env id, over its ``default:``."""
    path = Path(conf_file) if conf_file else HYPERPARAMS_DIR / f"{algo}.yml"
    try:
        table = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: hyperparameter file not found") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a mapping of env ids to hyperparameters")
    short_id = env_id.split(":")[-1]
    params = dict(table.get("default") or {})
    params.update(table.get(env_id) or table.get(short_id) or {})
    if "policy_kwargs" in params and isinstance(params["policy_kwargs"], str):
        params["policy_kwargs"] = ast.literal_eval(params["policy_kwargs"])
    return params
