"""MLflow model serving: MLflow's pyfunc scoring server on the local backend (no kind deployment).

The model is packaged with MLflow's flavour for its format (`mlflow.sklearn`, `.xgboost`, `.lightgbm` or
`.onnx` `.save_model`, runtimes/mlflow_models.py) from the sha256-checked artifact and served by MLflow's own
scoring server app (deployers/runtimes/mlflow_serve.py says why it is run by uvicorn
without the `mlflow models serve` launcher). Its protocol is MLflow's, not V2:
    POST /invocations {"inputs": [[...]], "params": {...}} -> {"predictions": [...]};  GET /ping, /health
    (a model that takes named columns: {"dataframe_split": {"columns": [...], "data": [[...]]}, ...})
Probes reach it through PROTOCOL (a client-side adapter; docs/platform-adapters.md).

Not MLServer: MLflow 3 removed `mlflow models serve --enable-mlserver` (deprecated in mlflow PR #22994,
April 2026, which states MLServer is unmaintained; removed in PR #23356). `mlserver start` with
`mlserver_mlflow.MLflowRuntime` (mlserver 1.7.1 + mlserver-mlflow 1.7.1) still resolves beside mlflow
3.17.2 and speaks V2, but it is MLServer (already measured as the Seldon platform) loading an MLflow
model, not what `mlflow models serve` gives an MLflow user today.

No metrics: the scoring server has no /metrics (404); `--expose-prometheus` exists only for the
tracking server. A measured finding, not an error: Endpoint.metrics_url is None.

Explanations and detection are user code, the MLflow way: a pyfunc wrapper model
(runtimes/mlflow_models.py UserCodeModel) served by a second scoring server.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deployers import formats
from testbed.adapters import columns_of, is_columns, rows_of, v2_answer
from testbed.backends.local import detection, envs
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.errors import InvalidPayload
from testbed.serving import FormatSupport, ModelServing
from testbed.platforms import (BatchingSupport, Documented, DocumentedRow, ExplainPath, MetricsCatalogue,
                               OfflineJob, Platform, Signal, UserFile, WireProtocol)

# The full `mlflow` distribution, what `pip install mlflow` and `mlflow models build-docker` install
# (mlflow-skinny + pandas would serve too, ~300 MB smaller). alibi[shap] 0.9.6 (KernelShap) needs
# shap < 0.44 and numba < 0.60; alibi-detect: the wrapper's detectors. mlflow 3.18.0 does not resolve here.
ENV = EnvSpec("mlflow", ("mlflow==3.17.2", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3",
                         "alibi[shap]==0.9.6", "shap==0.43.0", "alibi-detect==0.13.0"))


@dataclass(frozen=True)
class MLflowProtocol(WireProtocol):
    """V2 <-> MLflow's scoring protocol: {"inputs": rows[, "params"]} in (a model that takes named columns:
    {"dataframe_split": {"columns", "data"}}), {"predictions": ...} out (a client-side adapter: probes time MLflow's
    own /invocations route, its schema enforcement and conversions included). An ONNX model answers every graph
    output by name; its first (the label of a classifier, the value of a regressor) is the prediction, as
    model_io reads it on the other platforms."""

    protocol: str = "mlflow-invocations"
    where: str = "client-side adapter"
    validation: str = "native"
    validation_note: str = ("MLflow's scoring server parses the JSON and enforces the model signature's tensor shape "
                            "and type itself (a row of the wrong width is refused before the model runs); a V2 body "
                            "with no tensor is refused by the client-side adapter before anything is sent")

    def infer_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.base_url}/invocations"

    def model_infer_url(self, endpoint: Endpoint, model: str) -> str | None:
        return None  # one model per scoring server: its route names none

    def live_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.base_url}/health"

    def ready_url(self, endpoint: Endpoint) -> str:
        # The app exists only once the model is loaded: /ping answering at all means it serves.
        return f"{endpoint.base_url}/ping"

    def encode_infer(self, v2_body: dict) -> dict:
        if is_columns(v2_body):
            names, rows = columns_of(v2_body)
            return {"dataframe_split": {"columns": names, "data": rows}}
        return {"inputs": rows_of(v2_body).tolist()}

    def decode_infer(self, answer, v2_body: dict, model_name: str) -> dict:
        if not isinstance(answer, dict) or "predictions" not in answer:
            raise InvalidPayload("answer from MLflow /invocations", f"no `predictions`: {str(answer)[:200]}")
        predictions = answer["predictions"]
        if isinstance(predictions, dict) and predictions:  # outputs by name (mlflow.onnx): the first is the answer
            predictions = next(iter(predictions.values()))
        return v2_answer(predictions, model_name, v2_body.get("id"), "MLflow /invocations")

    def example_answer(self, labels: list, v2_body: dict, model_name: str) -> dict:
        return {"predictions": list(labels)}

    def encode_detected(self, v2_body: dict) -> dict:
        return {**self.encode_infer(v2_body),
                "params": {"output": "predict", "request_id": str(v2_body.get("id") or "")}}



PROTOCOL = MLflowProtocol()


def encode_explain(rows) -> dict:
    return {"inputs": [list(map(float, r)) for r in rows], "params": {"output": "explain"}}


def decode_explain(answer: dict) -> dict:
    return answer["predictions"]


def packages_dir(artifact_path: Path) -> Path:
    """The MLflow models packaged from an artifact live beside it (reused while artifact and code are unchanged)."""
    return artifact_path.parent / f"{artifact_path.name}-mlflow"


def _lightgbm_refusal(artifact) -> str | None:
    if artifact.task != "classification":
        return None
    return ("MLflow's lightgbm flavour (mlflow.lightgbm, pyfunc predict = Booster.predict) answers a Booster's class "
            "probabilities, with no label output to ask for, and the testbed compares labels. What would work: the "
            "LGBMClassifier saved with joblib (served with MLflow's sklearn flavour, which answers labels), or this "
            "file on KServe, Ray Serve, BentoML or TorchServe (user code)")


SERVING = ModelServing(formats={
    "sklearn": FormatSupport("MLflow's sklearn flavour (mlflow.sklearn.save_model, pyfunc scoring server)", "native"),
    "xgboost": FormatSupport("MLflow's xgboost flavour (mlflow.xgboost.save_model of the XGBClassifier / "
                             "XGBRegressor loaded from the file, pyfunc scoring server)", "native", (formats.XGBOOST,)),
    "lightgbm": FormatSupport("MLflow's lightgbm flavour (mlflow.lightgbm.save_model of the Booster, pyfunc scoring "
                              "server)", "native", (formats.LIGHTGBM,), _lightgbm_refusal),
    "onnx": FormatSupport("MLflow's onnx flavour (mlflow.onnx.save_model, onnxruntime in the pyfunc scoring server)",
                          "native", (formats.ONNXRUNTIME, formats.ONNX)),
}, shared_env="usermodels")
"""MLflow's own flavours load every format the testbed serves; its scoring server serves them (native). Explanations
and detection stay user code (the pyfunc wrapper). One environment holds every flavour's library
(`mlflow-usermodels`): one build for any user model instead of one per format."""


class MLflowLocal(LocalProcess):
    """The kill fault's target is the default one, the process listening on the http port: the scoring server,
    session leader. Nothing restarts it (MLflow has no supervisor; the user-code server, its child, stops with
    it); re-running the leader's recorded command line restores both servers."""

    platform = "mlflow"
    detection_label = "user code"
    env = ENV
    serving = SERVING
    port_names = ("http", "usercode")
    version_packages = ("mlflow", "scikit-learn", "numpy", "fastapi", "uvicorn", "alibi", "shap", "alibi-detect")

    def command(self, python: Path, ports, workdir: Path, ctx) -> list[str]:
        cmd = [str(python), str(RUNTIMES_DIR / "mlflow_serve.py"), "--artifact", str(ctx.artifact.path),
               "--packages", str(packages_dir(ctx.artifact.path)), "--port", str(ports["http"]),
               "--usercode-port", str(ports["usercode"])]
        detect = self.usercode_detection(ctx)
        if detect:
            cmd += ["--detectors", detect["dir"], "--model-sha256", detect["model_sha256"],
                    "--n-features", str(detect["n_features"]), "--sink", detect["sink"]]
        return cmd

    def extra_env(self, workdir: Path) -> dict[str, str]:
        # No tracking server is involved; keep MLflow from creating ./mlruns anywhere but the workdir.
        return {"MLFLOW_TRACKING_URI": (workdir / "mlruns").as_uri()}

    def usercode_base(self) -> str:
        return f"http://127.0.0.1:{self.ports['usercode']}"

    # --- detection (user code): the pyfunc wrapper's scoring server runs the detectors ----------------
    def detection_ready(self, ctx, service_url: str, timeout_s: float) -> None:
        url = f"{self.usercode_base()}/ping"
        self.wait_until(lambda client: client.get(url).status_code == 200, "pyfunc wrapper (user code)", timeout_s)

    def detection_paths(self, ctx, service_url: str) -> dict:
        return detection.path_info(
            ctx, self.platform, f"{self.usercode_base()}/invocations", "user code", service_url,
            computed_by="MLflow pyfunc wrapper model (user code, alibi-detect)",
            routing="a second MLflow scoring server serves a pyfunc wrapper (mlflow.pyfunc.PythonModel) around the "
                    "same model: predict runs the detectors on the rows, then the model; verdicts go to the "
                    "detector service in order from a background thread",
            protocol=PROTOCOL.protocol, body="MLflow {inputs, params: {output: predict, request_id}}: "
                                             "PROTOCOL.encode_detected",
            ready_url=f"{self.usercode_base()}/ping",
            kind_equivalent="none: the testbed has no kind deployment of MLflow; MLflow has no detection mechanism")

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base, model_name=model_name,
                        metrics_url=None, explain_url=f"http://127.0.0.1:{ports['usercode']}/invocations",
                        ready_url=f"{base}/ping",
                        notes=("MLflow's scoring protocol, no V2: POST /invocations {inputs} -> {predictions}; probes "
                               "convert V2 on the client side (deployers.mlflow.PROTOCOL), so base_url has no /v2 routes",
                               "no metrics: MLflow's scoring server exposes no /metrics (measured: 404)",
                               "explanations: a pyfunc wrapper on a second scoring server (user code, alibi "
                               "KernelShap); body {inputs, params: {output: explain}}, answer {predictions: "
                               "<alibi Explanation document>}"))


# --- formats: MLflow's own flavours (native) ------------------------------------------------------------------
FORMATS_ENV = EnvSpec("mlflow-formats", ("mlflow==3.17.2", *formats.BASE, formats.XGBOOST, formats.LIGHTGBM,
                                         formats.ONNXRUNTIME, formats.ONNX))


def format_predictions(answer) -> dict:
    """The scoring server's answer for a format model as a V2 response (probes.formats.labels_from reads it):
    labels as they are, a probability matrix (LightGBM's Booster) with its shape, the `label` output of ONNX."""
    predictions = answer["predictions"] if isinstance(answer, dict) else answer
    if isinstance(predictions, dict):  # an ONNX model answers every graph output by name
        predictions = predictions["label"]
    data = np.asarray(predictions, dtype=np.float64)
    return {"outputs": [{"name": "predictions", "datatype": "FP64", "shape": list(data.shape),
                         "data": data.ravel().tolist()}]}


class MLflowFormats(formats.FormatServer):
    """Each format model saved with MLflow's flavour for its library and served by MLflow's scoring server
    (deployers/runtimes/formats_mlflow.py): native, as an MLflow user logs and serves such a model."""

    platform = "mlflow"
    env = FORMATS_ENV
    mechanism = {f: "native" for f in formats.FORMATS}
    version_packages = ("mlflow", "scikit-learn", "xgboost", "lightgbm", "onnx", "onnxruntime")

    def command(self, python, http_port, workdir, model_dir, n_features):
        return [str(python), str(RUNTIMES_DIR / "formats_mlflow.py"), "--dir", str(model_dir), "--workdir",
                str(workdir), "--http-port", str(http_port)]

    def ready_path(self) -> str:
        return "/status"

    def loaded(self, client, workdir):
        return client.get(self.base_url + self.ready_path()).json()["errors"]

    def infer_url(self, fmt: str) -> str:
        return f"{self.base_url}/{fmt}/invocations"

    def encode(self, v2_body: dict):
        return PROTOCOL.encode_infer(v2_body)

    def decode(self, answer):
        return format_predictions(answer)


# --- monitoring: none -------------------------------------------------------------------------------------
NO_METRICS = ("MLflow's scoring server has no /metrics route (measured: 404) and no option for one; "
              "`--expose-prometheus` exists only for the tracking server")
METRICS = MetricsCatalogue(
    infer_requests_promql="",
    signals={name: Signal(None, note=NO_METRICS) for name in
             ("requests_total", "requests_ok", "requests_failed", "latency_histogram", "status_codes",
              "queue_or_batch", "model_label")})
"""No series to read: the monitoring probe still sends its traffic and finds nothing (a measured finding)."""


# --- explanations: a pyfunc wrapper model on a second scoring server (user code) ----------------------------
EXPLAIN = ExplainPath(
    request="platform-json", response="platform-json", mechanism="user code",
    route="POST /invocations {inputs, params: {output: explain}} on a second scoring server serving a pyfunc "
          "wrapper (mlflow_models.UserCodeModel), alibi KernelShap; answer {predictions: <alibi Explanation>}",
    methods_offered={"built_in": ["mlflow.shap.log_explainer / mlflow.evaluate: SHAP explanations logged at "
                                  "training or evaluation time, not served"],
                     "extension_point": "a pyfunc PythonModel's predict (params select the output)"},
    encode=encode_explain, decode=decode_explain)


# --- batching: no request batching; offline batch scoring with `mlflow models predict` ----------------------
def offline_job(job: OfflineJob) -> dict:
    """MLflow's own offline tool: `mlflow models predict` on the packaged scikit-learn model (the one the scoring
    server serves, checksums verified first), input and output JSON files; its wall time includes the CLI's
    start (importing mlflow, loading the model)."""
    python = envs.python_of(envs.env_dir(ENV, job.envs_dir))
    model = packages_dir(Path(job.artifact_dir)) / "native"  # mlflow_models.NATIVE
    check = subprocess.run([str(python), "-c", "import sys, mlflow_models; mlflow_models.verify(sys.argv[1])",
                            str(model)], cwd=RUNTIMES_DIR, capture_output=True, text=True)
    if check.returncode != 0:
        return {"path": "mlflow models predict", "error": f"packaged model not verified: {check.stderr[-500:]}",
                "rows": 0, "rows_per_s": None, "seconds": None}
    with tempfile.TemporaryDirectory(prefix="testbed-mlflow-batch-") as tmp:
        inp, out = Path(tmp) / "rows.json", Path(tmp) / "predictions.json"
        inp.write_text(json.dumps({"inputs": np.asarray(job.rows, dtype=np.float64).tolist()}))
        cmd = [str(python.parent / "mlflow"), "models", "predict", "-m", str(model), "-i", str(inp), "-o", str(out),
               "-t", "json", "--env-manager", "local"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ,
                                                                       "MLFLOW_TRACKING_URI": Path(tmp).as_uri()})
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not out.is_file():
            return {"path": "mlflow models predict", "error": f"exit {proc.returncode}: {proc.stderr[-500:]}",
                    "rows": 0, "rows_per_s": None, "seconds": seconds}
        labels = np.asarray(json.loads(out.read_text())["predictions"], dtype=np.int64)
    return {"path": "mlflow models predict -t json --env-manager local (CLI start and model load included)",
            "rows": int(len(labels)), "seconds": seconds, "rows_per_s": len(labels) / seconds, "labels": labels}


BATCHING = BatchingSupport(
    mechanism="none", offline="native",
    detail="no request batching: the scoring server calls predict once per request; offline batch scoring with "
           "MLflow's own `mlflow models predict` (or mlflow.pyfunc.spark_udf on Spark)",
    offline_job=offline_job)


DOCUMENTED = DocumentedRow("MLflow", {
    "formats": Documented("Model flavors: scikit-learn, XGBoost, LightGBM, ONNX, PyTorch, TensorFlow, pyfunc, ...",
        ("https://mlflow.org/docs/latest/models.html",)),
    "outlier": Documented("None built in", ("https://mlflow.org/docs/latest/",)),
    "drift": Documented("None built in", ("https://mlflow.org/docs/latest/",)),
    "monitoring": Documented("Tracking of training runs; the model scoring server exposes no metrics",
        ("https://mlflow.org/docs/latest/deployment/",)),
    "explainability": Documented("SHAP explanations through mlflow.evaluate / mlflow.shap (logged, not served)",
        ("https://mlflow.org/docs/latest/model-evaluation/",)),
    "cicd": Documented("Model Registry with versions and aliases", ("https://mlflow.org/docs/latest/model-registry.html",)),
    "deployment_focus": Documented(
        "Experiment tracking and model lifecycle; serving is `mlflow models serve` (its own scoring server). The "
        "MLServer backend (--enable-mlserver) was deprecated in April 2026, MLServer being no longer actively "
        "maintained, and removed in May 2026",
        ("https://mlflow.org/docs/latest/", "https://github.com/mlflow/mlflow/pull/22994",
         "https://github.com/mlflow/mlflow/pull/23356")),
    "cost_licence": Documented("Apache-2.0; managed offerings are paid",
        ("https://github.com/mlflow/mlflow/blob/master/LICENSE.txt",)),
    "docker": Documented("Yes: mlflow models build-docker", ("https://mlflow.org/docs/latest/deployment/",)),
    "batching": Documented("Offline: spark_udf / mlflow models predict; no request batching",
        ("https://mlflow.org/docs/latest/models.html",)),
    "ease": Documented("pip install mlflow; mlflow models serve", ("https://mlflow.org/docs/latest/deployment/",)),
})


PLATFORM = Platform(
    name="mlflow",
    display_name="MLflow (model serving)",
    deployments={"local": MLflowLocal},
    protocol=PROTOCOL,
    metrics=METRICS,
    explain=EXPLAIN,
    batching=BATCHING,
    formats=MLflowFormats,
    # The packaging and the pyfunc wrapper (explanations, detection): what a user writes.
    user_files=(UserFile("code", RUNTIMES_DIR / "mlflow_models.py"),),
    documented=DOCUMENTED,
    facts={"runtime": "MLflow pyfunc scoring server (FastAPI app run by uvicorn)", "licence": "Apache-2.0",
           "protocol": "MLflow /invocations JSON; V2 through a client-side adapter",
           "batching": "none in the scoring server (one predict call per request); offline: mlflow.pyfunc.spark_udf "
                       "or `mlflow models predict`",
           "explain": "none in the scoring server (mlflow.shap logs explainers); served as a pyfunc wrapper (user code)",
           "detection": "none: a pyfunc wrapper model runs the detectors (user code, alibi-detect)",
           "mlserver": "`mlflow models serve --enable-mlserver` was deprecated in mlflow PR #22994 (April 2026, "
                       "stating MLServer is unmaintained) and removed in PR #23356"},
)
