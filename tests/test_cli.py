"""The ``splitexit`` command: subcommands, their one-line errors and exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import splitexit.benchmarks
from splitexit import cli


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_names_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in ("train", "evaluate", "profile", "show", "list", "bench"):
        assert f"  {name} " in out


def test_no_command_is_a_usage_error(capsys):
    assert run(capsys)[0] == 2


def test_an_unknown_command_is_one_line_naming_it(capsys):
    code, _, err = run(capsys, "trian")
    assert code == 2
    assert err.count("\n") == 1 and "'trian'" in err and "train" in err


def test_list_prints_the_zoo(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "cifar10-multiexit-resnet" in out


def test_bench_lists_every_benchmark_script(capsys):
    code, out, _ = run(capsys, "bench")
    assert code == 0
    scripts = Path(splitexit.benchmarks.__file__).parent.glob("bench_*.py")
    names = {p.stem.removeprefix("bench_") for p in scripts}
    assert len(names) >= 8
    listed = {line.split()[0] for line in out.splitlines()[2:]}
    assert listed == names


def test_bench_runs_one_with_its_flags(capsys):
    code, out, _ = run(capsys, "bench", "observability", "--help")
    assert code == 0 and "usage: splitexit bench observability" in out


def test_bench_runs_a_benchmark_and_records_its_command(capsys, tmp_path):
    result = tmp_path / "split.json"
    code, out, _ = run(capsys, "bench", "split_execution", "--quick", "--json", str(result))
    assert code == 0 and "split" in out
    recorded = json.loads(result.read_text())["command"]
    assert recorded == f"splitexit bench split_execution --quick --json {result}"


def test_an_unknown_benchmark_is_a_usage_error(capsys):
    code, _, err = run(capsys, "bench", "nope")
    assert code == 2 and "'nope'" in err and "env_step" in err


@pytest.mark.parametrize(
    ("args", "prog"),
    [
        (("train", "--algo", "x"), "splitexit train"),
        (("evaluate", "--episodes", "2"), "splitexit evaluate"),
    ],
)
def test_subcommand_errors_keep_their_one_line_form(capsys, args, prog):
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(args))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1


def test_sys_argv_is_restored(capsys):
    before = list(sys.argv)
    run(capsys, "list")
    assert sys.argv == before


@pytest.mark.parametrize(
    ("argv0", "recorded"),
    [("train_agent.py", "python train_agent.py"), ("splitexit train", "splitexit train")],
)
def test_a_run_records_the_command_it_was_started_by(monkeypatch, argv0, recorded):
    from splitexit.agents import train

    monkeypatch.setattr(sys, "argv", [argv0])
    assert train.invocation() == recorded
