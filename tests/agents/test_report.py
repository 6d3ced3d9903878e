"""summary.json and report.md: the adaptation gap, the adapt score and the paired differences."""

import json

import pytest

from splitexit.agents.evaluate import (
    add_adaptation_scores,
    add_oracle_normalized,
    add_paired_differences,
)
from splitexit.agents.report import write_report, write_results


def row(name: str, episode_rewards: list[float], deployable: bool = True) -> dict:
    """A summary row with these per-episode rewards (seeds 0..n-1), the rest made up."""
    n = len(episode_rewards)
    return {
        "name": name,
        "deployable": deployable,
        "episodes": n,
        "mean_reward": sum(episode_rewards) / n,
        "ci95": 0.0,
        "accuracy": 0.9,
        "latency_mean_s": 0.01,
        "latency_p95_s": 0.02,
        "energy_j": 0.001,
        "deadline_miss_rate": 0.0,
        "early_exit_rate": 0.0,
        "split_mix": [0.5, 0.5],
        "exit_mix": {"1": 0.5, "2": 0.5},
        "seeds": list(range(n)),
        "episode_rewards": episode_rewards,
    }


def report(tmp_path, *rows: dict) -> tuple[dict, str]:
    summaries = add_paired_differences(
        add_adaptation_scores(add_oracle_normalized([dict(r) for r in rows])), "agent"
    )
    write_results(tmp_path, summaries, {})
    write_report(tmp_path, summaries, "agent", None, 2, {})
    return json.loads((tmp_path / "summary.json").read_text()), (tmp_path / "report.md").read_text()


AGENT = row("agent", [0.5, 0.6, 0.7])
LOCAL = row("local-only", [0.1, 0.2, 0.3])  # agent - policy: 0.4 0.4 0.4
EDGE = row("edge-only", [0.3, 0.5, 0.7])  # agent - policy: 0.2 0.1 0.0: the interval holds 0
RANDOM = row("random", [0.0, 0.0, 0.0])
ORACLE = row("channel-oracle", [0.8, 0.9, 1.0], deployable=False)


def test_the_report_gives_the_gap_adapt_and_the_paired_verdict(tmp_path):
    summary, text = report(tmp_path, AGENT, LOCAL, EDGE, RANDOM, ORACLE)
    assert summary["best_fixed_action"] == "edge-only"
    assert summary["adaptation_gap"] == pytest.approx(0.4)
    policies = {s["name"]: s for s in summary["policies"]}
    assert list(policies) == ["agent", "local-only", "edge-only", "random", "channel-oracle"]
    assert policies["agent"]["adapt"] == pytest.approx(0.25)
    assert policies["local-only"]["agent_minus_policy"] == pytest.approx(0.4)
    assert policies["local-only"]["agent_minus_policy_ci95"] == pytest.approx(0.0, abs=1e-12)
    assert policies["edge-only"]["agent_minus_policy_ci95"] == pytest.approx(0.1132, abs=1e-4)
    assert "G = R(channel-oracle) - R(best fixed action: edge-only) = 0.4000" in text
    assert "adapt score of the agent: 0.250." in text
    assert "| adapt | agent − policy (95% CI) |" in text
    assert "| agent | 0.6000 ± 0.0000 | 0.667 | 0.250 | - |" in text
    assert "| local-only | 0.2000 ± 0.0000 | 0.222 | -0.750 | +0.4000 ± 0.0000 |" in text
    assert "| edge-only | 0.5000 ± 0.0000 | 0.556 | 0.000 | +0.1000 ± 0.1132 |" in text
    verdict = "beats every deployable baseline (paired 95% interval above zero): no; not beaten: "
    assert verdict + "edge-only." in text


def test_the_report_says_yes_when_every_paired_interval_is_above_zero(tmp_path):
    summary, text = report(tmp_path, AGENT, LOCAL, RANDOM, ORACLE)
    assert summary["best_fixed_action"] == "local-only"
    assert summary["adaptation_gap"] == pytest.approx(0.7)
    assert "beats every deployable baseline (paired 95% interval above zero): yes." in text
    assert "not beaten" not in text
