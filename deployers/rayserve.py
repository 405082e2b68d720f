"""Ray Serve: a Serve application on a local Ray instance; a RayService on kind.

Ray Serve has no V2 protocol: its V2 routes are user code (deployers/runtimes/ray_app.py).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import httpx

from testbed.backends.local import detection, processes
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.errors import RuntimeStartFailed
from testbed.platforms import Platform

# alibi-detect: the composed (model + detector) application loads the saved detectors in user code.
ENV = EnvSpec("rayserve", ("ray[serve]==2.60.0", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3",
                           "alibi-detect==0.13.0"))


def ray_temp_dir(workdir: Path) -> Path:
    """Ray puts unix sockets under its temp dir, and socket paths are limited to 107 bytes."""
    candidate = workdir / "ray"
    if len(str(candidate)) <= 40:
        return candidate
    digest = hashlib.sha256(str(workdir).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"testbed-ray-{digest}"


class RayServeLocal(LocalProcess):
    platform = "rayserve"
    env = ENV
    port_names = ("http", "metrics")
    version_packages = ("ray", "scikit-learn", "numpy", "fastapi")

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        cmd = [str(python), str(RUNTIMES_DIR / "ray_app.py"), "--artifact", str(ctx.artifact.path),
               "--http-port", str(ports["http"]), "--metrics-port", str(ports["metrics"]),
               "--temp-dir", str(ray_temp_dir(workdir)), "--model-name", ctx.artifact.name]
        service_url = (ctx.extra.get("detection") or {}).get("service_url")
        if ctx.extra.get("detectors") is not None and service_url:
            cmd += ["--detectors", str(ctx.extra["detectors"].path), "--model-sha256", ctx.artifact.sha256,
                    "--n-features", str(len(ctx.artifact.feature_names)),
                    "--detector-sink", detection.sink_urls(service_url, self.platform, "user code")["verdicts"]]
        return cmd

    # --- detection (user code): a second Serve application composes the model and a detector deployment
    def detected_base(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}/detected"

    def detection_ready(self, ctx, service_url: str, timeout_s: float) -> None:
        url = f"{self.detected_base()}/v2/models/{ctx.artifact.name}/ready"
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if not processes.alive(self.pid) or time.monotonic() > deadline:
                    raise RuntimeStartFailed("rayserve detected application", f"{url} did not answer 200",
                                             self.log_path, processes.log_tail(self.log_path))
                time.sleep(0.25)

    def detection_paths(self, ctx, service_url: str) -> dict:
        return detection.path_info(
            ctx, self.platform, f"{self.detected_base()}/v2/models/{ctx.artifact.name}/infer", "user code",
            service_url, computed_by="Ray Serve deployment `Detector` (user code, alibi-detect)",
            routing="Serve application `detected` (route /detected): ingress awaits the model (handle to the "
                    "`reference` application) and the Detector deployment together; the Detector reports "
                    "verdicts to the detector service in order from a background thread",
            kind_equivalent="the same application in the RayService; Ray Serve has no detection mechanism")

    def extra_env(self, workdir: Path) -> dict[str, str]:
        # Keep Ray's usage-stats prompt and ~/.ray writes out of a test machine.
        return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}

    def make_endpoint(self, ports, model_name) -> Endpoint:
        return Endpoint(platform=self.platform, backend="local", base_url=f"http://127.0.0.1:{ports['http']}",
                        model_name=model_name, metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        notes=("V2 routes are user code in a Serve deployment (Ray Serve has no V2 protocol)",))


PLATFORM = Platform(
    name="rayserve",
    display_name="Ray Serve",
    deployments={"local": RayServeLocal},
    facts={"runtime": "Ray Serve on a local Ray instance", "licence": "Apache-2.0"},
)
