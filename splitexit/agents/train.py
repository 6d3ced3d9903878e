"""Train an RL agent on SplitExit, evaluate it against every baseline and oracle, write a report.

    splitexit train                                  # PPO on SplitExit-v1, shipped settings
    splitexit train --algo dqn --total-timesteps 500000
    splitexit train --env-kwargs reward:"'latency-critical'" --name latency
    splitexit train --name ppo-SplitExit-v1-seed0 --resume  # continue an interrupted run
    splitexit train --backend rllib                  # Ray RLlib PPO (extra "rllib")

In a checkout, ``python train_agent.py`` is the same command.

Training uses the shipped uplink traces except one, held out for evaluation
(``mahimahi-up-train`` / ``mahimahi-up-eval``). Everything lands in ``runs/<name>/``: the agent
(agent.json + agent.safetensors: no pickle; and SB3's model.zip), config.json, checkpoints/,
tb/ (TensorBoard), episodes.csv / episodes.json, summary.json, report.md (last), pareto.png and
timeline.png. Files are written atomically, checkpoints whole: a run killed at any point
continues with ``--resume`` (from its newest whole checkpoint, or from its saved agent to the
evaluation); a finished run is left as it is.

One run per folder: a run locks its folder (``.lock``, holding its PID) while it writes it, so a
second run of the same name stops at once (a lock left by a killed run is taken over), and a
fresh run does not start in a folder holding a previous run (``--resume`` continues that one).
Every flag and env-kwarg is checked before any work: a bad one exits with code 2 and one line
naming it, and leaves no folder; a run that fails before saving a model or checkpoint leaves
no folder either.

``--n-envs`` is the number of envs stepping in parallel in all, for both backends; RLlib splits
them evenly over its ``--num-env-runners``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

import gymnasium as gym
import torch

import splitexit
from splitexit.agents import saved, sb3
from splitexit.agents.evaluate import EVAL_SEED_BASE, evaluate_against_baselines, format_scores
from splitexit.agents.report import REPORT_FILE, write_report, write_results
from splitexit.agents.run import (
    BACKENDS,
    Parser,
    RunSpec,
    backend_module,
    check_env,
    check_native_vector_env,
    env_config_flag,
    hyperparams_path,
    load_hyperparams,
)
from splitexit.agents.sb3 import ALGOS
from splitexit.cli import command_line
from splitexit.files import (
    LOCK_FILE,
    FolderLock,
    RunLocked,
    atomic_write_text,
    remove_temporaries,
    symlinks_in,
)

# Linux's limits on a file name and a path (NAME_MAX, PATH_MAX, limits.h), and room for the
# longest path a run writes under its folder (a hidden temporary in a checkpoint folder).
NAME_MAX_BYTES, PATH_MAX_BYTES, RUN_PATHS_BYTES = 255, 4096, 128
# The run's counts a hyperparameter file may set (RL Zoo keys), with their defaults.
YAML_COUNTS = {"n_timesteps": 1_000_000, "n_envs": 1}


def build_parser() -> argparse.ArgumentParser:
    """The flags, RL Zoo style."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--env", default="splitexit:SplitExit-v1", help="Gymnasium env id")
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
    p.add_argument(
        "--name",
        help="run name, a plain folder name under --output "
        "(default: [rllib-]<algo>-<env>-seed<seed>)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run of this name: from its newest whole checkpoint, or, once it "
        "has trained, from its saved agent to the evaluation; a finished run is left as is",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="rllib --resume: also load checkpoints not signed by this machine's key (RLlib "
        "checkpoints hold pickles, which run code when loaded: only for files you trust)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def plain_name(name: str) -> bool:
    """Whether ``name`` is one folder name: no path separator, not "." or ".." (nor empty)."""
    return bool(name) and name not in (".", "..") and Path(name).name == name and "\\" not in name


def previous_run(run_dir: Path) -> list[str]:
    """What a previous run left in ``run_dir`` (its lock files aside)."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(LOCK_FILE))


def parse_run(argv: list[str] | None = None) -> tuple[argparse.Namespace, RunSpec]:
    """The flags, and the run they describe (hyperparameters from the YAML under the flags).

    Every flag and env-kwarg is checked here, before any work and before any folder is made: a
    bad one is a usage error (exit code 2, one line naming the flag)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.backend == "rllib" and args.algo != "ppo":
        p.error(f"--backend rllib trains --algo ppo only, got --algo {args.algo}")
    for flag, value, low in (
        ("--num-env-runners", args.num_env_runners, 0),
        ("--seed", args.seed, 0),
        ("--n-envs", args.n_envs, 1),
        ("--total-timesteps", args.total_timesteps, 1),
        ("--eval-freq", args.eval_freq, 0),
        ("--eval-episodes", args.eval_episodes, 1),
    ):
        if value is not None and value < low:
            p.error(f"{flag} must be >= {low}, got {value}")
    if args.seed >= 2**32:
        p.error(f"--seed must be < 2**32 (a numpy seed of SB3 and RLlib), got {args.seed}")
    if args.backend == "rllib" and importlib.util.find_spec("ray") is None:
        p.error("--backend rllib needs Ray, which is not installed: pip install -e '.[rllib]'")
    prefix = "" if args.backend == "sb3" else f"{args.backend}-"  # of the run and the YAML
    env_name = args.env.split(":")[-1].replace("/", "-")  # a namespaced id: ns/Name-v0
    name = args.name if args.name is not None else f"{prefix}{args.algo}-{env_name}-seed{args.seed}"
    if not plain_name(name):
        p.error(f"--name must be a plain folder name (no '/', not '.' or '..'), got {name!r}")
    if len(os.fsencode(name)) > NAME_MAX_BYTES:
        p.error(f"--name is {len(os.fsencode(name))} bytes long, at most {NAME_MAX_BYTES}")
    output = Path(args.output)
    for part in output.parts:
        if len(os.fsencode(part)) > NAME_MAX_BYTES:
            p.error(
                f"--output has a folder name of {len(os.fsencode(part))} bytes, at most "
                f"{NAME_MAX_BYTES}"
            )
    longest = len(os.fsencode(os.path.abspath(output / name))) + RUN_PATHS_BYTES
    if longest > PATH_MAX_BYTES:
        p.error(
            f"--output and --name make paths of up to {longest} bytes in the run folder, "
            f"more than a path may have ({PATH_MAX_BYTES}): choose a shorter --output or --name"
        )
    if output.exists() and not output.is_dir():
        p.error(f"--output {args.output!r} is a file, not a folder")
    run_dir = output / name
    if run_dir.exists() and not run_dir.is_dir():
        p.error(f"--name {name!r}: {run_dir} is a file, not a folder")
    links = symlinks_in(run_dir)
    if links:
        where = "" if links == [run_dir] else f" ({len(links)} in the run folder)"
        p.error(
            f"--name {name!r}: {links[0]} is a symbolic link{where}: a run writes and deletes "
            "in its own folder only; copy the run, or replace the links by what they point to"
        )
    source = hyperparams_path(prefix + args.algo, args.conf_file)  # rllib-ppo.yml for RLlib
    try:
        hyper = load_hyperparams(prefix + args.algo, args.env, source)
    except (FileNotFoundError, ValueError, SyntaxError) as err:
        p.error(f"--conf-file: {err}")
    counts = {key: hyper.pop(key, default) for key, default in YAML_COUNTS.items()}
    for key, value in counts.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value == int(value)):
            p.error(f"--conf-file: {key} of {source} must be a whole number, got {value!r}")
    total = args.total_timesteps or int(counts["n_timesteps"])
    n_envs = args.n_envs or int(counts["n_envs"])
    if n_envs < 1:
        p.error(f"--n-envs must be >= 1, got {n_envs} (n_envs of {source})")
    if total < 1:
        p.error(f"--total-timesteps must be >= 1, got {total} (n_timesteps of {source})")
    if args.backend == "rllib":
        from splitexit.agents.rllib import check_hyperparams

        try:
            check_hyperparams(hyper, str(source))
        except ValueError as err:
            p.error(f"--conf-file: {err}")
    if args.backend == "rllib" and n_envs % max(args.num_env_runners, 1):
        where = "--n-envs" if args.n_envs else f"n_envs of {source}"
        p.error(
            f"{where} ({n_envs} envs in all) must be a multiple of --num-env-runners "
            f"({args.num_env_runners}): each env runner steps as many envs"
        )
    env_config = env_config_flag(
        p, args.env_kwargs, "--train-traces for training, --eval-traces for the evaluation"
    )
    run = RunSpec(
        backend=args.backend,
        algo=args.algo,
        env_id=args.env,
        env_config=env_config,
        seed=args.seed,
        n_envs=n_envs,
        total_timesteps=total,
        hyperparams=hyper,
        run_dir=run_dir,
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
        trust_pickle=args.trust_pickle,
    )
    check_env(p, "--env-kwargs", run.env_id, dict(run.env_config))
    train_env = check_env(p, "--train-traces", run.env_id, run.env_kwargs(run.train_traces))
    check_env(p, "--eval-traces", run.env_id, run.env_kwargs(run.eval_traces))
    if run.vec_env == "native":
        check_native_vector_env(p, run.env_id, run.env_kwargs(run.train_traces))
    if run.backend == "sb3":  # the hyperparameters' values too: SB3 builds the algorithm once
        try:
            sb3.check_action_space(run.algo, train_env)
        except ValueError as err:
            p.error(f"--algo {run.algo}: {err}")
        try:
            sb3.check_hyperparams(run.algo, hyper, train_env, n_envs, str(source))
        except ValueError as err:
            p.error(f"--conf-file: {err}")
    return args, run


def saved_descriptions(run: RunSpec) -> list[tuple[Path, dict]]:
    """The readable agent descriptions a previous try of ``run`` left: its agent, then its SB3
    checkpoints (RLlib's hold pickles and no description: their signatures are checked when
    resuming)."""
    found = []
    for path in [run.run_dir, *sorted((run.run_dir / "checkpoints").glob("agent_*_steps"))]:
        try:
            found.append((path, saved.read_description(path)))
        except saved.OlderFormat as err:  # resuming would train afresh over it
            usage_error(f"--resume: {err}; or choose another --name")
        except (OSError, ValueError):
            continue  # absent or cut short: resume skips it
    return found


# The flag that sets each recorded setting a resumed run must share with the run it continues.
RESUME_FLAGS = {
    "backend": "--backend",
    "algo": "--algo",
    "env_id": "--env",
    "train_traces": "--train-traces",
    "hyperparameters": "--conf-file",
}


def _as_json(mapping) -> dict:
    """``mapping`` as its JSON description records it (tuples as lists, the rest as str)."""
    return json.loads(json.dumps(dict(mapping), default=str))


def check_resumable(run: RunSpec, env) -> None:
    """A usage error if ``--resume`` would continue a run made with other settings (another
    backend, algorithm, env, env config, training traces, hyperparameters or spaces): it would
    train afresh over that run's agent and checkpoints, or on other data, instead of continuing
    them."""
    want = {
        "backend": run.backend,
        "algo": run.algo,
        "env_id": run.env_id,
        "env_config": _as_json(run.env_config),
        "train_traces": run.train_traces,
        "hyperparameters": _as_json(run.hyperparams),
        "observation_space": saved.space_to_json(env.observation_space),
        "action_space": saved.space_to_json(env.action_space),
    }
    if run.backend == "rllib" and not run.trust_pickle:
        from splitexit.agents.rllib import checkpoints_newest_first

        found = checkpoints_newest_first(run.run_dir / "checkpoints")
        if found and not any(saved.signed_here(path) for _, path in found):
            usage_error(
                f"--resume: no checkpoint in {run.run_dir / 'checkpoints'} is signed by this "
                f"machine's key ({saved.key_path()}): they were made elsewhere or changed, and "
                "RLlib checkpoints hold pickles; --trust-pickle loads them if you trust them"
            )
    for path, description in saved_descriptions(run):
        for key, value in want.items():
            if key in description and description[key] != value:
                flag = RESUME_FLAGS.get(key, "--env-kwargs")
                usage_error(
                    f"--resume: {path} was made with another {key.replace('_', ' ')} "
                    f"({description[key]!r}, here {value!r}): resume it with its own flags "
                    f"({flag}), or choose another --name"
                )


def invocation() -> str:
    """How this process was started: ``python train_agent.py`` or ``splitexit train``."""
    return command_line([])


def usage_error(message: str) -> NoReturn:
    """Exit with a usage error (code 2, one line), as a bad flag does."""
    build_parser().error(message)


def check_fresh(run: RunSpec) -> None:
    """A usage error if a run without ``--resume`` would write into a previous run's folder."""
    left = previous_run(run.run_dir)
    if left and not run.resume:
        usage_error(
            f"--name {run.run_dir.name!r}: {run.run_dir} holds a previous run "
            f"({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}): --resume continues "
            "it; or choose another --name, or delete the folder"
        )


def main(argv: list[str] | None = None) -> int:
    """Train, save, evaluate against every baseline and oracle, write the report.

    The run folder is locked while the run writes it (a second run of the same name stops at
    once); a run that fails before saving a model or a checkpoint leaves no folder behind."""
    args, run = parse_run(argv)
    torch.set_num_threads(1)  # small MLPs: threads cost more than they give
    check_fresh(run)
    try:
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run.run_dir.mkdir()
            created = True  # by this run: removed if the run fails before saving anything
        except FileExistsError:
            created = False
    except OSError as err:  # a read-only file system, a file on the way, no permission
        usage_error(f"--output {args.output!r}: cannot make the run folder ({err.strerror})")
    lock = FolderLock(run.run_dir)
    try:
        lock.acquire()
    except RunLocked as err:
        usage_error(f"--name {run.run_dir.name!r}: {err}")
    except OSError as err:  # a run folder this user may not write
        usage_error(f"--output {args.output!r}: cannot write in {run.run_dir} ({err.strerror})")
    started = False
    try:
        check_fresh(run)  # again: a run of this name may have ended meanwhile
        started = True
        _run(args, run, argv)
    except BaseException:
        kept = (run.run_dir / saved.DESCRIPTION_FILE).exists() or any(
            (run.run_dir / "checkpoints").glob("*")
        )
        if started and created and not kept:
            shutil.rmtree(run.run_dir, ignore_errors=True)
        raise
    finally:
        lock.release()
    return 0


def trained_model(run: RunSpec, env):
    """The agent a previous try of ``run`` trained and saved whole, or None."""
    if not (run.run_dir / saved.DESCRIPTION_FILE).exists():
        return None
    try:
        return backend_module(run.backend).load_model(run.run_dir, env)
    except Exception as err:  # noqa: BLE001  (unreadable: train again from the checkpoints)
        print(f"cannot read the saved agent in {run.run_dir} ({err}): training again")
        return None


def _run(args: argparse.Namespace, run: RunSpec, argv: list[str] | None) -> None:
    """The work of :func:`main` in the locked run folder."""
    probe = gym.make(run.env_id, config=dict(run.env_config)).unwrapped  # validated config
    if run.resume:
        check_resumable(run, probe)
        if (run.run_dir / REPORT_FILE).is_file():
            print(
                f"{run.run_dir} holds a finished run ({REPORT_FILE}): nothing to do "
                "(to train further, start a run of another --name)"
            )
            return
        for leftover in remove_temporaries(run.run_dir) + remove_temporaries(
            run.run_dir / "checkpoints"
        ):
            print(f"removed {leftover}, left by a killed run")
    command = command_line(argv if argv is not None else sys.argv[1:])
    backend = backend_module(run.backend)
    start = time.perf_counter()
    model = trained_model(run, probe) if run.resume else None
    if model is not None:
        print(f"resuming with the trained agent in {run.run_dir} ({model.num_timesteps} steps)")
        train_s = 0.0
    else:
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
        model = backend.train(run)
        train_s = time.perf_counter() - start
        backend.save(model, run)
        print(f"trained {model.num_timesteps} steps in {train_s:.0f} s")
    print("evaluating ...")
    eval_env = gym.make(run.env_id, config=run.env_kwargs(run.eval_traces)).unwrapped
    fit_env = gym.make(run.env_id, config=run.env_kwargs(run.train_traces)).unwrapped
    agent = backend.as_policy(model, eval_env, run.algo)
    summaries, episodes, timeline = evaluate_against_baselines(
        agent, eval_env, fit_env, run.eval_episodes
    )
    print(format_scores(summaries, agent.name))
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


if __name__ == "__main__":
    raise SystemExit(main())
