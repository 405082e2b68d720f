"""KServe: the Python ModelServer locally; an InferenceService on kind."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import yaml

from deployers import formats
from testbed.backends.kind import detection as kind_detection, templates
from testbed.backends.kind.pins import CLUSTER_DIR
from testbed.backends.kind.budget import Item, cpu, memory
from testbed.backends.kind.deployment import KindDeployment, Readiness, Target
from testbed.backends.kind.scrape_targets import GeneratedPod, Port
from testbed.backends.local import detection
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.platforms import (ALL, FAILED, OK, BatchingSupport, Documented, DocumentedRow, ExplainPath,
                               MetricsCatalogue, Platform, Signal, UserFile, WireProtocol)
from testbed.serving import FormatSupport, ModelServing

def upstream_file(version: str, name: str) -> Path:
    """A file of KServe's Helm charts at `version`, vendored under cluster/upstream/ (SOURCES.md there)."""
    path = CLUSTER_DIR / "upstream" / f"kserve-{version}" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the kind backend pins KServe {version}; vendor that release's "
                                f"{name.replace('.', '/', 1)} there (cluster/upstream/SOURCES.md says from where)")
    return path


@lru_cache(maxsize=None)
def runtime_ports(version: str, runtime: str) -> tuple:
    """The ports the ClusterServingRuntime's kserve-container declares (kserve-runtime-configs' base resources;
    its patch, which the chart deep-merges on top, adds none: tests/test_kind_scrape_targets.py checks)."""
    docs = yaml.safe_load_all(upstream_file(version, "kserve-runtime-configs.resources.yaml").read_text())
    for doc in docs:
        if doc and doc.get("kind") == "ClusterServingRuntime" and doc["metadata"]["name"] == runtime:
            container = next(c for c in doc["spec"]["containers"] if c["name"] == "kserve-container")
            return tuple(Port(p.get("name"), int(p["containerPort"])) for p in container.get("ports") or [])
    raise KeyError(f"ClusterServingRuntime {runtime!r} is not in kserve-runtime-configs {version}")


@lru_cache(maxsize=None)
def agent_requests(version: str) -> tuple[str, str]:
    """(cpu, memory) requests of the agent sidecar: pkg/webhook/admission/pod/agent_injector.go sizes it from the
    `agent` entry of inferenceservice-config (agentConfig), for a logger and a batcher alike; kserve-resources
    writes that entry with fixed values (no chart value sets them)."""
    configmap = yaml.safe_load(upstream_file(version, "kserve-resources.configmap-patch.yaml").read_text())
    agent = json.loads(configmap["data"]["agent"])
    return agent["cpuRequest"], agent["memoryRequest"]


# alibi[shap] 0.9.6 (KernelShap) needs shap < 0.44 and numba < 0.60; shap 0.43.0 is the release that works with it.
ENV = EnvSpec("kserve", ("kserve==0.20.0", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3",
                         "alibi[shap]==0.9.6", "shap==0.43.0"))


SERVING = ModelServing(formats={
    "sklearn": FormatSupport("our kserve.Model (deployers/runtimes/kserve_server.py): joblib.load", "user code"),
    "xgboost": FormatSupport("our kserve.Model: XGBClassifier / XGBRegressor .load_model", "user code",
                             (formats.XGBOOST,)),
    "lightgbm": FormatSupport("our kserve.Model: lightgbm.Booster(model_file=...)", "user code", (formats.LIGHTGBM,)),
    "onnx": FormatSupport("our kserve.Model: onnxruntime.InferenceSession", "user code", (formats.ONNXRUNTIME,)),
})
"""KServe's own format servers (sklearnserver, xgbserver, lgbserver, Triton for ONNX) are container images, the local
backend runs none: its ModelServer serves every format through our kserve.Model, with the format's library."""


class KServeLocal(LocalProcess):
    platform = "kserve"
    env = ENV
    serving = SERVING
    port_names = ("http",)
    version_packages = ("kserve", "scikit-learn", "numpy", "alibi", "shap")
    detection_label = "add-on"
    loopback_by_testbed = ("KServe 0.20.0 hard-codes 0.0.0.0 for its REST server (kserve/protocol/rest/server.py:94) "
                           "with no parameter, flag or variable; the testbed's ModelServer subclass "
                           "(deployers/runtimes/kserve_loopback.py) binds it to 127.0.0.1",)

    def command(self, python: Path, ports, workdir, ctx) -> list[str]:
        return [str(python), str(RUNTIMES_DIR / "kserve_server.py"), "--artifact", str(ctx.artifact.path),
                "--http-port", str(ports["http"]), "--model-name", ctx.artifact.name]

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base, model_name=model_name,
                        metrics_url=f"{base}/metrics", explain_url=f"{base}/v1/models/{model_name}:explain",
                        notes=("kserve.ModelServer 0.20.0 hard-codes 0.0.0.0 for its HTTP server and has no option "
                               "for it; the testbed's subclass (deployers/runtimes/kserve_loopback.py) binds 127.0.0.1",))

    # --- detection (add-on): a transformer in front of the predictor logs payloads to the detector service
    def detection_sidecars(self, ctx, service_url: str) -> list:
        sink = detection.sink_urls(service_url, self.platform, self.detection_label)["events"]
        model = ctx.artifact.name
        return [detection.Sidecar(
            name="kserve-transformer", env=ENV, ready_path=f"/v2/models/{model}/ready",
            command=lambda py, me, _: [str(py), str(RUNTIMES_DIR / "kserve_transformer.py"), "--http-port",
                                       str(me.port), "--predictor-host", f"127.0.0.1:{self.ports['http']}",
                                       "--model-name", model, "--sink", sink])]

    def detection_paths(self, ctx, service_url: str) -> dict:
        transformer = ctx.extra["detection_sidecars"]["kserve-transformer"]
        return detection.path_info(
            ctx, self.platform, f"{transformer.url}/v2/models/{ctx.artifact.name}/infer", self.detection_label,
            service_url,
            computed_by="detector service (alibi-detect), fed by the transformer's payload logger",
            routing="KServe transformer (kserve.Model with predictor_host) -> predictor; each request is logged "
                    "asynchronously (in order, bounded queue, CloudEvents binary mode) to the detector service",
            kind_equivalent="InferenceService spec.predictor.logger {mode: request, url: <detector service>} "
                            "(KServe's payload logger); detection itself is not part of KServe",
            notes="the transformer is a kserve.ModelServer on 127.0.0.1 through the same subclass as the predictor "
                  "(deployers/runtimes/kserve_loopback.py): KServe 0.20.0 itself would bind 0.0.0.0")


class KServeKind(KindDeployment):
    """An InferenceService (sklearn, protocol v2, Standard mode) served by kserve-sklearnserver."""

    platform = "kserve"
    api_version = "serving.kserve.io/v1beta1"
    kind = "InferenceService"
    http_port = 8080
    detection_label = "add-on"
    recreated_by = "the predictor Deployment's ReplicaSet"
    HTTP_PORT_NAME = "http1"
    """The name the InferenceService gives the model server's port (KServe's convention for HTTP/1)."""

    AGENT_PORT = 9081
    """KServe's agent sidecar (constants.InferenceServiceDefaultAgentPort), injected for a logger or a batcher."""


    def __init__(self, namespace: str | None = None, node_port: int | None = None, logger_url: str | None = None,
                 batcher: dict | None = None, detection: bool | None = None):
        super().__init__(namespace, node_port)
        self.logger_url = logger_url
        """Payload logger: every request and response as CloudEvents to this URL (KServe's agent sidecar)."""

        self.detection = kind_detection.logger_detection("KServeKind", logger_url, detection)
        """Payload logger (mode request) to the detector service (testbed/backends/kind/detection.py).
        None: on when `up` deployed one in this namespace; e2e deployments in other namespaces have none."""

        self.batcher = batcher
        """Server-side batching by the agent sidecar: {"maxBatchSize": int, "maxLatency": ms}."""

    @classmethod
    def variants(cls) -> list[dict]:
        logger = "http://payload-sink.testbed.svc.cluster.local:8080/"
        batcher = {"maxBatchSize": 32, "maxLatency": 50}
        return [{}, {"logger_url": logger}, {"batcher": batcher}, {"logger_url": logger, "batcher": batcher},
                {"detection": True}, {"detection": True, "batcher": batcher}, {"detection": False}]

    def render_resource(self, target: Target) -> dict:
        isvc = templates.render("kserve/inferenceservice.yaml", name=target.model_name, namespace=target.namespace,
                                runtime=target.serving["runtime"], pvc_name=templates.PVC_NAME,
                                artifact_subpath=target.artifact_subpath, port_name=self.HTTP_PORT_NAME,
                                port=self.http_port)
        predictor = isvc["spec"]["predictor"]
        if self.logger_url:
            predictor["logger"] = {"mode": "all", "url": self.logger_url}
        elif self.detection_on(target):
            # KServe's agent sidecar posts each request as a CloudEvent in binary mode
            # (body = the request as received) to url as given, query string included
            # (pkg/logger/worker.go: cloudevents.WithTarget(url.String())); the CRD's enum is all|request|response.
            predictor["logger"] = kind_detection.payload_logger(self.detector_service(target), self.platform)
        if self.batcher:
            predictor["batcher"] = {"maxBatchSize": int(self.batcher["maxBatchSize"]),
                                    "maxLatency": int(self.batcher["maxLatency"])}
        return isvc

    def detection_route(self, target: Target, base_url: str) -> dict | None:
        return {"url": f"{base_url}/v2/models/{target.model_name}/infer", "label": self.detection_label,
                "mechanism": kind_detection.PAYLOAD_LOGGER,
                "computed_by": "detector service (alibi-detect) in the cluster, fed by KServe's payload logger",
                "routing": "InferenceService spec.predictor.logger {mode: request}: KServe's agent sidecar posts each "
                           "request asynchronously as a CloudEvent (binary mode) to the detector service",
                "kind_equivalent": "this is the kind form; locally a KServe transformer logs the payloads",
                "notes": "the logger is part of the predictor: every request to this InferenceService (parity, "
                         "other probes) enters the same drift windows, and a latency baseline without the path "
                         "needs a second deployment with detection=False"}

    def has_agent(self, target: Target) -> bool:
        """KServe injects its agent sidecar for a logger or a batcher."""
        return bool(self.logger_url or self.batcher or self.detection_on(target))

    def service_port(self, target: Target) -> int:
        # With a logger or a batcher, requests must enter through the agent, which logs or batches them and
        # forwards to the model server: KServe's own Service then targets the agent port too (raw deployment
        # reconciler: upstream port = InferenceServiceDefaultAgentPort when Logger or Batcher is set).
        return self.AGENT_PORT if self.has_agent(target) else self.http_port

    def render_podmonitor(self, target: Target) -> dict:
        return templates.render("kserve/podmonitor.yaml", name=f"testbed-{self.platform}", namespace=target.namespace,
                                selector=self.pod_selector(target), port_name=self.HTTP_PORT_NAME)

    def generated_pods(self, target: Target) -> list[GeneratedPod]:
        # kserve-container = the runtime's container merged with spec.predictor.model by strategic merge
        # (pkg/utils/container_merge.go: ports merge by containerPort). kserve-sklearnserver declares none, so its
        # ports are the predictor's. The agent, when injected, declares only agent-port 9081 (agent_injector.go).
        # The controller adds no port (deployment_reconciler.go only adds a TCP readiness probe: on 8080, or on
        # ports[0] when one is declared).
        model = self.render_resource(target)["spec"]["predictor"]["model"]
        ports = {p.number: p for p in runtime_ports(target.serving["version"], target.serving["runtime"])}
        ports.update({int(p["containerPort"]): Port(p.get("name"), int(p["containerPort"]))
                      for p in model.get("ports") or []})
        containers = {"kserve-container": tuple(ports.values())}
        if self.has_agent(target):
            containers["agent"] = (Port("agent-port", self.AGENT_PORT),)
        return [GeneratedPod("InferenceService predictor pod", target.namespace, self.pod_selector(target), containers,
                             source="kserve v0.20.0: runtime kserve-sklearnserver + spec.predictor.model; agent_injector.go")]

    def injected_requests(self, target: Target) -> list[Item]:
        if not self.has_agent(target):
            return []
        c, m = agent_requests(target.serving["version"])
        return [Item(f"InferenceService {target.model_name}: agent sidecar (injected by KServe's webhook)", cpu(c),
                     memory(m))]

    def pod_selector(self, target: Target) -> dict[str, str]:
        # Standard mode labels the predictor's pods app=isvc.<name>-predictor (its own Service uses it).
        return {"app": f"isvc.{target.model_name}-predictor"}

    def readiness(self, obj: dict) -> Readiness:
        status = obj.get("status") or {}
        model = status.get("modelStatus") or {}
        failure = (model.get("lastFailureInfo") or {}).get("message")
        if model.get("transitionStatus") in ("InvalidSpec", "BlockedByFailedLoad") or \
                (model.get("states") or {}).get("targetModelState") == "FailedToLoad":
            return Readiness(False, f"model {model.get('transitionStatus')}: {failure or model}", failed=True)
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready and ready.get("status") == "True":
            return Readiness(True, "Ready")
        waiting = [f"{c['type']}={c.get('status')}" + (f" ({c.get('reason') or c.get('message')})"
                                                      if c.get("reason") or c.get("message") else "")
                   for c in status.get("conditions") or [] if c.get("status") != "True"]
        return Readiness(False, "; ".join(waiting) or "no status yet")

    def make_endpoint(self, base_url: str, model_name: str) -> Endpoint:
        return Endpoint(platform=self.platform, backend="kind", base_url=base_url, model_name=model_name,
                        metrics_url=f"{base_url}/metrics",
                        notes=("InferenceService in Standard mode (kserve-sklearnserver), reached through a NodePort "
                               "Service on 127.0.0.1; Prometheus scrapes it in-cluster through a PodMonitor",))


class KServeFormats(formats.FormatServer):
    """The KServe SDK's ModelServer with one kserve.Model per format (deployers/runtimes/formats_kserve.py):
    user code, since KServe's own format servers are container images, not PyPI packages."""

    platform = "kserve"
    env = formats.REFERENCE_ENV
    mechanism = {f: "user code" for f in formats.FORMATS}
    version_packages = ("kserve", "scikit-learn", "xgboost", "lightgbm", "onnxruntime")

    def command(self, python, http_port, workdir, model_dir, n_features):
        status = workdir / "status.json"
        status.unlink(missing_ok=True)
        return [str(python), str(RUNTIMES_DIR / "formats_kserve.py"), "--dir", str(model_dir), "--http-port",
                str(http_port), "--status", str(status)]

    def loaded(self, client, workdir):
        return json.loads((workdir / "status.json").read_text())["errors"]


# Monitoring: templates use $platform and $model (string.Template); PromQL needs the braces.
MODEL = 'platform="$platform",model_name="$model"'
METRICS = MetricsCatalogue(
    infer_requests_promql='sum(request_predict_seconds_count{job="kserve"})',
    signals={
        "requests_total": Signal(
            "sum(request_predict_seconds_count{%s})" % MODEL, ALL,
            "predict-step histogram count: observed for every request that reaches predict, also when it "
            "raises (KServe 0.20 has no request counter)"),
        "requests_ok": Signal(
            "sum(request_postprocess_seconds_count{%s})" % MODEL, OK,
            "derived: postprocess runs only after a successful predict"),
        "requests_failed": Signal(
            "sum(request_predict_seconds_count{%s}) - (sum(request_postprocess_seconds_count{%s}) or vector(0))"
            % (MODEL, MODEL), FAILED,
            "derived: predict observations minus postprocess observations; requests rejected before "
            "predict (bad JSON, unknown model) are counted nowhere"),
        "latency_histogram": Signal(
            'sum(request_predict_seconds_bucket{%s,le="+Inf"})' % MODEL, ALL,
            "request_{preprocess,predict,postprocess,explain}_seconds: per step, not end to end"),
        "status_codes": Signal(None, note="no HTTP status metric in KServe 0.20's ModelServer"),
        "queue_or_batch": Signal(None, note="no queue or batch metric in KServe 0.20's ModelServer"),
        "model_label": Signal("count(request_predict_seconds_count{%s})" % MODEL, note="model_name label"),
    })

EXPLAIN = ExplainPath(
    request="v1-instances", response="alibi-json", mechanism="user code",
    route="native route POST /v1/models/<m>:explain -> kserve.Model.explain, implemented by us with alibi",
    methods_offered={
        "built_in": ["ART (InferenceService spec.explainer.art: adversarial examples, not feature attribution)"],
        "extension_point": "Model.explain in a custom predictor, or a custom explainer container "
                           "(spec.explainer.containers)",
        "note": "the 0.20 InferenceService CRD's spec.explainer has only `art` and `containers`: no alibi "
                "explainer server any more",
    })

BATCHING = BatchingSupport(
    mechanism="none", offline="none",
    detail="not available on the local backend: KServe's batcher is the agent sidecar of an InferenceService "
           "(spec.predictor.batcher), which runs only in a cluster")
"""The KServe Python ModelServer has no batcher; KServeKind(batcher=...) configures the agent's."""

DOCUMENTED = DocumentedRow("KServe", {
    "formats": Documented("ClusterServingRuntimes for sklearn, xgboost, lightgbm, onnx/tensorflow/pytorch (Triton), pmml, huggingface; custom kserve.Model",
        ("https://kserve.github.io/website/docs/model-serving/predictive-inference/frameworks/overview",)),
    "outlier": Documented("Not first-class: InferenceService logger -> alibi-detect service (add-on)",
        ("https://github.com/kserve/kserve/issues/679",)),
    "drift": Documented("Not first-class: logger -> alibi-detect drift service (add-on)",
        ("https://github.com/kserve/kserve/issues/679",)),
    "monitoring": Documented("Prometheus: request_{preprocess,predict,postprocess,explain}_seconds per model",
        ("https://kserve.github.io/website/docs/admin-guide/prometheus-metrics",)),
    "explainability": Documented("ART explainer built in; alibi removed in v0.13 (custom explainer container instead)",
        ("https://kserve.github.io/website/docs/model-serving/predictive-inference/explainers",)),
    "cicd": Documented("Declarative InferenceService CRs (GitOps); canary rollout (traffic split)",
        ("https://kserve.github.io/website/docs/model-serving/predictive-inference/rollout-strategies/canary",)),
    "deployment_focus": Documented("Kubernetes-native model inference (Standard/raw or Knative serverless)",
        ("https://kserve.github.io/website/",)),
    "cost_licence": Documented("Apache-2.0, no licence cost; cluster resources (default 1 CPU / 2 GiB per InferenceService)",
        ("https://github.com/kserve/kserve/blob/master/LICENSE",)),
    "docker": Documented("Yes: every runtime is a container image; custom images allowed",
        ("https://kserve.github.io/website/docs/model-serving/predictive-inference/frameworks/custom-predictor",)),
    "batching": Documented("Request batching: batcher sidecar (maxBatchSize, maxLatency); no offline batch component",
        ("https://kserve.github.io/website/docs/model-serving/predictive-inference/batcher",)),
    "ease": Documented("helm charts kserve-crd, kserve-resources, kserve-runtime-configs + cert-manager",
        ("https://kserve.github.io/website/docs/admin-guide/kubernetes-deployment",)),
    "robustness": Documented("Kubernetes restarts failed pods; no documented malformed-input contract beyond V2 error bodies",
        ("https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol",)),
})


PLATFORM = Platform(
    name="kserve",
    display_name="KServe",
    deployments={"local": KServeLocal, "kind": KServeKind},
    protocol=WireProtocol(where="native", validation="native",
                          validation_note="KServe decodes V2 itself; the feature-count check is ours "
                                          "(kserve_server.py predict)"),
    metrics=METRICS,
    explain=EXPLAIN,
    batching=BATCHING,
    formats=KServeFormats,
    # A kserve.Model subclass: what a user writes to serve the model.
    user_files=(UserFile("code", RUNTIMES_DIR / "kserve_server.py"),),
    documented=DOCUMENTED,
    facts={"runtime": "kserve.ModelServer (Python)", "licence": "Apache-2.0",
           "batching": "InferenceService `batcher` (maxBatchSize, maxLatency): the Go agent sidecar, kind only; "
                       "the local Python ModelServer has none"},
)
