"""Ray Serve: a Serve application on a local Ray instance; a RayService on kind.

Ray Serve has no V2 protocol: its V2 routes are user code (deployers/runtimes/ray_app.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from deployers import formats
from testbed.backends.kind import detection as kind_detection, templates
from testbed.backends.kind.deployment import KindDeployment, Readiness, Target
from testbed.backends.kind.scrape_targets import GeneratedPod, Port
from testbed.backends.local import detection, envs, processes
from testbed.backends.local.deployment import RUNTIMES_DIR, KnownListener, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.serving import FormatSupport, ModelServing
from testbed.errors import RuntimeStartFailed
from testbed.platforms import (ALL, FAILED, OK, BatchingRun, BatchingSupport, Documented, DocumentedRow,
                               ExplainPath, MetricsCatalogue, OfflineJob, Platform, Signal, UserFile,
                               WireProtocol)
from testbed.settings import REPO_ROOT

# alibi[shap] 0.9.6 (KernelShap, the explainer deployment) needs shap < 0.44 and numba < 0.60;
# alibi-detect: the composed (model + detector) application loads the saved detectors in user code.
ENV = EnvSpec("rayserve", ("ray[serve]==2.60.0", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3",
                           "alibi[shap]==0.9.6", "shap==0.43.0", "alibi-detect==0.13.0"))


LOCAL_RAY_ENV = {
    # Keep Ray's usage-stats prompt and ~/.ray writes out of a test machine.
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray 2.60.0 rewrites a loopback node address (ray.init(_node_ip_address=...), `ray start --node-ip-address`)
    # to the machine's routable one (ray/_private/services.py resolve_ip_for_localhost -> get_node_ip_address)
    # unless cluster mode is off; then the node address is 127.0.0.1 and GCS, raylet, workers, agents and
    # metrics servers bind loopback. Off also refuses to add other nodes, which a one-machine instance never does.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
"""Environment of every Ray instance the local backend starts (serving, formats, offline batch)."""

REPLICA_GRPC_CAUSE = ("Ray Serve 2.60.0 starts an inter-deployment gRPC server in every replica on [::]:0, "
                      "hard-coded (ray/serve/_private/replica.py:1835); no option or variable changes it")


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


SERVING = ModelServing(formats={
    "sklearn": FormatSupport("our deployment (deployers/runtimes/ray_app.py): joblib.load", "user code"),
    "xgboost": FormatSupport("our deployment: XGBClassifier / XGBRegressor .load_model", "user code",
                             (formats.XGBOOST,)),
    "lightgbm": FormatSupport("our deployment: lightgbm.Booster(model_file=...)", "user code", (formats.LIGHTGBM,)),
    "onnx": FormatSupport("our deployment: onnxruntime.InferenceSession", "user code", (formats.ONNXRUNTIME,)),
}, frame_packages=("pandas==2.3.3",))
"""Ray Serve has no model runtimes: a deployment loads any format with its library (user code)."""
# Ray Serve names metrics and processes by application and deployment, not by model: these are the
# names deployers/runtimes/ray_app.py gives (serve.run(name="reference"), class V2Model).
APP, DEPLOYMENT = "reference", "V2Model"


class RayServeLocal(LocalProcess):
    platform = "rayserve"
    detection_label = "user code"
    worker_pattern = f"ray::ServeReplica:{APP}:{DEPLOYMENT}"
    """The Serve replica that serves the infer route (app "reference" at "/", ingress V2Model): a kill
    fault kills it, not the driver process `up` started."""
    env = ENV
    serving = SERVING
    port_names = ("http", "metrics")
    version_packages = ("ray", "scikit-learn", "numpy", "fastapi", "alibi", "shap")
    known_listeners = (KnownListener("ray::ServeReplica", "::", REPLICA_GRPC_CAUSE),)
    loopback_by_testbed = ("Ray 2.60.0 rewrites a loopback node address to the machine's own (ray/_private/"
                           "services.py:786-821) and binds GCS, raylet, workers and agents to every interface or to "
                           "that address; the testbed sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (Ray's one-machine "
                           "mode) so the node address, and they, stay on 127.0.0.1",)

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        cmd = [str(python), str(RUNTIMES_DIR / "ray_app.py"), "--artifact", str(ctx.artifact.path),
               "--http-port", str(ports["http"]), "--metrics-port", str(ports["metrics"]),
               "--temp-dir", str(ray_temp_dir(workdir)), "--model-name", ctx.artifact.name,
               *ray_batching_args(ctx.settings.batching)]
        service_url = (ctx.extra.get("detection") or {}).get("service_url")
        if ctx.extra.get("detectors") is not None and service_url:
            cmd += ["--detectors", str(ctx.extra["detectors"].path), "--model-sha256", ctx.artifact.sha256,
                    "--n-features", str(len(ctx.artifact.feature_names)),
                    "--detector-sink", detection.sink_urls(service_url, self.platform,
                                                           self.detection_label)["verdicts"]]
        return cmd

    # --- detection (user code): a second Serve application composes the model and a detector deployment
    def detected_base(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}/detected"

    def detection_ready(self, ctx, service_url: str, timeout_s: float) -> None:
        url = f"{self.detected_base()}/v2/models/{ctx.artifact.name}/ready"
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if not processes.alive(self.pid) or time.monotonic() > deadline:
                    raise RuntimeStartFailed("rayserve detected application", f"{url} did not answer 200",
                                             self.log_path, processes.log_tail(self.log_path))
                time.sleep(0.25)

    def detection_paths(self, ctx, service_url: str) -> dict:
        return detection.path_info(
            ctx, self.platform, f"{self.detected_base()}/v2/models/{ctx.artifact.name}/infer",
            self.detection_label, service_url, computed_by="Ray Serve deployment `Detector` (user code, alibi-detect)",
            routing="Serve application `detected` (route /detected): ingress awaits the model (handle to the "
                    "`reference` application) and the Detector deployment together; the Detector reports "
                    "verdicts to the detector service in order from a background thread",
            kind_equivalent="the same application in the RayService; Ray Serve has no detection mechanism")

    def extra_env(self, workdir: Path) -> dict[str, str]:
        # Ray exports metrics every 10 s by default; 2 s keeps Prometheus close to the traffic sent.
        return {**LOCAL_RAY_ENV, "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_metrics_report_interval_ms": "2000"}

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base,
                        model_name=model_name, metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        explain_url=f"{base}/v2/models/{model_name}/explain",
                        notes=("V2 routes are user code in a Serve deployment (Ray Serve has no V2 protocol)",
                               "the explain route is user code: ingress -> Explainer deployment (alibi KernelShap)"))


class RayServeKind(KindDeployment):
    """A KubeRay RayService running the same Serve application as the local backend
    (deployers/runtimes/ray_app.py, `ray_app:build_app` with {artifact_dir, model_name})."""

    platform = "rayserve"
    detection_label = "user code"
    recreated_by = "the KubeRay operator (it recreates the RayCluster's pods)"
    api_version = "ray.io/v1"
    kind = "RayService"
    http_port = 8000
    readiness_needs_pod = ("KubeRay sets Ready once the Ray dashboard in the head pod reports the Serve "
                           "applications RUNNING; a pod without a container has no dashboard")
    labels_set_when_serving = {"ray.io/serve": "true"}
    labels_set_when_serving_why = ("KubeRay labels a pod ray.io/serve=true only once the Serve proxy in it answers "
                                   "its health check, which needs a running Ray head")

    def __init__(self, namespace: str | None = None, node_port: int | None = None, workers: int = 0,
                 num_replicas: int = 1, detection: bool | None = None):
        super().__init__(namespace, node_port)
        self.detection = detection
        """The `detected` Serve application (model + Detector, user code) reporting to the detector service.
        None: on when `up` deployed one in this namespace; e2e deployments in other namespaces have none."""

        self.workers = int(workers)
        """Ray worker pods besides the head (0: the head runs the Serve replicas)."""

        self.num_replicas = int(num_replicas)
        """Serve replicas of the V2Model deployment."""

    @classmethod
    def variants(cls) -> list[dict]:
        return [{}, {"workers": 1}, {"num_replicas": 2}, {"workers": 2, "num_replicas": 2}, {"detection": True},
                {"detection": True, "num_replicas": 2}, {"detection": False}]

    def serve_config(self, target: Target) -> dict:
        config = templates.render("rayserve/serve-config.yaml",
                                  artifact_dir=f"{templates.MOUNT_PATH}/{target.artifact_subpath}",
                                  model_name=target.model_name, pip=list(target.serving["pip"]),
                                  num_replicas=self.num_replicas)
        if self.detection_on(target):
            config["applications"].append(self.detected_app(target))
        return config

    def detected_app(self, target: Target) -> dict:
        """The local backend's `detected` application (ray_app.build_detected_app) as a serveConfigV2 entry."""
        if not (target.model_sha256 and target.n_features and target.detectors_subpath):
            raise ValueError("RayServeKind(detection=...): the Target names no fitted detectors (model_sha256, "
                             "n_features, detectors_subpath)")
        return templates.render(
            "rayserve/detected-app.yaml", artifact_dir=f"{templates.MOUNT_PATH}/{target.artifact_subpath}",
            detectors_dir=f"{templates.MOUNT_PATH}/{target.detectors_subpath}", model_sha256=target.model_sha256,
            n_features=int(target.n_features), model_name=target.model_name,
            sink=kind_detection.verdicts_url(self.detector_service(target), self.platform, self.detection_label),
            pip=kind_detection.ray_pip(target.serving["pip"]))

    def detection_route(self, target: Target, base_url: str) -> dict | None:
        return {"url": f"{base_url}/detected/v2/models/{target.model_name}/infer", "label": self.detection_label,
                "mechanism": "user code", "computed_by": "Ray Serve deployment `Detector` (user code, alibi-detect)",
                "routing": "Serve application `detected` (route /detected) in the RayService: ingress awaits the "
                           "model and the Detector deployment together; the Detector reports verdicts to the "
                           "detector service in order from a background thread",
                "kind_equivalent": "the same application as the local backend's; Ray Serve has no detection "
                                   "mechanism"}

    def render_resource(self, target: Target) -> dict:
        common = dict(name=target.model_name, image=target.serving["image"], pvc_name=templates.PVC_NAME,
                      mount_path=templates.MOUNT_PATH, code_dir=f"{templates.MOUNT_PATH}/{target.code_dir}")
        service = templates.render("rayserve/rayservice.yaml", namespace=target.namespace,
                                   ray_version=str(target.serving["ray_version"]), **common)
        service["spec"]["serveConfigV2"] = yaml.safe_dump(self.serve_config(target), sort_keys=False)
        if self.workers:
            service["spec"]["rayClusterConfig"]["workerGroupSpecs"] = [
                templates.render("rayserve/worker-group.yaml", workers=self.workers, **common)]
        return service

    def pod_selector(self, target: Target) -> dict[str, str]:
        # KubeRay sets ray.io/serve=true on the pods whose Serve proxy is healthy (its own serve Service does too).
        return {"testbed.io/rayservice": target.model_name, "ray.io/serve": "true"}

    def render_podmonitor(self, target: Target) -> dict:
        # Every Ray node exports metrics, serving or not.
        return templates.render("rayserve/podmonitor.yaml", name=f"testbed-{self.platform}",
                                namespace=target.namespace, selector={"testbed.io/rayservice": target.model_name})

    METRICS_PORT = Port("metrics", 8080)
    """KubeRay v1.7.0 appends it to the Ray container of every head and worker pod that declares no port named
    `metrics` (ray-operator/controllers/ray/common/pod.go DefaultHeadPodTemplate / DefaultWorkerPodTemplate;
    utils.DefaultMetricsPort). It adds no other container port (gcs, dashboard, client, serve are Service ports)."""

    def generated_pods(self, target: Target) -> list[GeneratedPod]:
        cluster = self.render_resource(target)["spec"]["rayClusterConfig"]
        groups = [("RayService head pod", cluster["headGroupSpec"])]
        groups += [(f"RayService worker pod {g['groupName']} #{k + 1}", g)
                   for g in cluster.get("workerGroupSpecs") or [] for k in range(int(g.get("replicas", 1)))]
        pods = []
        for what, group in groups:
            template = group["template"]
            containers = {}
            for i, c in enumerate(template["spec"]["containers"]):
                ports = tuple(Port(p.get("name"), int(p["containerPort"])) for p in c.get("ports") or [])
                if i == 0 and not any(p.name == self.METRICS_PORT.name for p in ports):  # utils.RayContainerIndex
                    ports += (self.METRICS_PORT,)
                containers[c["name"]] = ports
            pods.append(GeneratedPod(what, target.namespace, dict(template["metadata"]["labels"]), containers,
                                     source="kuberay v1.7.0 ray-operator/controllers/ray/common/pod.go"))
        return pods

    def readiness(self, obj: dict) -> Readiness:
        status = obj.get("status") or {}
        for which in ("activeServiceStatus", "pendingServiceStatus"):
            for app, st in ((status.get(which) or {}).get("applicationStatuses") or {}).items():
                if st.get("status") == "DEPLOY_FAILED":
                    return Readiness(False, f"Serve application {app!r} DEPLOY_FAILED: {st.get('message', '')}",
                                     failed=True)
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready and ready.get("status") == "True":
            return Readiness(True, "Ready")
        if ready:
            return Readiness(False, f"Ready={ready.get('status')} ({ready.get('reason', '')}: {ready.get('message', '')})")
        return Readiness(False, "no Ready condition yet")

    def make_endpoint(self, base_url: str, model_name: str) -> Endpoint:
        return Endpoint(platform=self.platform, backend="kind", base_url=base_url, model_name=model_name,
                        metrics_url=None,
                        notes=("V2 routes are user code in a Serve deployment (Ray Serve has no V2 protocol)",
                               "RayService (KubeRay) reached through a NodePort Service on 127.0.0.1; Ray's metrics "
                               "port is scraped in-cluster through a PodMonitor (query the testbed's Prometheus)"))


# --- formats: one Serve deployment with V2 routes per format (user code) -------------------------------
FORMATS_ENV = EnvSpec("rayserve-formats", ("ray[serve]==2.60.0", *formats.BASE, formats.XGBOOST, formats.LIGHTGBM,
                                           formats.ONNXRUNTIME))


class RayFormats(formats.FormatServer):
    platform = "rayserve"
    env = FORMATS_ENV
    mechanism = {f: "user code" for f in formats.FORMATS}
    version_packages = ("ray", "scikit-learn", "xgboost", "lightgbm", "onnxruntime")

    def command(self, python, http_port, workdir, model_dir, n_features):
        return [str(python), str(RUNTIMES_DIR / "formats_ray.py"), "--dir", str(model_dir), "--http-port",
                str(http_port), "--temp-dir", str(ray_temp_dir(workdir)), "--n-features", str(n_features)]

    def ready_path(self) -> str:
        return "/status"

    def extra_env(self) -> dict[str, str]:
        return LOCAL_RAY_ENV

    def loaded(self, client, workdir):
        return client.get(self.base_url + self.ready_path()).json()["errors"]


# --- monitoring ---------------------------------------------------------------------------------------
INFER = f'platform="$platform",application="{APP}",route="/v2/models/{{name}}/infer",method="POST"'
METRICS = MetricsCatalogue(
    export_lag_s=10.0,
    infer_requests_promql='sum(ray_serve_num_http_requests_total{job="rayserve",method="POST",'
                          'route="/v2/models/{name}/infer",status_code="200"})',
    signals={
        "requests_total": Signal("sum(ray_serve_num_http_requests_total{%s})" % INFER, ALL),
        "requests_ok": Signal('sum(ray_serve_num_http_requests_total{%s,status_code=~"2.."})' % INFER, OK),
        "requests_failed": Signal("sum(ray_serve_num_http_error_requests_total{%s})" % INFER, FAILED),
        "latency_histogram": Signal('sum(ray_serve_http_request_latency_ms_bucket{%s,le="+Inf"})' % INFER, ALL),
        "status_codes": Signal('sum(ray_serve_num_http_requests_total{%s,status_code!~"2.."})' % INFER, FAILED),
        "queue_or_batch": Signal('count(ray_serve_deployment_queued_queries{platform="$platform",'
                                 f'application="{APP}"}})',
                                 note="queued queries per deployment; ray_serve_batch_queue_length and "
                                 "ray_serve_actual_batch_size appear only with @serve.batch"),
        "model_label": Signal('count(ray_serve_deployment_request_counter_total{platform="$platform",'
                              f'application="{APP}",deployment="{DEPLOYMENT}"}})',
                              note="application/deployment labels; the model name itself is not a label"),
    })

EXPLAIN = ExplainPath(
    request="v2", response="alibi-json", mechanism="user code",
    route="POST /v2/models/<m>/explain: our ingress forwarding to an Explainer deployment (ray_app.py)",
    methods_offered={"built_in": [], "extension_point": "any Python library inside a deployment"})


# --- batching -----------------------------------------------------------------------------------------
def ray_batch_sizes(metrics_url: str) -> tuple[float, float] | None:
    """(batches, requests batched) so far, from Ray Serve's ray_serve_actual_batch_size histogram."""
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return None
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("ray_serve_actual_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ray_serve_actual_batch_size_sum"):
            total += float(line.rsplit(" ", 1)[1])
    return count, total


def batching_snapshot(endpoint: Endpoint):
    return ray_batch_sizes(endpoint.metrics_url)


def batching_evidence(run: BatchingRun) -> dict:
    """Batch sizes Ray observed during the batched load."""
    if run.before is None:
        return {}
    # Ray exports metrics with a delay of several seconds: poll until the batched requests show.
    deadline = time.monotonic() + 20
    after = run.before
    while time.monotonic() < deadline:
        after = ray_batch_sizes(run.endpoint.metrics_url) or after
        if after[1] - run.before[1] >= 0.9 * run.requests_ok:
            break
        time.sleep(1)
    batches, batched = after[0] - run.before[0], after[1] - run.before[1]
    return {"batches": batches, "requests_in_batches": batched, "requests_sent_ok": run.requests_ok,
            "mean_batch_size": batched / batches if batches else None,
            "source": "ray_serve_actual_batch_size histogram (sum/count) at the metrics endpoint"}


def offline_ray_job(ray_python: Path, script: Path, artifact_dir: Path, X: np.ndarray, temp_dir: Path,
                    actors: int = 2, chunk: int = 10000, timeout_s: float = 600.0) -> dict:
    """A Ray batch job (actor pool over file chunks) on a Ray instance of its own; leftovers are stopped."""
    with tempfile.TemporaryDirectory(prefix="testbed-ray-batch-") as tmp:
        inp, out, log = Path(tmp) / "rows.npy", Path(tmp) / "labels.npy", Path(tmp) / "job.log"
        np.save(inp, X)
        cmd = [str(ray_python), str(script), "--artifact", str(artifact_dir), "--input", str(inp), "--output",
               str(out), "--temp-dir", str(temp_dir), "--actors", str(actors), "--chunk", str(chunk)]
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, start_new_session=True,
                                    env={**os.environ, **LOCAL_RAY_ENV})
            try:
                stdout, _ = proc.communicate(timeout=timeout_s)
            finally:
                processes.stop_session(proc.pid, grace_s=5)
        wall = time.perf_counter() - t0
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines or not out.exists():
            return {"path": "Ray batch job", "error": f"exit {proc.returncode}: {processes.log_tail(log, 10)}",
                    "rows": 0, "rows_per_s": None, "seconds": wall}
        info = json.loads(lines[-1])
        labels = np.load(out)
    return {"path": f"Ray batch job: actor pool of {actors} over {chunk}-row chunks (Ray start excluded)",
            "rows": info["rows"], "seconds": info["seconds"], "rows_per_s": info["rows"] / info["seconds"],
            "startup_s": info["startup_s"], "wall_s_with_startup": wall, "labels": labels}


def offline_job(job: OfflineJob) -> dict:
    # Ray's unix sockets need a short temp dir (ray_temp_dir): one per checkout.
    tmp = Path("/tmp") / f"testbed-raybatch-{hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:8]}"
    return offline_ray_job(envs.python_of(envs.env_dir(ENV, job.envs_dir)), RUNTIMES_DIR / "ray_batch.py",
                           job.artifact_dir, job.rows, tmp)


BATCHING = BatchingSupport(
    mechanism="user code", offline="native",
    detail="@serve.batch in the Serve deployment (max_batch_size, batch_wait_timeout_s). Serve needs "
           "max_ongoing_requests >= max_batch_size, so batching on also raises it from Serve's default 5 to "
           "2 x max_batch_size: at high concurrency part of the gain is that knob (with 5, excess requests "
           "wait in Serve's router)",
    snapshot=batching_snapshot, evidence=batching_evidence, offline_job=offline_job)


DOCUMENTED = DocumentedRow("Ray Serve", {
    "formats": Documented("Framework-agnostic: any Python-loadable model in user code; no format servers",
        ("https://docs.ray.io/en/latest/serve/index.html",)),
    "outlier": Documented("None built in: user code (e.g. a composed detector deployment)",
        ("https://docs.ray.io/en/latest/serve/index.html",)),
    "drift": Documented("None built in: user code",
        ("https://docs.ray.io/en/latest/serve/index.html",)),
    "monitoring": Documented("Prometheus: ray_serve_num_http_requests, ray_serve_http_request_latency_ms, deployment queue/latency metrics",
        ("https://docs.ray.io/en/latest/serve/monitoring.html",)),
    "explainability": Documented("None built in: user code (alibi, shap)",
        ("https://docs.ray.io/en/latest/serve/index.html",)),
    "cicd": Documented("serve deploy with a config file; KubeRay RayService zero-downtime upgrades",
        ("https://docs.ray.io/en/latest/serve/production-guide/kubernetes.html",)),
    "deployment_focus": Documented("Python-first scalable serving and model composition on Ray",
        ("https://docs.ray.io/en/latest/serve/index.html",)),
    "cost_licence": Documented("Apache-2.0, no licence cost; Ray docs ask >= 4 CPU / 4 GB for a cluster",
        ("https://github.com/ray-project/ray/blob/master/LICENSE",)),
    "docker": Documented("Yes: rayproject/ray images; KubeRay on Kubernetes",
        ("https://docs.ray.io/en/latest/cluster/kubernetes/index.html",)),
    "batching": Documented("Request batching: @serve.batch; offline: Ray Data",
        ("https://docs.ray.io/en/latest/serve/advanced-guides/dyn-req-batch.html",)),
    "ease": Documented("pip install ray[serve]; on Kubernetes the kuberay-operator helm chart",
        ("https://docs.ray.io/en/latest/cluster/kubernetes/getting-started.html",)),
    "robustness": Documented("Replica actors restarted by the Serve controller; head node is a single point unless GCS fault tolerance is set up",
        ("https://docs.ray.io/en/latest/serve/production-guide/fault-tolerance.html",)),
})


PLATFORM = Platform(
    name="rayserve",
    display_name="Ray Serve",
    deployments={"local": RayServeLocal, "kind": RayServeKind},
    protocol=WireProtocol(where="user code", validation="user code",
                          validation_note="Ray Serve has no V2 protocol: decoding and validation are ours "
                                          "(ray_app.py)"),
    metrics=METRICS,
    explain=EXPLAIN,
    batching=BATCHING,
    formats=RayFormats,
    # A Serve deployment with V2 routes: what a user writes to serve the model.
    user_files=(UserFile("code", RUNTIMES_DIR / "ray_app.py"),),
    documented=DOCUMENTED,
    facts={"runtime": "Ray Serve on a local Ray instance", "licence": "Apache-2.0",
           "batching": "@serve.batch (max_batch_size, batch_wait_timeout_s) in user code; offline: Ray Data (needs "
                       "pyarrow) or Ray tasks/actors (deployers/runtimes/ray_batch.py)"},
)
