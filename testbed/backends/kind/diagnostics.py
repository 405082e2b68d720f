"""What the cluster looked like when a step failed: the kubectl output a user would ask for first."""

from __future__ import annotations

import shlex
from pathlib import Path

from testbed.backends.kind.plan import run, tail_of

TIMEOUT_S = 30.0
LINES = 40


def kubectl(kubeconfig: Path, *args: str) -> list[str]:
    return ["kubectl", "--kubeconfig", str(kubeconfig), *args]


def namespace_commands(kubeconfig: Path, namespace: str) -> list[list[str]]:
    return [
        kubectl(kubeconfig, "get", "pods,deployments,services", "-n", namespace, "-o", "wide"),
        kubectl(kubeconfig, "get", "events", "-n", namespace, "--sort-by=.lastTimestamp"),
    ]


def object_commands(kubeconfig: Path, kind: str, name: str, namespace: str) -> list[list[str]]:
    return [kubectl(kubeconfig, "describe", kind, name, "-n", namespace)]


def cluster_commands(kubeconfig: Path) -> list[list[str]]:
    return [
        kubectl(kubeconfig, "get", "nodes", "-o", "wide"),
        kubectl(kubeconfig, "get", "pods", "-A", "-o", "wide"),
        kubectl(kubeconfig, "describe", "nodes"),
    ]


def collect(commands: list[list[str]], lines: int = LINES) -> str:
    """Run each command (best effort) and return their outputs, each under its command line."""
    parts = []
    for argv in commands:
        proc = run(argv, timeout_s=TIMEOUT_S)
        parts.append(f"$ {shlex.join(argv)}\n{tail_of(proc, lines)}")
    return "\n".join(parts)
