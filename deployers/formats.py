"""Model-format servers for the formats experiment: each platform serving one model per format
(scikit-learn, XGBoost, LightGBM, ONNX) in the way that platform offers, on the local backend.

- Seldon (MLServer): its own runtimes, no user code: mlserver-sklearn, mlserver-xgboost,
  mlserver-lightgbm. MLServer 1.7.1 has no ONNX runtime (Seldon serves ONNX through Triton).
- KServe: the KServe SDK's ModelServer with one kserve.Model per format (user code: KServe's own
  format servers are container images, not PyPI packages).
- Ray Serve: one deployment with V2 routes per format (user code).
Each server runs from its own venv (EnvSpec) in its own session, on free loopback ports, and is
stopped by session. Their pids are recorded so a later run stops what a killed one left behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testbed.backends.local import envs, processes
from testbed.backends.local.deployment import RUNTIMES_DIR
from testbed.errors import RuntimeStartFailed
from testbed.state import atomic_write_json

FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx")
XGBOOST, LIGHTGBM, ONNXRUNTIME = "xgboost==3.2.0", "lightgbm==4.7.0", "onnxruntime==1.32.0"
BASE = ("scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3")

# Training and in-process predictions happen in the KServe formats env (it has every library).
KSERVE_ENV = envs.EnvSpec("kserve-formats", ("kserve==0.20.0", *BASE, XGBOOST, LIGHTGBM, ONNXRUNTIME,
                                             "onnx==1.23.2", "skl2onnx==1.20.0"))
MLSERVER_ENV = envs.EnvSpec("mlserver-formats", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "mlserver-xgboost==1.7.1",
                                                 "mlserver-lightgbm==1.7.1", *BASE, XGBOOST, LIGHTGBM, "uvloop==0.21.0"))
RAY_ENV = envs.EnvSpec("rayserve-formats", ("ray[serve]==2.60.0", *BASE, XGBOOST, LIGHTGBM, ONNXRUNTIME))

MLSERVER_RUNTIMES = {"sklearn": "mlserver_sklearn.SKLearnModel", "xgboost": "mlserver_xgboost.XGBoostModel",
                     "lightgbm": "mlserver_lightgbm.LightGBMModel"}
FILES = {"sklearn": "model.joblib", "xgboost": "model.json", "lightgbm": "model.bst", "onnx": "model.onnx"}


@dataclass
class FormatServer:
    platform: str
    env: envs.EnvSpec
    mechanism: dict[str, str]
    """format -> native | user code | none, as this platform offers it."""

    version_packages: tuple[str, ...]
    pid: int | None = None
    base_url: str = ""
    workdir: Path | None = None
    load_errors: dict[str, str] = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    def start(self, envs_dir: Path, workdir: Path, model_dir: Path, n_features: int, timeout_s: float,
              say=lambda m: None) -> None:
        env_dir = envs.ensure(self.env, envs_dir, say)
        self.versions = envs.installed_versions(env_dir, list(self.version_packages))
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        py = envs.python_of(env_dir)
        http = processes.claim_port(None, f"{self.platform} formats http")
        self.base_url = f"http://127.0.0.1:{http}"
        status_file = workdir / "status.json"
        status_file.unlink(missing_ok=True)
        env = {"PYTHONUNBUFFERED": "1"}
        if self.platform == "seldon":
            grpc, metrics = (processes.claim_port(None, f"seldon formats {n}") for n in ("grpc", "metrics"))
            repo = workdir / "models"
            for fmt, impl in MLSERVER_RUNTIMES.items():
                (repo / fmt).mkdir(parents=True, exist_ok=True)
                (repo / fmt / "model-settings.json").write_text(json.dumps(
                    {"name": fmt, "implementation": impl, "parameters": {"uri": str(model_dir / fmt / FILES[fmt])}}))
            (repo / "settings.json").write_text(json.dumps(
                {"host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
                 "metrics_dir": str(workdir), "parallel_workers": 0, "load_models_at_startup": False}))
            cmd = [str(py.parent / "mlserver"), "start", str(repo)]
            ready_url = f"{self.base_url}/v2/health/ready"
        elif self.platform == "kserve":
            cmd = [str(py), str(RUNTIMES_DIR / "formats_kserve.py"), "--dir", str(model_dir), "--http-port", str(http),
                   "--status", str(status_file)]
            ready_url = f"{self.base_url}/v2/health/ready"
        else:
            from deployers.rayserve import LOCAL_RAY_ENV, ray_temp_dir

            cmd = [str(py), str(RUNTIMES_DIR / "formats_ray.py"), "--dir", str(model_dir), "--http-port", str(http),
                   "--temp-dir", str(ray_temp_dir(workdir)), "--n-features", str(n_features)]
            ready_url = f"{self.base_url}/status"
            env.update(LOCAL_RAY_ENV)
        log = workdir / "runtime.log"
        self.pid = processes.start(cmd, log, cwd=workdir, env=env)
        record_pid(workdir.parent, self.platform, self.pid)
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
                    self.stop()
                    raise RuntimeStartFailed(f"{self.platform} (formats)", f"{ready_url} not ready within "
                                             f"{timeout_s:.0f}s", log, processes.log_tail(log))
                time.sleep(0.3)
            if self.platform == "seldon":
                # Load each model on its own: one failing runtime must not hide the others.
                for fmt in MLSERVER_RUNTIMES:
                    resp = client.post(f"{self.base_url}/v2/repository/models/{fmt}/load", timeout=120)
                    if resp.status_code != 200:
                        self.load_errors[fmt] = f"HTTP {resp.status_code}: {resp.text[:300]}"
                self.load_errors["onnx"] = ("no MLServer runtime for ONNX in 1.7.1 (no mlserver-onnx release); "
                                            "Seldon serves ONNX through Triton (TRITON_SERVER), a container image")
            elif self.platform == "kserve":
                self.load_errors.update(json.loads(status_file.read_text())["errors"])
            else:
                self.load_errors.update(client.get(ready_url).json()["errors"])

    def infer_url(self, fmt: str) -> str:
        return f"{self.base_url}/v2/models/{fmt}/infer"

    def stop(self) -> None:
        if self.pid is not None:
            processes.stop_session(self.pid)
            if self.workdir is not None:
                forget_pid(self.workdir.parent, self.platform)
            self.pid = None


def server_for(platform: str) -> FormatServer:
    if platform == "seldon":
        return FormatServer("seldon", MLSERVER_ENV, {f: ("native" if f in MLSERVER_RUNTIMES else "none") for f in FORMATS},
                            ("mlserver", "mlserver-sklearn", "mlserver-xgboost", "mlserver-lightgbm", "xgboost",
                             "lightgbm", "scikit-learn"))
    if platform == "kserve":
        return FormatServer("kserve", KSERVE_ENV, {f: "user code" for f in FORMATS},
                            ("kserve", "scikit-learn", "xgboost", "lightgbm", "onnxruntime"))
    if platform == "rayserve":
        return FormatServer("rayserve", RAY_ENV, {f: "user code" for f in FORMATS},
                            ("ray", "scikit-learn", "xgboost", "lightgbm", "onnxruntime"))
    raise ValueError(f"no format server for platform {platform!r}")


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
    path = _pid_file(root)
    if not path.is_file():
        return []
    stopped = []
    for platform, pid in json.loads(path.read_text()).items():
        if processes.session_members(pid):
            processes.stop_session(pid)
            stopped.append(f"{platform} (session {pid})")
    path.unlink()
    return stopped
