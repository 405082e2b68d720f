"""Base class of every platform's local Deployment: a runtime process on loopback ports.

A platform subclass fills in a few hooks (its environment, the ports it needs, the command
that starts it, the Endpoint it then offers); this class starts, watches and stops it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx

from testbed.backends.local import envs, processes
from testbed.endpoint import Endpoint
from testbed.errors import RuntimeStartFailed
from testbed.settings import REPO_ROOT
from testbed.steps import UpContext

RUNTIMES_DIR = REPO_ROOT / "deployers" / "runtimes"


@dataclasses.dataclass(frozen=True)
class KnownListener:
    """A listening socket beyond loopback that the platform gives no way to close, and why."""

    process: str
    """Start of the process's command line (Ray names its worker processes, e.g. "ray::ServeReplica")."""

    address: str
    """The address it binds ("::" is every interface, IPv4 included)."""

    cause: str
    """Why it stays open: the upstream code that binds it, and the options that were tried."""


class LocalProcess:
    platform: str = ""
    env: envs.EnvSpec
    port_names: tuple[str, ...] = ("http",)
    """Loopback ports this runtime listens on; each is claimed free before start."""

    version_packages: tuple[str, ...] = ()
    """Distributions whose versions go into status and results as evidence."""

    known_listeners: tuple[KnownListener, ...] = ()
    """Sockets of this runtime that stay beyond loopback whatever the testbed sets; `status` shows the cause beside
    each, and calls any other socket beyond loopback unexplained."""

    loopback_by_testbed: tuple[str, ...] = ()
    """What the testbed does, beyond the platform's documented bind settings, to keep this runtime on loopback
    (with the upstream code that needs it), so that no result credits the platform with it."""

    @classmethod
    def listener_cause(cls, command_line: str, address: str) -> str | None:
        """The cause of a socket beyond loopback when it is a known one, else None."""
        for known in cls.known_listeners:
            if command_line.startswith(known.process) and address == known.address:
                return known.cause
        return None

    # --- hooks -------------------------------------------------------------------------------
    def command(self, python: Path, ports: dict[str, int], workdir: Path, ctx: UpContext) -> list[str]:
        raise NotImplementedError

    def make_endpoint(self, ports: dict[str, int], model_name: str) -> Endpoint:
        raise NotImplementedError

    def extra_env(self, workdir: Path) -> dict[str, str]:
        return {}

    # --- protocol ----------------------------------------------------------------------------
    def __init__(self):
        self.pid: int | None = None
        self.env_dir: Path | None = None
        self.pid_start: int | None = None
        self.ports: dict[str, int] = {}
        self.workdir: Path | None = None
        self.started_at: float | None = None
        self.ready_after_s: float | None = None
        self.launch: dict | None = None
        """How the process was started ({cmd, cwd, env}: env = the testbed's additions), so a later
        `up` can start it again exactly so when it has died."""

    @property
    def log_path(self) -> Path:
        return self.workdir / "runtime.log"

    def deploy(self, ctx: UpContext) -> None:
        env_dir = self.env_dir = envs.ensure(self.env, ctx.settings.envs_dir, ctx.say)
        self.workdir = ctx.settings.run_dir / self.platform
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: processes.claim_port(None, f"{self.platform} {name}") for name in self.port_names}
        cmd = self.command(envs.python_of(env_dir), self.ports, self.workdir, ctx)
        self.launch = {"cmd": cmd, "cwd": str(self.workdir),
                       "env": {"PYTHONUNBUFFERED": "1", **self.extra_env(self.workdir)}}
        self._start()

    def _start(self) -> None:
        self.started_at = time.monotonic()
        self.ready_after_s = None
        self.pid = processes.start(self.launch["cmd"], self.log_path, cwd=Path(self.launch["cwd"]),
                                   env=self.launch["env"])
        self.pid_start = processes.start_ticks(self.pid)

    def restart(self, ctx: UpContext) -> None:
        """Start the recorded process again, on its own ports (its configuration is still in the run
        directory); what is left of its session (Ray's helpers) is stopped first. PortBusy when
        another program took one of its ports meanwhile."""
        if self.pid and processes.session_members(self.pid):
            processes.stop_session(self.pid)
        for name, port in self.ports.items():
            processes.claim_port(port, f"{self.platform} {name}")
        self._start()

    def restore(self, info: dict) -> None:
        """This deployment as a state-file entry (to_state) describes it, for `up` to repair."""
        self.pid, self.pid_start = info.get("pid"), info.get("pid_start")
        self.ports = dict(info.get("ports") or {})
        self.workdir = Path(info["workdir"]) if info.get("workdir") else None
        self.ready_after_s = info.get("ready_after_s")
        self.env_dir = Path(info["env_dir"]) if info.get("env_dir") else None
        self.launch = info.get("launch")

    def wait_ready(self, ctx: UpContext, timeout_s: float) -> Endpoint:
        endpoint = self.endpoint(ctx)
        deadline = self.started_at + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                exit_code = processes.reap(self.pid)
                if exit_code is not None or not processes.alive(self.pid):
                    raise RuntimeStartFailed(self.platform, f"its process (pid {self.pid}) exited"
                                             + (f" with code {exit_code}" if exit_code is not None else ""),
                                             self.log_path, processes.log_tail(self.log_path))
                try:
                    if client.get(endpoint.model_ready_url).status_code == 200:
                        self.ready_after_s = round(time.monotonic() - self.started_at, 2)
                        return endpoint
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeStartFailed(self.platform, f"{endpoint.model_ready_url} did not answer 200 "
                                             f"within {timeout_s:.0f}s", self.log_path,
                                             processes.log_tail(self.log_path))
                time.sleep(0.25)

    def endpoint(self, ctx: UpContext) -> Endpoint:
        endpoint = self.make_endpoint(self.ports, ctx.artifact.name)
        # Detection paths are published once ready (testbed/backends/local/detection.py).
        detection = (ctx.extra.get("detection") or {}).get("paths", {}).get(self.platform)
        return dataclasses.replace(endpoint, detection=detection) if detection else endpoint

    def teardown(self, ctx: UpContext | None = None) -> None:
        if self.pid is not None:
            processes.stop_session(self.pid)

    # --- persisted form (the state file), so `status` and `down` work from another process ----
    def to_state(self) -> dict:
        return {"pid": self.pid, "pid_start": self.pid_start, "ports": self.ports, "workdir": str(self.workdir), "log": str(self.log_path),
                "ready_after_s": self.ready_after_s, "env": self.env.name, "launch": self.launch,
                "env_dir": str(self.env_dir) if self.env_dir else None}
