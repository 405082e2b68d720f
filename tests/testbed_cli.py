"""Run the testbed's CLI from tests as a user would (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SESSION_PLATFORMS = os.environ.get("TESTBED_TEST_PLATFORMS", "all")
"""What the session's testbeds run (`up --platforms ...`): every registered platform unless TESTBED_TEST_PLATFORMS
names fewer, so parity and every probe run on each platform at least once per session."""


def session_platforms() -> tuple[str, ...]:
    """The registry names SESSION_PLATFORMS stands for."""
    from deployers import parse_platforms

    return parse_platforms(SESSION_PLATFORMS, "local")


def run_testbed(*args: str, state_dir: Path | None = None, check: bool = True, timeout: float = 3600,
                env: dict | None = None):
    """Run `python -m testbed ARGS` as a user would; returns the CompletedProcess. The timeout only stops a
    hang: `up` on a cold machine builds the runtime environments first (minutes, more under load)."""
    env = {**os.environ, **(env or {})}
    if state_dir is not None:
        env["TESTBED_STATE_DIR"] = str(state_dir)
    proc = subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"testbed {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc
