"""KServe: the Python ModelServer locally; an InferenceService on kind."""

from __future__ import annotations

from pathlib import Path

from testbed.backends.local import detection
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

    # --- detection (add-on): a transformer in front of the predictor logs payloads to the detector service
    def detection_sidecars(self, ctx, service_url: str) -> list:
        sink = detection.sink_urls(service_url, self.platform, "add-on")["events"]
        model = ctx.artifact.name
        return [detection.Sidecar(
            name="kserve-transformer", env=ENV, ready_path=f"/v2/models/{model}/ready",
            command=lambda py, me, _: [str(py), str(RUNTIMES_DIR / "kserve_transformer.py"), "--http-port",
                                       str(me.port), "--predictor-host", f"127.0.0.1:{self.ports['http']}",
                                       "--model-name", model, "--sink", sink])]

    def detection_paths(self, ctx, service_url: str) -> dict:
        transformer = ctx.extra["detection_sidecars"]["kserve-transformer"]
        return detection.path_info(
            ctx, self.platform, f"{transformer.url}/v2/models/{ctx.artifact.name}/infer", "add-on", service_url,
            computed_by="detector service (alibi-detect), fed by the transformer's payload logger",
            routing="KServe transformer (kserve.Model with predictor_host) -> predictor; each request is logged "
                    "asynchronously (in order, bounded queue, CloudEvents binary mode) to the detector service",
            kind_equivalent="InferenceService spec.predictor.logger {mode: request, url: <detector service>} "
                            "(KServe's payload logger); detection itself is not part of KServe",
            notes="the transformer binds 0.0.0.0 like every kserve.ModelServer 0.20.0")


PLATFORM = Platform(
    name="kserve",
    display_name="KServe",
    deployments={"local": KServeLocal},
    facts={"runtime": "kserve.ModelServer (Python)", "licence": "Apache-2.0"},
)
