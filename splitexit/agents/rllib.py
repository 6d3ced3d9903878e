"""Ray RLlib backend of ``train_agent.py --backend rllib``: PPO on RLlib's new API stack.

Training runs on a Ray cluster: a light local one by default, or the one at ``--ray-address``
(or ``$RAY_ADDRESS``), with ``--num-env-runners`` actors sampling the env (``--n-envs`` envs in
all, split evenly over them) and the learner in the driver. It has the interface of every
backend (:mod:`splitexit.agents.run`): ``train(run)``, ``save``, ``load_model``, ``as_policy``,
``load_policy``. Checkpoints land whole in ``runs/<name>/checkpoints/rllib_<steps>_steps/``
(RLlib's own format, pickle files included: only a resume of the run reads them, and only
those signed with this machine's key). The trained policy is saved as agent files
(:mod:`splitexit.agents.saved`: safetensors and JSON, no pickle) and evaluated greedily by
:class:`RLlibPolicy`, which has the ``predict(obs)`` interface of the SB3 policies.

The env itself needs nothing RLlib-specific: ``SplitExitEnv`` takes its config dict (RLlib's
``EnvContext``) as first argument::

    PPOConfig().environment(SplitExitEnv, env_config={"horizon": 100})
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from splitexit.agents import saved
from splitexit.agents.evaluate import EVAL_SEED_BASE, run_episodes
from splitexit.agents.run import RunSpec
from splitexit.envs.splitexit_env import SplitExitEnv

CHECKPOINT_RE = re.compile(r"^rllib_(\d+)_steps$")
# A local cluster's object store: it holds the weights of a small MLP and sample batches of a
# few MB, so a fraction of Ray's default (30% of the RAM) is plenty.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
# Hyperparameters of rllib-ppo.yml that shape the network rather than PPOConfig.training().
MODEL_KEYS = ("net_arch", "activation")
DEFAULT_NET_ARCH = (64, 64)
DEFAULT_ACTIVATION = "tanh"
ACTIVATIONS = ("tanh", "relu", "swish", "silu", "elu", "linear")  # RLlib's fcnet_activation
PERIODIC_EVAL_EPISODES = 5  # per checkpoint, on the eval traces (like SB3's EvalCallback)


@dataclass
class RLlibModel:
    """A trained policy: the inference-only RLModule (torch, CPU) and the steps it took."""

    module: Any  # ray.rllib.core.rl_module.torch.TorchRLModule
    num_timesteps: int
    net_arch: tuple[int, ...] = DEFAULT_NET_ARCH
    activation: str = DEFAULT_ACTIVATION


def init_ray(address: str | None, num_env_runners: int) -> bool:
    """Connect to the cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local one.

    Returns whether this call started Ray (so the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # Each env runner takes a CPU: never fewer CPUs than runners, or they would wait forever.
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 1, num_env_runners),
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        )
    return True


def model_config(hyper: Mapping[str, Any]):
    """RLlib's ``DefaultModelConfig``: separate policy and value MLPs, like SB3's MlpPolicy."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return DefaultModelConfig(
        fcnet_hiddens=list(hyper.get("net_arch", DEFAULT_NET_ARCH)),
        fcnet_activation=hyper.get("activation", DEFAULT_ACTIVATION),
        vf_share_layers=False,
    )


def check_hyperparams(hyper: Mapping[str, Any], source: str = "the hyperparameters") -> dict:
    """The PPOConfig.training() arguments of ``hyper`` (``net_arch`` / ``activation`` aside);
    a ValueError names the first key that is none of them."""
    from ray.rllib.algorithms.ppo import PPOConfig

    training = {k: v for k, v in hyper.items() if k not in MODEL_KEYS}
    allowed = {  # PPO's own arguments and those it passes on to AlgorithmConfig.training()
        name
        for cls in PPOConfig.__mro__
        if "training" in vars(cls)
        for name, param in inspect.signature(vars(cls)["training"]).parameters.items()
        if name != "self" and param.kind is not param.VAR_KEYWORD
    }
    unknown = sorted(set(training) - allowed)
    if unknown:
        raise ValueError(
            f"hyperparameter {unknown[0]!r} in {source} is not an argument of RLlib's "
            "PPOConfig.training() (nor net_arch / activation)"
        )
    if "activation" in hyper and hyper["activation"] not in ACTIVATIONS:
        raise ValueError(
            f"activation {hyper['activation']!r} in {source} must be one of {list(ACTIVATIONS)}"
        )
    return training


def ppo_config(
    env: str | type,
    env_config: Mapping[str, Any],
    hyper: Mapping[str, Any],
    num_env_runners: int,
    n_envs: int,
    seed: int,
    source: str = "the hyperparameters",
    vectorize: str = "sync",
):
    """The ``PPOConfig`` of a run: ``n_envs`` envs in all, split evenly over ``num_env_runners``
    (over the driver's env runner if 0); ``hyper`` holds PPOConfig.training() arguments and
    ``net_arch`` / ``activation`` (``source`` names where they came from, for errors)."""
    import gymnasium as gym
    from ray.rllib.algorithms.ppo import PPOConfig

    if num_env_runners < 0:
        raise ValueError(f"--num-env-runners must be >= 0, got {num_env_runners}")
    runners = max(num_env_runners, 1)
    if n_envs < 1 or n_envs % runners:
        raise ValueError(
            f"--n-envs (envs in all) must be a positive multiple of --num-env-runners "
            f"({num_env_runners}), got {n_envs}"
        )
    training = check_hyperparams(hyper, source)
    return (
        PPOConfig()
        .environment(env, env_config=dict(env_config))
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=n_envs // runners,
            gym_env_vectorize_mode=gym.VectorizeMode(vectorize),
        )
        .training(**training)
        .rl_module(model_config=model_config(hyper))
        .debugging(seed=seed)
    )


def stop(algo) -> None:
    """Stop ``algo`` (its env runners) and remove the empty ``~/ray_results/<date>`` folder
    that an Algorithm makes for itself outside Tune."""
    logdir = Path(algo.logdir)
    algo.stop()
    if logdir.is_dir() and not any(logdir.iterdir()):
        logdir.rmdir()


def checkpoints_newest_first(folder: Path) -> list[tuple[int, Path]]:
    """``(steps, path)`` of the whole checkpoints in ``folder``, the most steps first."""
    found = [
        (int(m.group(1)), p)
        for p in (folder.iterdir() if folder.is_dir() else [])
        if (m := CHECKPOINT_RE.match(p.name)) and (p / "rllib_checkpoint.json").is_file()
    ]
    return sorted(found, reverse=True)


def save_checkpoint(algo, folder: Path, steps: int) -> Path:
    """Save ``algo`` to ``folder/rllib_<steps>_steps``, whole or absent, signed with this
    machine's key (:func:`splitexit.agents.saved.sign_folder`): RLlib's checkpoints hold
    pickles, so a resume loads only those this machine wrote."""

    def write(tmp: Path) -> None:
        algo.save_to_path(tmp.resolve())
        saved.sign_folder(tmp)

    return saved.write_checkpoint(folder, f"rllib_{steps}_steps", write)


def restorable(checkpoints: list[tuple[int, Path]], trust_pickle: bool) -> tuple[int, Path] | None:
    """The newest checkpoint signed here (or any, with ``trust_pickle``); the others are named
    as skipped."""
    for steps, path in checkpoints:
        if trust_pickle or saved.signed_here(path):
            return steps, path
        print(
            f"skipping the checkpoint {path}: not signed by this machine's key "
            f"({saved.key_path()}), so it was changed or made elsewhere; RLlib checkpoints hold "
            "pickles (--trust-pickle loads it anyway)"
        )
    return None


def build_module(
    env: SplitExitEnv,
    net_arch: tuple[int, ...] = DEFAULT_NET_ARCH,
    activation: str = DEFAULT_ACTIVATION,
):
    """An inference-only PPO RLModule (torch, CPU) for ``env``'s spaces, weights untrained."""
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    spec = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        inference_only=True,
        model_config=model_config({"net_arch": net_arch, "activation": activation}),
    )
    return spec.build().eval()


def describe(model: RLlibModel, run: RunSpec, env: SplitExitEnv) -> dict[str, Any]:
    """The JSON description of ``model`` trained by ``run``."""
    return saved.describe(
        run,
        env.observation_space,
        env.action_space,
        algo="ppo",
        net_arch=list(model.net_arch),
        activation=model.activation,
        num_timesteps=int(model.num_timesteps),
    )


def save(model: RLlibModel, run: RunSpec) -> Path:
    """The trained module as agent files in ``run.run_dir`` (safetensors and JSON)."""
    import gymnasium as gym

    env = gym.make(run.env_id, config=dict(run.env_config)).unwrapped
    return saved.write_agent(run.run_dir, model.module.state_dict(), describe(model, run, env))


def load_model(path: str | Path, env: SplitExitEnv) -> RLlibModel:
    """The agent saved at ``path`` (a run folder, or its ``agent.json``), for ``env``'s spaces."""
    description, weights = saved.read_weights(path)
    if description["backend"] != "rllib":
        raise ValueError(f"{path}: an agent of the {description['backend']} backend, not rllib")
    saved.check_spaces(description, env, path)
    net_arch = tuple(int(n) for n in description["net_arch"])
    activation = str(description["activation"])
    if activation not in ACTIVATIONS:
        raise ValueError(f"{path}: activation {activation!r} is none of {list(ACTIVATIONS)}")
    try:
        saved.check_net_arch_fits(list(net_arch), env.observation_space, env.action_space, weights)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    module = build_module(env, net_arch, activation)
    module.load_state_dict(weights, strict=True)
    return RLlibModel(module, int(description["num_timesteps"]), net_arch, activation)


class RLlibPolicy:
    """A trained RLlib RLModule on the policy interface (``predict(obs)``) of SB3Policy.

    Greedy by default: the mode of the action distribution, no exploration."""

    deployable = True

    def __init__(self, module, env: SplitExitEnv, name: str = "ppo") -> None:
        self.module, self.env, self.name = module.eval(), env, name
        self.dist_cls = module.get_inference_action_dist_cls()

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        """Action(s) for one observation (1-D) or a batch ``(n, obs_dim)``; state is None."""
        from ray.rllib.core import Columns

        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        with torch.no_grad():
            out = self.module.forward_inference(
                {Columns.OBS: torch.from_numpy(obs.reshape(-1, obs.shape[-1]))}
            )
            dist = self.dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
            actions = (dist.to_deterministic() if deterministic else dist).sample().numpy()
        if single:
            a = actions[0]
            return (int(a) if np.ndim(a) == 0 else a), None
        return actions, None


def as_policy(model: RLlibModel, env: SplitExitEnv, algo: str = "ppo") -> RLlibPolicy:
    """``model`` acting greedily in ``env``."""
    return RLlibPolicy(model.module, env, name=algo)


def load_policy(
    path: str | Path, env: SplitExitEnv, algo: str | None = None, trust_pickle: bool = False
) -> RLlibPolicy:
    """The agent saved at ``path`` (a run folder, or its ``agent.json``) as a greedy policy of
    ``env`` (agent files hold no pickle: ``trust_pickle`` changes nothing here)."""
    return as_policy(load_model(path, env), env, "ppo")


def _scalar(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _log(writer, result: dict, steps: int) -> None:
    """Training curves under SB3's TensorBoard names."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, LEARNER_RESULTS

    runners = result.get(ENV_RUNNER_RESULTS, {})
    learner = result.get(LEARNER_RESULTS, {}).get("default_policy", {})
    tags = {
        "rollout/ep_rew_mean": runners.get("episode_return_mean"),
        "rollout/ep_len_mean": runners.get("episode_len_mean"),
        "train/policy_gradient_loss": learner.get("policy_loss"),
        "train/value_loss": learner.get("vf_loss"),
        "train/entropy": learner.get("entropy"),
        "train/explained_variance": learner.get("vf_explained_var"),
        "time/iteration_s": result.get("time_this_iter_s"),
    }
    for tag, value in tags.items():
        if (v := _scalar(value)) is not None:
            writer.add_scalar(tag, v, steps)


def train(run: RunSpec) -> RLlibModel:
    """Train (or, with ``run.resume``, continue) PPO on RLlib; return an :class:`RLlibModel`."""
    import gymnasium as gym
    import ray
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    hyper = run.hyperparams
    net_arch = tuple(int(n) for n in hyper.get("net_arch", DEFAULT_NET_ARCH))
    activation = str(hyper.get("activation", DEFAULT_ACTIVATION))
    config = ppo_config(
        run.env_id,
        run.env_kwargs(run.train_traces),
        hyper,
        run.num_env_runners,
        run.n_envs,
        run.seed,
        source=run.hyperparams_source,
        # --vec-env native: each env runner steps one SplitExitVectorEnv
        vectorize="vector_entry_point" if run.vec_env == "native" else "sync",
    )
    eval_env = gym.make(run.env_id, config=run.env_kwargs(run.eval_traces)).unwrapped
    module = build_module(eval_env, net_arch, activation)
    ckpt_dir = run.run_dir / "checkpoints"
    started = init_ray(run.ray_address, run.num_env_runners)
    try:
        algo = config.build_algo()
        try:
            steps = 0
            found = checkpoints_newest_first(ckpt_dir) if run.resume else []
            while found:  # the newest restorable one; one that fails is skipped for the next
                checkpoint = restorable(found, run.trust_pickle)
                if checkpoint is None:
                    break
                try:
                    algo.restore_from_path(checkpoint[1].resolve())
                except Exception as err:  # noqa: BLE001  (any failure is the checkpoint's)
                    print(f"skipping the unreadable checkpoint {checkpoint[1]}: {err}")
                    found = [c for c in found if c[1] != checkpoint[1]]
                    continue
                steps = checkpoint[0]
                print(f"resuming from {checkpoint[1]} ({steps} steps done)")
                break
            if run.resume and steps == 0:
                print(f"no restorable checkpoint in {ckpt_dir}: starting afresh")
            every = run.eval_freq_steps
            next_save = (steps // every + 1) * every if every > 0 else math.inf
            writer = SummaryWriter(str(run.run_dir / "tb" / "rllib_ppo"))
            bar = tqdm(
                total=run.total_timesteps, initial=steps, disable=not run.progress, unit="step"
            )
            while steps < run.total_timesteps:
                result = algo.train()
                done = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])
                bar.update(done - steps)
                steps = done
                _log(writer, result, steps)
                if steps >= next_save:
                    save_checkpoint(algo, ckpt_dir, steps)
                    next_save = (steps // every + 1) * every
                    module.set_state(algo.learner_group.get_weights()[DEFAULT_MODULE_ID])
                    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + PERIODIC_EVAL_EPISODES)
                    eps = run_episodes(RLlibPolicy(module, eval_env), eval_env, seeds)
                    mean = float(np.mean([e["reward"] * e["steps"] for e in eps]))
                    writer.add_scalar("eval/mean_reward", mean, steps)
            bar.close()
            writer.close()
            module.set_state(algo.learner_group.get_weights()[DEFAULT_MODULE_ID])
        finally:
            stop(algo)
    finally:
        if started:
            ray.shutdown()
    return RLlibModel(module.eval(), steps, net_arch, activation)
