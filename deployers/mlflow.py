"""MLflow model serving: MLflow's pyfunc scoring server on the local backend (no kind deployment).

The model is packaged with `mlflow.sklearn.save_model` from the sha256-checked artifact and served
by MLflow's own scoring server app (deployers/runtimes/mlflow_serve.py says why it is run by uvicorn
without the `mlflow models serve` launcher). Its protocol is MLflow's, not V2:
    POST /invocations {"inputs": [[...]], "params": {...}} -> {"predictions": [...]};  GET /ping, /health
Probes reach it through ADAPTER (client-side; docs/platform-adapters.md).

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

from dataclasses import dataclass
from pathlib import Path

from testbed.adapters import ProtocolAdapter, rows_of, v2_response
from testbed.backends.local import detection, processes
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.errors import FaultTargetMissing, InvalidPayload
from testbed.platforms import Platform

# The full `mlflow` distribution, what `pip install mlflow` and `mlflow models build-docker` install
# (mlflow-skinny + pandas would serve too, ~300 MB smaller). alibi[shap] 0.9.6 (KernelShap) needs
# shap < 0.44 and numba < 0.60; alibi-detect: the wrapper's detectors. mlflow 3.18.0 does not resolve here.
ENV = EnvSpec("mlflow", ("mlflow==3.17.2", "scikit-learn==1.5.2", "numpy==1.26.4", "joblib>=1.3",
                         "alibi[shap]==0.9.6", "shap==0.43.0", "alibi-detect==0.13.0"))


@dataclass(frozen=True)
class MLflowAdapter(ProtocolAdapter):
    """V2 <-> MLflow's scoring protocol: {"inputs": rows[, "params"]} in, {"predictions": ...} out."""

    protocol: str = "mlflow-invocations"
    where: str = "client-side adapter"

    def infer_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.base_url}/invocations"

    def ready_url(self, endpoint: Endpoint) -> str:
        # The app exists only once the model is loaded: /ping answering at all means it serves.
        return f"{endpoint.base_url}/ping"

    def encode_infer(self, v2_body: dict) -> dict:
        return {"inputs": rows_of(v2_body).tolist()}

    def decode_infer(self, answer, v2_body: dict, model_name: str) -> dict:
        if not isinstance(answer, dict) or "predictions" not in answer:
            raise InvalidPayload("answer from MLflow /invocations", f"no `predictions`: {str(answer)[:200]}")
        return v2_response(answer["predictions"], model_name, v2_body.get("id"), "MLflow /invocations")

    def encode_detected(self, v2_body: dict) -> dict:
        return {"inputs": rows_of(v2_body).tolist(),
                "params": {"output": "predict", "request_id": str(v2_body.get("id") or "")}}

    def encode_explain(self, rows) -> dict:
        return {"inputs": [list(map(float, r)) for r in rows], "params": {"output": "explain"}}

    def decode_explain(self, answer: dict) -> dict:
        return answer["predictions"]


ADAPTER = MLflowAdapter()


def packages_dir(artifact_path: Path) -> Path:
    """The MLflow models packaged from an artifact live beside it (reused while artifact and code are unchanged)."""
    return artifact_path.parent / f"{artifact_path.name}-mlflow"


def serving_worker(info: dict) -> tuple[int, str]:
    """(pid, how it was found) of the scoring server of the model, from a state-file entry (pid, ports): the
    session leader, listening on the http port. Nothing restarts it: MLflow has no supervisor (the user-code
    server, its child, stops with it)."""
    for pid, socks in processes.listening_sockets(processes.session_members(info["pid"])).items():
        if any(port == info["ports"]["http"] for _, port in socks):
            return pid, f"listens on port {info['ports']['http']}"
    raise FaultTargetMissing("mlflow", f"no process of session {info['pid']} listens on port {info['ports']['http']}")


class MLflowLocal(LocalProcess):
    platform = "mlflow"
    env = ENV
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

    def ready_url(self, endpoint: Endpoint) -> str:
        return ADAPTER.ready_url(endpoint)

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
            protocol=ADAPTER.protocol, body="MLflow {inputs, params: {output: predict, request_id}}: "
                                            "ADAPTER.encode_detected",
            kind_equivalent="none: the testbed has no kind deployment of MLflow; MLflow has no detection mechanism")

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base, model_name=model_name,
                        metrics_url=None, explain_url=f"http://127.0.0.1:{ports['usercode']}/invocations",
                        notes=("MLflow's scoring protocol, no V2: POST /invocations {inputs} -> {predictions}; probes "
                               "convert V2 on the client side (deployers.mlflow.ADAPTER), so base_url has no /v2 routes",
                               "no metrics: MLflow's scoring server exposes no /metrics (measured: 404)",
                               "explanations: a pyfunc wrapper on a second scoring server (user code, alibi "
                               "KernelShap); body {inputs, params: {output: explain}}, answer {predictions: "
                               "<alibi Explanation document>}"))


PLATFORM = Platform(
    name="mlflow",
    display_name="MLflow (model serving)",
    infer_requests_promql="",  # the scoring server exports no metrics (measured: /metrics is 404)
    deployments={"local": MLflowLocal},
    facts={"runtime": "MLflow pyfunc scoring server (FastAPI app run by uvicorn)", "licence": "Apache-2.0",
           "protocol": "MLflow /invocations JSON; V2 through a client-side adapter",
           "batching": "none in the scoring server (one predict call per request); offline: mlflow.pyfunc.spark_udf "
                       "or `mlflow models predict`",
           "explain": "none in the scoring server (mlflow.shap logs explainers); served as a pyfunc wrapper (user code)",
           "detection": "none: a pyfunc wrapper model runs the detectors (user code, alibi-detect)",
           "mlserver": "`mlflow models serve --enable-mlserver` was deprecated in mlflow PR #22994 (April 2026, "
                       "stating MLServer is unmaintained) and removed in PR #23356"},
)
