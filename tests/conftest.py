"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import tempfile
import warnings

import pytest

ENV_ID = "splitexit:SplitExit-v0"
# Test folders that never build an env: their tests do not wait for the warm-up.
NO_ENV_FOLDERS = ("dnn_profiles", "benchmarks")


def pytest_configure(config: pytest.Config) -> None:
    """The runs of the tests (subprocesses too) sign their checkpoints with a key of the test
    session, not with the user's (``splitexit.agents.saved.key_path``)."""
    if "SPLITEXIT_KEY_FILE" not in os.environ:
        os.environ["SPLITEXIT_KEY_FILE"] = os.path.join(tempfile.mkdtemp(), "key")


@pytest.fixture(scope="session")
def warm_envs() -> None:
    """Loads (or compiles) the envs' compiled code once per test run, through the public API:
    a single env and a vector env, each reset and stepped once. A failure only warns: the tests
    that build an env report it themselves."""
    try:
        import gymnasium as gym

        import splitexit  # noqa: F401  (registers the ids)

        for env in (gym.make(ENV_ID), gym.make_vec(ENV_ID, num_envs=2)):
            env.reset(seed=0)
            env.step(env.action_space.sample())
            env.close()
    except Exception as error:  # any failure is for the tests to report
        warnings.warn(f"env warm-up failed: {error!r}", stacklevel=1)


@pytest.fixture(autouse=True)
def _warm_envs_first(request: pytest.FixtureRequest) -> None:
    """Runs :func:`warm_envs` before the first test that may build an env."""
    if request.path.parent.name not in NO_ENV_FOLDERS:
        request.getfixturevalue("warm_envs")
