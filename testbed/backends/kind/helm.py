"""Helm commands for the pinned charts (cluster/versions.yaml); `upgrade --install` is idempotent."""

from __future__ import annotations

from pathlib import Path

from testbed.backends.kind.pins import Chart

TIMEOUT = "10m"
TIMEOUT_S = 11 * 60


def install_command(chart: Chart, kubeconfig: Path, timeout: str = TIMEOUT) -> list[str]:
    argv = ["helm", "upgrade", "--install", chart.release, chart.chart]
    if chart.repo:
        argv += ["--repo", chart.repo]
    argv += ["--version", chart.version, "--namespace", chart.namespace, "--create-namespace",
             "--values", str(chart.values)]
    for key, value in chart.set.items():
        argv += ["--set-string", f"{key}={value}"]
    argv += ["--wait", "--timeout", timeout, "--kubeconfig", str(kubeconfig)]
    return argv


def status_command(chart: Chart, kubeconfig: Path) -> list[str]:
    return ["helm", "status", chart.release, "--namespace", chart.namespace, "--kubeconfig", str(kubeconfig)]
