"""Model-format servers for the formats experiment: each platform serving one model per format
(scikit-learn, XGBoost, LightGBM, ONNX) in the way that platform offers, on the local backend.

This module holds what the platforms share: the formats, the pins of the format libraries, the
reference environment, and `FormatServer`, the base class each platform module subclasses (its
`formats` in deployers/<platform>.py) with two hooks: the command that starts its server, and how to
read which models loaded. Each server runs from its own venv (EnvSpec) in its own session, on free
loopback ports, and is stopped by session. Their pids are recorded so a later run stops what a
killed one left behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from testbed.backends.local import envs, processes
from testbed.backends.local.deployment import RUNTIMES_DIR  # noqa: F401  (probes/formats.py runs format_models.py)
from testbed.errors import RuntimeStartFailed
from testbed.state import atomic_write_json

FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx")
XGBOOST, LIGHTGBM, ONNXRUNTIME, ONNX = "xgboost==3.2.0", "lightgbm==4.7.0", "onnxruntime==1.32.0", "onnx==1.23.2"
BASE = ("scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3")

REFERENCE_ENV = envs.EnvSpec("kserve-formats", ("kserve==0.20.0", *BASE, XGBOOST, LIGHTGBM, ONNXRUNTIME, ONNX,
                                                "skl2onnx==1.20.0"))
"""Training the format models and their in-process predictions run here (it has every format library).
KServe's format server runs from it too (deployers/kserve.py), so one venv serves both."""

FILES = {"sklearn": "model.joblib", "xgboost": "model.json", "lightgbm": "model.bst", "onnx": "model.onnx"}
"""Format -> file name of its model in a format model directory (deployers/runtimes/format_models.py)."""


class FormatServer:
    """One platform's server of the format models. A platform module subclasses it and fills in the
    class attributes and the two hooks; this class builds the venv, starts, waits and stops."""

    platform: str = ""
    env: envs.EnvSpec
    mechanism: dict[str, str] = {}
    """format -> native | user code | none, as this platform offers it."""

    version_packages: tuple[str, ...] = ()
    """Distributions whose versions go into the results as evidence."""

    # --- hooks -------------------------------------------------------------------------------
    def command(self, python: Path, http_port: int, workdir: Path, model_dir: Path, n_features: int) -> list[str]:
        """argv that serves every format model in model_dir on 127.0.0.1:http_port."""
        raise NotImplementedError

    def ready_path(self) -> str:
        return "/v2/health/ready"

    def extra_env(self) -> dict[str, str]:
        """Environment variables the server needs besides PYTHONUNBUFFERED."""
        return {}

    def loaded(self, client: httpx.Client, workdir: Path) -> dict[str, str]:
        """Once ready: format -> why it is not served (load errors, formats the platform cannot serve)."""
        return {}

    @classmethod
    def leftovers(cls, workdir: Path) -> list[int]:
        """Live processes of the server started in workdir that its session does not hold (a runtime that puts
        its workers in sessions of their own); stopped with the server, and by the next run after a kill."""
        return []

    # --- lifecycle ---------------------------------------------------------------------------
    def __init__(self):
        self.pid: int | None = None
        self.base_url = ""
        self.workdir: Path | None = None
        self.load_errors: dict[str, str] = {}
        self.versions: dict = {}

    def start(self, envs_dir: Path, workdir: Path, model_dir: Path, n_features: int, timeout_s: float,
              say=lambda m: None) -> None:
        env_dir = envs.ensure(self.env, envs_dir, say)
        self.versions = envs.installed_versions(env_dir, list(self.version_packages))
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        py = envs.python_of(env_dir)
        http = processes.claim_port(None, f"{self.platform} formats http")
        self.base_url = f"http://127.0.0.1:{http}"
        cmd = self.command(py, http, workdir, model_dir, n_features)
        ready_url = self.base_url + self.ready_path()
        log = workdir / "runtime.log"
        self.pid = processes.start(cmd, log, cwd=workdir, env={"PYTHONUNBUFFERED": "1", **self.extra_env()})
        record_pid(workdir.parent, self.platform, self.pid)
        try:
            self._wait_ready(ready_url, log, timeout_s)
        except BaseException:
            # Not ready, or interrupted while waiting: the caller never gets this server, so nothing else
            # would stop it (an atexit hook knows only the servers that started).
            self.stop()
            raise

    def _wait_ready(self, ready_url: str, log: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=5.0) as client:
            while True:
                if not processes.alive(self.pid):
                    processes.reap(self.pid)
                    raise RuntimeStartFailed(f"{self.platform} (formats)", "its process exited", log,
                                             processes.log_tail(log))
                try:
                    resp = client.get(ready_url)
                    if resp.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeStartFailed(f"{self.platform} (formats)", f"{ready_url} not ready within "
                                             f"{timeout_s:.0f}s", log, processes.log_tail(log))
                time.sleep(0.3)
            self.load_errors.update(self.loaded(client, self.workdir))

    def infer_url(self, fmt: str) -> str:
        """Where the model of format `fmt` takes inference requests."""
        return f"{self.base_url}/v2/models/{fmt}/infer"

    def encode(self, v2_body: dict):
        """The V2 request as this server takes it (a platform with its own JSON converts it here)."""
        return v2_body

    def decode(self, answer):
        """This server's answer as a V2 response (or anything probes.formats.labels_from reads)."""
        return answer

    def stop(self) -> None:
        if self.pid is not None:
            processes.stop_session(self.pid)
            for pid in self.leftovers(self.workdir) if self.workdir is not None else []:
                processes.stop_session(pid, grace_s=5.0)
            if self.workdir is not None:
                forget_pid(self.workdir.parent, self.platform)
            self.pid = None


def server_for(platform: str) -> FormatServer:
    """A fresh format server of a registered platform (ValueError when it has none)."""
    from deployers import get_platform

    factory = get_platform(platform).formats
    if factory is None:
        raise ValueError(f"platform {platform!r} has no format server (its PLATFORM.formats is None)")
    return factory()


# --- pids of running format servers, so a killed experiment's leftovers are stopped next time ----
def _pid_file(root: Path) -> Path:
    return root / "pids.json"


def record_pid(root: Path, platform: str, pid: int) -> None:
    path = _pid_file(root)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[platform] = pid
    atomic_write_json(path, data)


def forget_pid(root: Path, platform: str) -> None:
    path = _pid_file(root)
    if path.is_file():
        data = json.loads(path.read_text())
        data.pop(platform, None)
        atomic_write_json(path, data)


def stop_leftovers(root: Path) -> list[str]:
    """Stop what a killed run left: each recorded server's session, and its processes outside it (the platform's
    FormatServer.leftovers, found in its working directory root/<platform> even when the leader is gone)."""
    from deployers import PLATFORMS

    path = _pid_file(root)
    if not path.is_file():
        return []
    stopped = []
    for platform, pid in json.loads(path.read_text()).items():
        if processes.session_members(pid):
            processes.stop_session(pid)
            stopped.append(f"{platform} (session {pid})")
        factory = PLATFORMS[platform].formats if platform in PLATFORMS else None
        for other in factory.leftovers(root / platform) if hasattr(factory, "leftovers") else []:
            processes.stop_session(other, grace_s=5.0)
            stopped.append(f"{platform} (process {other}, outside the server's session)")
    path.unlink()
    return stopped
