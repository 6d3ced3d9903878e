"""train_agent.py end to end (tiny runs in subprocesses) and the evaluation module."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from splitexit.agents.baselines import make_policy
from splitexit.agents.evaluate import run_episodes, summarise
from splitexit.envs import SplitExitEnv

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
    "name",
    "mean_reward",
    "ci95",
    "accuracy",
    "latency_mean_s",
    "latency_p95_s",
    "energy_j",
    "deadline_miss_rate",
    "oracle_normalized",
}
# What every run writes besides its model.
REPORT_FILES = (
    "config.json",
    "summary.json",
    "episodes.csv",
    "episodes.json",
    "report.md",
    "pareto.png",
    "timeline.png",
)


def assert_report(run: Path, model_file: str, agent: str) -> list[dict]:
    """A finished run's directory holds its model and the whole report; returns the summary."""
    for name in (model_file, *REPORT_FILES):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    names = [s["name"] for s in summary]
    assert names[0] == agent and {"random", "channel-oracle", "neurosurgeon"} <= set(names)
    for row in summary:
        assert SUMMARY_KEYS <= set(row), row
    oracle = next(s for s in summary if s["name"] == "channel-oracle")
    assert oracle["oracle_normalized"] == pytest.approx(1.0)
    return summary


TINY = ["--n-envs", "2", "--eval-episodes", "2", "--no-progress", "--env-kwargs", "horizon:50"]


def train_agent(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train_agent.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        **kwargs,
    )


def num_timesteps(model_zip: Path) -> int:
    with zipfile.ZipFile(model_zip) as z:
        return json.loads(z.read("data"))["num_timesteps"]


@pytest.mark.parametrize("algo", ["ppo", "dqn", "maskable_ppo"])
def test_smoke_run_writes_the_whole_report(tmp_path, algo):
    result = train_agent(
        "--algo",
        algo,
        "--total-timesteps",
        "512",
        "--eval-freq",
        "256",
        "--output",
        str(tmp_path),
        "--name",
        "run",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert_report(run, "model.zip", algo)
    assert "| channel-oracle *" in (run / "report.md").read_text()
    assert list((run / "checkpoints").glob("model_*_steps.zip"))
    assert list((run / "tb").iterdir())


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    args = [
        "--total-timesteps",
        "40000",
        "--eval-freq",
        "2000",
        "--output",
        str(tmp_path),
        "--name",
        "run",
        *TINY,
    ]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train_agent.py"), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = tmp_path / "run" / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(ckpts.glob("model_*_steps.zip")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(int(p.name.split("_")[1]) for p in ckpts.glob("model_*_steps.zip"))
    assert done and done[-1] < 40000, "the run should have been killed mid-way"
    assert not (tmp_path / "run" / "model.zip").exists()
    result = train_agent(*args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stdout
    # PPO stops at the first whole rollout (128 steps x 2 envs) past the total
    assert 40000 <= num_timesteps(tmp_path / "run" / "model.zip") < 40000 + 256


def test_resume_skips_a_checkpoint_cut_short(tmp_path):
    args = ["--eval-freq", "256", "--output", str(tmp_path), "--name", "run", *TINY]
    assert train_agent("--total-timesteps", "768", *args).returncode == 0
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("model_*_steps.zip"))
    newest = max(ckpts, key=lambda p: int(p.name.split("_")[1]))
    newest.write_bytes(newest.read_bytes()[:100])  # as if killed while SB3 wrote it
    result = train_agent("--total-timesteps", "1024", *args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipping the unreadable checkpoint {newest}" in result.stdout
    assert "resuming from" in result.stdout and "model_512_steps" in result.stdout


def test_evaluation_is_reproducible_for_a_seed():
    env = SplitExitEnv(horizon=40)
    policy = make_policy("neurosurgeon", env)
    a = summarise("n", run_episodes(policy, env, range(3)))
    b = summarise("n", run_episodes(policy, env, range(3)))
    assert a == b
    c = summarise("n", run_episodes(policy, env, range(3, 6)))
    assert c["mean_reward"] != a["mean_reward"]


def test_evaluate_cli_on_a_baseline():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "splitexit.agents.evaluate",
            "--baseline",
            "edge-only",
            "--episodes",
            "2",
            "--env-kwargs",
            "horizon:30",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["name"] == "edge-only" and summary["split_mix"][0] == 1.0


def test_help_explains_every_flag():
    result = train_agent("--help")
    for flag in (
        "--algo",
        "--env-kwargs",
        "--conf-file",
        "--seed",
        "--n-envs",
        "--vec-env",
        "--total-timesteps",
        "--eval-freq",
        "--output",
        "--resume",
    ):
        assert flag in result.stdout


def test_bad_env_kwargs_fail_with_the_key():
    result = train_agent("--env-kwargs", "deadline:0.1", "--total-timesteps", "10")
    assert result.returncode != 0 and "unknown config key 'deadline'" in result.stderr
