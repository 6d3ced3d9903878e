"""The Ray RLlib backend: the env under RLlib, PPO with 2 env runners, train_agent.py end to end.

Needs the extra ``rllib`` (``pip install -e ".[dev,rllib]"``, as CI does)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from ray.rllib.env.env_context import EnvContext  # noqa: E402

from splitexit.agents import rllib, saved  # noqa: E402
from splitexit.agents.run import RunSpec  # noqa: E402
from splitexit.envs import SplitExitEnv  # noqa: E402
from splitexit.envs.config import make_config  # noqa: E402

TINY_PPO = {
    "train_batch_size_per_learner": 256,
    "minibatch_size": 128,
    "num_epochs": 1,
    "gamma": 0.9,
    "lambda_": 0.9,
    "lr": 3e-4,
    "net_arch": [16, 16],
}


@pytest.fixture(scope="module")
def local_ray():
    started = rllib.init_ray(None, num_env_runners=2)
    yield
    if started:
        ray.shutdown()


def test_the_env_takes_an_env_context_as_its_config():
    ctx = EnvContext({"horizon": 30, "deadline_s": 0.05}, worker_index=3, vector_index=1)
    assert make_config(ctx)["horizon"] == 30
    env = SplitExitEnv(ctx)
    assert env.config["horizon"] == 30 and env.config["deadline_s"] == 0.05
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert SplitExitEnv(EnvContext({}, worker_index=0)).config["horizon"] == 200
    with pytest.raises(ValueError, match="unknown config key 'deadline'"):
        SplitExitEnv(EnvContext({"deadline": 0.1}, worker_index=1))


@pytest.mark.parametrize("env_id", ["splitexit:SplitExit-v0", "splitexit:SplitExit-v1"])
def test_env_runners_can_step_the_native_vector_env(local_ray, env_id):
    from splitexit.envs.vector import SplitExitVectorEnv

    config = rllib.ppo_config(
        env_id,
        {"horizon": 20},  # episodes end within one iteration (32 steps per sub-env)
        TINY_PPO,
        0,  # the local env runner, so that its env can be inspected
        8,
        seed=0,
        vectorize="vector_entry_point",
    )
    algo = config.build_algo()
    try:
        assert isinstance(algo.env_runner.env.unwrapped, SplitExitVectorEnv)
        assert algo.env_runner.env.unwrapped.num_envs == 8
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 256
        assert np.isfinite(result["env_runners"]["episode_return_mean"])
    finally:
        rllib.stop(algo)


def test_ppo_trains_with_two_env_runners_and_acts_greedily(local_ray, tmp_path):
    # The env class itself, as a user would pass it: PPOConfig().environment(SplitExitEnv, ...)
    config = rllib.ppo_config(SplitExitEnv, {"horizon": 50}, TINY_PPO, 2, 4, seed=0)
    assert config.env is SplitExitEnv and config.num_env_runners == 2
    assert config.num_envs_per_env_runner == 2  # 4 envs in all
    algo = config.build_algo()
    try:
        result = algo.train()
        steps = result["env_runners"]["num_env_steps_sampled_lifetime"]
        assert steps >= TINY_PPO["train_batch_size_per_learner"]
        assert result["env_runners"]["episode_len_mean"] == 50
        ckpt = rllib.save_checkpoint(algo, tmp_path / "checkpoints", int(steps))
        found = rllib.checkpoints_newest_first(tmp_path / "checkpoints")
        assert found == [(int(steps), ckpt)] and saved.signed_here(ckpt)
        assert rllib.restorable(found, trust_pickle=False) == (int(steps), ckpt)
        weights = algo.learner_group.get_weights()["default_policy"]
    finally:
        rllib.stop(algo)
    env = SplitExitEnv(horizon=50)
    module = rllib.build_module(env, (16, 16))
    module.set_state(weights)
    policy = rllib.RLlibPolicy(module, env)
    assert policy.name == "ppo" and policy.deployable
    obs, _ = env.reset(seed=0)
    action, state = policy.predict(obs)
    assert isinstance(action, int) and env.action_space.contains(action) and state is None
    assert policy.predict(obs)[0] == action  # greedy: no exploration noise
    batch = np.stack([obs, env.step(action)[0]])
    actions, _ = policy.predict(batch)
    assert actions.shape == (2,) and actions[0] == action
    # the agent files round-trip to the same actions
    model = rllib.RLlibModel(module, int(steps), (16, 16), "tanh")
    run = RunSpec("rllib", "ppo", "splitexit:SplitExit-v0", {"horizon": 50}, 0, 4, 1, {}, tmp_path)
    assert rllib.save(model, run) == tmp_path / "agent.json"
    loaded = rllib.load_model(tmp_path / "agent.json", env)
    assert loaded.num_timesteps == int(steps) and loaded.net_arch == (16, 16)
    assert (rllib.RLlibPolicy(loaded.module, env).predict(batch)[0] == actions).all()
    assert (rllib.load_policy(tmp_path, env).predict(batch)[0] == actions).all()  # run folder


class _Copy:
    """Stands in for an Algorithm whose ``save_to_path`` copies a checkpoint folder."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def save_to_path(self, path: Path) -> None:
        shutil.copytree(self.source, path, dirs_exist_ok=True)


def test_policy_on_a_multidiscrete_action_space():
    env = SplitExitEnv(action_type="multidiscrete", compressions=["int8", "float16"])
    policy = rllib.RLlibPolicy(rllib.build_module(env), env)
    obs, _ = env.reset(seed=1)
    action, _ = policy.predict(obs)
    assert action.shape == (3,) and env.action_space.contains(action)


def test_unknown_hyperparameter_names_itself():
    with pytest.raises(ValueError, match="'n_steps' in the hyperparameters"):
        rllib.ppo_config(SplitExitEnv, {}, {"n_steps": 128}, 2, 2, seed=0)
    with pytest.raises(ValueError, match="--num-env-runners"):
        rllib.ppo_config(SplitExitEnv, {}, {}, -1, 1, seed=0)
    with pytest.raises(ValueError, match=r"--n-envs \(envs in all\) must be a positive multiple"):
        rllib.ppo_config(SplitExitEnv, {}, {}, 2, 3, seed=0)


@pytest.mark.e2e
def test_train_agent_rllib_writes_the_whole_report_and_resumes(
    train_agent, local_ray, tmp_path, capsys, evaluate_json
):
    conf = tmp_path / "tiny.yml"
    conf.write_text(json.dumps({"default": {**TINY_PPO, "n_envs": 2}}))  # JSON is YAML
    args = ["--backend", "rllib", "--num-env-runners", "2", "--conf-file", str(conf)]
    args += ["--eval-freq", "256", "--eval-episodes", "2", "--no-progress"]
    args += ["--env-kwargs", "horizon:50", "--output", str(tmp_path), "--name", "run"]
    result = train_agent.subprocess("--total-timesteps", "512", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    train_agent.check_report(run, "agent.json", "ppo")
    assert "2 envs over 2 RLlib env runners" in (run / "report.md").read_text()
    assert rllib.checkpoints_newest_first(run / "checkpoints")[0][0] == 512
    assert list((run / "tb").iterdir())

    # A finished run is left as it is.
    capsys.readouterr()
    assert train_agent.main("--total-timesteps", "1024", "--resume", *args) == 0
    assert "holds a finished run (report.md): nothing to do" in capsys.readouterr().out
    # Resumed in this process, on the test's Ray cluster, as if killed while training: a
    # checkpoint changed since it was signed (or made elsewhere) is skipped for the one before.
    for name in ("agent.json", "agent.safetensors", "report.md"):
        (run / name).unlink()
    rllib.save_checkpoint(_Copy(run / "checkpoints" / "rllib_512_steps"), run / "checkpoints", 768)
    (run / "checkpoints" / "rllib_768_steps" / "rllib_checkpoint.json").write_text("{}")
    assert train_agent.main("--total-timesteps", "1024", "--resume", *args) == 0
    out = capsys.readouterr().out
    assert "skipping the checkpoint" in out and "rllib_768_steps: not signed" in out
    assert "resuming from" in out and "(512 steps done)" in out
    assert rllib.checkpoints_newest_first(run / "checkpoints")[0][0] == 1024
    assert "trained 1024 steps" in out
    summary = train_agent.check_report(run, "agent.json", "ppo")
    # The evaluation CLI loads the saved policy from the run folder and gets the same row.
    row = evaluate_json("--model", str(run), "--episodes", "2", "--env-kwargs", "horizon:50")
    assert row.items() <= summary[0].items()
