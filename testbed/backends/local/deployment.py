"""Base class of every platform's local Deployment: a runtime process on loopback ports.

A platform subclass fills in a few hooks (its environment, the ports it needs, the command
that starts it, the Endpoint it then offers); this class starts, watches and stops it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from testbed.backends.local import envs, processes
from testbed.endpoint import Endpoint
from testbed.errors import RuntimeStartFailed
from testbed.settings import REPO_ROOT
from testbed.steps import UpContext

if TYPE_CHECKING:
    from testbed.serving import ModelServing

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

    build_note: str = ""
    """Why the first build of `env` takes long (`up` says it before building); empty when it does not."""

    serving: "ModelServing | None" = None
    """Which formats of a user's model (`up --model`) this runtime serves and how, or why not (testbed/serving.py);
    None: it serves the testbed's own model only, and `up --model` skips it, saying so."""

    @classmethod
    def check_prerequisites(cls) -> None:
        """Raise a TestbedError naming what is missing outside the venv (and how to install it) before `up`
        builds anything; nothing by default."""

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

    worker_pattern: str | None = None
    """Command-line prefix of the process that serves the infer route, which a kill fault kills (e.g. a
    Ray Serve replica); None: the process of the runtime's session listening on the endpoint's port."""

    def find_worker(self, recorded: dict, base_url: str) -> tuple[int, str] | None:
        """(pid, how it was found) of the process a kill fault kills, for a runtime whose serving worker
        neither `worker_pattern` nor the port finds (e.g. workers outside the recorded session);
        None: found the default way (testbed/backends/local/faults.py serving_worker)."""
        return None

    @classmethod
    def members(cls, info: dict) -> list[int]:
        """Every live process of this runtime, from its state-file entry (pid, workdir): status's process count
        and RSS, the exposure audit. Its session, unless the runtime starts processes outside it."""
        return processes.session_members(info["pid"]) if info.get("pid") else []

    @classmethod
    def leftovers(cls, info: dict) -> list[int]:
        """Processes of this runtime outside its session that `down` must stop after the session (BentoML's
        workers: circus starts each in a session of its own); none by default."""
        return []

    # --- detection hooks (testbed/backends/local/detection.py) -----------------------------------
    detection_label: str = "none"
    """How this platform's outlier/drift detection is wired here (testbed.endpoint.DETECTION_LABELS):
    native, add-on or user code; "none" when the platform publishes no detection path."""

    def detection_sidecars(self, ctx: UpContext, service_url: str) -> list:
        """Helper processes of the detection path (detection.Sidecar), started after the runtime."""
        return []

    def detection_ready(self, ctx: UpContext, service_url: str, timeout_s: float) -> None:
        """Block until the detection path inside the runtime is ready (after the model is)."""

    def detection_paths(self, ctx: UpContext, service_url: str) -> dict | None:
        """Endpoint.detection once everything is ready (detection.path_info); None: no detection path."""
        return None

    def ready_url(self, endpoint: Endpoint) -> str:
        """What wait_ready polls until it answers 200 (Endpoint.ready_url where the platform has no V2 route)."""
        return endpoint.ready_url or endpoint.model_ready_url

    def is_ready(self, client: httpx.Client, endpoint: Endpoint) -> bool:
        """One readiness check; a platform whose health route answers before its model serves overrides it."""
        return client.get(self.ready_url(endpoint)).status_code == 200

    # --- helpers for detection as user code inside the runtime ---------------------------------
    def usercode_detection(self, ctx: UpContext) -> dict | None:
        """The saved detectors and this platform's verdict sink, for detection as user code inside the
        runtime ({"dir", "model_sha256", "n_features", "sink"}); None when `up` runs no detection."""
        from testbed.detection_path import sink_urls

        service_url = (ctx.extra.get("detection") or {}).get("service_url")
        if ctx.extra.get("detectors") is None or not service_url:
            return None
        return {"dir": str(ctx.extra["detectors"].path), "model_sha256": ctx.artifact.sha256,
                "n_features": len(ctx.artifact.feature_names),
                "sink": sink_urls(service_url, self.platform, "user code")["verdicts"]}

    def wait_until(self, check, what: str, timeout_s: float, interval_s: float = 0.25) -> None:
        """Poll check(client) -> bool until True; RuntimeStartFailed naming `what` (and this runtime's log)
        when the runtime exits or timeout_s passes. HTTP errors count as not yet."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                try:
                    if check(client):
                        return
                except httpx.HTTPError:
                    pass
                if not processes.alive(self.pid) or time.monotonic() > deadline:
                    raise RuntimeStartFailed(f"{self.platform} {what}", "did not become ready" if processes.alive(
                        self.pid) else f"its process (pid {self.pid}) exited", self.log_path,
                                             processes.log_tail(self.log_path))
                time.sleep(interval_s)

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
                    if self.is_ready(client, endpoint):
                        self.ready_after_s = round(time.monotonic() - self.started_at, 2)
                        return endpoint
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeStartFailed(self.platform, f"{self.ready_url(endpoint)} did not answer 200 "
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
        for pid in self.leftovers(self.to_state()):
            processes.stop_session(pid, grace_s=5.0)
        # A supervisor that respawned a killed worker can leave the new worker (in a session of its own)
        # still holding the listening socket when the sessions above are empty (seen: BentoML's circus
        # after the kill fault). down returns once the platform's ports are closed, not before.
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and any(processes.is_listening(p) for p in self.ports.values() if p):
            for pid in self.leftovers(self.to_state()):
                processes.stop_session(pid, grace_s=2.0)
            time.sleep(0.2)

    # --- persisted form (the state file), so `status` and `down` work from another process ----
    def to_state(self) -> dict:
        return {"pid": self.pid, "pid_start": self.pid_start, "ports": self.ports, "workdir": str(self.workdir), "log": str(self.log_path),
                "ready_after_s": self.ready_after_s, "env": self.env.name, "launch": self.launch,
                "env_dir": str(self.env_dir) if self.env_dir else None}
