"""KServe: the Python ModelServer locally; an InferenceService on kind."""

from __future__ import annotations

from pathlib import Path

from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.platforms import Platform

ENV = EnvSpec("kserve", ("kserve==0.20.0", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3"))


class KServeLocal(LocalProcess):
    platform = "kserve"
    env = ENV
    port_names = ("http",)
    version_packages = ("kserve", "scikit-learn", "numpy")

    def command(self, python: Path, ports, workdir, ctx) -> list[str]:
        return [str(python), str(RUNTIMES_DIR / "kserve_server.py"), "--artifact", str(ctx.artifact.path),
                "--http-port", str(ports["http"]), "--model-name", ctx.artifact.name]

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base, model_name=model_name,
                        metrics_url=f"{base}/metrics",
                        notes=("kserve.ModelServer binds its HTTP port on 0.0.0.0 (not configurable in 0.20.0)",))


PLATFORM = Platform(
    name="kserve",
    display_name="KServe",
    deployments={"local": KServeLocal},
    facts={"runtime": "kserve.ModelServer (Python)", "licence": "Apache-2.0",
           "batching": "InferenceService `batcher` (maxBatchSize, maxLatency): the Go agent sidecar, kind only; "
                       "the local Python ModelServer has none"},
)
