"""Evaluate policies (trained agents, baselines, oracles) on the same seeded episodes.

    python -m splitexit.agents.evaluate --model runs/ppo-SplitExit-v1-seed0
    python -m splitexit.agents.evaluate --model runs/rllib-ppo-SplitExit-v1-seed0/agent.json
    python -m splitexit.agents.evaluate --model downloaded/model.zip --algo dqn --trust-pickle
    python -m splitexit.agents.evaluate --baseline neurosurgeon --episodes 20

Every policy meets the same requests, traces and server load (common random numbers), so their
differences are the policies' own. Baselines are tuned on FIT_EPISODES episodes of the training
traces (seeds from TRAIN_SEED_BASE), here as in ``train_agent.py``. Installed, the command is
``splitexit evaluate``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import splitexit  # noqa: F401  (registers the ids)
from splitexit.agents import saved
from splitexit.agents.baselines import BASELINES, Policy, make_policy
from splitexit.agents.run import (
    SB3_ALGOS,
    Parser,
    check_env,
    env_config_flag,
    load_policy,
)
from splitexit.envs.splitexit_env import SplitExitEnv

DEFAULT_ENV_ID = "splitexit:SplitExit-v1"
EVAL_SEED_BASE = 0  # evaluation episodes use seeds 0..n-1 on the held-out traces
TRAIN_SEED_BASE = 10_000  # baselines are tuned on seeds from here on the training traces
FIT_EPISODES = 10  # training episodes a baseline is tuned on
Z95 = 1.96  # normal quantile of a two-sided 95% interval
# The baselines that take one fixed action for every request (branchynet and best-static: one
# action tuned on the training episodes); branchynet-demand, a threshold per demand, is not.
FIXED_ACTION_POLICIES = frozenset({"local-only", "edge-only", "branchynet", "best-static"})


def fit_baseline(name: str, env: SplitExitEnv, fit_env: SplitExitEnv) -> Policy:
    """The baseline or oracle ``name`` acting in ``env``, tuned on the FIT_EPISODES episodes
    of ``fit_env`` (the training traces) from seed TRAIN_SEED_BASE."""
    seeds = range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + FIT_EPISODES)
    return make_policy(name, env).fit(fit_env, seeds)


def make_env(env_id: str = DEFAULT_ENV_ID, **config: Any) -> SplitExitEnv:
    """The unwrapped env of ``env_id`` with config overrides."""
    return gym.make(env_id, config=config).unwrapped


def run_episodes(policy, env: SplitExitEnv, seeds: Sequence[int], timeline: bool = False) -> list:
    """Per-episode results of ``policy`` on ``env`` for each seed (and, with ``timeline``,
    the per-request record of the first episode). An ``online`` policy gets
    ``policy.update(obs, action, reward, next_obs, info)`` after every step and keeps what it
    learned from one episode to the next."""
    episodes = []
    final = env.tables.exit_blocks[-1]
    online = getattr(policy, "online", False)
    for k, seed in enumerate(seeds):
        obs, _ = env.reset(seed=int(seed))
        steps = []
        done = False
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            now_s = env.arrival_s
            capacity_bps = env.mean_capacity_bps(now_s - env.frame_s, now_s)
            next_obs, reward, terminated, truncated, info = env.step(action)
            if online:
                policy.update(obs, action, reward, next_obs, info)
            obs = next_obs
            steps.append((reward, info, capacity_bps))
            done = terminated or truncated
        rewards = np.array([r for r, _, _ in steps])
        infos = [i for _, i, _ in steps]
        latency = np.array([i["latency_s"] for i in infos])
        episode = {
            "seed": int(seed),
            "steps": len(steps),
            "reward": float(rewards.mean()),
            "accuracy": float(np.mean([i["correct"] for i in infos])),
            "latency_mean_s": float(latency.mean()),
            "latency_p95_s": float(np.percentile(latency, 95)),
            "energy_j": float(np.mean([i["energy_j"] for i in infos])),
            "deadline_miss_rate": float(np.mean([i["deadline_missed"] for i in infos])),
            "splits": np.bincount([i["split"] for i in infos], minlength=env.num_splits).tolist(),
            "exits": {
                str(b): sum(i["exit_block"] == b for i in infos) for b in env.tables.exit_blocks
            },
            "early_exit_rate": float(np.mean([i["exit_block"] != final for i in infos])),
            "latencies_s": latency.tolist(),
        }
        if timeline and k == 0:
            episode["timeline"] = [
                {
                    "step": n,
                    "split": i["split"],
                    "exit_block": i["exit_block"],
                    "capacity_bps": c,
                    "latency_s": i["latency_s"],
                    "correct": i["correct"],
                }
                for n, (_, i, c) in enumerate(steps)
            ]
        episodes.append(episode)
    return episodes


def _mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its normal 95% interval (0 for one value)."""
    n = len(values)
    ci95 = Z95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return float(values.mean()), ci95


def summarise(name: str, episodes: list, deployable: bool = True) -> dict:
    """One summary row: mean over episodes with a 95% confidence interval of the mean reward,
    and the per-episode mean rewards (``episode_rewards``) with their ``seeds``, in seed order
    (the order of ``episodes``), to pair policies by episode."""
    rewards = np.array([e["reward"] for e in episodes])
    n = len(rewards)
    mean_reward, ci95 = _mean_ci95(rewards)
    latencies = np.concatenate([e["latencies_s"] for e in episodes])
    splits = np.sum([e["splits"] for e in episodes], axis=0)
    exit_counts: dict[str, int] = {}
    for e in episodes:
        for b, c in e["exits"].items():
            exit_counts[b] = exit_counts.get(b, 0) + c
    total = int(splits.sum())

    def mean(key: str) -> float:
        return float(np.mean([e[key] for e in episodes]))

    return {
        "name": name,
        "deployable": deployable,
        "episodes": n,
        "mean_reward": mean_reward,
        "ci95": ci95,
        "accuracy": mean("accuracy"),
        "latency_mean_s": float(latencies.mean()),
        "latency_p95_s": float(np.percentile(latencies, 95)),
        "energy_j": mean("energy_j"),
        "deadline_miss_rate": mean("deadline_miss_rate"),
        "early_exit_rate": mean("early_exit_rate"),
        "split_mix": [float(c) / total for c in splits],
        "exit_mix": {b: c / total for b, c in exit_counts.items()},
        "seeds": [int(e["seed"]) for e in episodes],
        "episode_rewards": rewards.tolist(),
    }


def add_oracle_normalized(summaries: list[dict]) -> list[dict]:
    """Set ``oracle_normalized`` = (R - R_random) / (R_channel_oracle - R_random) on each row."""
    by_name = {s["name"]: s["mean_reward"] for s in summaries}
    if "random" in by_name and "channel-oracle" in by_name:
        lo, hi = by_name["random"], by_name["channel-oracle"]
        for s in summaries:
            s["oracle_normalized"] = (s["mean_reward"] - lo) / (hi - lo) if hi != lo else None
    return summaries


def adaptation_gap(summaries: list[dict]) -> tuple[float | None, str | None]:
    """``(G, best)``: the best fixed action among the rows (:data:`FIXED_ACTION_POLICIES`, by
    mean reward) and G = R_channel_oracle - R_best_fixed, the reward adapting can gain; G is
    None without a channel-oracle row, both are None without a fixed-action row."""
    fixed = [s for s in summaries if s["name"] in FIXED_ACTION_POLICIES]
    if not fixed:
        return None, None
    best = max(fixed, key=lambda s: s["mean_reward"])
    oracle = next((s for s in summaries if s["name"] == "channel-oracle"), None)
    gap = None if oracle is None else oracle["mean_reward"] - best["mean_reward"]
    return gap, best["name"]


def add_adaptation_scores(summaries: list[dict]) -> list[dict]:
    """Set ``adapt`` = (R - R_best_fixed) / G on each row (:func:`adaptation_gap`): 0 for the
    best fixed action, 1 for the channel oracle; None where G is None or 0."""
    gap, best = adaptation_gap(summaries)
    r_best = next((s["mean_reward"] for s in summaries if s["name"] == best), 0.0)
    for s in summaries:
        s["adapt"] = (s["mean_reward"] - r_best) / gap if gap else None
    return summaries


def paired_difference(
    a_rewards: Sequence[float], b_rewards: Sequence[float]
) -> tuple[float, float]:
    """Mean of the per-episode differences ``a - b`` (episodes paired by position, under common
    random numbers) and the half-width of its 95% interval (0 for one episode)."""
    a, b = np.asarray(a_rewards, dtype=float), np.asarray(b_rewards, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"cannot pair {a.shape} episode rewards with {b.shape}")
    return _mean_ci95(a - b)


def add_paired_differences(summaries: list[dict], agent_name: str) -> list[dict]:
    """Set ``agent_minus_policy`` and ``agent_minus_policy_ci95`` (:func:`paired_difference` of
    the agent's episode rewards and the row's) on each row; None on the agent's own row.
    ``ValueError`` if a row's episodes are not on the agent's seeds, in the same order."""
    agent = next((s for s in summaries if s["name"] == agent_name), None)
    if agent is None:
        raise ValueError(f"no row named {agent_name!r} to pair the policies with")
    for s in summaries:
        if s is agent:
            s["agent_minus_policy"] = s["agent_minus_policy_ci95"] = None
            continue
        if s["seeds"] != agent["seeds"]:
            raise ValueError(
                f"cannot pair {s['name']!r} with {agent_name!r}: seeds {s['seeds']} differ "
                f"from {agent['seeds']}"
            )
        diff = paired_difference(agent["episode_rewards"], s["episode_rewards"])
        s["agent_minus_policy"], s["agent_minus_policy_ci95"] = diff
    return summaries


def format_scores(summaries: list[dict], agent_name: str) -> str:
    """G, the best fixed action, the agent's adapt score and its paired difference against
    every other policy, one line each."""
    gap, best = adaptation_gap(summaries)
    agent = next(s for s in summaries if s["name"] == agent_name)
    adapt = agent.get("adapt")
    lines = [
        f"adaptation gap G = R(channel-oracle) - R(best fixed: {best}) = "
        + ("-" if gap is None else f"{gap:+.4f}"),
        f"{agent_name} adapt = (R - R_best_fixed) / G = "
        + ("-" if adapt is None else f"{adapt:.3f}"),
    ]
    for s in summaries:
        if s.get("agent_minus_policy") is not None:
            lines.append(
                f"  {agent_name} - {s['name']:<18} {s['agent_minus_policy']:+.4f} "
                f"± {s['agent_minus_policy_ci95']:.4f} (paired, 95%)"
            )
    return "\n".join(lines)


def evaluate_against_baselines(
    agent, env: SplitExitEnv, fit_env: SplitExitEnv, episodes: int
) -> tuple[list[dict], dict[str, list], list[dict]]:
    """The agent, then every baseline and oracle (:func:`fit_baseline` on ``fit_env``), on the
    same ``episodes`` evaluation episodes of ``env``: the summary rows (oracle-normalised, with
    the adapt score and the paired difference against the agent), the episodes of each policy,
    and the agent's timeline of its first episode."""
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes)
    policies = [agent] + [fit_baseline(name, env, fit_env) for name in BASELINES]
    summaries, results = [], {}
    for policy in policies:
        eps = run_episodes(policy, env, seeds, timeline=policy is agent)
        results[policy.name] = eps
        summaries.append(summarise(policy.name, eps, policy.deployable))
        print(f"  {policy.name:<18} mean reward {summaries[-1]['mean_reward']:+.4f}")
    timeline = results[agent.name][0].get("timeline", [])
    add_adaptation_scores(add_oracle_normalized(summaries))
    return add_paired_differences(summaries, agent.name), results, timeline


def format_table(summaries: list[dict]) -> str:
    """A Markdown table of summary rows ("-" where a score is missing)."""
    head = (
        "| policy | mean reward (95% CI) | oracle-normalised | adapt | agent − policy (95% CI) "
        "| accuracy | latency mean / p95 (ms) | energy (mJ) | deadline miss | early exit "
        "| split mix (0..S) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for s in summaries:
        norm, adapt, diff = s.get("oracle_normalized"), s.get("adapt"), s.get("agent_minus_policy")
        paired = "-" if diff is None else f"{diff:+.4f} ± {s['agent_minus_policy_ci95']:.4f}"
        mix = " ".join(f"{m:.2f}" for m in s["split_mix"])
        rows.append(
            f"| {s['name']}{'' if s['deployable'] else ' *'} "
            f"| {s['mean_reward']:.4f} ± {s['ci95']:.4f} "
            f"| {'-' if norm is None else f'{norm:.3f}'} "
            f"| {'-' if adapt is None else f'{adapt:.3f}'} | {paired} | {s['accuracy']:.4f} "
            f"| {s['latency_mean_s'] * 1e3:.1f} / {s['latency_p95_s'] * 1e3:.1f} "
            f"| {s['energy_j'] * 1e3:.2f} | {s['deadline_miss_rate']:.3f} "
            f"| {s['early_exit_rate']:.3f} | {mix} |"
        )
    return head + "\n".join(rows) + "\n\n\\* not deployable (upper bound)\n"


def _agent_env(path: str) -> tuple[str | None, dict]:
    """The env id and config a saved agent was trained with (its ``agent.json``); ``(None,
    {})`` where ``path`` holds none (an SB3 zip does not say; ``_load`` names what is wrong)."""
    try:
        description = saved.read_description(path)
    except (OSError, ValueError):
        return None, {}
    return description.get("env_id"), dict(description.get("env_config") or {})


def _load(parser: Parser, path: str, env: SplitExitEnv, algo: str | None, trust_pickle: bool):
    """The saved agent at ``path`` as a policy of ``env``, or a usage error naming --model."""
    if not Path(path).exists():
        parser.error(f"--model {path}: no such file or folder")
    try:
        return load_policy(path, env, algo, trust_pickle)
    except Exception as err:  # noqa: BLE001  (any failure to load is the file's)
        detail = " ".join(str(err).split()) or type(err).__name__
        parser.error(f"--model {path}: cannot load it ({detail})")


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m splitexit.agents.evaluate"
) -> int:
    parser = Parser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--model",
        help="a saved agent: a run folder or its agent.json (safetensors and JSON: loading "
        "runs no code); an SB3 model.zip only with --trust-pickle",
    )
    what.add_argument("--baseline", choices=sorted(BASELINES), help="a baseline or oracle")
    parser.add_argument(
        "--algo",
        choices=SB3_ALGOS,
        help="algorithm of --model (agent.json names it; an SB3 model.zip: default ppo)",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow --model to be an SB3 model.zip: SB3 unpickles it, which can run any code "
        "in it (only for files from a source you trust)",
    )
    parser.add_argument(
        "--env",
        help=f"Gymnasium env id (default: a saved agent's own id and env config, which "
        f"--env-kwargs extend; else {DEFAULT_ENV_ID})",
    )
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY:VALUE")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--traces", default="mahimahi-up-eval", help="evaluation traces")
    parser.add_argument(
        "--train-traces",
        default="mahimahi-up-train",
        help=f"traces the baselines are tuned on ({FIT_EPISODES} episodes)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    kwargs = env_config_flag(
        parser,
        args.env_kwargs,
        "--traces for the evaluation, --train-traces for tuning the baselines",
    )
    if args.env is None:
        trained_id, trained_in = _agent_env(args.model) if args.model else (None, {})
        args.env = trained_id or DEFAULT_ENV_ID
        kwargs = {**trained_in, **kwargs}
    check_env(parser, "--env-kwargs", args.env, kwargs)
    config = {"traces": args.traces, **kwargs}
    env = check_env(parser, "--traces", args.env, config)
    if args.model:
        policy = _load(parser, args.model, env, args.algo, args.trust_pickle)
    else:
        fit_env = check_env(
            parser, "--train-traces", args.env, {**config, "traces": args.train_traces}
        )
        policy = fit_baseline(args.baseline, env, fit_env)
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + args.episodes)
    summary = summarise(policy.name, run_episodes(policy, env, seeds), policy.deployable)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table([summary]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
