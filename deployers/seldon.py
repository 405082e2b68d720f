"""Seldon: MLServer with its scikit-learn runtime locally (what Seldon Core serves SKLEARN_SERVER
with under the V2 protocol, and what Seldon Core v2 runs); a SeldonDeployment on kind."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.backends.kind import templates
from testbed.backends.kind.deployment import KindDeployment, Readiness, Target
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


def model_settings(artifact_path: Path, model_name: str, version: str) -> dict:
    return {
        "name": model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(artifact_path / "model.joblib"), "version": version},
    }


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
            json.dumps(model_settings(ctx.artifact.path, ctx.artifact.name, ctx.artifact.sha256[:12]), indent=2))
        return [str(python.parent / "mlserver"), "start", str(repo)]

    def make_endpoint(self, ports, model_name) -> Endpoint:
        return Endpoint(platform=self.platform, backend="local", base_url=f"http://127.0.0.1:{ports['http']}",
                        model_name=model_name, metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        notes=("served by MLServer, the runtime Seldon Core uses for SKLEARN_SERVER (v2 protocol)",))


class SeldonKind(KindDeployment):
    """A Seldon Core v1 SeldonDeployment: SKLEARN_SERVER under protocol v2, i.e. MLServer, behind the
    Seldon executor (which the NodePort Service targets, as Seldon's own ingress would)."""

    platform = "seldon"
    api_version = "machinelearning.seldon.io/v1"
    kind = "SeldonDeployment"
    http_port = 8000
    predictor = "default"

    def __init__(self, namespace: str | None = None, node_port: int | None = None, logger_url: str | None = None):
        super().__init__(namespace, node_port)
        self.logger_url = logger_url
        """Payload logger on the model node: requests and responses as CloudEvents to this URL."""

    @classmethod
    def variants(cls) -> list[dict]:
        return [{}, {"logger_url": "http://payload-sink.testbed.svc.cluster.local:8080/"}]

    def render_resource(self, target: Target) -> dict:
        sdep = templates.render("seldon/seldondeployment.yaml", name=target.model_name, namespace=target.namespace,
                                predictor=self.predictor, model_name=target.model_name,
                                pvc_name=templates.PVC_NAME, artifact_subpath=target.artifact_subpath)
        if self.logger_url:
            sdep["spec"]["predictors"][0]["graph"]["logger"] = {"mode": "all", "url": self.logger_url}
        return sdep

    def pod_selector(self, target: Target) -> dict[str, str]:
        return {"seldon-deployment-id": target.model_name}

    def readiness(self, obj: dict) -> Readiness:
        status = obj.get("status") or {}
        state, description = status.get("state"), status.get("description") or ""
        if state == "Available":
            return Readiness(True, "Available")
        if state == "Failed":
            return Readiness(False, f"state Failed: {description}", failed=True)
        return Readiness(False, f"state {state or 'not set yet'}" + (f": {description}" if description else ""))

    def _ready_text(self) -> str:
        return "status.state Available"

    def make_endpoint(self, base_url: str, model_name: str) -> Endpoint:
        return Endpoint(platform=self.platform, backend="kind", base_url=base_url, model_name=model_name,
                        metrics_url=f"{base_url}/prometheus",
                        notes=("SeldonDeployment (Seldon Core v1, BSL-1.1) serving SKLEARN_SERVER with MLServer under "
                               "protocol v2, through the Seldon executor on a NodePort Service on 127.0.0.1",
                               "metrics_url is the Seldon executor's (seldon_api_executor_*), also what Prometheus scrapes"))


PLATFORM = Platform(
    name="seldon",
    display_name="Seldon Core (MLServer)",
    infer_requests_promql='sum(model_infer_request_success_total{job="seldon"})',
    deployments={"local": SeldonLocal, "kind": SeldonKind},
    facts={"runtime": "MLServer (Seldon)", "licence": "MLServer Apache-2.0; Seldon Core >=1.18 / >=2.7 BSL-1.1"},
)
