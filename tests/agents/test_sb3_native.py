"""The SB3 adapter of the native vector env, and train_agent.py --vec-env native."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from splitexit.agents import sb3
from splitexit.agents.evaluate import run_episodes, summarise
from splitexit.agents.sb3 import NativeVecEnv, make_native_vec_env
from splitexit.envs import SplitExitEnv
from splitexit.envs.vector import SplitExitVectorEnv


def test_episode_ends_as_sb3_expects():
    env = make_native_vec_env("splitexit:SplitExit-v0", 3, 10, {"horizon": 5})
    singles = [SplitExitEnv(horizon=5) for _ in range(3)]
    obs = env.reset()
    np.testing.assert_array_equal(obs, [s.reset(seed=10 + i)[0] for i, s in enumerate(singles)])
    for step in range(5):
        actions = np.array([0, 20, 47])
        obs, rewards, dones, infos = env.step(actions)
        assert rewards.dtype == np.float32
        outs = [s.step(int(a)) for s, a in zip(singles, actions, strict=True)]
        np.testing.assert_array_equal(rewards, np.float32([o[1] for o in outs]))
        assert dones.tolist() == [step == 4] * 3
    for i, (single, out) in enumerate(zip(singles, outs, strict=True)):
        np.testing.assert_array_equal(infos[i]["terminal_observation"], out[0])
        assert infos[i]["TimeLimit.truncated"] is True
        assert infos[i]["episode"]["l"] == 5  # VecMonitor's episode statistics
        np.testing.assert_array_equal(obs[i], single.reset()[0])  # already reset (same step)


def test_adapter_refuses_next_step_autoreset_and_other_methods():
    with pytest.raises(ValueError, match="same_step"):
        NativeVecEnv(SplitExitVectorEnv(2))
    env = NativeVecEnv(SplitExitVectorEnv(2, autoreset_mode="same_step"))
    env.reset()
    assert len(env.env_method("action_masks")) == 2
    assert env.get_attr("n_actions") == [48, 48]
    with pytest.raises(AttributeError, match="action_masks"):
        env.env_method("render")


def test_ppo_trains_on_the_native_vector_env():
    env = make_native_vec_env("splitexit:SplitExit-v0", 4, 0, {"horizon": 20})
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps == 256
    assert len(model.ep_info_buffer) >= 4 * (256 // 4) // 20 - 4


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_train_agent_with_the_native_vec_env(train_agent, tmp_path):
    args = ("--vec-env", "native", "--total-timesteps", "256", "--eval-freq", "0")
    assert (
        train_agent.main(*args, "--output", str(tmp_path), "--name", "run", *train_agent.TINY) == 0
    )
    run = tmp_path / "run"
    summary = train_agent.check_report(run, "agent.json", "ppo")
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["vec_env"] == "native"
    assert config["hyperparameters"]["n_envs"] == 2 and config["env_config"]["horizon"] == 50
    assert not (run / "checkpoints").exists()  # --eval-freq 0
    # The saved model, loaded from the run folder, acts as the agent did in the evaluation.
    env = SplitExitEnv(horizon=50, traces="mahimahi-up-eval")
    policy = sb3.load_policy(run, env, "ppo")
    assert policy.name == "ppo" and policy.deployable
    assert summarise("ppo", run_episodes(policy, env, range(2))).items() <= summary[0].items()


def _trained_weights(seed: int) -> dict:
    venv = make_native_vec_env("splitexit:SplitExit-v1", 2, seed, {"horizon": 50})
    venv, kwargs = sb3.with_normalize(
        "ppo",
        venv,
        {"n_steps": 64, "batch_size": 64, "normalize": {"norm_obs": False, "norm_reward": True}},
        "the test",
    )
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", **kwargs)
    model.learn(256)
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def test_training_is_reproducible_for_a_seed_on_one_machine():
    """Same seed, same agent, to the last bit (on one machine: torch's CPU kernels differ
    between instruction sets, so another CPU may train another agent from the same seed)."""
    first, again, other = _trained_weights(3), _trained_weights(3), _trained_weights(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
