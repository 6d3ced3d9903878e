"""Faults (issue 11): a run killed (SIGKILL) at any point resumes and finishes with every file
whole or absent; a finished run is left as it is; a crafted pickle in a downloaded agent does
not run with the default commands; agent files reject what was changed or cut short."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from splitexit.agents import evaluate, saved
from splitexit.agents.run import HYPERPARAMS_DIR, load_policy
from splitexit.envs import SplitExitEnv
from splitexit.files import LOCK_FILE, TMP_SUFFIX

PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
# A tiny run with several checkpoints: long enough in training to be killed there.
RUN_ARGS = ("--total-timesteps", "2048", "--eval-freq", "256", "--name", "run")
# Kill points: a delay after the first moment a file exists (the phase the run is then in), or
# after the start (""; process start and imports included). A tiny run takes about 8 s here,
# its imports over 1 s. More timed points after the start: SPLITEXIT_KILL_TIMES="1 1.5 ...".
EVENTS = {
    "starting": ("", 1.0),
    "training": ("checkpoints/agent_512_steps", 0.0),
    "between checkpoints": ("checkpoints/agent_256_steps", 0.3),
    "saving the agent": ("model.zip", 0.0),
    "evaluation": ("agent.json", 0.0),
    "writing the results": ("summary.json", 0.0),
    "writing the report": ("pareto.png", 0.0),
}
TIMES_S = [float(t) for t in os.environ.get("SPLITEXIT_KILL_TIMES", "").split()]


def check_whole(run: Path) -> list[str]:
    """Every file of ``run`` (TensorBoard's append-only logs and the lock aside) is whole;
    returns the files' names. Hidden temporaries of killed writes are tolerated here (a resume
    removes them)."""
    names = []
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run).as_posix()
        hidden = any(part.startswith(".") for part in path.relative_to(run).parts)
        if not path.is_file() or rel.startswith("tb/") or hidden:
            continue
        names.append(rel)
        data = path.read_bytes()
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(io.StringIO(data.decode())))
            assert rows and all(None not in r.values() for r in rows), rel
        elif path.suffix == ".png":
            assert data.startswith(PNG_START) and data.endswith(PNG_END), rel
        elif path.suffix == ".md":
            assert data.endswith(b"\n") and b"## Run" in data, rel
        elif path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                assert z.testzip() is None, rel
        else:
            raise AssertionError(f"unexpected file {rel}")
    for folder in (run / "checkpoints").glob("agent_*_steps"):  # whole checkpoints only
        description, _ = saved.read_weights(folder)
        if description["files"].get("optimizer.safetensors"):
            saved.read_optimizer(folder, description)
    if (run / "agent.json").exists():
        saved.read_weights(run)
    return names


def kill_run(train_agent, output: Path, point: str) -> None:
    """Start a tiny run in ``output`` and SIGKILL it at ``point``."""
    proc = subprocess.Popen(
        [sys.executable, str(train_agent.path), *RUN_ARGS, "--output", str(output)]
        + list(train_agent.TINY),
        cwd=train_agent.path.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = output / "run"
    event, delay_s = EVENTS.get(point, ("", float(point) if point not in EVENTS else 0.0))
    start = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - start < 120:
            if not event or (run / event).exists():
                break
            time.sleep(0.01)
        seen = time.monotonic()
        while proc.poll() is None and time.monotonic() - seen < delay_s:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before the kill point {point!r}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.e2e
@pytest.mark.parametrize("point", [*EVENTS, *(str(t) for t in TIMES_S)])
def test_a_run_killed_at_any_point_resumes_and_finishes(train_agent, tmp_path, point):
    kill_run(train_agent, tmp_path, point)
    run = tmp_path / "run"
    check_whole(run)  # at the kill: every file whole or absent
    result = train_agent.subprocess(
        *RUN_ARGS, "--output", str(tmp_path), *train_agent.TINY, "--resume"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = check_whole(run)
    train_agent.check_report(run, "agent.json", "ppo")
    assert {"agent.json", "agent.safetensors", "model.zip"} <= set(names)
    assert json.loads((run / "agent.json").read_text())["num_timesteps"] >= 2048
    leftovers = [p.name for p in run.rglob(".*") if p.name != LOCK_FILE]
    assert not leftovers and not (run / LOCK_FILE).exists()


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_resume_of_a_finished_run_changes_nothing(train_agent, tmp_path, capsys):
    args = ["--total-timesteps", "64", "--eval-freq", "0", "--output", str(tmp_path)]
    args += ["--name", "run", *train_agent.TINY]
    assert train_agent.main(*args) == 0
    run = tmp_path / "run"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert train_agent.main(*args, "--resume", "--total-timesteps", "128") == 0
    assert "holds a finished run (report.md): nothing to do" in capsys.readouterr().out
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_resume_after_training_evaluates_the_saved_agent(train_agent, tmp_path, capsys):
    """Killed in the evaluation: the resumed run does not train again."""
    args = ["--total-timesteps", "64", "--eval-freq", "0", "--output", str(tmp_path)]
    args += ["--name", "run", *train_agent.TINY]
    assert train_agent.main(*args) == 0
    run = tmp_path / "run"
    summary = (run / "summary.json").read_text()
    weights = (run / "agent.safetensors").read_bytes()
    for name in ("summary.json", "report.md", "pareto.png"):
        (run / name).unlink()
    (run / ".episodes.csv.x1y2z3.tmp").write_text("half")  # a write cut short
    capsys.readouterr()
    assert train_agent.main(*args, "--resume") == 0
    out = capsys.readouterr().out
    assert "resuming with the trained agent" in out and "\ntrained " not in out
    assert "removed" in out and ".episodes.csv.x1y2z3.tmp" in out
    assert (run / "summary.json").read_text() == summary  # the same agent, the same numbers
    assert (run / "agent.safetensors").read_bytes() == weights
    train_agent.check_report(run, "agent.json", "ppo")
    assert not list(run.glob(f".*{TMP_SUFFIX}"))


# A crafted pickle in a downloaded agent.


class Payload:
    """Unpickling this runs a shell command, as a malicious model.zip would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_zip(path: Path, marker: Path) -> Path:
    """An SB3 ``model.zip`` whose observation space is a pickled shell command."""
    from stable_baselines3 import PPO

    PPO("MlpPolicy", SplitExitEnv(horizon=20), n_steps=64, batch_size=64, device="cpu").save(path)
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    data = json.loads(entries["data"])
    payload = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    data["observation_space"] = {":type:": "<class 'object'>", ":serialized:": payload}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return path


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
def test_a_crafted_pickle_does_not_run(train_agent, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = evil_zip(tmp_path / "model.zip", marker)
    env = SplitExitEnv(horizon=20)
    # The evaluation CLI and the Python loader refuse the zip; a folder holding only it has
    # no agent.
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--model", str(evil), "--episodes", "1"])
    assert exit_.value.code == 2 and "--trust-pickle" in capsys.readouterr().err
    with pytest.raises(saved.PickleRefused):
        load_policy(evil, env)
    with pytest.raises(FileNotFoundError, match="no saved agent"):
        load_policy(tmp_path, env)
    # --resume of a downloaded run folder holding the zip and a zip checkpoint (SB3's format,
    # which this version no longer reads) trains afresh without unpickling either.
    run = tmp_path / "runs" / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model.zip").write_bytes(evil.read_bytes())
    (run / "checkpoints" / "model_512_steps.zip").write_bytes(evil.read_bytes())
    (run / "config.json").write_text("{}")
    args = ["--total-timesteps", "64", "--eval-freq", "0", "--output", str(tmp_path / "runs")]
    assert train_agent.main(*args, "--name", "run", *train_agent.TINY, "--resume") == 0
    assert "starting afresh" in capsys.readouterr().out
    assert not marker.exists()
    # The payload is live: trusting the file runs it (the test can fail).
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(evil), "--trust-pickle", "--episodes", "1"])
    assert marker.exists()


# Agent files and signatures.


def test_agent_files_reject_changes_and_other_spaces(tmp_path):
    from stable_baselines3 import DQN

    from splitexit.agents import sb3
    from splitexit.agents.run import RunSpec

    env = SplitExitEnv(horizon=20)
    model = DQN("MlpPolicy", env, buffer_size=100, device="cpu", policy_kwargs={"net_arch": [8]})
    run = RunSpec("sb3", "dqn", "splitexit:SplitExit-v0", {"horizon": 20}, 0, 1, 64, {}, tmp_path)
    sb3.save(model, run)
    obs = np.stack([env.reset(seed=s)[0] for s in range(5)])
    policy = load_policy(tmp_path, env)
    assert (policy.predict(obs)[0] == model.predict(obs, deterministic=True)[0]).all()
    description = json.loads((tmp_path / "agent.json").read_text())
    assert description["algo"] == "dqn" and description["env_config"] == {"horizon": 20}
    with pytest.raises(ValueError, match="trained on the observation space"):
        load_policy(tmp_path, SplitExitEnv(horizon=20, throughput_history=3))
    weights = (tmp_path / "agent.safetensors").read_bytes()
    (tmp_path / "agent.safetensors").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(ValueError, match="sha256 differs"):
        load_policy(tmp_path, env)
    (tmp_path / "agent.safetensors").write_bytes(weights)
    # A changed description is detected (issue 19, item 5: the steps the report gives) ...
    text = (tmp_path / "agent.json").read_text()
    (tmp_path / "agent.json").write_text(text.replace('"num_timesteps": 0', '"num_timesteps": 9'))
    with pytest.raises(ValueError, match="description_sha256 does not match its content"):
        load_policy(tmp_path, env)
    # ... and one changed with its digest made anew names classes of torch and SB3 only.
    assert '"__class__": "torch.nn.modules.activation.ReLU"' in text
    forged = json.loads(text.replace("torch.nn.modules.activation", "os"))
    forged[saved.DIGEST_KEY] = saved.description_digest(forged)
    (tmp_path / "agent.json").write_text(json.dumps(forged))
    with pytest.raises(ValueError, match="is not from torch.nn"):
        load_policy(tmp_path, env)


def test_a_network_larger_than_its_weights_is_refused_before_it_is_built(tmp_path, monkeypatch):
    """Issue 19, item 13: a few bytes of agent.json could ask for a network of gigabytes."""
    import torch
    from stable_baselines3 import DQN

    from splitexit.agents import sb3
    from splitexit.agents.run import RunSpec

    env = SplitExitEnv(horizon=20)
    model = DQN("MlpPolicy", env, buffer_size=100, device="cpu", policy_kwargs={"net_arch": [8]})
    sb3.save(model, RunSpec("sb3", "dqn", "splitexit:SplitExit-v0", {}, 0, 1, 64, {}, tmp_path))
    forged = json.loads((tmp_path / "agent.json").read_text())
    forged["policy_constructor"]["net_arch"] = [8000, 8000]
    forged[saved.DIGEST_KEY] = saved.description_digest(forged)
    (tmp_path / "agent.json").write_text(json.dumps(forged))

    def refuse(*args, **kwargs):
        raise AssertionError("a layer was built")

    monkeypatch.setattr(torch.nn.Linear, "__init__", refuse)
    with pytest.raises(
        ValueError,
        match=r"agent.json: its net_arch \[8000, 8000\] with Discrete\(48\) needs at least",
    ):
        load_policy(tmp_path, env)
    # nor can its constructor ask for another action space (one of 10**10 outputs)
    forged["policy_constructor"]["net_arch"] = [8]
    forged["policy_constructor"]["action_space"] = {"__space__": {"type": "Discrete", "n": 10**10}}
    forged[saved.DIGEST_KEY] = saved.description_digest(forged)
    (tmp_path / "agent.json").write_text(json.dumps(forged))
    with pytest.raises(ValueError, match="policy_constructor's action_space is not the agent's"):
        load_policy(tmp_path, env)


def test_signatures_tell_this_machines_folders(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "state.pkl").write_bytes(b"data")
    assert not saved.signed_here(folder)
    saved.sign_folder(folder)
    assert saved.signed_here(folder)
    (folder / "extra.pkl").write_bytes(b"")  # a file added
    assert not saved.signed_here(folder)
    (folder / "extra.pkl").unlink()
    assert saved.signed_here(folder)
    monkeypatch.setenv(saved.KEY_ENV, str(tmp_path / "other-key"))  # another machine
    assert not saved.signed_here(folder)


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # 2 tiny envs
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--algo", "dqn"), "another algo ('ppo', here 'dqn')"),
        (("--env-kwargs", "horizon:50", "throughput_history:3"), "another env config"),
        (("--train-traces", "mahimahi-up"), "another train traces ('mahimahi-up-train'"),
        (("--conf-file", "{wider}"), "another hyperparameters"),  # net_arch [64, 64] -> [96]
    ],
)
def test_resume_with_other_flags_stops_instead_of_training_over_the_run(
    train_agent, tmp_path, capsys, flags, message
):
    wider = tmp_path / "wider.yml"
    wider.write_text(
        (HYPERPARAMS_DIR / "ppo.yml").read_text().replace("net_arch: [64, 64]", "net_arch: [96]")
    )
    flags = tuple(str(wider) if f == "{wider}" else f for f in flags)
    args = ["--total-timesteps", "512", "--eval-freq", "256", "--output", str(tmp_path)]
    args += ["--name", "run", *train_agent.TINY]
    assert train_agent.main(*args) == 0
    run = tmp_path / "run"
    for name in ("summary.json", "report.md"):  # as if killed in the evaluation
        (run / name).unlink()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        train_agent.main(*args, *flags, "--resume")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--resume: " in err and message in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_of_a_run_of_an_older_agent_format_stops(train_agent, tmp_path, capsys):
    """Its agent files are unreadable here: resuming would train afresh over them."""
    run = tmp_path / "run"
    (run / "checkpoints" / "agent_256_steps").mkdir(parents=True)
    old = json.dumps({"format": "splitexit-agent-v1", "backend": "sb3", "algo": "ppo"})
    for folder in (run, run / "checkpoints" / "agent_256_steps"):
        (folder / "agent.json").write_text(old)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = [*train_agent.TINY, "--output", str(tmp_path), "--name", "run", "--resume"]
    with pytest.raises(SystemExit) as exit_:
        train_agent.main(*args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "an agent of format 'splitexit-agent-v1'" in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_run_folder_named_like_a_zip_loads_as_agent_files(tmp_path):
    from stable_baselines3 import DQN

    from splitexit.agents import sb3
    from splitexit.agents.run import RunSpec

    folder = tmp_path / "run.zip"
    env = SplitExitEnv(horizon=20)
    model = DQN("MlpPolicy", env, buffer_size=100, device="cpu", policy_kwargs={"net_arch": [8]})
    sb3.save(model, RunSpec("sb3", "dqn", "splitexit:SplitExit-v0", {}, 0, 1, 64, {}, folder))
    obs = np.stack([env.reset(seed=s)[0] for s in range(3)])
    policy = load_policy(folder, env)  # not refused as a pickle
    assert (policy.predict(obs)[0] == model.predict(obs, deterministic=True)[0]).all()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "deep", "deep-but-loads", "long-number"])
def test_hostile_agent_descriptions_are_refused_naming_the_file(tmp_path, kind):
    """An agent.json that is /dev/zero, a FIFO, 100k levels deep or a 5,000-digit number: a
    one-line ValueError naming it, not a read without end, a block or a RecursionError."""
    import os

    from splitexit.agents.saved import read_description

    path = tmp_path / "agent.json"
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "deep-but-loads":  # json reads it; walking it (from_json) would not end well
        deep = {"format": saved.FORMAT, "x": json.loads("[" * 600 + "]" * 600)}
        deep[saved.DIGEST_KEY] = saved.description_digest(deep)
        path.write_text(json.dumps(deep))
    else:
        path.write_text('{"format": ' + "9" * 5000 + "}")
    message = "nested deeper than 32 levels" if kind == "deep-but-loads" else ""
    with pytest.raises(ValueError, match=f"agent.json: .*{message}"):
        read_description(tmp_path)
