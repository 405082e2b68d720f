"""Seldon: MLServer with its scikit-learn runtime locally (what Seldon Core serves SKLEARN_SERVER
with under the V2 protocol, and what Seldon Core v2 runs); a SeldonDeployment on kind."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.backends.local.deployment import LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.platforms import Platform

# uvloop 0.23 breaks MLServer 1.7.1's workers ("There is no current event loop").
ENV = EnvSpec("mlserver", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "scikit-learn==1.5.2",
                           "numpy==1.26.4", "uvloop==0.21.0"))


def mlserver_settings(ports: dict[str, int], workdir: Path) -> dict:
    return {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": ports["http"],
        "grpc_port": ports["grpc"],
        "metrics_port": ports["metrics"],
        "metrics_dir": str(workdir / "metrics"),
        # In-process inference: one process to account for, and no uvloop worker pool.
        "parallel_workers": 0,
        "load_models_at_startup": True,
    }


def model_settings(artifact_path: Path, model_name: str, version: str, batching=None) -> dict:
    settings = {
        "name": model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(artifact_path / "model.joblib"), "version": version},
    }
    if batching is not None and batching.enabled:
        # MLServer's adaptive batching: max_batch_time is in seconds.
        settings["max_batch_size"] = batching.max_batch_size
        settings["max_batch_time"] = batching.max_batch_time_ms / 1000.0
    return settings


class SeldonLocal(LocalProcess):
    platform = "seldon"
    env = ENV
    port_names = ("http", "grpc", "metrics")
    version_packages = ("mlserver", "mlserver-sklearn", "scikit-learn", "numpy")

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        repo = workdir / "models"
        model_dir = repo / ctx.artifact.name
        model_dir.mkdir(parents=True, exist_ok=True)
        (workdir / "metrics").mkdir(exist_ok=True)
        (repo / "settings.json").write_text(json.dumps(mlserver_settings(ports, workdir), indent=2))
        (model_dir / "model-settings.json").write_text(
            json.dumps(model_settings(ctx.artifact.path, ctx.artifact.name, ctx.artifact.sha256[:12],
                                      ctx.settings.batching), indent=2))
        return [str(python.parent / "mlserver"), "start", str(repo)]

    def make_endpoint(self, ports, model_name) -> Endpoint:
        return Endpoint(platform=self.platform, backend="local", base_url=f"http://127.0.0.1:{ports['http']}",
                        model_name=model_name, metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        notes=("served by MLServer, the runtime Seldon Core uses for SKLEARN_SERVER (v2 protocol)",))


PLATFORM = Platform(
    name="seldon",
    display_name="Seldon Core (MLServer)",
    deployments={"local": SeldonLocal},
    facts={"runtime": "MLServer (Seldon)", "licence": "MLServer Apache-2.0; Seldon Core >=1.18 / >=2.7 BSL-1.1",
           "batching": "MLServer adaptive batching (max_batch_size, max_batch_time in model-settings.json); "
                       "offline: `mlserver infer`"},
)
