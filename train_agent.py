"""Train an RL agent on SplitExit, evaluate it against every baseline and oracle, write a report.

    python train_agent.py                                  # PPO on SplitExit-v0, shipped settings
    python train_agent.py --algo dqn --total-timesteps 500000
    python train_agent.py --env-kwargs reward:"'latency-critical'" --name latency
    python train_agent.py --name ppo-SplitExit-v0 --resume # continue an interrupted run
    python train_agent.py --backend rllib                  # Ray RLlib PPO (extra "rllib")

Training uses the shipped uplink traces except one, held out for evaluation
(``mahimahi-up-train`` / ``mahimahi-up-eval``). Everything lands in ``runs/<name>/``: model.zip
(model.safetensors with ``--backend rllib``), config.json, checkpoints/, tb/ (TensorBoard),
episodes.csv / episodes.json, summary.json, report.md, pareto.png and timeline.png. Files are
written atomically; a killed run resumes from its last checkpoint with ``--resume``.

``--n-envs`` is the number of envs stepping in parallel in all, for both backends; RLlib splits
them evenly over its ``--num-env-runners``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch

import splitexit
from splitexit.agents.evaluate import EVAL_SEED_BASE, evaluate_against_baselines
from splitexit.agents.report import write_report, write_results
from splitexit.agents.run import (
    BACKENDS,
    RunSpec,
    backend_module,
    hyperparams_path,
    load_hyperparams,
    parse_env_kwargs,
)
from splitexit.agents.sb3 import ALGOS
from splitexit.files import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    """The flags, RL Zoo style."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algo", default="ppo", choices=ALGOS, help="RL algorithm (default: ppo)")
    p.add_argument(
        "--backend",
        default="sb3",
        choices=BACKENDS,
        help="sb3: stable-baselines3 in this process; rllib: Ray RLlib PPO on a Ray cluster "
        "(pip install -e '.[rllib]')",
    )
    p.add_argument(
        "--num-env-runners",
        type=int,
        default=2,
        help="rllib: sampling actors, each stepping --n-envs / runners envs (default: 2)",
    )
    p.add_argument(
        "--ray-address",
        help="rllib: address of a running Ray cluster (default: $RAY_ADDRESS, else a local one)",
    )
    p.add_argument("--env", default="splitexit:SplitExit-v0", help="Gymnasium env id")
    p.add_argument(
        "--env-kwargs",
        nargs="*",
        default=[],
        metavar="KEY:VALUE",
        help="env config overrides, e.g. deadline_s:0.05 device:\"'rpi4'\"",
    )
    p.add_argument(
        "--conf-file",
        help="hyperparameter YAML keyed by env id with a 'default:' section "
        "(default: the shipped splitexit/agents/hyperparams/<algo>.yml, rllib-ppo.yml for rllib)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of training and of the agent")
    p.add_argument(
        "--n-envs",
        type=int,
        help="training envs stepping in parallel in all (default: n_envs of the YAML); "
        "rllib splits them evenly over the --num-env-runners, so a multiple of those",
    )
    p.add_argument(
        "--vec-env",
        default="dummy",
        choices=("dummy", "subproc", "native"),
        help="SB3 VecEnv: DummyVecEnv, SubprocVecEnv, or the native SplitExitVectorEnv "
        "(with --backend rllib: native makes each env runner step one SplitExitVectorEnv)",
    )
    p.add_argument("--total-timesteps", type=int, help="training steps (default: from the YAML)")
    p.add_argument(
        "--eval-freq",
        type=int,
        default=100_000,
        help="steps between checkpoints and periodic evaluations (TensorBoard); 0 disables",
    )
    p.add_argument("--eval-episodes", type=int, default=30, help="final evaluation episodes")
    p.add_argument("--train-traces", default="mahimahi-up-train", help="traces for training")
    p.add_argument("--eval-traces", default="mahimahi-up-eval", help="held-out eval traces")
    p.add_argument("--output", default="runs", help="folder of the runs")
    p.add_argument("--name", help="run name (default: [rllib-]<algo>-<env>-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_run(argv: list[str] | None = None) -> tuple[argparse.Namespace, RunSpec]:
    """The flags, and the run they describe (hyperparameters from the YAML under the flags)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.backend == "rllib" and args.algo != "ppo":
        p.error(f"--backend rllib trains --algo ppo only, got --algo {args.algo}")
    if args.num_env_runners < 0:
        p.error(f"--num-env-runners must be >= 0, got {args.num_env_runners}")
    prefix = "" if args.backend == "sb3" else f"{args.backend}-"  # of the run and the YAML
    name = args.name or f"{prefix}{args.algo}-{args.env.split(':')[-1]}-seed{args.seed}"
    source = hyperparams_path(prefix + args.algo, args.conf_file)  # rllib-ppo.yml for RLlib
    hyper = load_hyperparams(prefix + args.algo, args.env, source)
    total = args.total_timesteps or int(hyper.pop("n_timesteps", 1_000_000))
    hyper.pop("n_timesteps", None)
    n_envs = args.n_envs or int(hyper.pop("n_envs", 1))
    hyper.pop("n_envs", None)
    if n_envs < 1:
        p.error(f"--n-envs must be >= 1, got {n_envs}")
    if args.backend == "rllib" and n_envs % max(args.num_env_runners, 1):
        where = "--n-envs" if args.n_envs else f"n_envs of {source}"
        p.error(
            f"{where} ({n_envs} envs in all) must be a multiple of --num-env-runners "
            f"({args.num_env_runners}): each env runner steps as many envs"
        )
    run = RunSpec(
        backend=args.backend,
        algo=args.algo,
        env_id=args.env,
        env_config=parse_env_kwargs(args.env_kwargs),
        seed=args.seed,
        n_envs=n_envs,
        total_timesteps=total,
        hyperparams=hyper,
        run_dir=Path(args.output) / name,
        train_traces=args.train_traces,
        eval_traces=args.eval_traces,
        eval_episodes=args.eval_episodes,
        vec_env=args.vec_env,
        eval_freq_steps=args.eval_freq,
        resume=args.resume,
        progress=not args.no_progress,
        num_env_runners=args.num_env_runners,
        ray_address=args.ray_address,
        hyperparams_source=str(source),
    )
    return args, run


def main(argv: list[str] | None = None) -> int:
    """Train, save, evaluate against every baseline and oracle, write the report."""
    args, run = parse_run(argv)
    torch.set_num_threads(1)  # small MLPs: threads cost more than they give
    run.run_dir.mkdir(parents=True, exist_ok=True)
    probe = gym.make(run.env_id, config=dict(run.env_config)).unwrapped  # validated config
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    atomic_write_text(
        run.run_dir / "config.json",
        json.dumps(
            {
                "command": command,
                "args": vars(args),
                "hyperparameters": {
                    **run.hyperparams,
                    "n_envs": run.n_envs,
                    "n_timesteps": run.total_timesteps,
                },
                "env_config": probe.config,
                "splitexit": splitexit.__version__,
                "torch": torch.__version__,
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    backend = backend_module(run.backend)
    start = time.perf_counter()
    model = backend.train(run)
    train_s = time.perf_counter() - start
    backend.save(model, run.run_dir)
    print(f"trained {model.num_timesteps} steps in {train_s:.0f} s; evaluating ...")
    eval_env = gym.make(run.env_id, config=run.env_kwargs(run.eval_traces)).unwrapped
    fit_env = gym.make(run.env_id, config=run.env_kwargs(run.train_traces)).unwrapped
    agent = backend.as_policy(model, eval_env, run.algo)
    summaries, episodes, timeline = evaluate_against_baselines(
        agent, eval_env, fit_env, run.eval_episodes
    )
    write_results(run.run_dir, summaries, episodes)
    envs = f"{run.n_envs} envs"
    if run.backend == "rllib":
        envs += f" over {run.num_env_runners} RLlib env runners"
    context = {
        "description": f"{run.algo.upper()} trained for {model.num_timesteps} steps on "
        f"`{run.env_id}` ({envs}, seed {run.seed}).",
        "command": command,
        "eval_seeds": f"{EVAL_SEED_BASE}..{EVAL_SEED_BASE + run.eval_episodes - 1}",
        "eval_traces": run.eval_traces,
        "train_traces": run.train_traces,
        "train_wall_time_s": round(train_s, 1),
        "total_wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_report(run.run_dir, summaries, run.algo, timeline, probe.num_splits, context)
    print(f"wrote {run.run_dir}/report.md ({time.perf_counter() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
