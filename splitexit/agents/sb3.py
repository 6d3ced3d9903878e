"""The stable-baselines3 backend of ``train_agent.py``: PPO, DQN and MaskablePPO in this process.

It has the interface of every backend (:mod:`splitexit.agents.run`): ``train(run)``, ``save``,
``load_model``, ``as_policy`` and ``load_policy``. Checkpoints land whole in
``runs/<name>/checkpoints/agent_<steps>_steps/`` and the trained agent in the run folder, as
agent files (:mod:`splitexit.agents.saved`: safetensors and JSON, no pickle); the agent also in
SB3's ``model.zip``, for SB3's own tools (read only with ``trust_pickle``).
"""

from __future__ import annotations

import ast
import inspect
import io
import math
import re
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from splitexit.agents import saved
from splitexit.agents.run import (  # noqa: F401  (benchmarks use load_hyperparams)
    SB3_ALGOS,
    RunSpec,
    load_hyperparams,
)
from splitexit.envs.splitexit_env import SplitExitEnv
from splitexit.files import atomic_write_bytes

ALGOS = SB3_ALGOS
MODEL_ZIP = "model.zip"  # SB3's own format (pickles inside), for SB3 tools; not read by default
CHECKPOINTS = "checkpoints"
CHECKPOINT_RE = re.compile(r"^agent_(\d+)_steps$")


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


class SpacesVecEnv(VecEnv):
    """``n_envs`` envs of these spaces that are never stepped: enough for an SB3 algorithm to
    build its networks and buffers, and so check its hyperparameters, without an env."""

    def __init__(self, observation_space, action_space, n_envs: int) -> None:
        super().__init__(n_envs, observation_space, action_space)

    def _never(self, *args, **kwargs):
        raise RuntimeError("SpacesVecEnv only carries spaces: it cannot be stepped")

    reset = step_async = step_wait = set_attr = env_method = _never

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        if attr_name != "render_mode":
            self._never()
        return [None] * self.num_envs

    def close(self) -> None:
        pass

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * self.num_envs


def check_action_space(algo: str, env) -> None:
    """A ``ValueError`` if ``algo`` cannot act in ``env``'s action space (DQN: ``Discrete``
    only), as the algorithm itself says when built with its defaults."""
    cls = algo_class(algo)
    try:
        cls("MlpPolicy", SpacesVecEnv(env.observation_space, env.action_space, 1), device="cpu")
    except AssertionError as err:
        raise ValueError(
            f"{cls.__name__} cannot act in this env's action space {env.action_space} "
            f"(config key 'action_type' {env.config['action_type']!r}): {err}"
        ) from None


# The arguments :func:`train` sets itself, and what sets each: not a hyperparameter file's.
SET_BY_TRAIN = {
    "env": "--env",
    "seed": "--seed",
    "device": "always cpu",
    "tensorboard_log": "runs/<name>/tb",
    "verbose": "always 0",
    "_init_setup_model": "always true",
}
_PLAIN_TYPES = {int: "an integer", float: "a number (not NaN)", bool: "true or false"}


def _check_type(cls, key: str, value, source: str) -> None:
    """A ``ValueError`` if ``value`` is not of the plain type (int, float, bool; or None where
    the annotation is ``X | None``) that ``cls`` annotates its argument ``key`` with (SB3 checks
    few values itself: a float ``n_epochs`` would fail only in training)."""
    kind = inspect.signature(cls).parameters[key].annotation
    args = set(typing.get_args(kind))
    if len(args) == 2 and type(None) in args:  # X | None
        if value is None:
            return
        (kind,) = args - {type(None)}
    if kind not in _PLAIN_TYPES:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: number and not math.isnan(value),
        bool: isinstance(value, bool),
    }[kind]
    if not ok:
        raise ValueError(
            f"hyperparameter {key!r} of {source} must be {_PLAIN_TYPES[kind]} for "
            f"{cls.__name__}, got {value!r}{_number_hint(value, kind)}"
        )


def _number_hint(value, kind: type = float) -> str:
    """A hint if ``value`` is a string YAML did not take for the number it reads as."""
    try:
        number = isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        number = False
    if not number or kind is bool:
        return ""
    example = "1e3 as a string: write 1000" if kind is int else "3e-4 as a string: write 3.0e-4"
    return f" (YAML reads {example})"


# The RL Zoo's hyperparameter key for VecNormalize, here for the reward only: every observation
# feature is already in [0, 1], and normalised observations would need their statistics saved
# with the agent. Undiscounted returns over a long episode (SplitExit-v1's 600 requests) are in
# the hundreds; scaled by their running standard deviation the value loss stays near 1.
NORMALIZE_KEYS = {"norm_obs": bool, "norm_reward": bool, "clip_reward": float}


def normalize_kwargs(value: Any, source: str) -> dict[str, Any] | None:
    """The ``VecNormalize`` arguments of a ``normalize`` hyperparameter (a mapping, or its RL
    Zoo string form ``"{'norm_obs': False, 'norm_reward': True}"``); None for none or false."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = None
    if not isinstance(value, dict) or set(value) - set(NORMALIZE_KEYS):
        raise ValueError(
            f"hyperparameter 'normalize' of {source} must be a mapping with keys of "
            f"{sorted(NORMALIZE_KEYS)}, such as {{norm_obs: false, norm_reward: true}}"
        )
    for key, item in value.items():
        number = isinstance(item, int | float) and not isinstance(item, bool)
        if not (isinstance(item, bool) if NORMALIZE_KEYS[key] is bool else number and item > 0):
            kind = "true or false" if NORMALIZE_KEYS[key] is bool else "a number above 0"
            raise ValueError(f"normalize[{key!r}] of {source} must be {kind}, got {item!r}")
    if value.get("norm_obs", True):
        raise ValueError(
            f"hyperparameter 'normalize' of {source}: norm_obs must be false (the observation "
            "is already in [0, 1]; only the reward is normalised)"
        )
    return {"norm_obs": False, **value}


def with_normalize(algo: str, venv: VecEnv, hyperparams: dict, source: str):
    """``(venv, hyperparams)``: ``venv`` in ``VecNormalize`` if ``hyperparams`` asks for it
    (with the algorithm's gamma, as the RL Zoo does), and the algorithm's own arguments."""
    from stable_baselines3.common.vec_env import VecNormalize

    hyperparams = dict(hyperparams)
    kwargs = normalize_kwargs(hyperparams.pop("normalize", None), source)
    if kwargs:
        default = inspect.signature(algo_class(algo)).parameters["gamma"].default
        gamma = hyperparams.get("gamma", default)
        venv = VecNormalize(venv, gamma=gamma, **kwargs)
    return venv, hyperparams


def check_hyperparams(algo: str, hyperparams: dict, env, n_envs: int, source: str) -> None:
    """A ``ValueError`` naming ``source`` if ``algo`` refuses ``hyperparams`` (values of a wrong
    type or range, an unknown policy) for ``n_envs`` envs with ``env``'s spaces: the algorithm is
    built once, on a :class:`SpacesVecEnv`, before any work."""
    cls = algo_class(algo)
    hyperparams = dict(hyperparams)
    normalize_kwargs(hyperparams.pop("normalize", None), source)
    for key in hyperparams:
        if key in SET_BY_TRAIN:
            raise ValueError(
                f"hyperparameter {key!r} of {source} is set by the run ({SET_BY_TRAIN[key]}), "
                "not by a hyperparameter file"
            )
    unknown = sorted(set(hyperparams) - set(inspect.signature(cls).parameters))
    if unknown:
        raise ValueError(
            f"hyperparameter {unknown[0]!r} of {source} is not an argument of {cls.__name__}"
        )
    for key, value in hyperparams.items():
        _check_type(cls, key, value, source)
    spaces = SpacesVecEnv(env.observation_space, env.action_space, n_envs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SB3's advice on sizes is for the real run
            cls(env=spaces, device="cpu", verbose=0, **hyperparams)
    except Exception as err:  # noqa: BLE001  (SB3 checks with asserts, TypeErrors, ...)
        detail = str(err).strip().splitlines()[0] if str(err).strip() else "an assertion failed"
        raise ValueError(
            f"the hyperparameters of {source} are refused by {cls.__name__} "
            f"({type(err).__name__}: {detail}); values: "
            + ", ".join(f"{k}={v!r}{_number_hint(v)}" for k, v in hyperparams.items())
        ) from None


class SB3Policy:
    """A stable-baselines3 model (or policy) on the policy interface (``predict(obs)``);
    MaskablePPO gets ``env.action_masks()``."""

    deployable = True

    def __init__(self, model, env: SplitExitEnv, name: str, masked: bool = False) -> None:
        self.model, self.env, self.name, self.masked = model, env, name, masked

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        if self.masked:
            masks = self.env.action_masks()
            return self.model.predict(observation, deterministic=deterministic, action_masks=masks)
        return self.model.predict(observation, deterministic=deterministic)


@dataclass
class SavedAgent:
    """An SB3 policy read from agent files (no algorithm around it: it only acts)."""

    policy: Any  # stable_baselines3.common.policies.BasePolicy
    num_timesteps: int
    description: dict[str, Any]

    def predict(self, *args, **kwargs):
        return self.policy.predict(*args, **kwargs)


def as_policy(model, env: SplitExitEnv, algo: str) -> SB3Policy:
    """``model`` of ``algo`` acting greedily in ``env``."""
    return SB3Policy(model, env, name=algo, masked=algo == "maskable_ppo")


def _policy_alias(model) -> str:
    """The name under which ``model``'s algorithm knows its policy class (``MlpPolicy``)."""
    for alias, cls in model.policy_aliases.items():
        if type(model.policy) is cls:
            return alias
    raise TypeError(f"{type(model.policy).__name__} is none of {type(model).__name__}'s policies")


def describe(model, run: RunSpec) -> dict[str, Any]:
    """The JSON description of ``model`` trained by ``run`` (see :mod:`splitexit.agents.saved`)."""
    ctor = model.policy._get_constructor_parameters()
    ctor.pop("lr_schedule", None)  # a function; acting needs no learning rate
    return saved.describe(
        run,
        model.observation_space,
        model.action_space,
        algo=run.algo,
        policy=_policy_alias(model),
        policy_constructor=ctor,
        num_timesteps=int(model.num_timesteps),
        n_updates=int(getattr(model, "_n_updates", 0)),
        **_return_statistics(model),
    )


def _return_statistics(model) -> dict[str, Any]:
    """``{"return_rms": ...}``: the running statistics of the returns that a ``normalize``
    run divides its rewards by, so that a resumed run goes on with them; {} without."""
    normalizer = model.get_vec_normalize_env()
    if normalizer is None or not normalizer.norm_reward:
        return {}
    rms = normalizer.ret_rms
    return {"return_rms": {"mean": float(rms.mean), "var": float(rms.var), "count": rms.count}}


def build_policy(description: dict[str, Any], weights: dict[str, Any] | None = None):
    """The SB3 policy of a description (weights loaded if given), in evaluation mode."""
    cls = algo_class(description["algo"])
    policy_cls = cls.policy_aliases.get(description["policy"])
    if policy_cls is None:
        raise ValueError(f"{description['algo']} has no policy {description['policy']!r}")
    ctor = saved.from_json(description["policy_constructor"])
    for key in ("observation_space", "action_space"):  # the spaces checked against the env
        if ctor.get(key) != saved.space_from_json(description[key]):
            raise ValueError(f"its policy_constructor's {key} is not the agent's {key}")
    if weights is not None:
        saved.check_net_arch_fits(
            ctor.get("net_arch"), ctor["observation_space"], ctor["action_space"], weights
        )
    policy = policy_cls(**ctor, lr_schedule=lambda _: 0.0)
    if weights is not None:
        policy.load_state_dict(weights, strict=True)
    policy.set_training_mode(False)
    return policy


def load_model(path: str | Path, env: SplitExitEnv | None = None) -> SavedAgent:
    """The agent saved at ``path`` (a run folder, or its ``agent.json``), checked against the
    spaces of ``env`` if given. Reads JSON and safetensors only."""
    description, weights = saved.read_weights(path)
    if description["backend"] != "sb3":
        raise ValueError(f"{path}: an agent of the {description['backend']} backend, not sb3")
    if env is not None:
        saved.check_spaces(description, env, path)
    try:
        policy = build_policy(description, weights)
    except (ValueError, KeyError, TypeError) as err:  # a field missing, or of a wrong type
        what = f"lacks {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{saved.description_path(path)}: {what}") from None
    return SavedAgent(policy, int(description["num_timesteps"]), description)


def load_policy(
    path: str | Path, env: SplitExitEnv, algo: str | None = None, trust_pickle: bool = False
) -> SB3Policy:
    """The agent at ``path`` as a greedy policy of ``env``: agent files (a run folder or its
    ``agent.json``); or, with ``trust_pickle``, an SB3 ``model.zip`` of ``algo`` (which SB3
    unpickles: only for files from a source you trust)."""
    path = Path(path)
    if path.suffix == ".zip" and not path.is_dir():  # (a run folder may be named x.zip)
        if not trust_pickle:
            raise saved.PickleRefused(
                f"{path}: an SB3 zip holds pickled objects, and loading it can run any code; "
                f"load the agent's {saved.DESCRIPTION_FILE} instead, or trust this file "
                "(--trust-pickle) if you trust its source"
            )
        algo = algo or "ppo"
        model = algo_class(algo).load(str(path), device="cpu")
        saved.check_spaces(
            {
                "observation_space": saved.space_to_json(model.observation_space),
                "action_space": saved.space_to_json(model.action_space),
            },
            env,
            path,
        )
        return as_policy(model, env, algo)
    agent = load_model(path, env)
    if algo is not None and algo != agent.description["algo"]:
        raise ValueError(f"{path}: an agent of --algo {agent.description['algo']}, not {algo}")
    return as_policy(agent, env, agent.description["algo"])


def save(model, run: RunSpec) -> Path:
    """The trained agent in ``run.run_dir``: ``model.zip`` (SB3's own format, for SB3 tools),
    then the agent files (weights, description) that splitexit reads; each written atomically,
    ``agent.json`` last."""
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(run.run_dir / MODEL_ZIP, buf.getvalue())
    return saved.write_agent(run.run_dir, model.policy.state_dict(), describe(model, run))


def save_checkpoint(model, run: RunSpec) -> Path:
    """``checkpoints/agent_<steps>_steps/``: the agent files with the optimizer's state,
    whole or absent."""

    def write(folder: Path) -> None:
        optimizer = model.policy.optimizer.state_dict()
        saved.write_agent(folder, model.policy.state_dict(), describe(model, run), optimizer)

    name = f"agent_{model.num_timesteps}_steps"
    return saved.write_checkpoint(run.run_dir / CHECKPOINTS, name, write)


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """The checkpoint folders in ``folder``, the one with the most steps first."""
    found = [
        (int(m.group(1)), p)
        for p in (folder.iterdir() if folder.is_dir() else [])
        if (m := CHECKPOINT_RE.match(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def _restore(model, checkpoint: Path, algo: str) -> None:
    """Load the checkpoint's weights, optimizer state and counters into ``model`` of ``algo``."""
    description, weights = saved.read_weights(checkpoint)
    if (description["backend"], description["algo"]) != ("sb3", algo):
        raise ValueError(f"an agent of {description['backend']} {description['algo']}")
    optimizer = saved.read_optimizer(checkpoint, description)
    mine = model.policy.state_dict()
    if {k: tuple(v.shape) for k, v in weights.items()} != {
        k: tuple(v.shape) for k, v in mine.items()
    }:  # checked first: a failed load_state_dict would leave some tensors loaded
        raise ValueError("its network differs from this run's (tensor names or shapes)")
    model.policy.load_state_dict(weights, strict=True)
    model.policy.optimizer.load_state_dict(optimizer)
    model.num_timesteps = int(description["num_timesteps"])
    model._n_updates = int(description.get("n_updates", 0))
    normalizer, rms = model.get_vec_normalize_env(), description.get("return_rms")
    if normalizer is not None and rms is not None:
        normalizer.ret_rms.mean, normalizer.ret_rms.var = float(rms["mean"]), float(rms["var"])
        normalizer.ret_rms.count = float(rms["count"])
    if hasattr(model, "learning_starts"):
        # Off-policy (DQN): the replay buffer is not saved, so the resumed run first collects
        # as many fresh transitions as a new run would before it learns again.
        model.learning_starts += model.num_timesteps


def _resume(model, run: RunSpec) -> bool:
    """Continue ``model`` (fresh) from the newest whole checkpoint of ``run``; whether it did."""
    for checkpoint in checkpoints_newest_first(run.run_dir / CHECKPOINTS):
        try:
            _restore(model, checkpoint, run.algo)
        except Exception as err:  # noqa: BLE001  (any failure is the checkpoint's: skip it)
            print(f"skipping the unreadable checkpoint {checkpoint}: {err}")
            continue
        print(f"resuming from {checkpoint} ({model.num_timesteps} steps done)")
        return True
    print(f"no checkpoint in {run.run_dir / CHECKPOINTS}: starting afresh")
    return False


class Checkpoint(BaseCallback):
    """Save :func:`save_checkpoint` each time the step count passes a multiple of
    ``every_steps``, at the start of a rollout: after the update that learned from the previous
    one (``on_rollout_end`` comes before that update, and no callback after it), so
    ``agent_<N>_steps`` holds every update of its ``N`` steps and a resumed PPO ends with as
    many updates as an uninterrupted one."""

    def __init__(self, every_steps: int, run: RunSpec) -> None:
        super().__init__()
        self.every_steps, self.run = every_steps, run

    def _on_training_start(self) -> None:
        self._saved_at = self.model.num_timesteps // self.every_steps  # a resumed run's count

    def _on_rollout_start(self) -> None:
        at = self.model.num_timesteps // self.every_steps
        if at > self._saved_at:
            save_checkpoint(self.model, self.run)
            self._saved_at = at

    def _on_step(self) -> bool:
        return True


def train(run: RunSpec):
    """Train (or, with ``run.resume``, continue from the newest whole checkpoint) and return
    the SB3 model."""
    import gymnasium as gym
    from stable_baselines3.common.callbacks import EvalCallback
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
    train_env, hyperparams = with_normalize(
        run.algo, train_env, dict(run.hyperparams), run.hyperparams_source
    )
    model = cls(
        env=train_env,
        seed=run.seed,
        device="cpu",
        tensorboard_log=str(run.run_dir / "tb"),
        verbose=0,
        **hyperparams,
    )
    resumed = _resume(model, run) if run.resume else False
    callbacks = []
    if run.eval_freq_steps > 0:
        callbacks.append(Checkpoint(run.eval_freq_steps, run))
        every = max(run.eval_freq_steps // run.n_envs, 1)
        eval_env = gym.make(run.env_id, config=run.env_kwargs(run.eval_traces))
        if model.get_vec_normalize_env() is not None:  # wrapped alike, its rewards raw
            from stable_baselines3.common.vec_env import VecNormalize

            single = eval_env
            eval_env = DummyVecEnv([lambda: single])
            eval_env = VecNormalize(eval_env, norm_obs=False, norm_reward=False, training=False)
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
