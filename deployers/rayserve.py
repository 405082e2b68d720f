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


def ray_batching_args(batching) -> list[str]:
    """@serve.batch settings for ray_app.py; none when batching is off."""
    if not batching.enabled:
        return []
    return ["--max-batch-size", str(batching.max_batch_size), "--batch-wait-ms", str(batching.max_batch_time_ms)]


class RayServeLocal(LocalProcess):
    platform = "rayserve"
    env = ENV
    port_names = ("http", "metrics")
    version_packages = ("ray", "scikit-learn", "numpy", "fastapi")

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        return [str(python), str(RUNTIMES_DIR / "ray_app.py"), "--artifact", str(ctx.artifact.path),
                "--http-port", str(ports["http"]), "--metrics-port", str(ports["metrics"]),
                "--temp-dir", str(ray_temp_dir(workdir)), "--model-name", ctx.artifact.name,
                *ray_batching_args(ctx.settings.batching)]

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
    facts={"runtime": "Ray Serve on a local Ray instance", "licence": "Apache-2.0",
           "batching": "@serve.batch (max_batch_size, batch_wait_timeout_s) in user code; offline: Ray Data (needs "
                       "pyarrow) or Ray tasks/actors (deployers/runtimes/ray_batch.py)"},
)
