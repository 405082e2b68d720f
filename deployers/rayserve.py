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

# alibi[shap] 0.9.6 (KernelShap, the explainer deployment) needs shap < 0.44 and numba < 0.60.
ENV = EnvSpec("rayserve", ("ray[serve]==2.60.0", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3",
                           "alibi[shap]==0.9.6", "shap==0.43.0"))


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
    version_packages = ("ray", "scikit-learn", "numpy", "fastapi", "alibi", "shap")

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        return [str(python), str(RUNTIMES_DIR / "ray_app.py"), "--artifact", str(ctx.artifact.path),
                "--http-port", str(ports["http"]), "--metrics-port", str(ports["metrics"]),
                "--temp-dir", str(ray_temp_dir(workdir)), "--model-name", ctx.artifact.name]

    def extra_env(self, workdir: Path) -> dict[str, str]:
        # Keep Ray's usage-stats prompt and ~/.ray writes out of a test machine.
        return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base,
                        model_name=model_name, metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        explain_url=f"{base}/v2/models/{model_name}/explain",
                        notes=("V2 routes are user code in a Serve deployment (Ray Serve has no V2 protocol)",
                               "the explain route is user code: ingress -> Explainer deployment (alibi KernelShap)"))


PLATFORM = Platform(
    name="rayserve",
    display_name="Ray Serve",
    deployments={"local": RayServeLocal},
    facts={"runtime": "Ray Serve on a local Ray instance", "licence": "Apache-2.0"},
)
