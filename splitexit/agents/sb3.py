"""stable-baselines3 agent factories: algorithms, hyperparameter files, vector envs."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.vec_env import VecEnv

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


class NativeVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over :class:`~splitexit.envs.vector.SplitExitVectorEnv`.

    SB3 resets a sub-env in the step that ends its episode and hands over the last observation
    as ``info["terminal_observation"]`` (with ``info["TimeLimit.truncated"]``): the vector env
    runs in Gymnasium's ``SAME_STEP`` autoreset mode to match. Seeds set with :meth:`seed`
    reach the sub-envs at the next reset (sub-env ``i`` gets ``seed + i``, as ``make_vec_env``).
    """

    def __init__(self, venv):
        from gymnasium.vector import AutoresetMode

        if venv.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("NativeVecEnv needs a vector env with autoreset_mode='same_step'")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, _ = self.venv.reset(seed=seeds)
        self._reset_seeds()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones).tolist():
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """The attribute of the sub-envs' shared template ``SplitExitEnv`` (``render_mode`` is
        None: the vector env does not render)."""
        value = None if attr_name == "render_mode" else getattr(self.venv.env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError(f"NativeVecEnv cannot set {attr_name!r} on its sub-envs")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs):
        """Only ``action_masks`` (sb3-contrib's MaskablePPO) is per sub-env here."""
        if method_name != "action_masks":
            raise AttributeError(
                f"NativeVecEnv supports env_method('action_masks') only, got {method_name!r}"
            )
        masks = self.venv.action_masks()
        return [masks[i] for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._indices(indices)]


def make_native_vec_env(env_id: str, n_envs: int, seed: int, config: dict) -> VecEnv:
    """``n_envs`` sub-envs of ``env_id`` in one native vector env, for SB3, with
    episode statistics (``VecMonitor``); sub-env ``i`` is seeded ``seed + i``."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import VecMonitor

    venv = gym.make_vec(
        env_id,
        num_envs=n_envs,
        vectorization_mode="vector_entry_point",
        config=config,
        autoreset_mode="same_step",
    )
    env = NativeVecEnv(venv)
    env.seed(seed)
    return VecMonitor(env)
