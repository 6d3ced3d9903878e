"""Fixtures of the agent tests: ``train_agent.py`` in this process or in a subprocess (marked
``e2e``), and the check of a finished run's report."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from splitexit.agents.evaluate import FIXED_ACTION_POLICIES

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
    "adapt",
    "agent_minus_policy",
    "agent_minus_policy_ci95",
    "seeds",
    "episode_rewards",
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
SUBPROCESS_TIMEOUT_S = 300


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: an end-to-end run in a subprocess (slow; deselect with -m 'not e2e')"
    )


class TrainAgent:
    """``train_agent.py``: its ``main`` and ``parse_run`` in this process, or the script in a
    subprocess; ``TINY`` are the flags of a tiny run (``--env-kwargs`` last)."""

    # On SplitExit-v0, whose 128-step rollouts the checkpoint tests count; the default run
    # (SplitExit-v1) has its own test.
    TINY = ("--env", "splitexit:SplitExit-v0", "--n-envs", "2", "--eval-episodes", "2")
    TINY += ("--no-progress", "--env-kwargs", "horizon:50")
    path = ROOT / "train_agent.py"

    def __init__(self) -> None:
        spec = importlib.util.spec_from_file_location("train_agent", self.path)
        assert spec is not None and spec.loader is not None
        self.module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)

    def main(self, *args: str) -> int:
        return self.module.main(list(args))

    def parse_run(self, *args: str):
        return self.module.parse_run(list(args))[1]

    def subprocess(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(self.path), *args],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            cwd=ROOT,
            **kwargs,
        )

    @staticmethod
    def check_report(run: Path, model_file: str, agent: str) -> list[dict]:
        """A finished run's folder holds its model and the whole report; returns the summary."""
        for name in (model_file, *REPORT_FILES):
            assert (run / name).is_file(), name
        data = json.loads((run / "summary.json").read_text())
        assert data["best_fixed_action"] in FIXED_ACTION_POLICIES
        summary = data["policies"]
        names = [s["name"] for s in summary]
        assert names[0] == agent and {"random", "channel-oracle", "neurosurgeon"} <= set(names)
        for row in summary:
            assert SUMMARY_KEYS <= set(row), row
        oracle = next(s for s in summary if s["name"] == "channel-oracle")
        assert oracle["oracle_normalized"] == pytest.approx(1.0)
        assert oracle["adapt"] == pytest.approx(1.0)
        assert summary[0]["agent_minus_policy"] is None  # the agent's own row
        assert "| channel-oracle *" in (run / "report.md").read_text()
        return summary


@pytest.fixture(scope="session")
def train_agent() -> TrainAgent:
    return TrainAgent()


@pytest.fixture
def evaluate_json(capsys: pytest.CaptureFixture[str]):
    """``python -m splitexit.agents.evaluate ... --json`` in this process: its summary row."""
    from splitexit.agents import evaluate

    def run(*args: str) -> dict:
        capsys.readouterr()
        assert evaluate.main([*args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    return run
