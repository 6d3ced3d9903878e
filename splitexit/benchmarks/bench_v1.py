"""Benchmark: the SplitExit-v1 draft's headroom, and what each of its mechanisms contributes.

    splitexit bench v1 [--episodes 30] [--ppo-steps 0] [--quick] [--json PATH]

For the draft of SplitExit-v1 (``splitexit.V1_DRAFT``) and for it with each mechanism
switched off in turn (camera conditions, application demands, the battery budget, the context
features of the observation), every
baseline and both oracles are fitted on the training traces (the FIT episodes of
``splitexit.agents.evaluate``) and evaluated on the held-out traces with common random numbers,
as ``train_agent.py`` does. The table gives each policy's oracle-normalised score (0 random,
1 the channel oracle), the best static action's and the best deployable baseline's; with
``--ppo-steps N``, also a PPO agent trained for N steps on the variant (shipped ppo.yml).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from splitexit import V1_DRAFT
from splitexit.agents.baselines import BASELINES
from splitexit.agents.evaluate import (
    EVAL_SEED_BASE,
    adaptation_gap,
    add_oracle_normalized,
    fit_baseline,
    make_env,
    run_episodes,
    summarise,
)
from splitexit.benchmarks import timing

ENV_ID = "splitexit:SplitExit-v0"  # with the V1_DRAFT config: v1 is not registered yet
VARIANTS = {
    "v1": {},
    "no camera conditions": {"camera": "none"},
    "no demands": {"demands": "none"},
    "no battery budget": {"battery_j": None},
    "basic observation": {"observation": "basic"},
}


def ppo_policy(config: dict, steps: int, seed: int = 0):
    """PPO trained for ``steps`` on ``config`` (training traces), as a policy of the eval env."""
    import torch

    from splitexit.agents import sb3
    from splitexit.agents.run import RunSpec, load_hyperparams

    torch.set_num_threads(1)
    hyper = load_hyperparams("ppo", ENV_ID)
    n_envs = int(hyper.pop("n_envs", 16))
    hyper.pop("n_timesteps", None)
    run = RunSpec(
        "sb3", "ppo", ENV_ID, config, seed, n_envs, steps, hyper, Path("/nonexistent"),
        vec_env="native", eval_freq_steps=0, progress=False,
    )  # fmt: skip
    return sb3.train(run)


def evaluate_variant(name: str, overrides: dict, episodes: int, ppo_steps: int) -> list[dict]:
    config = {**V1_DRAFT, **overrides}
    eval_env = make_env(ENV_ID, **config, traces="mahimahi-up-eval")
    fit_env = make_env(ENV_ID, **config, traces="mahimahi-up-train")
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes)
    rows = []
    for policy_name in BASELINES:
        start = time.perf_counter()
        policy = fit_baseline(policy_name, eval_env, fit_env)
        row = summarise(policy_name, run_episodes(policy, eval_env, seeds), policy.deployable)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    if ppo_steps:
        from splitexit.agents import sb3

        start = time.perf_counter()
        model = ppo_policy({**config, "traces": "mahimahi-up-train"}, ppo_steps)
        policy = sb3.as_policy(model, eval_env, "ppo")
        row = summarise("ppo", run_episodes(policy, eval_env, seeds))
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    print(f"  {name}: {len(rows)} policies", flush=True)
    return add_oracle_normalized(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=30, help="evaluation episodes")
    parser.add_argument("--ppo-steps", type=int, default=0, help="train PPO per variant")
    parser.add_argument("--only", choices=list(VARIANTS), help="one variant")
    args = timing.parse_args(parser, rounds=1, argv=argv)
    if args.quick:
        args.episodes, args.ppo_steps = 1, min(args.ppo_steps, 512)
    variants = {args.only: VARIANTS[args.only]} if args.only else VARIANTS
    result = {**timing.environment(), "env": ENV_ID, "episodes": args.episodes, "variants": {}}
    table = []
    for name, overrides in variants.items():
        if args.quick and name != "v1":
            continue
        rows = evaluate_variant(name, overrides, args.episodes, args.ppo_steps)
        result["variants"][name] = {"overrides": overrides, "policies": rows}
        by = {r["name"]: r for r in rows}
        deployable = [r for r in rows if r["deployable"] and r["name"] not in ("random", "ppo")]
        best_static = by[adaptation_gap(rows)[1]]
        best = max(deployable, key=lambda r: r["mean_reward"])
        ppo = by.get("ppo")
        table.append(
            [
                name,
                f"{by['random']['mean_reward']:.4f}",
                f"{by['channel-oracle']['mean_reward']:.4f}",
                f"{best_static['name']} {best_static['oracle_normalized']:.3f}",
                f"{best['name']} {best['oracle_normalized']:.3f}",
                "-" if ppo is None else f"{ppo['oracle_normalized']:.3f}",
            ]
        )
        for r in rows:
            print(
                f"    {r['name']:<18} {r['mean_reward']:+.4f} ± {r['ci95']:.4f}  "
                f"norm {r['oracle_normalized']:+.3f}  ({r['seconds']:.1f} s)"
            )
    header = ["variant", "random", "channel oracle", "best static (norm.)", "best baseline", "PPO"]
    print(timing.markdown_table(header, "lrrlll", table))
    timing.write_json(args.json, result)


if __name__ == "__main__":
    main()
