"""The kind e2e tests need --e2e and a machine with a Docker engine, kind, kubectl and helm.

tests/conftest.py marks everything here `e2e`; this file skips it, with the reason, unless all of
that is present. Checked once per session, before any fixture creates a cluster.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

TOOLS = ("docker", "kind", "kubectl", "helm")


def unavailable(config) -> str | None:
    if not config.getoption("--e2e"):
        return ("kind e2e tests run only with --e2e; they create a kind cluster and need Docker, kind, kubectl "
                "and helm (README: 'The kind backend')")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"--e2e given, but not on PATH: {', '.join(missing)} (README: 'The kind backend', prerequisites)"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"--e2e given, but the Docker engine is not reachable: {last}"
    return None


@pytest.fixture(scope="session", autouse=True)
def _kind_e2e_available(request):
    reason = unavailable(request.config)
    if reason:
        pytest.skip(reason)
