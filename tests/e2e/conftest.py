"""The kind e2e tests need --e2e and a machine with a Docker engine, kind, kubectl and helm.

tests/conftest.py marks everything here `e2e`; this file skips it, with the reason, unless all of
that is present. Checked once per session, before any fixture creates a cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from kind_cli import PINS, UP_TIMEOUT_S, cli
from testbed.settings import Settings

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


@pytest.fixture(scope="session")
def kind_up(request):
    """`up --backend kind` once for the session (namespace `testbed`); `down` afterwards, whatever happened.

    If any test failed, the cluster's state is written to <state dir>/kind/e2e-diagnostics.txt first.
    """
    try:
        proc = cli("up", "--backend", "kind", timeout=UP_TIMEOUT_S)
        assert proc.returncode == 0, f"up failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        status = cli("status", "--backend", "kind", "--json")
        yield json.loads(status.stdout)
    finally:
        if request.session.testsfailed:
            save_diagnostics()
        down = cli("down", "--backend", "kind")
        assert down.returncode == 0, down.stderr
        clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, timeout=60).stdout
        assert PINS.cluster_name not in clusters.split(), "`down --backend kind` left the cluster behind"


def save_diagnostics() -> None:
    from testbed.backends.kind import cluster, diagnostics

    cf = cluster.files(Settings(backend="kind"), PINS)
    if cf.kubeconfig.is_file():
        commands = diagnostics.cluster_commands(cf.kubeconfig) + [
            diagnostics.kubectl(cf.kubeconfig, "get", "events", "-A", "--sort-by=.lastTimestamp"),
            diagnostics.kubectl(cf.kubeconfig, "get", "inferenceservices,seldondeployments,rayservices,podmonitors,"
                                "deployments,pods", "-A", "-o", "yaml")]
        (cf.dir / "e2e-diagnostics.txt").write_text(diagnostics.collect(commands, lines=400))
