"""BentoML: `bentoml serve` of a @bentoml.service on the local backend (no kind deployment).

BentoML speaks its own JSON (one route per API method), not V2: probes reach it through PROTOCOL, a
client-side adapter (docs/platform-adapters.md). Explanations and detection are user code, composed
services in deployers/runtimes/bentoml_service.py, the way BentoML documents inference graphs.

Process facts (BentoML 1.4.40, measured): `bentoml serve` is a circus arbiter; every service runs in
worker processes that circus starts with setsid(), so they are NOT in the arbiter's session. They
inherit the arbiter's environment, so MARKER (set here, unique per working directory) finds them all,
also when a killed arbiter left them orphaned. The arbiter and the entry worker both hold the HTTP
port; the entry service's worker is the process that serves /predict (KILL_TARGET).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deployers import formats
from testbed.adapters import is_columns, records_of, rows_of, v2_answer, v2_response
from testbed.backends.local import detection, processes
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.errors import FaultTargetMissing
from testbed.serving import FormatSupport, ModelServing
from testbed.platforms import (ALL, FAILED, OK, BatchingRun, BatchingSupport, Documented, DocumentedRow,
                               ExplainPath, MetricsCatalogue, Platform, Signal, UserFile, WireProtocol)

# alibi[shap] 0.9.6 (KernelShap, the Explainer service) needs shap < 0.44 and numba < 0.60; alibi-detect: the
# Detector service. bentoml 1.4.40 resolves beside numpy 1.26.4 (pydantic 2, starlette 1.x).
ENV = EnvSpec("bentoml", ("bentoml==1.4.40", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3",
                          "alibi[shap]==0.9.6", "shap==0.43.0", "alibi-detect==0.13.0"))
SERVICE = "bentoml_service:ReferenceClassifier"
ENTRY_SERVICE = "ReferenceClassifier"
MARKER = "TESTBED_BENTOML_CONFIG"
"""Environment variable naming this deployment's config file: inherited by every BentoML worker."""

KILL_TARGET = f"--service-name {ENTRY_SERVICE}"
"""A substring of the entry worker's command line (`python -m _bentoml_impl.worker.service
bentoml_service:ReferenceClassifier --fd N --service-name ReferenceClassifier ...`): the process that
serves the infer route. Search it among MARKER's processes, not the arbiter's session."""

MAX_LATENCY_MS = 60000
"""BentoML's own default for @bentoml.api(max_latency_ms). It is a deadline, not a wait: the adaptive
dispatcher learns how long to wait for a batch by itself and rejects (HTTP 503) a queued request whose
estimated latency exceeds it (bentoml/_internal/marshal/dispatcher.py). Settings.batching's
max_batch_time_ms has no BentoML equivalent and is not used."""


def batching_config(batching) -> dict | None:
    """@bentoml.api(batchable=True, max_batch_size, max_latency_ms) from Settings.batching; None when off."""
    if not batching.enabled:
        return None
    return {"max_batch_size": int(batching.max_batch_size), "max_latency_ms": MAX_LATENCY_MS}


SERVING = ModelServing(formats={
    "sklearn": FormatSupport("our @bentoml.service (deployers/runtimes/bentoml_service.py): joblib.load", "user code"),
    "xgboost": FormatSupport("our @bentoml.service: XGBClassifier / XGBRegressor .load_model", "user code",
                             (formats.XGBOOST,)),
    "lightgbm": FormatSupport("our @bentoml.service: lightgbm.Booster(model_file=...)", "user code",
                              (formats.LIGHTGBM,)),
    "onnx": FormatSupport("our @bentoml.service: onnxruntime.InferenceSession", "user code", (formats.ONNXRUNTIME,)),
}, shared_env="usermodels")
"""BentoML serves any Python model in a service a user writes (its framework APIs, bentoml.sklearn/.xgboost/...,
only save and load models in its model store): every format is user code, loaded with its library. A model that
takes named columns gets a pandas DataFrame parameter (BentoML's own pandas IO). One environment holds every
format's library (`bentoml-usermodels`): one build for any user model instead of one per format."""


@dataclass(frozen=True)
class BentoMLProtocol(WireProtocol):
    """V2 <-> BentoML's JSON for bentoml_service.py: {"rows": [[...]]} in (a model that takes named columns:
    {"rows": [{column: value}, ...]}, pandas' records orient), [label or value, ...] out (a client-side adapter:
    probes time BentoML's own /predict route, IO descriptors and validation included)."""

    protocol: str = "bentoml-json"
    where: str = "client-side adapter"
    validation: str = "native"
    validation_note: str = ("BentoML decodes the JSON and validates the parameter's type itself (pydantic, its "
                            "numpy IO descriptor); the feature-count check is ours (bentoml_service.as_rows); a V2 "
                            "body with no tensor is refused by the client-side adapter before anything is sent")

    def infer_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.base_url}/predict"

    def model_infer_url(self, endpoint: Endpoint, model: str) -> str | None:
        return None  # routes name the service's API methods, not models: one service per Bento

    def live_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.base_url}/livez"

    def ready_url(self, endpoint: Endpoint) -> str:
        # BentoML's readiness: the entry service and every composed service it depends on are ready.
        return f"{endpoint.base_url}/readyz"

    def encode_infer(self, v2_body: dict) -> dict:
        return {"rows": records_of(v2_body) if is_columns(v2_body) else rows_of(v2_body).tolist()}

    def decode_infer(self, answer, v2_body: dict, model_name: str) -> dict:
        return v2_answer(answer, model_name, v2_body.get("id"), "BentoML /predict")

    def example_answer(self, labels: list, v2_body: dict, model_name: str) -> list:
        return list(labels)

    def encode_detected(self, v2_body: dict) -> dict:
        return {**self.encode_infer(v2_body), "request_id": str(v2_body.get("id") or "")}



PROTOCOL = BentoMLProtocol()


def encode_explain(rows) -> dict:
    return {"rows": [list(map(float, r)) for r in rows]}


def config_path(workdir) -> Path:
    return Path(workdir) / "testbed-bentoml.json"


def marked(workdir) -> list[int]:
    """Every live process of the Bento started in workdir: they all inherit MARKER from the arbiter."""
    return processes.with_env(MARKER, str(config_path(workdir)))


def serving_worker(info: dict) -> tuple[int, str]:
    """(pid, how it was found) of the entry service's worker, from a state-file entry (pid, workdir): what the
    kill fault kills. Circus respawns a dead worker (BentoML's own recovery)."""
    for pid in marked(info["workdir"]):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if KILL_TARGET in cmdline:
            return pid, f"BentoML worker whose command line has {KILL_TARGET!r} ({MARKER} in its environment)"
    raise FaultTargetMissing("bentoml", f"no process with {MARKER}={config_path(info['workdir'])} runs the entry "
                                        f"service ({KILL_TARGET!r})")


class BentoMLLocal(LocalProcess):
    platform = "bentoml"
    detection_label = "user code"
    env = ENV
    serving = SERVING
    port_names = ("http",)
    version_packages = ("bentoml", "scikit-learn", "numpy", "alibi", "shap", "alibi-detect")

    def config_path(self, workdir: Path) -> Path:
        return config_path(workdir)

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        config = {"TESTBED_ARTIFACT": str(ctx.artifact.path),
                  "TESTBED_BATCHING": batching_config(ctx.settings.batching)}
        if self.usercode_detection(ctx):
            config["TESTBED_DETECTORS"] = self.usercode_detection(ctx)
        self.config_path(workdir).write_text(json.dumps(config, indent=2))
        # The venv's own `bentoml` entry point, as a user runs it; --host: BentoML binds 0.0.0.0 by default.
        return [str(python.parent / "bentoml"), "serve", SERVICE, "--working-dir", str(RUNTIMES_DIR),
                "--host", "127.0.0.1", "--port", str(ports["http"])]

    def extra_env(self, workdir: Path) -> dict[str, str]:
        config = json.loads(self.config_path(workdir).read_text())
        env = {MARKER: str(self.config_path(workdir)), "BENTOML_DO_NOT_TRACK": "true",
               "BENTOML_HOME": str(workdir / "bentoml-home")}
        # bentoml_service.py reads these at import (`bentoml serve` passes no arguments to user code).
        env.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
        return env

    @classmethod
    def members(cls, info: dict) -> list[int]:
        """The arbiter's session and every worker (circus starts each in a session of its own)."""
        own = processes.session_members(info["pid"]) if info.get("pid") else []
        return sorted(set(own + (marked(info["workdir"]) if info.get("workdir") else [])))

    @classmethod
    def leftovers(cls, info: dict) -> list[int]:
        # SIGTERM to the arbiter stops its workers gracefully; whatever it left (it was killed, or hung)
        # still carries the marker.
        return marked(info["workdir"]) if info.get("workdir") else []

    def find_worker(self, recorded: dict, base_url: str) -> tuple[int, str] | None:
        return serving_worker(recorded)

    # --- detection (user code): the Detector service composed into the same Bento ---------------------
    def detection_ready(self, ctx, service_url: str, timeout_s: float) -> None:
        """/readyz already waited for the Detector (a dependency); the detected route must answer too (an
        empty batch: refused with 400 without feeding the detectors, so no verdict is logged)."""
        base = self.endpoint(ctx).base_url
        self.wait_until(lambda client: client.get(f"{base}/readyz").status_code == 200 and client.post(
            f"{base}/predict_detected", json={"rows": [], "request_id": ""}).status_code in (200, 400),
                        "Detector service (user code)", timeout_s)

    def detection_paths(self, ctx, service_url: str) -> dict:
        return detection.path_info(
            ctx, self.platform, f"http://127.0.0.1:{self.ports['http']}/predict_detected", "user code",
            service_url, computed_by="BentoML service `Detector` (user code, alibi-detect)",
            routing="entry service API /predict_detected awaits the model and the composed Detector service "
                    "(bentoml.depends) together; the Detector reports verdicts to the detector service in order "
                    "from a background thread",
            protocol=PROTOCOL.protocol, body="BentoML JSON {rows, request_id}: PROTOCOL.encode_detected",
            ready_url=f"http://127.0.0.1:{self.ports['http']}/readyz",
            kind_equivalent="none: the testbed has no kind deployment of BentoML; BentoML has no detection "
                            "mechanism")

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base, model_name=model_name,
                        metrics_url=f"{base}/metrics", explain_url=f"{base}/explain", ready_url=f"{base}/readyz",
                        notes=("BentoML's own JSON protocol, no V2: POST /predict {rows} -> [labels or values]; probes convert "
                               "V2 on the client side (deployers.bentoml.PROTOCOL), so base_url has no /v2 routes",
                               "explanations: API /explain -> composed Explainer service (user code, alibi "
                               "KernelShap); body {rows}, answer the alibi Explanation document"))




# --- formats: one service, one API per format (user code) ---------------------------------------------------
FORMATS_ENV = EnvSpec("bentoml-formats", ("bentoml==1.4.40", *formats.BASE, formats.XGBOOST, formats.LIGHTGBM,
                                          formats.ONNXRUNTIME))


class BentoMLFormats(formats.FormatServer):
    """deployers/runtimes/formats_bentoml.py under `bentoml serve`: each model loaded with its library's own API
    inside a @bentoml.service (user code; BentoML serves no model file by itself)."""

    platform = "bentoml"
    env = FORMATS_ENV
    mechanism = {f: "user code" for f in formats.FORMATS}
    version_packages = ("bentoml", "scikit-learn", "xgboost", "lightgbm", "onnxruntime")

    def marker(self) -> str:
        return str(self.workdir / "formats-marker")

    @classmethod
    def leftovers(cls, workdir):
        # Circus starts each worker in a session of its own: the workers carry the marker, not the session.
        return processes.with_env(MARKER, str(workdir / "formats-marker"))

    def command(self, python, http_port, workdir, model_dir, n_features):
        self.model_dir = model_dir
        return [str(python.parent / "bentoml"), "serve", "formats_bentoml:Formats", "--working-dir",
                str(RUNTIMES_DIR), "--host", "127.0.0.1", "--port", str(http_port)]

    def ready_path(self) -> str:
        return "/readyz"

    def extra_env(self) -> dict[str, str]:
        return {"TESTBED_FORMAT_MODELS": str(self.model_dir), MARKER: self.marker(), "BENTOML_DO_NOT_TRACK": "true",
                "BENTOML_HOME": str(self.workdir / "bentoml-home")}

    def loaded(self, client, workdir):
        return client.post(self.base_url + "/load_errors", json={}).json()

    def infer_url(self, fmt: str) -> str:
        return f"{self.base_url}/{fmt}"

    def encode(self, v2_body: dict):
        return PROTOCOL.encode_infer(v2_body)

    def decode(self, answer):
        return v2_response(answer, "formats", None, "BentoML format API")



# --- monitoring: read off `bentoml serve`'s /metrics after known traffic (BentoML 1.4.40) -----------------
# Series are labelled by the service and the route (endpoint), not the model; /readyz, /livez and /metrics
# requests are counted too, hence the endpoint selector.
PREDICT = f'platform="$platform",service_name="{ENTRY_SERVICE}",endpoint="/predict"'
METRICS = MetricsCatalogue(
    infer_requests_promql='sum(bentoml_service_request_total{job="bentoml",endpoint="/predict",'
                          f'service_name="{ENTRY_SERVICE}",http_response_code="200"}})',
    signals={
        "requests_total": Signal("sum(bentoml_service_request_total{%s})" % PREDICT, ALL,
                                 "bentoml_service_request_total: every answered request of the route, by "
                                 "http_response_code"),
        "requests_ok": Signal('sum(bentoml_service_request_total{%s,http_response_code=~"2.."})' % PREDICT, OK),
        "requests_failed": Signal('sum(bentoml_service_request_total{%s,http_response_code!~"2.."})' % PREDICT,
                                  FAILED, "derived from the http_response_code label"),
        "latency_histogram": Signal('sum(bentoml_service_request_duration_seconds_bucket{%s,le="+Inf"})' % PREDICT,
                                    ALL, "end-to-end duration of the route's requests"),
        "status_codes": Signal('sum(bentoml_service_request_total{%s,http_response_code!~"2.."})' % PREDICT,
                               FAILED, "http_response_code label"),
        "queue_or_batch": Signal(f'count(bentoml_service_request_in_progress{{platform="$platform",'
                                 f'service_name="{ENTRY_SERVICE}"}})',
                                 note="requests in progress per route; bentoml_service_adaptive_batch_size "
                                      "appears only with adaptive batching on"),
        "model_label": Signal(f'count(bentoml_service_request_total{{platform="$platform",'
                              f'service_name="{ENTRY_SERVICE}"}})',
                              note="service_name and endpoint labels: the service, not the model"),
    })


# --- explanations: a composed Explainer service (user code) ------------------------------------------------
EXPLAIN = ExplainPath(
    request="platform-json", response="alibi-json", mechanism="user code",
    route="POST /explain {rows}: an API of the entry service awaiting the composed Explainer service "
          "(bentoml.depends), alibi KernelShap (bentoml_service.py)",
    methods_offered={"built_in": [], "extension_point": "any Python library inside a service; services composed "
                                                        "with bentoml.depends"},
    encode=encode_explain)


# --- batching: adaptive batching (native) ----------------------------------------------------------------
def batch_sizes(metrics_url: str) -> tuple[float, float] | None:
    """(batches, requests batched) so far, from bentoml_service_adaptive_batch_size (count, sum)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return None
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bentoml_service_adaptive_batch_size_count":
                count += sample.value
            elif sample.name == "bentoml_service_adaptive_batch_size_sum":
                total += sample.value
    return count, total


def batching_snapshot(endpoint: Endpoint):
    return batch_sizes(endpoint.metrics_url)


def batching_evidence(run: BatchingRun) -> dict:
    """Batch sizes BentoML's dispatcher formed during the batched load, and the applied configuration."""
    applied = json.loads(config_path(run.workdir).read_text()).get("TESTBED_BATCHING") \
        if config_path(run.workdir).is_file() else None
    after = batch_sizes(run.endpoint.metrics_url)
    if run.before is None or after is None:
        return {"applied": applied}
    batches, batched = after[0] - run.before[0], after[1] - run.before[1]
    return {"applied": applied, "batches": batches, "requests_in_batches": batched,
            "requests_sent_ok": run.requests_ok, "mean_batch_size": batched / batches if batches else None,
            "source": "bentoml_service_adaptive_batch_size histogram (sum/count) at the metrics endpoint"}


BATCHING = BatchingSupport(
    mechanism="native", offline="none",
    detail="adaptive batching: @bentoml.api(batchable=True, max_batch_size, max_latency_ms). BentoML learns how long "
           "to wait for a batch itself; max_latency_ms is a deadline (a queued request expected to miss it gets "
           f"HTTP 503), kept at BentoML's default {MAX_LATENCY_MS} ms; Settings' max_batch_time_ms has no BentoML "
           "counterpart. No offline batch tool in open-source BentoML",
    snapshot=batching_snapshot, evidence=batching_evidence)


DOCUMENTED = DocumentedRow("BentoML", {
    "formats": Documented("Framework APIs for scikit-learn, XGBoost, LightGBM, ONNX, PyTorch, TensorFlow and more; any Python code",
        ("https://docs.bentoml.com/en/latest/reference/bentoml/frameworks/index.html",)),
    "outlier": Documented("None built in; monitoring data export for external tools",
        ("https://docs.bentoml.com/en/latest/build-with-bentoml/observability/monitoring-and-data-collection.html",)),
    "drift": Documented("None built in; monitoring data export for external tools",
        ("https://docs.bentoml.com/en/latest/build-with-bentoml/observability/monitoring-and-data-collection.html",)),
    "monitoring": Documented("Prometheus /metrics endpoint",
        ("https://docs.bentoml.com/en/latest/build-with-bentoml/observability/metrics.html",)),
    "explainability": Documented("None built in", ("https://docs.bentoml.com/en/latest/",)),
    "cicd": Documented("Build Bentos in CI, containerize, deploy to BentoCloud or Kubernetes",
        ("https://docs.bentoml.com/en/latest/",)),
    "deployment_focus": Documented("Packaging models and code into services/containers",
        ("https://docs.bentoml.com/en/latest/",)),
    "cost_licence": Documented("Apache-2.0; BentoCloud is a paid managed service",
        ("https://github.com/bentoml/BentoML/blob/main/LICENSE",)),
    "docker": Documented("Yes: bentoml containerize builds OCI images",
        ("https://docs.bentoml.com/en/latest/get-started/packaging-for-deployment.html",)),
    "batching": Documented("Adaptive request batching built in",
        ("https://docs.bentoml.com/en/latest/get-started/adaptive-batching.html",)),
    "ease": Documented("pip install bentoml; a Python service class",
        ("https://docs.bentoml.com/en/latest/get-started/hello-world.html",)),
})


PLATFORM = Platform(
    name="bentoml",
    display_name="BentoML",
    deployments={"local": BentoMLLocal},
    protocol=PROTOCOL,
    metrics=METRICS,
    explain=EXPLAIN,
    batching=BATCHING,
    formats=BentoMLFormats,
    # A @bentoml.service class (with the composed Explainer and Detector services): what a user writes.
    user_files=(UserFile("code", RUNTIMES_DIR / "bentoml_service.py"),),
    documented=DOCUMENTED,
    facts={"runtime": "bentoml serve (circus arbiter + one worker process per service)", "licence": "Apache-2.0",
           "protocol": "BentoML JSON (one route per @bentoml.api); V2 through a client-side adapter",
           "batching": "adaptive batching: @bentoml.api(batchable=True, max_batch_size, max_latency_ms); the wait is "
                       "learned, max_latency_ms is a rejection deadline (HTTP 503)",
           "explain": "none built in: a composed Explainer service (user code, alibi KernelShap)",
           "detection": "none built in: a composed Detector service (user code, alibi-detect)"},
)
