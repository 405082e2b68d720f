"""Seldon: MLServer with its scikit-learn runtime locally (what Seldon Core serves SKLEARN_SERVER
with under the V2 protocol, and what Seldon Core v2 runs); a SeldonDeployment on kind."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.backends.local import detection
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.platforms import Platform

# uvloop 0.23 breaks MLServer 1.7.1's workers ("There is no current event loop").
# alibi-detect + mlserver-alibi-detect serve the saved detectors (Seldon Core v2's detector runtime);
# mlserver-alibi-detect goes in --no-deps: its metadata pins pydantic==2.7.1 and TensorFlow.
ENV = EnvSpec("mlserver", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "scikit-learn==1.5.2",
                           "numpy==1.26.4", "uvloop==0.21.0", "alibi-detect==0.13.0"),
              no_deps=("mlserver-alibi-detect==1.6.1",))


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

    # --- detection: detectors on a second MLServer (native runtime); routing by a v2 pipeline stand-in ----
    OUTLIER_MODEL = "outlier-detector"
    DRIFT_MODEL = "drift-detector"

    def detector_model_settings(self, ctx) -> dict[str, dict]:
        fitted = ctx.extra["detectors"]
        return {
            self.OUTLIER_MODEL: {"name": self.OUTLIER_MODEL,
                                 "implementation": "mlserver_detectors.PickledAlibiDetectRuntime",
                                 "parameters": {"uri": str(fitted.path), "version": fitted.metadata["config_key"],
                                                "extra": {"model_sha256": ctx.artifact.sha256,
                                                          "n_features": len(ctx.artifact.feature_names)}}},
            # MLServer's runtime counts batch_size in requests: one window = window_rows / request_rows requests.
            self.DRIFT_MODEL: {"name": self.DRIFT_MODEL, "implementation": "mlserver_alibi_detect.AlibiDetectRuntime",
                               "parameters": {"uri": str(fitted.path / "drift"), "version": fitted.metadata["config_key"],
                                              "extra": {"batch_size": fitted.window_rows // fitted.request_rows}}},
        }

    def _detector_server_command(self, ctx, python: Path, me, workdir: Path) -> list[str]:
        """A second MLServer, as Seldon Core v2 would schedule detector Models on a Server: it starts in
        parallel with the classifier's and imports alibi-detect (10-15 s) without delaying it."""
        repo = workdir / "models"
        (workdir / "metrics").mkdir(parents=True, exist_ok=True)
        for name, settings in self.detector_model_settings(ctx).items():
            (repo / name).mkdir(parents=True, exist_ok=True)
            (repo / name / "model-settings.json").write_text(json.dumps(settings, indent=2))
        # One inference worker: with parallel_workers 0, MLServer 1.7.1 serves prometheus_client's default
        # registry at /metrics, while custom metrics (mlserver.log, e.g. the runtime's seldon_model_drift)
        # go to mlserver.metrics.REGISTRY and are never exported; with workers, both go to the multiprocess
        # files it does export.
        settings = {**mlserver_settings(me.ports, workdir), "parallel_workers": 1}
        (repo / "settings.json").write_text(json.dumps(settings, indent=2))
        return [str(python.parent / "mlserver"), "start", str(repo)]

    def detection_sidecars(self, ctx, service_url: str) -> list:
        fitted = ctx.extra["detectors"]
        sink = detection.sink_urls(service_url, self.platform, "native")["verdicts"]
        server = detection.Sidecar(
            name="seldon-detector-server", env=ENV, ready_path="/v2/health/ready",
            port_names=("http", "grpc", "metrics"), metrics_port="metrics", labels=(("platform", self.platform),),
            # MLServer imports the outlier detector's runtime (mlserver_detectors.py) from here.
            extra_env={"PYTHONPATH": str(RUNTIMES_DIR)},
            command=lambda py, me, workdir: self._detector_server_command(ctx, py, me, workdir))
        pipeline = detection.Sidecar(
            name="seldon-pipeline", env=ENV, ready_path="/v2/health/ready",
            command=lambda py, me, _: [
                str(py), str(RUNTIMES_DIR / "seldon_pipeline.py"), "--port", str(me.port),
                "--mlserver", f"http://127.0.0.1:{self.ports['http']}", "--detector-server", server.url,
                "--model", ctx.artifact.name, "--outlier-model", self.OUTLIER_MODEL, "--drift-model", self.DRIFT_MODEL,
                "--outlier-threshold", str(fitted.metadata["outlier"]["threshold"]),
                "--features", ",".join(ctx.artifact.feature_names), "--sink", sink])
        return [server, pipeline]

    def detection_paths(self, ctx, service_url: str) -> dict:
        sidecars = ctx.extra["detection_sidecars"]
        instance = f"127.0.0.1:{sidecars['seldon-detector-server'].ports['metrics']}"
        return detection.path_info(
            ctx, self.platform, f"{sidecars['seldon-pipeline'].url}/v2/models/{ctx.artifact.name}/infer", "native",
            service_url,
            computed_by="MLServer alibi-detect runtime (mlserver_alibi_detect 1.6.1) on a second MLServer; the "
                        "outlier model through a subclass that only swaps loading (save_detector cannot save it "
                        "without TensorFlow)",
            routing="testbed stand-in for one Seldon Core v2 Pipeline (deployers/runtimes/seldon_pipeline.py): the "
                    "v2 scheduler, pipeline gateway and Kafka dataflow do not run locally, so the stand-in answers "
                    "with the model step and feeds both detector models asynchronously, in order; its latency "
                    "is not Kafka's",
            kind_equivalent="Seldon Core v2 Pipeline with steps [model, outlier-detector, drift-detector "
                            "(batch.size)], detectors as Model CRs on an MLServer Server; Seldon Core v1: the "
                            "SeldonDeployment logger to the detector service",
            native_metrics="the detector MLServer exports seldon_model_drift (histogram: _count = windows, "
                           "_sum = alarms), scraped as job seldon-detector-server",
            native_promql={
                name: f'sum(seldon_model_drift_{series}{{model_name="{self.DRIFT_MODEL}",instance="{instance}"}})'
                for name, series in (("windows", "count"), ("alarms", "sum"))},
            detector_server=sidecars["seldon-detector-server"].url)

PLATFORM = Platform(
    name="seldon",
    display_name="Seldon Core (MLServer)",
    deployments={"local": SeldonLocal},
    facts={"runtime": "MLServer (Seldon)", "licence": "MLServer Apache-2.0; Seldon Core >=1.18 / >=2.7 BSL-1.1"},
)
