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
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import sys
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import torch

import splitexit
from splitexit.agents.baselines import BASELINES, make_policy
from splitexit.agents.evaluate import (
    EVAL_SEED_BASE,
    TRAIN_SEED_BASE,
    SB3Policy,
    add_oracle_normalized,
    run_episodes,
    summarise,
)
from splitexit.agents.report import write_report, write_results
from splitexit.agents.sb3 import (
    ALGOS,
    algo_class,
    load_hyperparams,
    make_native_vec_env,
    parse_env_kwargs,
)
from splitexit.files import atomic_write_bytes, atomic_write_text

CHECKPOINT_RE = re.compile(r"model_(\d+)_steps\.zip$")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algo", default="ppo", choices=ALGOS, help="RL algorithm (default: ppo)")
    p.add_argument(
        "--backend",
        default="sb3",
        choices=("sb3", "rllib"),
        help="sb3: stable-baselines3 in this process; rllib: Ray RLlib PPO on a Ray cluster "
        "(pip install -e '.[rllib]'; --n-envs is then envs per env runner)",
    )
    p.add_argument(
        "--num-env-runners", type=int, default=2, help="rllib: sampling actors (default: 2)"
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
        "(default: the shipped splitexit/agents/hyperparams/<algo>.yml)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of training and of the agent")
    p.add_argument("--n-envs", type=int, help="parallel training envs (default: from the YAML)")
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
    p.add_argument("--name", help="run name (default: <algo>-<env>-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.backend == "rllib" and args.algo != "ppo":
        p.error(f"--backend rllib trains --algo ppo only, got --algo {args.algo}")
    if args.num_env_runners < 0:
        p.error(f"--num-env-runners must be >= 0, got {args.num_env_runners}")
    return args


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """The checkpoints in ``folder``, the one with the most steps first."""
    found = [
        (int(m.group(1)), p)
        for p in folder.glob("model_*_steps.zip")
        if (m := CHECKPOINT_RE.search(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def save_model_atomically(model, path: Path) -> None:
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(path, buf.getvalue())


def train(args, run_dir: Path, env_config: dict, hyper: dict, total: int, n_envs: int):
    """Train (or resume) and return the model."""
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cls = algo_class(args.algo)
    train_config = {**env_config, "traces": args.train_traces}
    if args.vec_env == "native":
        train_env = make_native_vec_env(args.env, n_envs, args.seed, train_config)
    else:
        train_env = make_vec_env(
            args.env,
            n_envs=n_envs,
            seed=args.seed,
            vec_env_cls=SubprocVecEnv if args.vec_env == "subproc" else DummyVecEnv,
            env_kwargs={"config": train_config},
        )
    ckpt_dir = run_dir / "checkpoints"
    model = checkpoint = None
    # SB3 writes checkpoints in place: one cut short by a kill is skipped for the one before.
    for checkpoint in checkpoints_newest_first(ckpt_dir) if args.resume else []:
        try:
            model = cls.load(
                str(checkpoint), env=train_env, device="cpu", tensorboard_log=str(run_dir / "tb")
            )
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as err:
            print(f"skipping the unreadable checkpoint {checkpoint}: {err}")
            continue
        print(f"resuming from {checkpoint} ({model.num_timesteps} steps done)")
        break
    else:
        checkpoint = None
    if model is None:
        if args.resume:
            print(f"no checkpoint in {ckpt_dir}: starting afresh")
        model = cls(
            env=train_env,
            seed=args.seed,
            device="cpu",
            tensorboard_log=str(run_dir / "tb"),
            verbose=0,
            **hyper,
        )
    callbacks = []
    if args.eval_freq > 0:
        every = max(args.eval_freq // n_envs, 1)
        callbacks.append(CheckpointCallback(every, str(ckpt_dir), name_prefix="model"))
        eval_env = gym.make(args.env, config={**env_config, "traces": args.eval_traces})
        callbacks.append(
            EvalCallback(eval_env, n_eval_episodes=5, eval_freq=every, verbose=0, warn=False)
        )
    remaining = max(total - model.num_timesteps, 0)
    if remaining:
        model.learn(
            remaining,
            callback=callbacks,
            progress_bar=not args.no_progress,
            reset_num_timesteps=checkpoint is None,
            tb_log_name=args.algo,
        )
    train_env.close()
    return model


def evaluate_all(args, model, env_config: dict) -> tuple[list[dict], dict, list]:
    """The agent, every baseline and both oracles on the same evaluation episodes."""
    eval_env = gym.make(args.env, config={**env_config, "traces": args.eval_traces}).unwrapped
    fit_env = gym.make(args.env, config={**env_config, "traces": args.train_traces}).unwrapped
    eval_seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + args.eval_episodes)
    fit_seeds = range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 10)
    if args.backend == "rllib":
        from splitexit.agents.rllib import RLlibPolicy

        agent = RLlibPolicy(model.module, eval_env, name=args.algo)
    else:
        agent = SB3Policy(model, eval_env, name=args.algo, masked=args.algo == "maskable_ppo")
    policies = [agent] + [make_policy(name, eval_env).fit(fit_env, fit_seeds) for name in BASELINES]
    summaries, episodes = [], {}
    for policy in policies:
        eps = run_episodes(policy, eval_env, eval_seeds, timeline=policy is agent)
        episodes[policy.name] = eps
        summaries.append(summarise(policy.name, eps, policy.deployable))
        print(f"  {policy.name:<18} mean reward {summaries[-1]['mean_reward']:+.4f}")
    timeline = episodes[agent.name][0].get("timeline", [])
    return add_oracle_normalized(summaries), episodes, timeline


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # small MLPs: threads cost more than they give
    env_short = args.env.split(":")[-1]
    backend = "" if args.backend == "sb3" else f"{args.backend}-"  # its run and YAML prefix
    name = args.name or f"{backend}{args.algo}-{env_short}-seed{args.seed}"
    run_dir = Path(args.output) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    env_config = parse_env_kwargs(args.env_kwargs)
    hyper = load_hyperparams(backend + args.algo, args.env, args.conf_file)  # rllib-ppo.yml
    total = args.total_timesteps or int(hyper.pop("n_timesteps", 1_000_000))
    hyper.pop("n_timesteps", None)
    n_envs = args.n_envs or int(hyper.pop("n_envs", 1))
    hyper.pop("n_envs", None)
    probe = gym.make(args.env, config=env_config).unwrapped  # the full config, validated
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    atomic_write_text(
        run_dir / "config.json",
        json.dumps(
            {
                "command": command,
                "args": vars(args),
                "hyperparameters": {**hyper, "n_envs": n_envs, "n_timesteps": total},
                "env_config": probe.config,
                "splitexit": splitexit.__version__,
                "torch": torch.__version__,
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    start = time.perf_counter()
    if args.backend == "rllib":
        from splitexit.agents import rllib

        model = rllib.train(args, run_dir, env_config, hyper, total, n_envs)
        train_s = time.perf_counter() - start
        rllib.save_model(model, run_dir / "model.safetensors")
    else:
        model = train(args, run_dir, env_config, hyper, total, n_envs)
        train_s = time.perf_counter() - start
        save_model_atomically(model, run_dir / "model.zip")
    print(f"trained {model.num_timesteps} steps in {train_s:.0f} s; evaluating ...")
    summaries, episodes, timeline = evaluate_all(args, model, env_config)
    write_results(run_dir, summaries, episodes)
    runners = f" on each of {args.num_env_runners} RLlib env runners" if backend else ""
    context = {
        "description": f"{args.algo.upper()} trained for {model.num_timesteps} steps on "
        f"`{args.env}` ({n_envs} envs{runners}, seed {args.seed}).",
        "command": command,
        "eval_seeds": f"{EVAL_SEED_BASE}..{EVAL_SEED_BASE + args.eval_episodes - 1}",
        "eval_traces": args.eval_traces,
        "train_traces": args.train_traces,
        "train_wall_time_s": round(train_s, 1),
        "total_wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_report(run_dir, summaries, args.algo, timeline, probe.num_splits, context)
    print(f"wrote {run_dir}/report.md ({time.perf_counter() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
