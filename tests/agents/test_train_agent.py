"""train_agent.py (in process; one end-to-end run per SB3 algorithm) and the evaluation module."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splitexit.agents import evaluate
from splitexit.agents.baselines import make_policy
from splitexit.agents.evaluate import FIT_EPISODES, TRAIN_SEED_BASE, run_episodes, summarise
from splitexit.agents.run import BACKENDS, backend_module
from splitexit.envs import SplitExitEnv
from splitexit.files import LOCK_FILE, FolderLock, RunLocked


def num_timesteps(run: Path) -> int:
    return json.loads((run / "agent.json").read_text())["num_timesteps"]


def checkpoint_steps(folder: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in folder.glob("agent_*_steps"))


@pytest.mark.e2e
@pytest.mark.parametrize("algo", ["dqn", "maskable_ppo"])
def test_smoke_run_writes_the_whole_report(train_agent, tmp_path, algo):
    result = train_agent.subprocess(
        *("--algo", algo, "--total-timesteps", "512", "--eval-freq", "256"),
        *("--output", str(tmp_path), "--name", "run", *train_agent.TINY),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    train_agent.check_report(run, "agent.json", algo)
    assert checkpoint_steps(run / "checkpoints")
    assert list((run / "tb").iterdir())


@pytest.mark.e2e
def test_the_default_run_is_ppo_on_splitexit_v1_with_its_settings(train_agent, tmp_path):
    result = train_agent.subprocess(
        *("--total-timesteps", "1024", "--n-envs", "2", "--eval-episodes", "2", "--no-progress"),
        *("--output", str(tmp_path), "--name", "run", "--env-kwargs", "horizon:50"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["args"]["env"] == "splitexit:SplitExit-v1"
    agent = json.loads((run / "agent.json").read_text())
    assert agent["env_id"] == "splitexit:SplitExit-v1" and agent["hyperparameters"]["gamma"] == 1
    assert agent["return_rms"]["count"] > 1024
    train_agent.check_report(run, "agent.json", "ppo")


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
    assert not (run / "agent.json").exists()
    assert (run / LOCK_FILE).read_text().split()[0] == str(proc.pid)  # left by the killed run
    result = train_agent.subprocess(*args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stdout
    # PPO stops at the first whole rollout (128 steps x 2 envs) past the total
    assert total <= num_timesteps(run) < total + 256
    train_agent.check_report(run, "agent.json", "ppo")
    assert list((run / "tb").iterdir())
    assert not (run / LOCK_FILE).exists()  # taken over, then released


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
@pytest.mark.parametrize(
    "cut",
    ["agent.json", "agent.safetensors", "optimizer.safetensors", "changed agent.json", "deep"],
)
def test_resume_skips_a_checkpoint_cut_short(train_agent, tmp_path, capsys, evaluate_json, cut):
    args = ["--eval-freq", "256", "--output", str(tmp_path), "--name", "run", *train_agent.TINY]
    assert train_agent.main("--total-timesteps", "768", *args) == 0
    run = tmp_path / "run"
    for name in ("agent.json", "agent.safetensors", "report.md"):  # as if killed in training
        (run / name).unlink()
    *_, previous, last = checkpoint_steps(run / "checkpoints")
    newest = run / "checkpoints" / f"agent_{last}_steps"
    if cut == "changed agent.json":  # issue 19, item 5: what it says of itself is checked
        text = (newest / "agent.json").read_text()
        (newest / "agent.json").write_text(
            text.replace(f'"num_timesteps": {last}', '"num_timesteps": 1000000')
        )
    elif cut == "deep":  # issue 19, item 20: no RecursionError
        (newest / "agent.json").write_text("[" * 100_000 + "]" * 100_000)
    else:
        data = (newest / cut).read_bytes()
        (newest / cut).write_bytes(data[: len(data) // 2])  # a checkpoint cut short
    capsys.readouterr()
    assert train_agent.main("--total-timesteps", "1024", *args, "--resume") == 0
    out = capsys.readouterr().out
    assert f"skipping the unreadable checkpoint {newest}" in out
    assert f"resuming from {run / 'checkpoints' / f'agent_{previous}_steps'} " in out
    assert num_timesteps(run) >= 1024
    summary = train_agent.check_report(run, "agent.json", "ppo")
    # The evaluation CLI gives the same rows: the saved agent, and a baseline tuned alike.
    common = ("--env", "splitexit:SplitExit-v0", "--episodes", "2", "--env-kwargs", "horizon:50")
    assert evaluate_json("--model", str(run), *common).items() <= summary[0].items()
    # Without --env, the agent is evaluated in the env it was trained in (SplitExit-v0 with
    # horizon 50 here, not the default SplitExit-v1).
    assert evaluate_json("--model", str(run), "--episodes", "2").items() <= summary[0].items()
    row = next(s for s in summary if s["name"] == "best-static")
    assert evaluate_json("--baseline", "best-static", *common).items() <= row.items()


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_a_checkpoint_holds_every_update_of_its_steps(train_agent, tmp_path):
    """Issue 19, item 3: checkpoints are written after the update of their last rollout, so a
    run resumed from its last checkpoint ends with as many updates as an uninterrupted one."""
    args = ["--eval-freq", "256", "--output", str(tmp_path), "--name", "run", *train_agent.TINY]
    assert train_agent.main("--total-timesteps", "768", *args) == 0
    run = tmp_path / "run"
    n_epochs = 5  # of the shipped ppo.yml; a rollout is 128 steps x 2 envs
    clean = json.loads((run / "agent.json").read_text())
    assert clean["n_updates"] == 3 * n_epochs
    assert checkpoint_steps(run / "checkpoints") == [256, 512]
    last = json.loads((run / "checkpoints" / "agent_512_steps" / "agent.json").read_text())
    assert last["n_updates"] == 2 * n_epochs
    for name in ("agent.json", "agent.safetensors", "report.md"):  # killed after it
        (run / name).unlink()
    assert train_agent.main("--total-timesteps", "768", *args, "--resume") == 0
    resumed = json.loads((run / "agent.json").read_text())
    assert (resumed["num_timesteps"], resumed["n_updates"]) == (768, clean["n_updates"])


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_a_resumed_run_keeps_the_statistics_of_its_normalised_rewards(train_agent, tmp_path):
    """The RL Zoo's ``normalize`` (reward only): the running statistics of the returns are
    saved with each checkpoint and restored on resume, so that the rewards' scale goes on."""
    conf = tmp_path / "conf.yml"
    conf.write_text(
        "default: {policy: MlpPolicy, n_steps: 128, batch_size: 64, n_epochs: 2,"
        " normalize: \"{'norm_obs': False, 'norm_reward': True}\"}\n"
    )
    args = ["--eval-freq", "256", "--output", str(tmp_path), "--name", "run", *train_agent.TINY]
    args = ["--conf-file", str(conf), *args]
    assert train_agent.main("--total-timesteps", "768", *args) == 0
    run = tmp_path / "run"
    clean = json.loads((run / "agent.json").read_text())["return_rms"]
    last = json.loads((run / "checkpoints" / "agent_512_steps" / "agent.json").read_text())
    assert last["return_rms"]["count"] == pytest.approx(512 + 1e-4)  # one per env step
    assert clean["count"] == pytest.approx(768 + 1e-4) and clean["var"] > 0
    for name in ("agent.json", "agent.safetensors", "report.md"):  # killed after it
        (run / name).unlink()
    assert train_agent.main("--total-timesteps", "768", *args, "--resume") == 0
    resumed = json.loads((run / "agent.json").read_text())["return_rms"]
    assert resumed["count"] == pytest.approx(clean["count"])  # not restarted from zero


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
    # The per-episode rewards in seed order, to pair it with any other policy (issue 20).
    assert summary["seeds"] == [0, 1] and len(summary["episode_rewards"]) == 2
    assert sum(summary["episode_rewards"]) / 2 == pytest.approx(summary["mean_reward"])


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
    assert "n_envs" not in sb3.hyperparams and sb3.hyperparams["n_steps"] == 256  # v1's
    assert sb3.run_dir == Path("runs/ppo-SplitExit-v1-seed0")
    pytest.importorskip("ray", reason="the rllib extra is not installed")
    rllib = train_agent.parse_run("--backend", "rllib")  # 16 in all: 8 on each of 2 runners
    assert (rllib.n_envs, rllib.num_env_runners) == (16, 2)
    assert rllib.run_dir == Path("runs/rllib-ppo-SplitExit-v1-seed0")
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
    if "rllib-ppo.yml" in message or "must be a multiple" in message:  # read RLlib's config
        pytest.importorskip("ray", reason="the rllib extra is not installed")
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
        for function in ("train", "save", "load_model", "as_policy", "load_policy"):
            assert callable(getattr(backend, function)), (name, function)


# Errors before work (issue 11, part 5): every flag and env-kwarg is checked before training
# and before the run folder is made; exit code 2 and one line naming the flag, no traceback.


def one_line_usage_error(capsys, call) -> str:
    """The one-line error of ``call()``, which exits with code 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        call()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.count("\n") == 1 and "error: " in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "default:\n  n_steps: [1,\n",
            "not valid YAML, line 3, column 1: expected the node content",
        ),
        ("default: {n_envs: abc}\n", "n_envs of {conf} must be a whole number, got 'abc'"),
        ("default: {n_timesteps: lots}\n", "n_timesteps of {conf} must be a whole number"),
        ("default: {n_timesteps: .inf}\n", "n_timesteps of {conf} must be a whole number"),
        ("default: {n_envs: 2.5}\n", "n_envs of {conf} must be a whole number, got 2.5"),
        (None, "{conf}: hyperparameter file is a folder, not a regular file"),
        # issue 19, item 30: the values too, as the algorithm checks them, before any work
        (
            "default: {policy: MlpPolicy, n_steps: 0}\n",
            "refused by PPO (AssertionError: `n_steps * n_envs`",
        ),
        (
            "default: {policy: MlpPolicy, learning_rate: fast}\n",
            "learning rate schedule must be a float",
        ),
        (
            "default: {policy: MlpPolicy, learning_rate: 3e-4}\n",
            "learning_rate='3e-4' (YAML reads 3e-4 as a string: write 3.0e-4)",
        ),
        (
            "default: {policy: MlpPolicy, n_steps: 1e3}\n",
            "(YAML reads 1e3 as a string: write 1000)",
        ),
        ("default: {policy: MlpPolicy, seed: 3}\n", "'seed' of {conf} is set by the run (--seed)"),
        (
            "default: {policy: MlpPolicy, tensorboard_log: x}\n",
            "'tensorboard_log' of {conf} is set",
        ),
        ("default: {policy: NoSuchPolicy}\n", "(ValueError: Policy NoSuchPolicy unknown)"),
        ("default: {n_epochs: 2.5}\n", "'n_epochs' of {conf} must be an integer for PPO"),
        ("default: {gamma: .nan}\n", "'gamma' of {conf} must be a number (not NaN) for PPO"),
        (
            "default: {policy: MlpPolicy, normalize: {norm_obs: true}}\n",
            "'normalize' of {conf}: norm_obs must be false",
        ),
        (
            "default: {policy: MlpPolicy, normalize: {norm_reward: 1}}\n",
            "normalize['norm_reward'] of {conf} must be true or false, got 1",
        ),
        (
            "default: {policy: MlpPolicy, normalize: {scale: 2}}\n",
            "'normalize' of {conf} must be a mapping with keys of",
        ),
    ],
)
def test_bad_hyperparameter_files_stop_before_any_work(
    train_agent, tmp_path, capsys, text, message
):
    conf = tmp_path / "conf.yml"
    conf.mkdir() if text is None else conf.write_text(text)
    argv = ["--total-timesteps", "64", "--output", str(tmp_path / "out"), "--conf-file", str(conf)]
    err = one_line_usage_error(capsys, lambda: train_agent.main(*argv))
    assert "--conf-file: " in err and message.format(conf=conf) in err, err
    assert not (tmp_path / "out").exists()


def test_an_optional_hyperparameter_of_a_wrong_type_stops_before_any_work(
    train_agent, tmp_path, capsys
):
    conf = tmp_path / "conf.yml"  # MaskablePPO's batch_size is an int or None
    conf.write_text("default: {policy: MlpPolicy, batch_size: 2.5}\n")
    argv = ["--algo", "maskable_ppo", "--conf-file", str(conf), "--output", str(tmp_path / "o")]
    err = one_line_usage_error(capsys, lambda: train_agent.main(*argv))
    assert "'batch_size' of" in err and "must be an integer for MaskablePPO, got 2.5" in err
    conf.write_text("default: {policy: MlpPolicy, batch_size: null}\n")
    assert train_agent.parse_run("--algo", "maskable_ppo", "--conf-file", str(conf))
    assert not (tmp_path / "o").exists()


def test_rllib_without_ray_is_a_usage_error(train_agent, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a)
    )
    err = one_line_usage_error(capsys, lambda: train_agent.parse_run("--backend", "rllib"))
    assert "--backend rllib needs Ray" in err and "pip install" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--n-envs", "0"), "--n-envs must be >= 1, got 0"),
        (("--total-timesteps", "0"), "--total-timesteps must be >= 1, got 0"),
        (("--total-timesteps", "-5"), "--total-timesteps must be >= 1, got -5"),
        (("--eval-episodes", "0"), "--eval-episodes must be >= 1, got 0"),
        (("--eval-freq", "-1"), "--eval-freq must be >= 0"),
        (("--seed", "-1"), "--seed must be >= 0"),
        (("--seed", "4294967296"), "--seed must be < 2**32"),
        (("--env-kwargs", "traces:'mahimahi-up'"), "--train-traces for training, --eval-traces"),
        (("--env-kwargs", "horizon"), "--env-kwargs item 'horizon' must look like key:value"),
        (("--env-kwargs", "horizon:0"), "--env-kwargs: "),
        (("--eval-traces", "no-such-traces"), "--eval-traces: "),
        (("--train-traces", "no-such-traces"), "--train-traces: "),
        (("--env", "NoSuchEnv-v0"), "--env 'NoSuchEnv-v0'"),
        (("--conf-file", "no-such.yml"), "--conf-file: no-such.yml: hyperparameter file not found"),
        (("--name", "../../x"), "--name must be a plain folder name"),
        (("--name", "a/b"), "--name must be a plain folder name"),
        (("--name", ".."), "--name must be a plain folder name"),
        (("--name", ""), "--name must be a plain folder name"),
        # issue 19, item 16
        (("--name", "a" * 300), "--name is 300 bytes long, at most 255"),
        (("--output", "b" * 5000), "--output has a folder name of 5000 bytes, at most 255"),
        (("--output", "b/" * 2500), "more than a path may have (4096)"),
        # issue 19, item 15
        (("--vec-env", "native", "--env", "SplitExitLive-v0"), "--vec-env native: Cannot"),
        (("--vec-env", "native", "--env", "SplitExitFading-v0"), "--vec-env native: Cannot"),
        (
            ("--vec-env", "native", "--env-kwargs", "channel:'fading'"),
            "--vec-env native: config key 'channel' must be 'trace' or 'markov'",
        ),
        (
            ("--algo", "dqn", "--env-kwargs", "action_type:'multidiscrete'"),
            "--algo dqn: DQN cannot act in this env's action space MultiDiscrete",
        ),
    ],
)
def test_bad_flags_stop_before_any_work(train_agent, tmp_path, capsys, args, message):
    # TINY first: the flag under test (and --env-kwargs of it) comes last and wins.
    tiny = (*train_agent.TINY, "--total-timesteps", "64", "--eval-freq", "0")
    argv = [*tiny, "--output", str(tmp_path / "out"), *args]
    assert message in one_line_usage_error(capsys, lambda: train_agent.main(*argv))
    assert not (tmp_path / "out").exists()  # no run folder, nor --output


@pytest.mark.parametrize("link", ["run", "checkpoints"])
def test_symlinked_run_folders_are_refused(train_agent, tmp_path, capsys, link):
    """Issue 19, item 1: neither the run folder nor anything in it may be a link."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / ".precious.tmp").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    if link == "run":
        (out / "run").symlink_to(target)
    else:
        (out / "run").mkdir()
        (out / "run" / "checkpoints").symlink_to(target)
    argv = [*train_agent.TINY, "--output", str(out), "--name", "run", "--resume"]
    err = one_line_usage_error(capsys, lambda: train_agent.main(*argv))
    assert "is a symbolic link" in err and "--name 'run'" in err
    assert [p.name for p in target.iterdir()] == [".precious.tmp"]


@pytest.mark.parametrize("where", ["under a file", "read-only"])
def test_an_output_that_cannot_be_made_is_a_usage_error(
    train_agent, tmp_path, capsys, monkeypatch, where
):
    """Issue 19, item 16."""
    import errno

    (tmp_path / "file").write_text("")
    output = tmp_path / "file" / "runs"
    if where == "read-only":
        output = tmp_path / "runs"

        def read_only(self, *args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

        monkeypatch.setattr(Path, "mkdir", read_only)
    argv = [*train_agent.TINY, "--output", str(output)]
    err = one_line_usage_error(capsys, lambda: train_agent.main(*argv))
    reason = "Not a directory" if where == "under a file" else "Read-only file system"
    assert f"--output '{output}': cannot make the run folder ({reason})" in err


def test_unknown_sb3_hyperparameter_is_a_usage_error(train_agent, tmp_path, capsys):
    conf = tmp_path / "bad.yml"
    conf.write_text("default:\n  policy: MlpPolicy\n  n_stepz: 64\n")
    err = one_line_usage_error(capsys, lambda: train_agent.parse_run("--conf-file", str(conf)))
    assert "hyperparameter 'n_stepz'" in err and "PPO" in err


def test_yaml_defaults_still_apply(train_agent):
    """0 and missing are told apart: the flags left out take the YAML's values."""
    run = train_agent.parse_run("--algo", "dqn")
    assert run.n_envs >= 1 and run.total_timesteps >= 1 and run.eval_episodes == 30


def test_a_failed_run_leaves_no_folder(train_agent, tmp_path, monkeypatch):
    sb3 = backend_module("sb3")

    def broken_train(run):
        raise RuntimeError("training broke")

    monkeypatch.setattr(sb3, "train", broken_train)
    with pytest.raises(RuntimeError, match="training broke"):
        train_agent.main("--output", str(tmp_path), "--name", "run", *train_agent.TINY)
    assert not (tmp_path / "run").exists()


# One run per folder (issue 11, part 4).


def test_a_second_run_of_the_same_name_stops_at_once(train_agent, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    args = ["--total-timesteps", "64", "--eval-freq", "0", "--output", str(tmp_path)]
    args += ["--name", "run", *train_agent.TINY]
    with FolderLock(run):  # a run of this name is writing its folder (this live process)
        err = one_line_usage_error(capsys, lambda: train_agent.main(*args))
        assert "in use by another run" in err and f"process {os.getpid()}" in err
        assert os.listdir(run) == [LOCK_FILE]  # nothing written by the second run
        one_line_usage_error(capsys, lambda: train_agent.main(*args, "--resume"))
    assert os.listdir(run) == []  # released


def test_a_fresh_run_does_not_mix_with_a_previous_one(train_agent, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # a previous run's
    args = ["--total-timesteps", "64", "--output", str(tmp_path), "--name", "run"]
    err = one_line_usage_error(capsys, lambda: train_agent.main(*args, *train_agent.TINY))
    assert "holds a previous run (config.json)" in err and "--resume" in err
    assert os.listdir(run) == ["config.json"] and (run / "config.json").read_text() == "{}"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_a_run_takes_over_the_lock_of_a_killed_run(train_agent, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(f"{dead_pid()}\n")  # left by a run killed with SIGKILL
    args = ["--total-timesteps", "64", "--eval-freq", "0", "--output", str(tmp_path)]
    assert train_agent.main(*args, "--name", "run", *train_agent.TINY) == 0
    train_agent.check_report(run, "agent.json", "ppo")
    assert not (run / LOCK_FILE).exists()  # released at the end


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_lock_that_is_no_file_is_a_usage_error(train_agent, tmp_path, capsys, kind):
    """A run folder whose .lock is a folder or a FIFO: a one-line error naming it, not an
    IsADirectoryError or a read that blocks."""
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).mkdir() if kind == "folder" else os.mkfifo(run / LOCK_FILE)
    args = ["--output", str(tmp_path), "--name", "run", *train_agent.TINY, "--resume"]
    err = one_line_usage_error(capsys, lambda: train_agent.main(*args))
    assert f"{run / LOCK_FILE}: run lock is" in err and "remove it" in err
    assert os.listdir(run) == [LOCK_FILE]


def test_folder_lock(tmp_path):
    lock = FolderLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    with pytest.raises(RunLocked, match="in use by another run"):
        FolderLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()
    with pytest.raises(KeyError), FolderLock(tmp_path):  # released on exceptions too
        raise KeyError("boom")
    assert not (tmp_path / LOCK_FILE).exists()
    for stale in (f"{dead_pid()}\n", "", "garbage\n", f"{os.getpid()} 1\n"):  # 1: a reused PID
        (tmp_path / LOCK_FILE).write_text(stale)
        with FolderLock(tmp_path) as lock:
            assert (tmp_path / LOCK_FILE).read_text() == lock.owner + "\n"
        assert sorted(os.listdir(tmp_path)) == []


# The evaluation CLI: the same one-line usage errors.


@pytest.fixture(scope="module")
def untrained_ppo(tmp_path_factory) -> Path:
    """The agent files and the SB3 zip of an untrained PPO, in one folder."""
    from stable_baselines3 import PPO

    from splitexit.agents import sb3
    from splitexit.agents.run import RunSpec

    folder = tmp_path_factory.mktemp("model")
    model = PPO("MlpPolicy", SplitExitEnv(horizon=20), n_steps=64, batch_size=64, device="cpu")
    run = RunSpec("sb3", "ppo", "splitexit:SplitExit-v0", {}, 0, 1, 64, {}, folder)
    sb3.save(model, run)
    return folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--baseline", "random", "--episodes", "0"), "--episodes must be >= 1, got 0"),
        (("--model", "no-such-model.zip"), "--model no-such-model.zip: no such file or folder"),
        (("--model", "{model}", "--algo", "a2c"), "argument --algo: invalid choice: 'a2c'"),
        (("--model", "{model}", "--algo", "dqn"), "an agent of --algo ppo, not dqn"),
        (("--model", "{model}/model.zip"), "an SB3 zip holds pickled objects"),
        (("--model", "{model}/model.zip", "--trust-pickle", "--algo", "dqn"), "cannot load it"),
        (("--model", "{model}/agent.json", "--env-kwargs", "throughput_history:3"), "(9,)"),
        (
            ("--model", "{model}", "--env-kwargs", "throughput_history:3"),
            "the agent was trained on the observation space Box(0.0, 1.0, (10,), float32), but",
        ),
        (("--baseline", "random", "--env-kwargs", "traces:'x'"), "--traces for the evaluation"),
        (("--baseline", "random", "--traces", "no-such-traces"), "--traces: "),
        (("--baseline", "random", "--env-kwargs", "horizon:0"), "--env-kwargs: "),
    ],
)
def test_evaluate_cli_errors_are_one_line(capsys, untrained_ppo, args, message):
    argv = ["--env", "splitexit:SplitExit-v0", *(a.format(model=untrained_ppo) for a in args)]
    assert message in one_line_usage_error(capsys, lambda: evaluate.main(argv))


def test_evaluating_a_diverged_agent_is_a_one_line_error(capsys, tmp_path):
    """Issue 19, item 23: NaN weights, as a diverged run leaves them."""
    import torch
    from stable_baselines3 import PPO

    from splitexit.agents import sb3
    from splitexit.agents.run import RunSpec

    model = PPO("MlpPolicy", SplitExitEnv(horizon=20), n_steps=64, batch_size=64, device="cpu")
    with torch.no_grad():
        model.policy.action_net.weight.fill_(float("nan"))
    sb3.save(model, RunSpec("sb3", "ppo", "splitexit:SplitExit-v0", {}, 0, 1, 64, {}, tmp_path))
    err = one_line_usage_error(capsys, lambda: evaluate.main(["--model", str(tmp_path)]))
    assert "tensor 'action_net.weight' holds NaN or infinite values" in err


def test_unknown_rllib_hyperparameter_is_a_usage_error(train_agent, tmp_path, capsys):
    pytest.importorskip("ray")
    conf = tmp_path / "bad.yml"
    conf.write_text("default:\n  n_envs: 2\n  n_steps: 128\n")  # an SB3 name, not RLlib's
    err = one_line_usage_error(
        capsys, lambda: train_agent.parse_run("--backend", "rllib", "--conf-file", str(conf))
    )
    assert "hyperparameter 'n_steps'" in err and "PPOConfig.training()" in err
    conf.write_text("default:\n  n_envs: 2\n  activation: sigmoid\n")
    err = one_line_usage_error(
        capsys, lambda: train_agent.parse_run("--backend", "rllib", "--conf-file", str(conf))
    )
    assert "activation 'sigmoid'" in err


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo"])
def test_the_shipped_v1_hyperparameters_are_valid_under_both_names(algo):
    import splitexit
    from splitexit.agents import sb3
    from splitexit.agents.run import load_hyperparams

    short, full = (load_hyperparams(algo, f"{p}SplitExit-v1") for p in ("", "splitexit:"))
    assert short == full and full != load_hyperparams(algo, "splitexit:SplitExit-v0")
    assert sb3.normalize_kwargs(full["normalize"], "ppo.yml") == {
        "norm_obs": False,
        "norm_reward": True,
    }
    hyper = {k: v for k, v in full.items() if k not in ("n_envs", "n_timesteps")}
    env = SplitExitEnv({**splitexit.V1, "horizon": 10})
    sb3.check_hyperparams(algo, hyper, env, full["n_envs"], "ppo.yml")


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_splitexit_train_is_the_run_and_records_its_command(train_agent, tmp_path, capsys):
    from splitexit import cli

    args = ["--total-timesteps", "256", "--output", str(tmp_path), "--name", "run"]
    assert cli.main(["train", *args, *train_agent.TINY]) == 0
    run = tmp_path / "run"
    train_agent.check_report(run, "agent.json", "ppo")
    command = json.loads((run / "config.json").read_text())["command"]
    assert command.startswith("splitexit train --total-timesteps 256 "), command
