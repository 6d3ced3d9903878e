"""train_agent.py (in process; one end-to-end run per SB3 algorithm) and the evaluation module."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from splitexit.agents import evaluate
from splitexit.agents.baselines import make_policy
from splitexit.agents.evaluate import FIT_EPISODES, TRAIN_SEED_BASE, run_episodes, summarise
from splitexit.agents.run import BACKENDS, backend_module
from splitexit.envs import SplitExitEnv


def num_timesteps(model_zip: Path) -> int:
    with zipfile.ZipFile(model_zip) as z:
        return json.loads(z.read("data"))["num_timesteps"]


def checkpoint_steps(folder: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in folder.glob("model_*_steps.zip"))


@pytest.mark.e2e
@pytest.mark.parametrize("algo", ["dqn", "maskable_ppo"])
def test_smoke_run_writes_the_whole_report(train_agent, tmp_path, algo):
    result = train_agent.subprocess(
        *("--algo", algo, "--total-timesteps", "512", "--eval-freq", "256"),
        *("--output", str(tmp_path), "--name", "run", *train_agent.TINY),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    train_agent.check_report(run, "model.zip", algo)
    assert checkpoint_steps(run / "checkpoints")
    assert list((run / "tb").iterdir())


@pytest.mark.e2e
def test_killed_ppo_run_resumes_from_its_checkpoint(train_agent, tmp_path):
    """The PPO smoke run: killed after its first checkpoint, then resumed to the end."""
    total = 16_000
    args = ["--total-timesteps", str(total), "--eval-freq", "1000", "--output", str(tmp_path)]
    args += ["--name", "run", *train_agent.TINY]
    proc = subprocess.Popen(
        [sys.executable, str(train_agent.path), *args],
        cwd=train_agent.path.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = tmp_path / "run"
    deadline = time.monotonic() + 120
    while not checkpoint_steps(run / "checkpoints") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = checkpoint_steps(run / "checkpoints")
    assert done and done[-1] < total, "the run should have been killed mid-way"
    assert not (run / "model.zip").exists()
    result = train_agent.subprocess(*args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stdout
    # PPO stops at the first whole rollout (128 steps x 2 envs) past the total
    assert total <= num_timesteps(run / "model.zip") < total + 256
    train_agent.check_report(run, "model.zip", "ppo")
    assert list((run / "tb").iterdir())


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_resume_skips_a_checkpoint_cut_short(train_agent, tmp_path, capsys, evaluate_json):
    args = ["--eval-freq", "256", "--output", str(tmp_path), "--name", "run", *train_agent.TINY]
    assert train_agent.main("--total-timesteps", "768", *args) == 0
    ckpts = tmp_path / "run" / "checkpoints"
    newest = ckpts / f"model_{checkpoint_steps(ckpts)[-1]}_steps.zip"
    newest.write_bytes(newest.read_bytes()[:100])  # as if killed while SB3 wrote it
    capsys.readouterr()
    assert train_agent.main("--total-timesteps", "1024", *args, "--resume") == 0
    out = capsys.readouterr().out
    assert f"skipping the unreadable checkpoint {newest}" in out
    assert "resuming from" in out and "model_512_steps" in out
    summary = train_agent.check_report(tmp_path / "run", "model.zip", "ppo")
    # The evaluation CLI gives the same rows: the saved agent, and a baseline tuned alike.
    model = str(tmp_path / "run" / "model.zip")
    common = ("--episodes", "2", "--env-kwargs", "horizon:50")
    assert evaluate_json("--model", model, "--algo", "ppo", *common).items() <= summary[0].items()
    row = next(s for s in summary if s["name"] == "best-static")
    assert evaluate_json("--baseline", "best-static", *common).items() <= row.items()


def test_evaluation_is_reproducible_for_a_seed():
    env = SplitExitEnv(horizon=40)
    policy = make_policy("neurosurgeon", env)
    a = summarise("n", run_episodes(policy, env, range(3)))
    b = summarise("n", run_episodes(policy, env, range(3)))
    assert a == b
    c = summarise("n", run_episodes(policy, env, range(3, 6)))
    assert c["mean_reward"] != a["mean_reward"]


def test_evaluate_cli_on_a_baseline(evaluate_json):
    summary = evaluate_json(
        "--baseline", "edge-only", "--episodes", "2", "--env-kwargs", "horizon:30"
    )
    assert summary["name"] == "edge-only" and summary["split_mix"][0] == 1.0


def test_baselines_are_tuned_on_the_fit_episodes_whatever_the_evaluation(
    monkeypatch, evaluate_json
):
    tuned = []

    def spy(name, env):
        policy = make_policy(name, env)
        fit = policy.fit

        def recording_fit(fit_env, seeds):
            tuned.append((fit_env.config["traces"], seeds))
            return fit(fit_env, seeds)

        policy.fit = recording_fit
        return policy

    monkeypatch.setattr(evaluate, "make_policy", spy)
    evaluate_json("--baseline", "branchynet", "--episodes", "3", "--env-kwargs", "horizon:20")
    seeds = range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + FIT_EPISODES)
    assert tuned == [("mahimahi-up-train", seeds)]


def test_help_explains_every_flag(train_agent, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_agent.parse_run("--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--algo",
        "--backend",
        "--env-kwargs",
        "--conf-file",
        "--seed",
        "--n-envs",
        "--num-env-runners",
        "--vec-env",
        "--total-timesteps",
        "--eval-freq",
        "--output",
        "--resume",
    ):
        assert flag in out
    assert "in all" in out  # what --n-envs counts


def test_n_envs_counts_the_envs_in_all_for_both_backends(train_agent, tmp_path):
    sb3 = train_agent.parse_run()
    assert (sb3.backend, sb3.n_envs, sb3.total_timesteps) == ("sb3", 16, 1_000_000)
    assert "n_envs" not in sb3.hyperparams and sb3.hyperparams["n_steps"] == 128
    assert sb3.run_dir == Path("runs/ppo-SplitExit-v0-seed0")
    rllib = train_agent.parse_run("--backend", "rllib")  # 16 in all: 8 on each of 2 runners
    assert (rllib.n_envs, rllib.num_env_runners) == (16, 2)
    assert rllib.run_dir == Path("runs/rllib-ppo-SplitExit-v0-seed0")
    assert rllib.hyperparams_source.endswith("rllib-ppo.yml")
    assert train_agent.parse_run("--backend", "rllib", "--num-env-runners", "0", "--n-envs", "3")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--backend", "rllib", "--algo", "dqn"), "--backend rllib trains --algo ppo only"),
        (("--backend", "rllib", "--n-envs", "3"), "--n-envs (3 envs in all) must be a multiple"),
        (("--backend", "rllib", "--num-env-runners", "3"), "rllib-ppo.yml (16 envs in all)"),
        (
            (
                "--num-env-runners",
                "-1",
            ),
            "--num-env-runners must be >= 0",
        ),
        (
            (
                "--n-envs",
                "-2",
            ),
            "--n-envs must be >= 1",
        ),
    ],
)
def test_bad_flags_fail_with_a_usage_error(train_agent, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        train_agent.parse_run(*args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_bad_env_kwargs_fail_with_the_key(train_agent, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_agent.main("--env-kwargs", "deadline:0.1", "--output", str(tmp_path))
    assert exit_.value.code == 2
    assert "--env-kwargs: unknown config key 'deadline'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_both_backends_have_the_same_interface():
    for name in BACKENDS:
        backend = backend_module(name)
        assert backend.MODEL_FILE.startswith("model.")
        for function in ("train", "save", "as_policy", "load_policy"):
            assert callable(getattr(backend, function)), (name, function)
