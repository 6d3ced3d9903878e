"""The scores of the evaluation module: per-episode rewards, adapt and paired differences."""

import math

import numpy as np
import pytest

from splitexit.agents.baselines import BASELINES, FixedActionPolicy, _TunedFixed, make_policy
from splitexit.agents.evaluate import (
    FIXED_ACTION_POLICIES,
    Z95,
    adaptation_gap,
    add_adaptation_scores,
    add_paired_differences,
    format_scores,
    format_table,
    paired_difference,
    run_episodes,
    summarise,
)
from splitexit.envs import SplitExitEnv


def rows(**mean_rewards: float) -> list[dict]:
    return [{"name": n.replace("_", "-"), "mean_reward": r} for n, r in mean_rewards.items()]


def test_episode_rewards_are_in_seed_order_and_average_to_the_mean_reward():
    env = SplitExitEnv(horizon=20)
    policy = make_policy("edge-only", env)
    seeds = [3, 0, 2]
    row = summarise("edge-only", run_episodes(policy, env, seeds))
    assert row["seeds"] == seeds
    alone = [run_episodes(policy, env, [seed])[0]["reward"] for seed in seeds]
    assert row["episode_rewards"] == pytest.approx(alone, abs=1e-12)
    assert len(set(alone)) == 3  # the order is visible
    assert np.mean(row["episode_rewards"]) == pytest.approx(row["mean_reward"], abs=1e-12)


def test_the_fixed_action_policies_are_the_baselines_of_one_fixed_action():
    fixed = {n for n, cls in BASELINES.items() if issubclass(cls, (FixedActionPolicy, _TunedFixed))}
    assert fixed == FIXED_ACTION_POLICIES
    assert "branchynet-demand" not in FIXED_ACTION_POLICIES


def test_adapt_is_0_for_the_best_fixed_action_and_1_for_the_channel_oracle():
    summaries = rows(
        agent=0.5,
        local_only=0.1,
        edge_only=0.3,
        branchynet=0.2,
        best_static=0.25,
        branchynet_demand=0.6,  # no fixed action, though better than them
        channel_oracle=0.7,
    )
    gap, best = adaptation_gap(summaries)
    assert best == "edge-only" and gap == pytest.approx(0.4)
    adapt = {s["name"]: s["adapt"] for s in add_adaptation_scores(summaries)}
    assert adapt["edge-only"] == 0.0 and adapt["channel-oracle"] == pytest.approx(1.0)
    assert adapt["agent"] == pytest.approx(0.5)
    assert adapt["branchynet-demand"] == pytest.approx(0.75)
    assert adapt["local-only"] == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "summaries",
    [
        rows(agent=0.5, edge_only=0.3),  # no channel oracle
        rows(agent=0.5, channel_oracle=0.7),  # no fixed action
        rows(agent=0.5, edge_only=0.3, channel_oracle=0.3),  # G == 0
    ],
)
def test_adapt_is_none_without_a_gap(summaries):
    assert all(s["adapt"] is None for s in add_adaptation_scores(summaries))


def test_paired_difference_by_hand():
    mean, ci95 = paired_difference([1.0, 2.0, 3.0], [0.5, 2.5, 1.0])  # differences 0.5 -0.5 2
    assert mean == pytest.approx(2 / 3)
    var = ((0.5 - 2 / 3) ** 2 + (-0.5 - 2 / 3) ** 2 + (2 - 2 / 3) ** 2) / 2
    assert ci95 == pytest.approx(Z95 * math.sqrt(var / 3))
    assert ci95 == pytest.approx(1.4239, abs=1e-4)
    assert paired_difference([0.3], [0.1]) == (pytest.approx(0.2), 0.0)
    with pytest.raises(ValueError, match="cannot pair"):
        paired_difference([1.0, 2.0], [1.0])


def test_paired_differences_are_agent_minus_policy_on_the_same_seeds():
    summaries = [
        {"name": "agent", "seeds": [0, 1, 2], "episode_rewards": [1.0, 2.0, 3.0]},
        {"name": "edge-only", "seeds": [0, 1, 2], "episode_rewards": [0.5, 2.5, 1.0]},
    ]
    agent, other = add_paired_differences(summaries, "agent")
    assert agent["agent_minus_policy"] is None and agent["agent_minus_policy_ci95"] is None
    assert other["agent_minus_policy"] == pytest.approx(2 / 3)
    assert other["agent_minus_policy_ci95"] == pytest.approx(1.4239, abs=1e-4)


@pytest.mark.parametrize("seeds", [[1, 0, 2], [0, 1], [0, 1, 3]])
def test_paired_differences_refuse_other_seeds(seeds):
    summaries = [
        {"name": "agent", "seeds": [0, 1, 2], "episode_rewards": [1.0, 2.0, 3.0]},
        {"name": "edge-only", "seeds": seeds, "episode_rewards": [0.5] * len(seeds)},
    ]
    with pytest.raises(ValueError, match="cannot pair 'edge-only' with 'agent': seeds"):
        add_paired_differences(summaries, "agent")


def test_paired_difference_of_real_episodes_is_the_difference_of_the_means():
    env = SplitExitEnv(horizon=20)
    summaries = [
        summarise(name, run_episodes(make_policy(name, env), env, range(3)))
        for name in ("local-only", "edge-only")
    ]
    _, edge = add_paired_differences(summaries, "local-only")
    expected = summaries[0]["mean_reward"] - summaries[1]["mean_reward"]
    assert edge["agent_minus_policy"] == pytest.approx(expected, abs=1e-12)
    assert edge["agent_minus_policy"] != 0.0


def test_the_table_and_the_printed_scores_show_adapt_and_the_paired_difference():
    summaries = rows(agent=0.6, local_only=0.2, channel_oracle=1.0)
    for s, rewards in zip(summaries, ([0.5, 0.7], [0.2, 0.2], [1.0, 1.0])):
        s.update(
            seeds=[0, 1],
            episode_rewards=rewards,
            deployable=s["name"] != "channel-oracle",
            ci95=0.0,
            accuracy=0.9,
            latency_mean_s=0.01,
            latency_p95_s=0.02,
            energy_j=0.001,
            deadline_miss_rate=0.0,
            early_exit_rate=0.0,
            split_mix=[1.0],
        )
    add_paired_differences(add_adaptation_scores(summaries), "agent")
    table = format_table(summaries)
    assert "| adapt | agent − policy (95% CI) |" in table
    assert "| agent | 0.6000 ± 0.0000 | - | 0.500 | - |" in table
    assert "| local-only | 0.2000 ± 0.0000 | - | 0.000 | +0.4000 ± 0.1960 |" in table
    printed = format_scores(summaries, "agent")
    assert "G = R(channel-oracle) - R(best fixed: local-only) = +0.8000" in printed
    assert "agent adapt = (R - R_best_fixed) / G = 0.500" in printed
    assert "agent - local-only" in printed and "+0.4000 ± 0.1960 (paired, 95%)" in printed
