"""Preflight of the kind backend: Docker reachable and big enough, kind/kubectl/helm present.

Collects every problem with its fix instead of stopping at the first, so one run tells the user
everything to install. Only reads: `docker info`, `<tool> version`, `kind get clusters`, and a
connect() to each host port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field

from testbed.backends.kind import architecture
from testbed.backends.kind.pins import Pins
from testbed.backends.kind.plan import run
from testbed.errors import ArchitectureUnsupported

VERSION_COMMANDS = {
    "kind": ["kind", "version"],
    "kubectl": ["kubectl", "version", "--client", "-o", "json"],
    "helm": ["helm", "version", "--short"],
}
TIMEOUT_S = 20.0


@dataclass
class Report:
    versions: dict[str, str] = field(default_factory=dict)
    """Tool -> version found (docker: server version)."""

    docker_cpus: int | None = None
    docker_memory_gib: float | None = None
    docker_arch: str | None = None
    """The engine's CPU architecture (Go spelling: amd64, arm64), which the kind node runs."""
    cluster_exists: bool | None = None
    """None when kind is missing (unknown)."""

    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_version(text: str) -> tuple[int, ...] | None:
    """'kind v0.29.0 go1.24 linux/amd64' -> (0, 29, 0); 'v1.32.4-dispatcher' -> (1, 32, 4)."""
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(x or 0) for x in match.groups())


def check(pins: Pins, platforms: tuple[str, ...] | None = None) -> Report:
    report = Report()
    _check_docker(pins, report)
    if report.docker_arch:
        _check_architecture(pins, platforms, report)
    elif "docker" in report.versions:
        report.problems.append("docker: `docker info` reports no Architecture, so the images for the kind node cannot "
                               "be chosen. Upgrade the Docker engine.")
    for name in ("kind", "kubectl", "helm"):
        _check_tool(pins, name, report)
    if "kind" in report.versions:
        proc = run(["kind", "get", "clusters"], timeout_s=TIMEOUT_S)
        if proc.returncode == 0:
            report.cluster_exists = pins.cluster_name in proc.stdout.split()
    if not report.cluster_exists:
        _check_ports(pins, report)
    return report


def _check_docker(pins: Pins, report: Report) -> None:
    tool = pins.tools["docker"]
    if shutil.which("docker") is None:
        report.problems.append(f"docker: not found on PATH. Install Docker: {tool.install}")
        return
    proc = run(["docker", "info", "--format", "{{json .}}"], timeout_s=TIMEOUT_S)
    info = {}
    try:
        info = json.loads(proc.stdout.strip().splitlines()[0]) if proc.stdout.strip() else {}
    except (json.JSONDecodeError, IndexError):
        pass
    errors = [e for e in (info.get("ServerErrors") or []) if e]
    if proc.returncode != 0 or errors or not info.get("ServerVersion"):
        reason = (errors or [line for line in (proc.stderr or "").splitlines() if line.strip()] or ["no answer"])[0]
        report.problems.append(f"docker: the Docker engine is not reachable ({reason.strip()}). Start it "
                               f"(`sudo systemctl start docker`, or Docker Desktop) and check that this user may use "
                               f"it (`docker info`).")
        return
    report.versions["docker"] = info["ServerVersion"]
    report.docker_arch = architecture.normalize(info.get("Architecture") or "") or None
    report.docker_cpus = int(info.get("NCPU") or 0)
    report.docker_memory_gib = round(int(info.get("MemTotal") or 0) / 2**30, 1)
    if report.docker_cpus < pins.minimum_cpus:
        report.problems.append(f"docker: the engine has {report.docker_cpus} CPUs, the testbed needs at least "
                               f"{pins.minimum_cpus} (8 recommended). Give Docker more CPUs (Docker Desktop: "
                               f"Settings > Resources) or use a bigger machine.")
    if report.docker_memory_gib < pins.minimum_memory_gib:
        report.problems.append(f"docker: the engine has {report.docker_memory_gib} GiB of memory, the testbed needs "
                               f"at least {pins.minimum_memory_gib:g} GiB (16 recommended). Give Docker more memory "
                               f"(Docker Desktop: Settings > Resources) or use a bigger machine.")


def _check_architecture(pins: Pins, platforms: tuple[str, ...] | None, report: Report) -> None:
    """Every image the plan pulls must have a build for the engine's architecture (the kind node's)."""
    arch = report.docker_arch
    wanted = os.environ.get(architecture.ENV_VAR)
    if wanted and architecture.normalize(wanted) != arch:
        report.problems.append(f"architecture: ${architecture.ENV_VAR}={wanted}, but the Docker engine (so the kind "
                               f"node) runs {arch}. Unset it: it only chooses what a --dry-run plans for.")
    try:
        pins.images(arch, platforms)
    except ArchitectureUnsupported as exc:
        report.problems.append(f"architecture: {exc}")


def _check_tool(pins: Pins, name: str, report: Report) -> None:
    tool = pins.tools[name]
    if shutil.which(name) is None:
        report.problems.append(f"{name}: not found on PATH. Install {name} {tool.version or '>= ' + tool.minimum}: "
                               f"{tool.install}")
        return
    proc = run(VERSION_COMMANDS[name], timeout_s=TIMEOUT_S)
    text = proc.stdout or ""
    if name == "kubectl":
        try:
            text = json.loads(text)["clientVersion"]["gitVersion"]
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    found = parse_version(text) if proc.returncode == 0 else None
    if found is None:
        report.problems.append(f"{name}: `{' '.join(VERSION_COMMANDS[name])}` failed ({(proc.stderr or text).strip()[:200]})."
                               f" Reinstall it: {tool.install}")
        return
    report.versions[name] = "v" + ".".join(map(str, found))
    if found < parse_version(tool.minimum):
        report.problems.append(f"{name}: version {report.versions[name]} is older than the minimum {tool.minimum}. "
                               f"Upgrade: {tool.install}")


def _check_ports(pins: Pins, report: Report) -> None:
    """kind maps these to 127.0.0.1; something already listening there makes `kind create` fail."""
    ports = pins.host_ports()
    busy = []
    for port in ports:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", int(port))) == 0:
                busy.append(int(port))
    if busy:
        report.problems.append(f"ports: 127.0.0.1:{', '.join(map(str, busy))} already in use; the kind cluster maps "
                               f"these (cluster/ports.yaml). Stop what listens there (another kind cluster?).")
