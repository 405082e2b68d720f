"""Seldon: MLServer with its scikit-learn runtime locally (what Seldon Core serves SKLEARN_SERVER
with under the V2 protocol, and what Seldon Core v2 runs); a SeldonDeployment on kind."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from deployers import formats
from testbed import v2
from testbed.backends.kind import detection as kind_detection, templates
from testbed.backends.kind.deployment import KindDeployment, Readiness, Target
from testbed.backends.kind.scrape_targets import GeneratedPod, Port
from testbed.backends.local import detection, envs, processes
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.serving import FormatSupport, ModelServing
from testbed.errors import RuntimeStartFailed
from testbed.platforms import (ALL, FAILED, OK, BatchingRun, BatchingSupport, Documented, DocumentedRow,
                               ExplainPath, MetricsCatalogue, OfflineJob, Platform, Signal, UserFile,
                               WireProtocol)

# uvloop 0.23 breaks MLServer 1.7.1's workers ("There is no current event loop").
# mlserver-alibi-explain and mlserver-alibi-detect pin pydantic==2.7.1 and TensorFlow in their metadata:
# installed --no-deps, with what they really import (alibi[shap]: KernelShap needs shap < 0.44 and
# numba < 0.60; alibi-detect: Seldon Core v2's detector runtime) resolved beside MLServer.
ENV = EnvSpec("mlserver", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "scikit-learn==1.5.2",
                           "numpy==1.26.4", "uvloop==0.21.0", "alibi[shap]==0.9.6", "shap==0.43.0",
                           "alibi-detect==0.13.0"),
              no_deps=("mlserver-alibi-explain==1.6.1", "mlserver-alibi-detect==1.6.1"))
EXPLAINER_SUFFIX = "-explainer"


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
        # The explainer calls the model while it loads: models are loaded in order by wait_ready
        # (at start-up they load concurrently, and one failed load aborts the server).
        "load_models_at_startup": False,
    }


RUNTIMES = {"sklearn": "mlserver_sklearn.SKLearnModel", "xgboost": "mlserver_xgboost.XGBoostModel",
            "lightgbm": "mlserver_lightgbm.LightGBMModel"}
"""MLServer's runtime per model format: what Seldon Core serves SKLEARN_SERVER, XGBOOST_SERVER and LIGHTGBM_SERVER
with under the V2 protocol."""


def _xgboost_refusal(artifact) -> str | None:
    if artifact.task != "classification":
        return None
    if (artifact.metadata.get("inspection") or {}).get("xgboost_sklearn_type") == "classifier":
        return None
    return ("MLServer's XGBoost runtime (mlserver-xgboost 1.7.1, _load_sklearn_interface) loads a file without "
            "XGBoost's scikit-learn metadata as an XGBRegressor, so this classifier (saved with Booster.save_model) "
            "would answer class-1 probabilities where labels are expected. What would work: save it with "
            "XGBClassifier.save_model (the scikit-learn API writes that metadata)")


def _lightgbm_refusal(artifact) -> str | None:
    if artifact.task != "classification":
        return None
    return ("MLServer's LightGBM runtime (mlserver-lightgbm 1.7.1) answers Booster.predict, the class probabilities, "
            "with no label output to ask for, and the testbed compares labels. What would work: the LGBMClassifier "
            "saved with joblib (MLServer's scikit-learn runtime answers labels and probabilities), or serving this "
            "file on KServe or Ray Serve")


SERVING = ModelServing(
    formats={
        "sklearn": FormatSupport("MLServer's scikit-learn runtime (mlserver_sklearn.SKLearnModel)", "native"),
        "xgboost": FormatSupport("MLServer's XGBoost runtime (mlserver_xgboost.XGBoostModel)", "native",
                                 ("mlserver-xgboost==1.7.1", formats.XGBOOST), _xgboost_refusal),
        "lightgbm": FormatSupport("MLServer's LightGBM runtime (mlserver_lightgbm.LightGBMModel)", "native",
                                  ("mlserver-lightgbm==1.7.1", formats.LIGHTGBM), _lightgbm_refusal),
    },
    unsupported={"onnx": "MLServer 1.7.1, Seldon's runtime here, has no ONNX runtime (there is no mlserver-onnx "
                         "release); Seldon Core serves ONNX through Triton (TRITON_SERVER), a container image the "
                         "local backend does not run. What would work: the model in its original scikit-learn, "
                         "XGBoost or LightGBM form, or this ONNX file on KServe or Ray Serve"})


def model_settings(artifact_path: Path, model_name: str, version: str, batching=None, model_file: str = "model.joblib",
                   implementation: str = RUNTIMES["sklearn"]) -> dict:
    settings = {
        "name": model_name,
        "implementation": implementation,
        "parameters": {"uri": str(artifact_path / model_file), "version": version},
    }
    if batching is not None and batching.enabled:
        # MLServer's adaptive batching: max_batch_time is in seconds.
        settings["max_batch_size"] = batching.max_batch_size
        settings["max_batch_time"] = batching.max_batch_time_ms / 1000.0
    return settings


def explainer_settings(model_name: str, version: str, saved_explainer: Path, infer_uri: str,
                       infer_output: str = "predict_proba") -> dict:
    """MLServer's alibi-explain runtime: black-box KernelShap calling the model's V2 route for predict_proba (a
    regression model's `predict`)."""
    return {
        "name": model_name + EXPLAINER_SUFFIX,
        "implementation": "mlserver_alibi_explain.AlibiExplainRuntime",
        "parameters": {
            "uri": str(saved_explainer),
            "version": version,
            "extra": {"explainer_type": "kernel_shap", "infer_uri": infer_uri, "infer_output": infer_output,
                      "explainer_batch": True},
        },
    }


def saved_explainer(python: Path, artifact, state_dir: Path, say=lambda m: None, env: EnvSpec = ENV) -> Path:
    """The KernelShap explainer fitted on the artifact and saved with alibi (by the mlserver env's python),
    reused while the artifact, the explainer code and the environment are unchanged."""
    code = b"".join((RUNTIMES_DIR / f).read_bytes() for f in ("explainer_io.py", "model_io.py"))
    key = hashlib.sha256(code + artifact.sha256.encode() + env.digest().encode()).hexdigest()[:12]
    out = state_dir / "explainers" / f"{artifact.path.name}-kernel_shap-{key}"
    if (out / "meta.dill").is_file():
        return out
    say("  fitting the KernelShap explainer for MLServer's alibi-explain runtime (first time only) ...")
    proc = subprocess.run([str(python), str(RUNTIMES_DIR / "explainer_io.py"), "save", "--artifact",
                           str(artifact.path), "--out", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeStartFailed("seldon", "fitting its explainer failed", "(no log: output below)", tail)
    return out


def explainer_unavailable(artifact) -> str | None:
    """Why MLServer's alibi-explain runtime cannot explain this model, or None."""
    if artifact.metadata.get("input") == "frame":
        return ("MLServer's alibi-explain runtime (1.6.1) calls the model's V2 route with one numeric tensor "
                "(NumpyRequestCodec), and this model takes named columns (a DataFrame with string categories): "
                "the explainer fails while it loads (ValueError: Specifying the columns using strings is only "
                "supported for dataframes). What would work: a model that takes one array (categories encoded "
                "as numbers before it), or an explainer of your own as a custom MLServer runtime")
    return None


class SeldonLocal(LocalProcess):
    platform = "seldon"
    detection_label = "native"
    env = ENV
    serving = SERVING
    port_names = ("http", "grpc", "metrics")
    version_packages = ("mlserver", "mlserver-sklearn", "mlserver-alibi-explain", "alibi", "shap", "scikit-learn",
                        "numpy")

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        repo = workdir / "models"
        model_dir = repo / ctx.artifact.name
        model_dir.mkdir(parents=True, exist_ok=True)
        (workdir / "metrics").mkdir(exist_ok=True)
        (repo / "settings.json").write_text(json.dumps(mlserver_settings(ports, workdir), indent=2))
        art = ctx.artifact
        (model_dir / "model-settings.json").write_text(
            json.dumps(model_settings(art.path, art.name, art.sha256[:12], ctx.settings.batching,
                                      art.metadata.get("model_file", "model.joblib"), RUNTIMES[art.format]), indent=2))
        if explainer_unavailable(art):
            ctx.say(f"  seldon: no explainer for {art.name}: {explainer_unavailable(art)}")
            return [str(python.parent / "mlserver"), "start", str(repo)]
        explainer_dir = repo / (art.name + EXPLAINER_SUFFIX)
        explainer_dir.mkdir(parents=True, exist_ok=True)
        infer_uri = f"http://127.0.0.1:{ports['http']}/v2/models/{art.name}/infer"
        (explainer_dir / "model-settings.json").write_text(json.dumps(explainer_settings(
            art.name, art.sha256[:12], saved_explainer(python, art, ctx.settings.state_dir, ctx.say, self.env),
            infer_uri, "predict" if art.task == "regression" else "predict_proba"), indent=2))
        return [str(python.parent / "mlserver"), "start", str(repo)]

    def wait_ready(self, ctx, timeout_s: float) -> Endpoint:
        """Load the model, then its explainer (which calls the model while loading), then check readiness."""
        endpoint = self.endpoint(ctx)
        deadline = self.started_at + timeout_s
        with httpx.Client(timeout=max(5.0, timeout_s)) as client:
            self._poll(client, endpoint.server_live_url, deadline, timeout_s)
            explainer = () if explainer_unavailable(ctx.artifact) else (ctx.artifact.name + EXPLAINER_SUFFIX,)
            for name in (ctx.artifact.name, *explainer):
                url = f"{endpoint.base_url}/v2/repository/models/{name}/load"
                try:
                    resp = client.post(url)
                except httpx.HTTPError as exc:
                    resp = None
                    reason = f"POST {url} failed: {exc}"
                if resp is None or resp.status_code != 200:
                    if resp is not None:
                        reason = f"POST {url} answered HTTP {resp.status_code}: {resp.text[:300]}"
                    raise RuntimeStartFailed(self.platform, reason, self.log_path, processes.log_tail(self.log_path))
        return super().wait_ready(ctx, timeout_s)

    def _poll(self, client: httpx.Client, url: str, deadline: float, timeout_s: float) -> None:
        while True:
            exit_code = processes.reap(self.pid)
            if exit_code is not None or not processes.alive(self.pid):
                raise RuntimeStartFailed(self.platform, f"its process (pid {self.pid}) exited", self.log_path,
                                         processes.log_tail(self.log_path))
            try:
                if client.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeStartFailed(self.platform, f"{url} did not answer 200 within {timeout_s:.0f}s",
                                         self.log_path, processes.log_tail(self.log_path))
            time.sleep(0.25)

    def endpoint(self, ctx) -> Endpoint:
        endpoint = super().endpoint(ctx)
        reason = explainer_unavailable(ctx.artifact)
        return dataclasses.replace(endpoint, explain_url=None, explain_unavailable=reason) if reason else endpoint

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base,
                        model_name=model_name, metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        explain_url=f"{base}/v2/models/{model_name}{EXPLAINER_SUFFIX}/infer",
                        notes=("served by MLServer, the runtime Seldon Core uses for SKLEARN_SERVER (v2 protocol)",
                               "explainer: MLServer alibi-explain runtime (KernelShap) calling the model's V2 route"))

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
        # No detector depends on another model, so they load at start-up (unlike the explainer).
        settings = {**mlserver_settings(me.ports, workdir), "parallel_workers": 1, "load_models_at_startup": True}
        (repo / "settings.json").write_text(json.dumps(settings, indent=2))
        return [str(python.parent / "mlserver"), "start", str(repo)]

    def detection_sidecars(self, ctx, service_url: str) -> list:
        fitted = ctx.extra["detectors"]
        sink = detection.sink_urls(service_url, self.platform, self.detection_label)["verdicts"]
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
                "--features", ",".join(ctx.artifact.feature_names), "--sink", sink,
                *(["--encode-columns", str(ctx.artifact.path / "metadata.json")] if self._columns(ctx) else [])])
        return [server, pipeline]

    @staticmethod
    def _columns(ctx) -> bool:
        """The model takes named columns (V2 'pd' requests, testbed/v2.py): MLServer's alibi-detect runtime decodes
        a request into one array, so a pipeline step of ours turns the columns into category codes first."""
        return ctx.artifact.metadata.get("input") == "frame"

    def detection_paths(self, ctx, service_url: str) -> dict:
        sidecars = ctx.extra["detection_sidecars"]
        instance = f"127.0.0.1:{sidecars['seldon-detector-server'].ports['metrics']}"
        return detection.path_info(
            ctx, self.platform, f"{sidecars['seldon-pipeline'].url}/v2/models/{ctx.artifact.name}/infer",
            self.detection_label, service_url,
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
            notes="" if not self._columns(ctx) else
                  "the model takes named columns with string categories: before the detector steps, a step of ours "
                  "(user code in the stand-in; a transformer Model in a real Pipeline) encodes the columns into "
                  "one tensor of category codes, since MLServer's alibi-detect runtime decodes a request into one "
                  "array",
            native_metrics="the detector MLServer exports seldon_model_drift (histogram: _count = windows, "
                           "_sum = alarms), scraped as job seldon-detector-server",
            native_promql={
                name: f'sum(seldon_model_drift_{series}{{model_name="{self.DRIFT_MODEL}",instance="{instance}"}})'
                for name, series in (("windows", "count"), ("alarms", "sum"))},
            detector_server=sidecars["seldon-detector-server"].url)


class SeldonKind(KindDeployment):
    """A Seldon Core v1 SeldonDeployment: SKLEARN_SERVER under protocol v2, i.e. MLServer, behind the
    Seldon executor (which the NodePort Service targets, as Seldon's own ingress would)."""

    platform = "seldon"
    detection_label = "add-on"
    recreated_by = "the SeldonDeployment's Deployment (its ReplicaSet)"
    api_version = "machinelearning.seldon.io/v1"
    kind = "SeldonDeployment"
    http_port = 8000
    predictor = "default"

    # Ports of the pod Seldon Core v1.18.2 generates (seldon-core-operator chart defaults, our values file
    # leaves them): the executor sidecar declares http 8000, metrics 8000, grpc 5001
    # (controllers/seldondeployment_engine.go createExecutorContainer; chart executor.port, DEFAULT_EXECUTOR_GRPC_PORT);
    # the MLServer model container declares grpc 9500 and http 9000 only: mergeMLServerContainer overwrites its
    # ports with getMLServerContainer's (mlserver.go; chart predictiveUnit.httpPort/grpcPort), dropping the
    # `metrics` port 6000 the defaulting added (apis/.../defaults.go addMetricsPortAndIncrement) while keeping the
    # MLSERVER_METRICS_PORT=6000 / MLSERVER_METRICS_ENDPOINT=/prometheus env it had set (createContainerService).
    EXECUTOR_CONTAINER = "seldon-container-engine"
    EXECUTOR_PORTS = (Port("http", 8000), Port("metrics", 8000), Port("grpc", 5001))
    MLSERVER_PORTS = (Port("grpc", 9500), Port("http", 9000))
    MLSERVER_METRICS_PORT = 6000
    MLSERVER_METRICS_PATH = "/prometheus"
    MLSERVER_ENDPOINT = "mlserver-metrics"
    """The `endpoint` label of MLServer's series (the executor's is `metrics`, its port name)."""

    def __init__(self, namespace: str | None = None, node_port: int | None = None, logger_url: str | None = None,
                 detection: bool | None = None):
        super().__init__(namespace, node_port)
        self.logger_url = logger_url
        """Payload logger on the model node: requests and responses as CloudEvents to this URL."""

        self.detection = kind_detection.logger_detection("SeldonKind", logger_url, detection)
        """Graph logger (mode request) to the detector service (testbed/backends/kind/detection.py).
        None: on when `up` deployed one in this namespace; e2e deployments in other namespaces have none."""

    @classmethod
    def variants(cls) -> list[dict]:
        return [{}, {"logger_url": "http://payload-sink.testbed.svc.cluster.local:8080/"}, {"detection": True},
                {"detection": False}]

    def render_resource(self, target: Target) -> dict:
        sdep = templates.render("seldon/seldondeployment.yaml", name=target.model_name, namespace=target.namespace,
                                predictor=self.predictor, model_name=target.model_name,
                                pvc_name=templates.PVC_NAME, artifact_subpath=target.artifact_subpath)
        if self.logger_url:
            sdep["spec"]["predictors"][0]["graph"]["logger"] = {"mode": "all", "url": self.logger_url}
        elif self.detection_on(target):
            # The Seldon executor logs the model node's request (mode request: before calling MLServer) as a
            # CloudEvent, binary mode, body = the V2 request as received, to url as given
            # (executor/api/predictor/predictor_process.go logPayload, executor/logger/worker.go). The CRD
            # types mode as a plain string; the executor acts on all|request|response (v1.LogRequest = "request").
            sdep["spec"]["predictors"][0]["graph"]["logger"] = kind_detection.payload_logger(
                self.detector_service(target), self.platform)
        return sdep

    def detection_route(self, target: Target, base_url: str) -> dict | None:
        return {"url": f"{base_url}/v2/models/{target.model_name}/infer", "label": self.detection_label,
                "mechanism": kind_detection.PAYLOAD_LOGGER,
                "computed_by": "detector service (alibi-detect) in the cluster, fed by the Seldon executor's "
                               "payload logger",
                "routing": "SeldonDeployment graph.logger {mode: request} on the model node: the executor posts each "
                           "request asynchronously as a CloudEvent (binary mode) to the detector service, as Seldon "
                           "Core v1's own outlier/drift examples do with its alibi-detect server",
                "kind_equivalent": "this is the kind form (Seldon Core v1); locally MLServer's alibi-detect runtime "
                                   "as Seldon Core v2 runs it",
                "notes": "the logger is part of the graph: every request to this SeldonDeployment enters the same "
                         "drift windows; the events carry ce-id = a fresh UUID, the V2 body's id names the request"}

    def pod_selector(self, target: Target) -> dict[str, str]:
        return {"seldon-deployment-id": target.model_name}

    def render_podmonitor(self, target: Target) -> dict:
        # The model container is named after the graph node, which the template names after the model.
        return templates.render("seldon/podmonitor.yaml", name=f"testbed-{self.platform}", namespace=target.namespace,
                                selector=self.pod_selector(target), model_container=target.model_name,
                                mlserver_metrics_port=str(self.MLSERVER_METRICS_PORT),
                                mlserver_metrics_path=self.MLSERVER_METRICS_PATH, mlserver_endpoint=self.MLSERVER_ENDPOINT)

    def generated_pods(self, target: Target) -> list[GeneratedPod]:
        graph = self.render_resource(target)["spec"]["predictors"][0]["graph"]
        return [GeneratedPod("SeldonDeployment predictor pod", target.namespace, self.pod_selector(target),
                             {graph["name"]: self.MLSERVER_PORTS, self.EXECUTOR_CONTAINER: self.EXECUTOR_PORTS},
                             source="seldon-core v1.18.2 operator: mlserver.go, seldondeployment_engine.go")]

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
                               "metrics_url is the Seldon executor's (seldon_api_executor_*); Prometheus scrapes it and, "
                               "in the cluster only, MLServer's own metrics (model container, <pod IP>:6000/prometheus, "
                               "endpoint label mlserver-metrics)"))


# --- formats: MLServer's own runtimes, no user code ---------------------------------------------------
FORMATS_ENV = EnvSpec("mlserver-formats", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "mlserver-xgboost==1.7.1",
                                           "mlserver-lightgbm==1.7.1", *formats.BASE, formats.XGBOOST,
                                           formats.LIGHTGBM, "uvloop==0.21.0"))
FORMAT_RUNTIMES = {"sklearn": "mlserver_sklearn.SKLearnModel", "xgboost": "mlserver_xgboost.XGBoostModel",
                   "lightgbm": "mlserver_lightgbm.LightGBMModel"}


class MLServerFormats(formats.FormatServer):
    """MLServer with its runtimes mlserver-sklearn, -xgboost, -lightgbm. MLServer 1.7.1 has no ONNX
    runtime (Seldon serves ONNX through Triton)."""

    platform = "seldon"
    env = FORMATS_ENV
    mechanism = {f: ("native" if f in FORMAT_RUNTIMES else "none") for f in formats.FORMATS}
    version_packages = ("mlserver", "mlserver-sklearn", "mlserver-xgboost", "mlserver-lightgbm", "xgboost",
                        "lightgbm", "scikit-learn")

    def command(self, python, http_port, workdir, model_dir, n_features):
        grpc, metrics = (processes.claim_port(None, f"seldon formats {n}") for n in ("grpc", "metrics"))
        repo = workdir / "models"
        for fmt, impl in FORMAT_RUNTIMES.items():
            (repo / fmt).mkdir(parents=True, exist_ok=True)
            (repo / fmt / "model-settings.json").write_text(json.dumps(
                {"name": fmt, "implementation": impl, "parameters": {"uri": str(model_dir / fmt / formats.FILES[fmt])}}))
        (repo / "settings.json").write_text(json.dumps(
            {"host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc, "metrics_port": metrics,
             "metrics_dir": str(workdir), "parallel_workers": 0, "load_models_at_startup": False}))
        return [str(python.parent / "mlserver"), "start", str(repo)]

    def loaded(self, client, workdir):
        errors = {}
        # Load each model on its own: one failing runtime must not hide the others.
        for fmt in FORMAT_RUNTIMES:
            resp = client.post(f"{self.base_url}/v2/repository/models/{fmt}/load", timeout=120)
            if resp.status_code != 200:
                errors[fmt] = f"HTTP {resp.status_code}: {resp.text[:300]}"
        errors["onnx"] = ("no MLServer runtime for ONNX in 1.7.1 (no mlserver-onnx release); "
                          "Seldon serves ONNX through Triton (TRITON_SERVER), a container image")
        return errors


# --- monitoring ---------------------------------------------------------------------------------------
# Templates use $platform and $model (string.Template): PromQL needs the braces.
INFER = 'platform="$platform",path="/v2/models/{model_name}/infer",method="POST"'
# Every signal below reads MLServer's series. Locally MLServer is the whole platform; on kind each
# SeldonDeployment pod has two metrics sources, which its PodMonitor (manifests/seldon/podmonitor.yaml)
# scrapes as two endpoints of job "seldon", told apart by the `endpoint` and `container` labels.
MLSERVER_PREFIXES = ("rest_server_", "model_infer_", "batch_request_queue", "parallel_request_queue")
METRIC_SOURCES = {
    "local": {p: "MLServer 1.7.1 (its metrics port, /metrics)" for p in MLSERVER_PREFIXES},
    "kind": {**{p: 'MLServer 1.7.1 in the model container: <pod IP>:6000/prometheus (MLSERVER_METRICS_PORT/'
                   '_ENDPOINT, set by the operator but not declared), series labelled endpoint="mlserver-metrics", '
                   'container="<model name>"' for p in MLSERVER_PREFIXES},
             "seldon_api_executor_": 'Seldon Core v1.18.2 executor sidecar (seldon-container-engine): port metrics '
                                     '(8000) /prometheus, series labelled endpoint="metrics", '
                                     'container="seldon-container-engine"; the requests it forwards, timed from the '
                                     'executor (no signal above reads them)'},
}
METRICS = MetricsCatalogue(
    sources=METRIC_SOURCES,
    infer_requests_promql='sum(model_infer_request_success_total{job="seldon"})',
    signals={
        "requests_total": Signal("sum(rest_server_requests_total{%s})" % INFER, ALL,
                                 "REST middleware counter; its path label is the route template, so it "
                                 "sums every model on the server"),
        "requests_ok": Signal('sum(model_infer_request_success_total{platform="$platform",model="$model"})', OK),
        "requests_failed": Signal('sum(model_infer_request_failure_total{platform="$platform",model="$model"})',
                                  FAILED),
        "latency_histogram": Signal('sum(rest_server_request_duration_seconds_bucket{%s,le="+Inf"})' % INFER, ALL,
                                    "model_infer_request_duration is a summary (no buckets); the REST "
                                    "histogram has buckets"),
        "status_codes": Signal('sum(rest_server_requests_total{%s,status_code!~"2.."})' % INFER, FAILED,
                               "status_code label on rest_server_requests_total"),
        "queue_or_batch": Signal('count({platform="$platform",'
                                 '__name__=~"batch_request_queue.*|parallel_request_queue.*"})',
                                 note="batch_request_queue exists only with adaptive batching (max_batch_size > 1), "
                                 "parallel_request_queue only with parallel workers; the testbed runs neither"),
        "model_label": Signal('count(model_infer_request_success_total{platform="$platform",model="$model"})',
                              note="model and version labels on model_infer_request_*"),
    })

# --- explanations -------------------------------------------------------------------------------------
ALIBI_METHODS = ["anchor_tabular", "anchor_text", "anchor_image", "kernel_shap", "integrated_gradients",
                 "tree_shap", "tree_partial_dependence", "tree_partial_dependence_variance"]
EXPLAIN = ExplainPath(
    request="v2", response="v2-bytes", mechanism="native",
    route="MLServer alibi-explain runtime as a second model (<m>-explainer) calling the model's V2 infer "
          "route (Seldon Core v2: Model spec.explainer {type, modelRef})",
    methods_offered={
        "built_in": ALIBI_METHODS,
        "black_box_via_infer_uri": ["anchor_tabular", "anchor_text", "anchor_image", "kernel_shap"],
        "note": "runtime package mlserver-alibi-explain 1.6.1 (Apache-2.0) with alibi 0.9.6 (BSL-1.1); "
                "Seldon Core v2's Model CRD has spec.explainer",
    })


# --- batching -----------------------------------------------------------------------------------------
def batching_evidence(run: BatchingRun) -> dict:
    """The model-settings.json MLServer was started with (max_batch_size, max_batch_time applied)."""
    path = run.workdir / "models" / run.model_name / "model-settings.json"
    return {"applied_model_settings": json.loads(path.read_text()) if path.is_file() else None}


def offline_mlserver_infer(mlserver_bin: Path, endpoint: Endpoint, X: np.ndarray, rows_per_line: int = 1000,
                           workers: int = 2, timeout_s: float = 600.0) -> dict:
    """MLServer's batch command: `mlserver infer` over a file of V2 requests (one per line)."""
    with tempfile.TemporaryDirectory(prefix="testbed-mlserver-infer-") as tmp:
        inp, out = Path(tmp) / "requests.jsonl", Path(tmp) / "responses.jsonl"
        with open(inp, "w") as fh:
            for j, i in enumerate(range(0, len(X), rows_per_line)):
                fh.write(json.dumps(v2.request_body(X[i:i + rows_per_line], request_id=f"r{j}")) + "\n")
        url = endpoint.base_url.split("://", 1)[1]
        cmd = [str(mlserver_bin), "infer", "-u", url, "-m", endpoint.model_name, "-i", str(inp), "-o", str(out),
               "-w", str(workers), "-s", "1"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            return {"path": "mlserver infer", "error": f"exit {proc.returncode}: {proc.stderr[-500:]}",
                    "rows": 0, "rows_per_s": None, "seconds": seconds}
        chunks: dict[int, list] = {}
        failed = 0
        for line in out.read_text().splitlines():
            resp = json.loads(line)
            idx = (resp.get("parameters") or {}).get("batch_index")
            try:
                chunks[int(idx)] = v2.predictions(resp, "mlserver infer")
            except Exception:  # noqa: BLE001 - an error item: counted, not dropped
                failed += 1
    n_lines = (len(X) + rows_per_line - 1) // rows_per_line
    labels = np.concatenate([np.asarray(chunks[i], dtype=np.int64) if i in chunks
                             else np.full(min(rows_per_line, len(X) - i * rows_per_line), -1) for i in range(n_lines)])
    rows_ok = int(sum(len(v) for v in chunks.values()))
    # The command logs its own processing time (after its imports and set-up, which take seconds).
    m = re.search(r"Time taken: ([\d.]+) seconds", proc.stdout + proc.stderr)
    processing = float(m.group(1)) if m else None
    return {"path": f"mlserver infer ({rows_per_line} rows per request, {workers} workers; wall time, its "
                    f"start-up included)",
            "rows": rows_ok, "seconds": seconds, "rows_per_s": rows_ok / seconds, "failed_requests": failed,
            "missing_requests": n_lines - len(chunks) - failed, "processing_s_reported": processing,
            "rows_per_s_processing": rows_ok / processing if processing else None, "labels": labels}


def offline_job(job: OfflineJob) -> dict:
    return offline_mlserver_infer(envs.env_dir(ENV, job.envs_dir) / "bin" / "mlserver", job.endpoint, job.rows,
                                  rows_per_line=job.chunk_rows // 5)


BATCHING = BatchingSupport(
    mechanism="native", offline="native",
    detail="MLServer adaptive batching (model-settings.json max_batch_size, max_batch_time)",
    evidence=batching_evidence, offline_job=offline_job)


DOCUMENTED = DocumentedRow("Seldon Core", {
    "formats": Documented("Prepackaged servers: SKLEARN_SERVER, XGBOOST_SERVER, MLFLOW_SERVER, TRITON_SERVER (onnx, tf, pytorch), custom; v2: MLServer/Triton runtimes",
        ("https://docs.seldon.ai/seldon-core-1/configuration/servers",)),
    "outlier": Documented("alibi-detect outlier detectors via graph logger (v1) or as pipeline Models (v2)",
        ("https://docs.seldon.ai/seldon-core-2/user-guide/data-science-monitoring/outlier",)),
    "drift": Documented("alibi-detect drift detectors, batched in a v2 Pipeline step (needs Kafka)",
        ("https://docs.seldon.ai/seldon-core-2/user-guide/data-science-monitoring/drift",)),
    "monitoring": Documented("Prometheus: seldon_api_executor_* (v1), seldon_model_infer_* (v2), MLServer model_infer_request_*",
        ("https://docs.seldon.ai/seldon-core-2/user-guide/operational-monitoring/observability",)),
    "explainability": Documented("alibi explainers (AnchorTabular, KernelShap, ...) via explainer: spec / MLServer alibi-explain",
        ("https://docs.seldon.ai/seldon-core-2/user-guide/data-science-monitoring/explainers",)),
    "cicd": Documented("Declarative CRs (GitOps); v2 experiments for A/B and shadow",
        ("https://docs.seldon.ai/seldon-core-2/user-guide/experiments",)),
    "deployment_focus": Documented(
        "Kubernetes inference graphs/pipelines with monitoring and explainers. Maintenance of MLServer (what "
        "the testbed runs) is open: Seldon, its maintainer, is in liquidation and the acquirer of its assets "
        "decides (MLServer issue #2404, April 2026); MLflow removed its MLServer backend calling the project no "
        "longer actively maintained",
        ("https://docs.seldon.ai/seldon-core-2", "https://github.com/SeldonIO/MLServer/issues/2404",
         "https://github.com/mlflow/mlflow/pull/22994")),
    "cost_licence": Documented("BSL-1.1 for Seldon Core v1 >= 1.18 and v2 >= 2.7 (non-production use allowed; production needs the Additional Use Grant or a licence); MLServer stays Apache-2.0",
        ("https://www.seldon.io/resources/licensing-faqs",)),
    "docker": Documented("Yes: prepackaged server images; custom images via the Python wrapper or MLServer",
        ("https://docs.seldon.ai/seldon-core-1/configuration/servers",)),
    "batching": Documented("MLServer adaptive batching (max_batch_size, max_batch_time); offline: seldon-batch-processor (v1), mlserver infer",
        ("https://mlserver.readthedocs.io/en/latest/user-guide/adaptive-batching.html",)),
    "ease": Documented("helm chart seldon-core-operator (v1) or four v2 charts; v2 needs Kafka for pipelines",
        ("https://docs.seldon.ai/seldon-core-2/installation",)),
    "robustness": Documented("Kubernetes restarts failed pods; v2 dataflow engine crash-loops without Kafka",
        ("https://docs.seldon.ai/seldon-core-2/installation",)),
})


PLATFORM = Platform(
    name="seldon",
    display_name="Seldon Core (MLServer)",
    deployments={"local": SeldonLocal, "kind": SeldonKind},
    protocol=WireProtocol(where="native", validation="native",
                          validation_note="MLServer decodes and validates V2 itself"),
    metrics=METRICS,
    explain=EXPLAIN,
    batching=BATCHING,
    formats=MLServerFormats,
    # MLServer is configured by JSON files (the testbed generates them into the run directory).
    user_files=(UserFile("config", "run:seldon/models/settings.json"),
                UserFile("config", "run:seldon/models/{model}/model-settings.json")),
    documented=DOCUMENTED,
    facts={"runtime": "MLServer (Seldon)", "licence": "MLServer Apache-2.0; Seldon Core >=1.18 / >=2.7 BSL-1.1",
           "batching": "MLServer adaptive batching (max_batch_size, max_batch_time in model-settings.json); "
                       "offline: `mlserver infer`"},
)
