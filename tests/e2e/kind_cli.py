"""What the kind e2e test modules and their conftest share: the CLI as a user runs it, and the pins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testbed.backends.kind.pins import pins

REPO = Path(__file__).resolve().parents[2]
PINS = pins()
UP_TIMEOUT_S = 3600
READY_TIMEOUT_S = 900


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))
