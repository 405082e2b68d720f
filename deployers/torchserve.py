"""TorchServe 0.12.0 on the local backend (no kind deployment): a java frontend, one python worker per model.

The artifact is archived with torch-model-archiver and served by a custom handler
(deployers/runtimes/torchserve_handler.py). TorchServe passes /v2/models/<m>/infer bodies to the
handler as they came; the handler speaks V2 there (user code, as Ray Serve's routes are), so probes
need no body conversion (PROTOCOL is V2 at the handler's routes). /v2/health/* and
/v2/models/<m>/ready are not served; /ping answers "Healthy" while a worker still fails to load, so
readiness is the management API's worker status READY (Endpoint.ready_url, PROTOCOL.is_ready).

Prerequisites: java (Debian's openjdk-17-jre-headless; `ensure_java` says how to install it) and torch
from PyPI: TorchServe's worker imports torch although neither torchserve nor the archiver declares it;
on Linux x86_64 PyPI's torch pulls the CUDA libraries (~2.6 GB download; the venv is ~6.5 GB on disk),
`--no-deps` fails at import (libcudnn). So this environment is built only when TorchServe is asked for,
and its first build is long (BUILD_NOTE). TorchServe is in limited maintenance since 2025
(pytorch/serve#3396); 0.12.0 (Sep 2024) is its last release.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from deployers import formats
from testbed.backends.local import detection, processes
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.errors import FaultTargetMissing, MissingBinary
from testbed.serving import FormatSupport, ModelServing
from testbed.platforms import (ALL, FAILED, BatchingRun, BatchingSupport, Documented, DocumentedRow, ExplainPath,
                               MetricsCatalogue, Platform, Signal, UserFile, WireProtocol)

# torch 2.15.0: the newest release on PyPI when pinned (TorchServe 0.12.0 declares no torch version); alibi[shap]
# 0.9.6 (KernelShap in the handler) needs shap < 0.44 and numba < 0.60; alibi-detect: the detected model's handler.
# click: `import alibi` imports spacy's CLI, which imports click; typer 0.29 (spacy's dependency) no longer pulls
# it in, and here nothing else does (ModuleNotFoundError in the worker, measured).
ENV = EnvSpec("torchserve", ("torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml>=6.0", "torch==2.15.0",
                             "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3", "alibi[shap]==0.9.6",
                             "shap==0.43.0", "alibi-detect==0.13.0", "click>=8.1"))
BUILD_NOTE = ("TorchServe's environment pulls torch from PyPI with its CUDA libraries (~2.6 GB download, ~6.5 GB "
              "on disk): the first build takes minutes; later runs reuse it")
DETECTED_SUFFIX = "-detected"
JAVA_PACKAGE = "openjdk-17-jre-headless"


def java_major(version_line: str) -> int | None:
    """17 from 'openjdk version "17.0.15" 2025-04-15' (and 8 from '"1.8.0_392"'); None when unreadable."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_line)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def ensure_java() -> str:
    """Path of a `java` 17 or later (what TorchServe 0.12 needs; `make setup` installs Debian's
    openjdk-17-jre-headless); MissingBinary naming the package when there is none or it is older."""
    install = f"apt-get install -y --no-install-recommends {JAVA_PACKAGE}, or run `make setup`"
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise MissingBinary("java", "JAVA_HOME", install)
    proc = subprocess.run([java, "-version"], capture_output=True, text=True)
    line = (proc.stderr or proc.stdout).strip().splitlines()[0] if (proc.stderr or proc.stdout).strip() else ""
    major = java_major(line)
    if major is None or major < 17:
        raise MissingBinary(f"java 17 or later (found: {line or 'no version'})", "JAVA_HOME", install)
    return java


def short_tmp_dir(workdir: Path) -> Path:
    """TorchServe's TEMP: its worker sockets live there and unix socket paths are limited to 107 bytes."""
    digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"testbed-ts-{digest}"


def workers_of(client: httpx.Client, management_model_url: str) -> list[dict]:
    """The management API's workers of one model ([] when it is not registered yet)."""
    resp = client.get(management_model_url)
    if resp.status_code != 200:
        return []
    return [w for version in resp.json() for w in version.get("workers", [])]


@dataclass(frozen=True)
class TorchServeProtocol(WireProtocol):
    """V2 bodies at the handler's routes (user code); readiness from the management API (every worker READY)."""

    protocol: str = "v2"
    where: str = "user code"
    validation: str = "user code"
    validation_note: str = ("TorchServe passes the body to our handler as it came: decoding V2 and every check "
                            "(datatype, shape, width) is the handler's (torchserve_handler.py)")

    def live_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.base_url}/ping"

    def is_ready(self, client: httpx.Client, endpoint: Endpoint) -> bool:
        workers = workers_of(client, self.ready_url(endpoint))
        return bool(workers) and all(w.get("status") == "READY" for w in workers)


PROTOCOL = TorchServeProtocol()


def served_model(client: httpx.Client, management: str) -> str:
    """The name of the model the infer route serves (not its `-detected` twin), from the management API's list."""
    names = [m.get("modelName") for m in client.get(f"{management}/models").json().get("models", [])]
    served = [n for n in names if n and not n.endswith(DETECTED_SUFFIX)]
    if len(served) != 1:
        raise ValueError(f"the management API lists {names}: expected one model besides its {DETECTED_SUFFIX} twin")
    return served[0]


def serving_worker(info: dict, model: str | None = None) -> tuple[int, str]:
    """(pid, how it was found) of the python worker serving `model` (default: the one model the infer route serves,
    the testbed's or a user's), from a state-file entry (ports): the management API names it. Not the process on
    the inference port: that is the java frontend, which holds every port and restarts dead workers itself."""
    management = f"http://127.0.0.1:{info['ports']['management']}"
    try:
        with httpx.Client(timeout=5.0) as client:
            model = model or served_model(client, management)
            url = f"{management}/models/{model}"
            workers = [w for v in client.get(url).json() for w in v.get("workers", [])]
    except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
        raise FaultTargetMissing("torchserve", f"{management} did not list the workers ({exc})") from None
    pids = [int(w["pid"]) for w in workers if w.get("pid") and w.get("status") == "READY"]
    if not pids:
        raise FaultTargetMissing("torchserve", f"no READY worker with a pid at {url}: {workers}")
    return pids[0], f"worker of model {model} named by the management API ({url})"


SERVING = ModelServing(formats={
    "sklearn": FormatSupport("our handler (deployers/runtimes/torchserve_handler.py): joblib.load", "user code"),
    "xgboost": FormatSupport("our handler: XGBClassifier / XGBRegressor .load_model", "user code", (formats.XGBOOST,)),
    "lightgbm": FormatSupport("our handler: lightgbm.Booster(model_file=...)", "user code", (formats.LIGHTGBM,)),
    "onnx": FormatSupport("our handler: onnxruntime.InferenceSession", "user code", (formats.ONNXRUNTIME,)),
}, shared_env="usermodels")
"""TorchServe's built-in handlers serve PyTorch models; any other model is served by a custom handler, user code
(TorchServe's documented extension point): the user's model file is archived in the .mar with our handler, which
loads it with its library. One environment holds every format's library: a copy of the torch environment per
format would cost ~2 minutes and the CUDA libraries' links each."""


class TorchServeLocal(LocalProcess):
    platform = "torchserve"
    detection_label = "user code"
    env = ENV
    serving = SERVING
    port_names = ("http", "management", "metrics", "grpc_inference", "grpc_management")
    version_packages = ("torchserve", "torch-model-archiver", "torch", "scikit-learn", "numpy", "alibi", "shap",
                        "alibi-detect")

    build_note = BUILD_NOTE

    @classmethod
    def check_prerequisites(cls) -> None:
        ensure_java()

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        cmd = [str(python), str(RUNTIMES_DIR / "torchserve_launch.py"), "--artifact", str(ctx.artifact.path),
               "--workdir", str(workdir), "--tmp-dir", str(short_tmp_dir(workdir)), "--model-name", ctx.artifact.name,
               "--inference-port", str(ports["http"]), "--management-port", str(ports["management"]),
               "--metrics-port", str(ports["metrics"]), "--grpc-inference-port", str(ports["grpc_inference"]),
               "--grpc-management-port", str(ports["grpc_management"])]
        batching = ctx.settings.batching
        if batching.enabled:
            # TorchServe's own batching knobs: the frontend aggregates up to batchSize requests for at
            # most maxBatchDelay ms and hands the handler a list.
            cmd += ["--batch-size", str(batching.max_batch_size),
                    "--max-batch-delay-ms", str(max(1, round(batching.max_batch_time_ms)))]
        detect = self.usercode_detection(ctx)
        if detect:
            cmd += ["--detectors", detect["dir"], "--model-sha256", detect["model_sha256"],
                    "--n-features", str(detect["n_features"]), "--sink", detect["sink"]]
        return cmd

    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    def workers(self, client: httpx.Client, model: str) -> list[dict]:
        return workers_of(client, f"{self.management_url()}/models/{model}")

    def find_worker(self, recorded: dict, base_url: str) -> tuple[int, str] | None:
        return serving_worker(recorded)

    def worker_pids(self, model: str) -> list[int]:
        """The python worker(s) serving a model: what the kill fault kills (TorchServe restarts them itself)."""
        with httpx.Client(timeout=5.0) as client:
            return [int(w["pid"]) for w in self.workers(client, model) if w.get("pid")]

    def teardown(self, ctx=None) -> None:
        super().teardown(ctx)
        if self.workdir is not None:
            shutil.rmtree(short_tmp_dir(self.workdir), ignore_errors=True)

    # --- detection (user code): a second model whose handler runs the detectors ------------------------
    def detection_ready(self, ctx, service_url: str, timeout_s: float) -> None:
        model = ctx.artifact.name + DETECTED_SUFFIX

        def ready(client: httpx.Client) -> bool:
            workers = self.workers(client, model)
            return bool(workers) and all(w.get("status") == "READY" for w in workers)

        self.wait_until(ready, f"model {model} (user-code detection)", timeout_s, interval_s=0.5)

    def is_ready(self, client: httpx.Client, endpoint: Endpoint) -> bool:
        return PROTOCOL.is_ready(client, endpoint)

    def detection_paths(self, ctx, service_url: str) -> dict:
        model = ctx.artifact.name + DETECTED_SUFFIX
        return detection.path_info(
            ctx, self.platform, f"http://127.0.0.1:{self.ports['http']}/v2/models/{model}/infer", "user code",
            service_url, computed_by="TorchServe handler of model `<m>-detected` (user code, alibi-detect)",
            routing="a second model in the same TorchServe, archived with the same handler and artifact; its worker "
                    "runs the detectors on each request's rows, then the model; verdicts go to the detector service "
                    "in order from a background thread",
            ready_url=f"{self.management_url()}/models/{model}",
            kind_equivalent="none: the testbed has no kind deployment of TorchServe; TorchServe has no detection "
                            "mechanism")

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base, model_name=model_name,
                        metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
                        explain_url=f"{base}/v2/models/{model_name}/explain",
                        ready_url=f"http://127.0.0.1:{ports['management']}/models/{model_name}",
                        notes=("V2 infer/explain bodies are parsed and answered by our handler (user code): TorchServe "
                               "passes /v2/models/<m>/infer bodies through; /v2/health/* and /v2/models/<m>/ready "
                               "are not served",
                               f"management API on http://127.0.0.1:{ports['management']} (readiness: workers READY)",
                               "explanations: the handler's explain mode (TorchServe flags /v2/models/<m>/explain "
                               "requests), alibi KernelShap (user code)"))


# --- formats: one .mar per format model, a handler loading it with its library (user code) -----------------
FORMATS_ENV = EnvSpec("torchserve-formats", ("torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml>=6.0",
                                             "torch==2.15.0", *formats.BASE, formats.XGBOOST, formats.LIGHTGBM,
                                             formats.ONNXRUNTIME))


class TorchServeFormats(formats.FormatServer):
    """deployers/runtimes/torchserve_formats.py: each format model archived as its own .mar with a handler that
    loads it with its library's own API (user code: TorchServe's built-in handlers serve torch models)."""

    platform = "torchserve"
    env = FORMATS_ENV
    mechanism = {f: "user code" for f in formats.FORMATS}
    version_packages = ("torchserve", "torch", "scikit-learn", "xgboost", "lightgbm", "onnxruntime")

    def command(self, python, http_port, workdir, model_dir, n_features):
        ensure_java()
        self.management = processes.claim_port(None, "torchserve formats management")
        return [str(python), str(RUNTIMES_DIR / "torchserve_formats.py"), "launch", "--dir", str(model_dir),
                "--workdir", str(workdir), "--tmp-dir", str(short_tmp_dir(workdir)), "--inference-port", str(http_port),
                "--management-port", str(self.management),
                *[a for name in ("metrics", "grpc-inference", "grpc-management")
                  for a in (f"--{name}-port", str(processes.claim_port(None, f"torchserve formats {name}")))]]

    def ready_path(self) -> str:
        return "/ping"  # the frontend is up; `loaded` waits for each model's worker

    def loaded(self, client, workdir):
        """Once every archived model's worker is READY (or TIMEOUT_S passed): format -> why it does not serve."""
        import time

        status = json.loads((workdir / "status.json").read_text())
        errors = dict(status["errors"])
        deadline = time.monotonic() + self.TIMEOUT_S
        waiting = set(status["archived"])
        while waiting and time.monotonic() < deadline:
            waiting = {fmt for fmt in waiting if not any(
                w.get("status") == "READY" for w in workers_of(client, f"http://127.0.0.1:{self.management}/models/{fmt}"))}
            if waiting:
                time.sleep(1.0)
        errors.update({fmt: f"no READY worker within {self.TIMEOUT_S:g} s (runtime.log)" for fmt in waiting})
        return errors

    TIMEOUT_S = 600.0

    def stop(self) -> None:
        workdir = self.workdir
        super().stop()
        if workdir is not None:
            shutil.rmtree(short_tmp_dir(workdir), ignore_errors=True)


# --- monitoring: read off TorchServe's metrics port (metrics_mode=prometheus) after known traffic ----------
MODEL = 'platform="$platform",model_name="$model"'
FAILED_QUERY = 'sum(Requests4XX{platform="$platform"}) + (sum(Requests5XX{platform="$platform"}) or vector(0))'
METRICS = MetricsCatalogue(
    # Counts every request that reached the model's handler, answered 2xx or not (a handler's 400 too), and its
    # explanations; the `-detected` model has a series of its own.
    infer_requests_promql=f'sum(ts_inference_requests_total{{job="torchserve",model_name!~".*{DETECTED_SUFFIX}"}})',
    signals={
        "requests_total": Signal("sum(ts_inference_requests_total{%s})" % MODEL, ALL,
                                 "ts_inference_requests_total: every request that reached the model's handler, "
                                 "answered 2xx or not, explanations included"),
        "requests_ok": Signal(None, note="no per-model success counter: Requests2XX is host-wide and counts the "
                                         "management API's calls (readiness polls) too"),
        # Each status-class counter appears only once a response of its class was sent (measured: no Requests5XX
        # series before the first 5xx), so the 5xx term is 0 while absent.
        "requests_failed": Signal(FAILED_QUERY, FAILED, "Requests4XX/5XX: host-wide (every model, management API "
                                                        "included), no model label; a series appears with its "
                                                        "first response of that class"),
        "latency_histogram": Signal(None, note="ts_inference_latency_microseconds and ts_queue_latency_microseconds "
                                               "are counters (sums of microseconds), not histograms"),
        "status_codes": Signal(FAILED_QUERY, FAILED, "one counter per status class (Requests2XX/4XX/5XX), host-wide"),
        "queue_or_batch": Signal("sum(ts_queue_latency_microseconds{%s})" % MODEL,
                                 note="time spent queued (a counter of microseconds); no batch-size metric: the "
                                      "handler reports requests per call in the V2 answer's parameters"),
        "model_label": Signal("count(ts_inference_requests_total{%s})" % MODEL, note="model_name label"),
    })


# --- explanations: the handler's explain mode (user code) ---------------------------------------------------
EXPLAIN = ExplainPath(
    request="v2", response="alibi-json", mechanism="user code",
    route="POST /v2/models/<m>/explain: TorchServe flags the request as an explanation and calls our handler, "
          "alibi KernelShap (torchserve_handler.py)",
    methods_offered={"built_in": ["Captum in BaseHandler (PyTorch models): /explanations/<m>"],
                     "extension_point": "a custom handler's explain_handle"})


# --- batching: TorchServe's own (batchSize, maxBatchDelay per model) ------------------------------------------
def batching_evidence(run: BatchingRun, burst: int = 64) -> dict:
    """The batching configuration TorchServe was given for the model (config.properties `models`), and the batch
    sizes its frontend formed for a burst of `burst` concurrent one-row requests: TorchServe exports no batch-size
    metric, so the handler reports how many requests each call got (V2 answer's parameters.batch_requests)."""
    applied = {}
    config = run.workdir / "config.properties"
    if config.is_file():
        for line in config.read_text().splitlines():
            if line.startswith("models="):
                applied = json.loads(line.split("=", 1)[1]).get(run.model_name, {})
    out = {"applied": applied, "source": "config.properties `models`; observed: parameters.batch_requests of the "
                                         "answers to a burst of concurrent one-row requests after the load"}
    if run.body is not None:
        out["observed"] = burst_batch_sizes(PROTOCOL.infer_url(run.endpoint), run.body, burst)
    return out


def burst_batch_sizes(url: str, body: bytes, n: int) -> dict:
    """{"requests", "answered", "batch_requests": {size: answers}, "mean_batch_requests"} for n concurrent posts. Every
    answer names its call's batch size, so the counts and the mean are per request (request-weighted), not per batch:
    a batch of 32 is 32 answers saying 32."""
    from concurrent.futures import ThreadPoolExecutor

    def one(client: httpx.Client):
        try:
            r = client.post(url, content=body, headers={"Content-Type": "application/json"})
            return (r.json().get("parameters") or {}).get("batch_requests") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    with httpx.Client(timeout=30.0, limits=httpx.Limits(max_connections=n)) as client, ThreadPoolExecutor(n) as pool:
        sizes = [s for s in pool.map(lambda _: one(client), range(n)) if isinstance(s, int)]
    counts = {str(k): sizes.count(k) for k in sorted(set(sizes))}
    return {"requests": n, "answered": len(sizes), "batch_requests": counts,
            "mean_batch_requests": sum(sizes) / len(sizes) if sizes else None}


BATCHING = BatchingSupport(
    mechanism="native", offline="none",
    detail="TorchServe's frontend aggregates up to batchSize requests for at most maxBatchDelay ms and hands the "
           "handler a list (model config in config.properties, from up --batching); no offline batch tool",
    evidence=batching_evidence)


DOCUMENTED = DocumentedRow("TorchServe", {
    "formats": Documented("PyTorch (eager, TorchScript); other formats through custom handlers",
        ("https://pytorch.org/serve/",)),
    "outlier": Documented("None built in", ("https://pytorch.org/serve/",)),
    "drift": Documented("None built in", ("https://pytorch.org/serve/",)),
    "monitoring": Documented("Prometheus metrics API", ("https://pytorch.org/serve/metrics_api.html",)),
    "explainability": Documented("Captum explanations endpoint", ("https://pytorch.org/serve/inference_api.html",)),
    "cicd": Documented("Management API to register/scale models; no pipeline of its own",
        ("https://pytorch.org/serve/management_api.html",)),
    "deployment_focus": Documented(
        "Serving PyTorch models; in limited maintenance since 2025 (no planned updates, bug fixes or security "
        "patches); last release 0.12.0 (September 2024)",
        ("https://github.com/pytorch/serve", "https://github.com/pytorch/serve/issues/3396",
         "https://github.com/pytorch/serve/releases/tag/v0.12.0")),
    "cost_licence": Documented("Apache-2.0 (torch BSD-3-Clause; its Java frontend runs on OpenJDK, GPL-2.0 with "
                               "Classpath Exception)",
        ("https://github.com/pytorch/serve/blob/master/LICENSE",)),
    "docker": Documented("Yes: official images", ("https://github.com/pytorch/serve/tree/master/docker",)),
    "batching": Documented("Dynamic batching (batch_size, max_batch_delay)",
        ("https://pytorch.org/serve/batch_inference_with_ts.html",)),
    "ease": Documented("torch-model-archiver + torchserve (needs Java)", ("https://pytorch.org/serve/getting_started.html",)),
})


PLATFORM = Platform(
    name="torchserve",
    display_name="TorchServe",
    deployments={"local": TorchServeLocal},
    protocol=PROTOCOL,
    metrics=METRICS,
    explain=EXPLAIN,
    batching=BATCHING,
    formats=TorchServeFormats,
    # The handler, the configuration and the archiving: what a user writes to serve the model.
    user_files=(UserFile("code", RUNTIMES_DIR / "torchserve_handler.py"),
                UserFile("config", "run:torchserve/config.properties")),
    documented=DOCUMENTED,
    default=False,
    facts={"runtime": "TorchServe java frontend + python worker per model (custom handler)", "licence":
           "Apache-2.0 (TorchServe, torch BSD-3-Clause; Java: OpenJDK GPL-2.0 with Classpath Exception)",
           "protocol": "V2 bodies parsed by our handler (user code); /v2/health/* and model ready routes 404",
           "batching": "batchSize + maxBatchDelay per model (the frontend aggregates; the handler gets a list)",
           "explain": "/explanations/<m> and /v2/models/<m>/explain call the handler in explain mode (Captum in "
                      "BaseHandler); here alibi KernelShap in our handler (user code)",
           "detection": "none: a second model whose handler runs the detectors (user code, alibi-detect)",
           "maintenance": "limited maintenance since 2025 (pytorch/serve#3396); last release 0.12.0, Sep 2024"},
)
