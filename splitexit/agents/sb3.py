"""The stable-baselines3 backend of ``train_agent.py``: PPO, DQN and MaskablePPO in this process.

It has the interface of every backend (:mod:`splitexit.agents.run`): ``train(run)``, ``save``,
``as_policy`` and ``load_policy``. Checkpoints land in ``runs/<name>/checkpoints/`` (SB3 writes
them in place: ``--resume`` skips one cut short); the model in ``model.zip``.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from splitexit.agents.run import (  # noqa: F401  (benchmarks use load_hyperparams)
    SB3_ALGOS,
    RunSpec,
    load_hyperparams,
)
from splitexit.envs.splitexit_env import SplitExitEnv
from splitexit.files import atomic_write_bytes

ALGOS = SB3_ALGOS
MODEL_FILE = "model.zip"
CHECKPOINT_RE = re.compile(r"model_(\d+)_steps\.zip$")


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


class SB3Policy:
    """A stable-baselines3 model on the policy interface (``predict(obs)``); MaskablePPO gets
    ``env.action_masks()``."""

    deployable = True

    def __init__(self, model, env: SplitExitEnv, name: str, masked: bool = False) -> None:
        self.model, self.env, self.name, self.masked = model, env, name, masked

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        if self.masked:
            masks = self.env.action_masks()
            return self.model.predict(observation, deterministic=deterministic, action_masks=masks)
        return self.model.predict(observation, deterministic=deterministic)


def as_policy(model, env: SplitExitEnv, algo: str) -> SB3Policy:
    """``model`` of ``algo`` acting greedily in ``env``."""
    return SB3Policy(model, env, name=algo, masked=algo == "maskable_ppo")


def load_policy(path: str | Path, env: SplitExitEnv, algo: str = "ppo") -> SB3Policy:
    """``model.zip`` of ``algo`` (or a run folder holding one) as a policy of ``env``."""
    path = Path(path)
    model = algo_class(algo).load(str(path / MODEL_FILE if path.is_dir() else path), device="cpu")
    return as_policy(model, env, algo)


def save(model, run_dir: Path) -> Path:
    """``run_dir / model.zip``, written atomically."""
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(run_dir / MODEL_FILE, buf.getvalue())
    return run_dir / MODEL_FILE


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """The checkpoints in ``folder``, the one with the most steps first."""
    found = [
        (int(m.group(1)), p)
        for p in folder.glob("model_*_steps.zip")
        if (m := CHECKPOINT_RE.search(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def _resume(cls, run: RunSpec, train_env: VecEnv):
    """The model of the newest readable checkpoint of ``run``, or None."""
    # SB3 writes checkpoints in place: one cut short by a kill is skipped for the one before.
    for checkpoint in checkpoints_newest_first(run.run_dir / "checkpoints"):
        try:
            model = cls.load(
                str(checkpoint),
                env=train_env,
                device="cpu",
                tensorboard_log=str(run.run_dir / "tb"),
            )
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as err:
            print(f"skipping the unreadable checkpoint {checkpoint}: {err}")
            continue
        print(f"resuming from {checkpoint} ({model.num_timesteps} steps done)")
        return model
    print(f"no checkpoint in {run.run_dir / 'checkpoints'}: starting afresh")
    return None


def train(run: RunSpec):
    """Train (or, with ``run.resume``, continue) and return the SB3 model."""
    import gymnasium as gym
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cls = algo_class(run.algo)
    train_config = run.env_kwargs(run.train_traces)
    if run.vec_env == "native":
        train_env = make_native_vec_env(run.env_id, run.n_envs, run.seed, train_config)
    else:
        train_env = make_vec_env(
            run.env_id,
            n_envs=run.n_envs,
            seed=run.seed,
            vec_env_cls=SubprocVecEnv if run.vec_env == "subproc" else DummyVecEnv,
            env_kwargs={"config": train_config},
        )
    model = _resume(cls, run, train_env) if run.resume else None
    resumed = model is not None
    if model is None:
        model = cls(
            env=train_env,
            seed=run.seed,
            device="cpu",
            tensorboard_log=str(run.run_dir / "tb"),
            verbose=0,
            **run.hyperparams,
        )
    callbacks = []
    if run.eval_freq_steps > 0:
        every = max(run.eval_freq_steps // run.n_envs, 1)
        ckpt_dir = str(run.run_dir / "checkpoints")
        callbacks.append(CheckpointCallback(every, ckpt_dir, name_prefix="model"))
        eval_env = gym.make(run.env_id, config=run.env_kwargs(run.eval_traces))
        callbacks.append(
            EvalCallback(eval_env, n_eval_episodes=5, eval_freq=every, verbose=0, warn=False)
        )
    remaining = max(run.total_timesteps - model.num_timesteps, 0)
    if remaining:
        model.learn(
            remaining,
            callback=callbacks,
            progress_bar=run.progress,
            reset_num_timesteps=not resumed,
            tb_log_name=run.algo,
        )
    train_env.close()
    return model
