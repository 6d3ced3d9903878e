"""One training run, described once for every backend.

``train_agent.py`` turns its flags into a :class:`RunSpec` and hands it to a backend module
(:mod:`splitexit.agents.sb3` or :mod:`splitexit.agents.rllib`). Every backend has the same
interface:

- ``train(run) -> model``: train (or, with ``run.resume``, continue); ``model.num_timesteps``;
- ``save(model, run) -> Path``: write the agent files (:mod:`splitexit.agents.saved`) into
  ``run.run_dir``, ``agent.json`` last; returns its path;
- ``load_model(path, env) -> model``: the model those files describe (it acts; it does not
  train), checked against ``env``'s spaces;
- ``as_policy(model, env, algo)``: the model as a deployable greedy policy of ``env``, with the
  ``predict(obs, deterministic=True)`` interface of the baselines;
- ``load_policy(path, env, algo=None, trust_pickle=False)``: the same from saved files.
"""

from __future__ import annotations

import argparse
import ast
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import gymnasium as gym
import yaml

from splitexit.files import read_regular_file

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"
MAX_HYPERPARAMS_BYTES = 1 << 20  # the shipped files are about 1 kB
BACKENDS = ("sb3", "rllib")
SB3_ALGOS = ("ppo", "dqn", "maskable_ppo")  # the algorithms of the SB3 backend


@dataclass(frozen=True)
class RunSpec:
    """Everything a backend needs to train one agent."""

    backend: str  # one of BACKENDS
    algo: str  # ppo, dqn, maskable_ppo (RLlib: ppo)
    env_id: str
    env_config: Mapping[str, Any]  # overrides of the env's default config (traces set apart)
    seed: int  # of the training envs and of the agent
    n_envs: int  # envs stepping in parallel in all (RLlib: over all its env runners)
    total_timesteps: int
    hyperparams: Mapping[str, Any]  # the algorithm's, without n_envs and n_timesteps
    run_dir: Path
    train_traces: str = "mahimahi-up-train"
    eval_traces: str = "mahimahi-up-eval"
    eval_episodes: int = 30  # of the final evaluation
    vec_env: str = "dummy"  # dummy, subproc or native (SplitExitVectorEnv)
    eval_freq_steps: int = 100_000  # between checkpoints and periodic evaluations; 0: none
    resume: bool = False
    progress: bool = True
    num_env_runners: int = 2  # RLlib: sampling actors (0: the driver samples)
    ray_address: str | None = None  # RLlib: a running cluster (None: $RAY_ADDRESS or local)
    hyperparams_source: str = "the hyperparameters"  # where they came from, for errors
    trust_pickle: bool = False  # RLlib: resume from checkpoints not signed by this machine

    def env_kwargs(self, traces: str) -> dict[str, Any]:
        """The env config on ``traces``."""
        return {**self.env_config, "traces": traces}


def backend_module(name: str) -> ModuleType:
    """The module of the backend ``name`` (imported on first use: RLlib needs Ray)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    return importlib.import_module(f"splitexit.agents.{name}")


def load_policy(
    path: str | Path, env: Any, algo: str | None = None, trust_pickle: bool = False
) -> Any:
    """A saved agent as a deployable policy of ``env``: a run folder or its ``agent.json``
    (safetensors and JSON: loading runs no code), or, with ``trust_pickle``, an SB3
    ``model.zip`` of ``algo`` (SB3 unpickles it: only for a file from a source you trust)."""
    from splitexit.agents import saved

    path = Path(path)
    if path.suffix == ".zip" and not path.is_dir():  # (a run folder may be named x.zip)
        return backend_module("sb3").load_policy(path, env, algo, trust_pickle)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    backend = saved.read_description(path)["backend"]
    if backend not in BACKENDS:
        raise ValueError(f"{saved.description_path(path)}: unknown backend {backend!r}")
    return backend_module(backend).load_policy(path, env, algo)


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


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def env_config_flag(parser: argparse.ArgumentParser, items: Sequence[str], traces: str) -> dict:
    """The ``--env-kwargs`` of a command line, or a usage error; ``traces`` names the flags that
    set the traces (a ``traces`` env-kwarg is refused in their favour)."""
    try:
        config = parse_env_kwargs(items)
    except ValueError as err:
        parser.error(str(err))
    if "traces" in config:
        parser.error(f"--env-kwargs traces: the traces are set apart: {traces}")
    return config


def check_env(parser: argparse.ArgumentParser, flag: str, env_id: str, config: dict):
    """The unwrapped env of ``env_id`` with ``config``, or a usage error naming ``flag``."""
    try:
        return gym.make(env_id, config=config).unwrapped
    except gym.error.Error as err:  # unknown id, version or namespace
        parser.error(f"--env {env_id!r}: {err}")
    except ImportError as err:
        parser.error(f"--env {env_id!r}: cannot import its module ({err})")
    except (ValueError, TypeError, KeyError, OSError) as err:
        parser.error(f"{flag}: {err}")


def check_native_vector_env(parser: argparse.ArgumentParser, env_id: str, config: dict) -> None:
    """A usage error naming ``--vec-env native`` if ``env_id`` with ``config`` has no native
    vector env (live mode, the fading channel)."""
    try:
        gym.make_vec(
            env_id, num_envs=1, vectorization_mode="vector_entry_point", config=config
        ).close()
    except (gym.error.Error, ValueError) as err:
        parser.error(f"--vec-env native: {err}")


def hyperparams_path(algo: str, conf_file: str | Path | None = None) -> Path:
    """``conf_file``, else the shipped ``hyperparams/<algo>.yml`` (``rllib-ppo`` for RLlib)."""
    return Path(conf_file) if conf_file else HYPERPARAMS_DIR / f"{algo}.yml"


def load_hyperparams(algo: str, env_id: str, conf_file: str | Path | None = None) -> dict:
    """Hyperparameters of ``env_id`` from a YAML file keyed by env id, over its ``default:``."""
    path = hyperparams_path(algo, conf_file)
    text = read_regular_file(path, MAX_HYPERPARAMS_BYTES, "hyperparameter file")
    try:
        table = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ValueError(f"{path}: not valid YAML, {where}{problem}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a mapping of env ids to hyperparameters")
    short_id = env_id.split(":")[-1]
    params = dict(table.get("default") or {})
    params.update(table.get(env_id) or table.get(short_id) or {})
    if "policy_kwargs" in params and isinstance(params["policy_kwargs"], str):
        params["policy_kwargs"] = ast.literal_eval(params["policy_kwargs"])
    return params
