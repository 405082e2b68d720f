"""Detection paths on the local backend: the detector service, and each platform's way to reach it.

Three `up` steps (see LocalBackend.up_steps):
- `detectors`: fit the detectors once beside the artifact (or verify the saved ones), start the
  detector service (KServe's add-on target, every path's verdict sink, a Prometheus target).
- `start detection paths`: start each platform's sidecars (its local Deployment's
  `detection_sidecars(ctx, sink)`), e.g. KServe's transformer, Seldon's pipeline stand-in.
- `wait for detection paths`: after the models are ready (so detector loading never delays them),
  run each platform's `detection_ready(ctx, sink)` (e.g. MLServer loads its detector models), wait
  for every sidecar, then publish each path as Endpoint.detection.
Everything started here is recorded in the state file under "detection" so `down` stops it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from typing import Callable

import httpx

from testbed import detectors
from testbed.backends.local import envs, processes
from testbed.detection_path import describe, sink_urls  # noqa: F401  (sink_urls: used by deployers/*.py)
from testbed.errors import RuntimeStartFailed, TestbedError
from testbed.steps import UpContext

RUNTIMES_DIR = detectors.RUNTIMES_DIR


@dataclass
class Sidecar:
    """A helper process of a detection path: started, waited for and stopped by its session."""

    name: str
    env: envs.EnvSpec
    command: Callable[[Path, "Sidecar", Path], list[str]]
    """(venv python, this sidecar with its ports claimed, its working directory) -> argv."""

    ready_path: str = "/v2/health/ready"
    port_names: tuple[str, ...] = ("http",)
    metrics_port: str | None = None
    """Name of the port Prometheus should scrape at /metrics (None: not a scrape target)."""

    labels: tuple[tuple[str, str], ...] = ()
    """Scrape target labels, e.g. (("platform", "seldon"),)."""

    extra_env: dict = field(default_factory=dict)
    startup_nice: int = 10
    """Niceness (and the lowest best-effort I/O priority) while starting: detection loads alibi-detect (10-15 s, thousands
    of files) next to the runtimes on a 2-core machine and must not slow their readiness. CPU niceness
    goes back to 0 once ready (where permitted: lowering it needs root)."""

    pid: int | None = None
    env_dir: Path | None = None
    pid_start: int | None = None
    ports: dict = field(default_factory=dict)
    log: Path | None = None
    started_at: float | None = None
    ready_after_s: float | None = None
    launch: dict | None = None
    """{cmd, cwd, env}: how it was started, so a later `up` can start it again when it has died."""

    @property
    def port(self) -> int | None:
        return self.ports.get(self.port_names[0])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ports[self.metrics_port]}/metrics" if self.metrics_port else None

    def start(self, ctx: UpContext) -> None:
        env_dir = self.env_dir = envs.ensure(self.env, ctx.settings.envs_dir, ctx.say)
        workdir = ctx.settings.run_dir / "detection" / self.name
        workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: processes.claim_port(None, f"{self.name} {name}") for name in self.port_names}
        self.log = workdir / f"{self.name}.log"
        cmd = self.command(envs.python_of(env_dir), self, workdir)
        self.started_at = time.monotonic()
        if self.startup_nice:
            # CPU and disk: alibi-detect's import reads thousands of files (transformers, scipy, ...).
            # Best-effort class at its lowest level, not the idle class: idle I/O can starve for as long
            # as anything else reads (seen: a sidecar silent for 180 s on a busy machine).
            ionice = ["ionice", "-c", "2", "-n", "7"] if shutil.which("ionice") else []
            cmd = ["nice", "-n", str(self.startup_nice), *ionice, *cmd]
        env = {"PYTHONUNBUFFERED": "1", **self.extra_env}
        self.pid = processes.start(cmd, self.log, cwd=workdir, env=env)
        self.pid_start = processes.start_ticks(self.pid)
        self.launch = {"cmd": cmd, "cwd": str(workdir), "env": env}

    def wait_ready(self, timeout_s: float) -> None:
        deadline = self.started_at + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = processes.reap(self.pid)
                if code is not None or not processes.alive(self.pid):
                    raise RuntimeStartFailed(self.name, f"its process (pid {self.pid}) exited"
                                             + (f" with code {code}" if code is not None else ""),
                                             self.log, processes.log_tail(self.log))
                try:
                    if client.get(self.url + self.ready_path).status_code == 200:
                        self.ready_after_s = round(time.monotonic() - self.started_at, 2)
                        self._renice(0)
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeStartFailed(self.name, f"{self.url}{self.ready_path} did not answer 200 within "
                                             f"{timeout_s:.0f}s", self.log, processes.log_tail(self.log))
                time.sleep(0.25)

    def _renice(self, value: int) -> None:
        renice_session(self.pid, value)

    def to_state(self) -> dict:
        return {"pid": self.pid, "pid_start": self.pid_start, "ports": self.ports, "url": self.url,
                "ready_url": self.url + self.ready_path, "metrics_url": self.metrics_url, "launch": self.launch,
                "log": str(self.log), "ready_after_s": self.ready_after_s, "env": self.env.name,
                "env_dir": str(self.env_dir) if self.env_dir else None}


def renice_session(sid: int, value: int) -> None:
    for pid in processes.session_members(sid):
        try:
            os.setpriority(os.PRIO_PROCESS, pid, value)
        except (PermissionError, ProcessLookupError):  # lowering niceness needs root; keep it then
            pass


def _state(ctx: UpContext) -> dict:
    return ctx.extra.setdefault("detection", {"processes": {}, "paths": {}})


def _register(ctx: UpContext, sidecar: Sidecar) -> None:
    ctx.extra.setdefault("detection_sidecars", {})[sidecar.name] = sidecar
    _state(ctx)["processes"][sidecar.name] = sidecar.to_state()


def step_detectors(ctx: UpContext, save: Callable[[UpContext], None]) -> None:
    """Fit (once) or verify the detectors, then start the detector service."""
    if not ctx.settings.detection:
        ctx.say("  detection is off (TESTBED_DETECTION=0)")
        return
    fitted = detectors.ensure(ctx.artifact, ctx.settings.envs_dir, ctx.say)
    ctx.extra["detectors"] = fitted
    state = _state(ctx)
    state["detectors"] = fitted.summary()
    service = Sidecar(
        name="detector-service", env=detectors.ENV, ready_path="/ready", metrics_port="http",
        command=lambda py, me, _: [str(py), str(RUNTIMES_DIR / "detector_service.py"), "--detectors",
                                   str(fitted.path), "--port", str(me.port), "--model-sha256", ctx.artifact.sha256,
                                   "--n-features", str(len(ctx.artifact.feature_names))])
    service.start(ctx)
    _register(ctx, service)
    state["service_url"] = service.url
    save(ctx)
    ctx.say(f"  detectors {fitted.path.name} (config {fitted.metadata['config_key']}); "
            f"detector service pid {service.pid} on {service.url}")


def step_start_paths(ctx: UpContext, save: Callable[[UpContext], None]) -> None:
    if "detection" not in ctx.extra:
        return
    service_url = _state(ctx)["service_url"]
    for name, dep in ctx.deployments.items():
        for sidecar in dep.detection_sidecars(ctx, service_url):
            sidecar.start(ctx)
            _register(ctx, sidecar)
            ctx.say(f"  {name}: {sidecar.name} pid {sidecar.pid} on {sidecar.url}")
        save(ctx)


def step_wait_paths(ctx: UpContext, save: Callable[[UpContext], None]) -> None:
    """Wait for the detector service, each platform's detection hook and every sidecar, in parallel."""
    if "detection" not in ctx.extra:
        return
    state = _state(ctx)
    service_url = state["service_url"]
    timeout = ctx.settings.ready_timeout_s
    errors: list[TestbedError] = []
    started = time.monotonic()

    def guarded(fn, *args):
        try:
            fn(*args)
        except TestbedError as exc:
            errors.append(exc)
        except Exception as exc:  # a hook's bug must not leave `up` hanging
            errors.append(TestbedError(f"detection path: {type(exc).__name__}: {exc}"))

    jobs = [threading.Thread(target=guarded, args=(s.wait_ready, timeout), daemon=True)
            for s in ctx.extra.get("detection_sidecars", {}).values()]
    for name, dep in ctx.deployments.items():
        jobs.append(threading.Thread(target=guarded, args=(dep.detection_ready, ctx, service_url, timeout),
                                     daemon=True))
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    for s in ctx.extra.get("detection_sidecars", {}).values():
        state["processes"][s.name] = s.to_state()
    if errors:
        save(ctx)
        raise errors[0]
    for name, dep in ctx.deployments.items():
        paths = dep.detection_paths(ctx, service_url)
        if paths is not None:
            state["paths"][name] = paths
    ctx.timings["ready:detection"] = round(time.monotonic() - started, 2)
    save(ctx)
    ctx.say("  " + ", ".join(f"{n}: {p['outlier']['label']}" for n, p in state["paths"].items())
            + f" (detection ready {ctx.timings['ready:detection']:.1f}s after the models)")


def scrape_targets(ctx: UpContext, backend: str) -> list:
    """Prometheus targets of the detection paths: the detector service and any sidecar with metrics."""
    from testbed.prometheus import ScrapeTarget

    targets = []
    for s in ctx.extra.get("detection_sidecars", {}).values():
        if s.metrics_url:
            job = "detectors" if s.name == "detector-service" else s.name
            targets.append(ScrapeTarget(job=job, url=s.metrics_url, labels=(*s.labels, ("backend", backend))))
    return targets


def path_info(ctx: UpContext, platform: str, infer_url: str, label: str, service_url: str, **details) -> dict:
    """Endpoint.detection for one platform on the local backend (shape: testbed/detection_path.py)."""
    # `instance` too: the TSDB outlives a testbed, and the last samples of a previous run's
    # targets stay visible for 5 minutes; a sum over them would change when they age out.
    labels = {"platform": platform, "mechanism": label,
              "instance": urlsplit(sink_urls(service_url, platform, label)["metrics"]).netloc}
    return describe(ctx.extra["detectors"], platform, infer_url, label, service_url, labels, **details)
