"""Shared fixtures. `testbed_up` brings the real local testbed up once per test session.

The e2e tests (tests/e2e/) need Docker and kind; they are marked `e2e` automatically and
skipped unless `--e2e` is given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--e2e", action="store_true", help="run the kind e2e tests (needs Docker and kind)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


def testbed_cli(*args: str, state_dir: Path | None = None, check: bool = True, timeout: float = 600):
    """Run `python -m testbed ARGS` as a user would; returns the CompletedProcess."""
    env = dict(os.environ)
    if state_dir is not None:
        env["TESTBED_STATE_DIR"] = str(state_dir)
    proc = subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"testbed {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def testbed_up():
    """The local testbed, up for the whole session (default state dir, so runtime venvs are reused).

    Yields the `status --json` document; runs `down` at the end whatever happened.
    """
    testbed_cli("up")
    try:
        yield json.loads(testbed_cli("status", "--json").stdout)
    finally:
        testbed_cli("down", check=False)
