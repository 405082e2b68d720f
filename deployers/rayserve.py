"""Ray Serve: a Serve application on a local Ray instance; a RayService on kind.

Ray Serve has no V2 protocol: its V2 routes are user code (deployers/runtimes/ray_app.py).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.platforms import Platform

ENV = EnvSpec("rayserve", ("ray[serve]==2.60.0", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3"))


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
        return [str(python), str(RUNTIMES_DIR / "ray_app.py"), "--artifact", str(ctx.artifact.path),
                "--http-port", str(ports["http"]), "--metrics-port", str(ports["metrics"]),
                "--temp-dir", str(ray_temp_dir(workdir)), "--model-name", ctx.artifact.name]

    def extra_env(self, workdir: Path) -> dict[str, str]:
        # Keep Ray's usage-stats prompt and ~/.ray writes out of a test machine.
        # Ray exports metrics every 10 s by default; 2 s keeps Prometheus close to the traffic sent.
        return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
                "RAY_metrics_report_interval_ms": "2000"}

    def make_endpoint(self, ports, model_name) -> Endpoint:
        return Endpoint(platform=self.platform, backend="local", base_url=f"http://127.0.0.1:{ports['http']}",
                        model_name=model_name, metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        notes=("V2 routes are user code in a Serve deployment (Ray Serve has no V2 protocol)",))


PLATFORM = Platform(
    name="rayserve",
    display_name="Ray Serve",
    infer_requests_promql='sum(ray_serve_num_http_requests_total{job="rayserve",method="POST",route="/v2/models/{name}/infer",status_code="200"})',
    deployments={"local": RayServeLocal},
    facts={"runtime": "Ray Serve on a local Ray instance", "licence": "Apache-2.0"},
)
