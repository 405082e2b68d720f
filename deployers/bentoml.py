"""BentoML: `bentoml serve` of a @bentoml.service on the local backend (no kind deployment).

BentoML speaks its own JSON (one route per API method), not V2: probes reach it through ADAPTER, a
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

from testbed.adapters import ProtocolAdapter, rows_of, v2_response
from testbed.backends.local import detection, processes
from testbed.backends.local.deployment import RUNTIMES_DIR, LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import Endpoint
from testbed.errors import FaultTargetMissing
from testbed.platforms import Platform

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


@dataclass(frozen=True)
class BentoMLAdapter(ProtocolAdapter):
    """V2 <-> BentoML's JSON for bentoml_service.py: {"rows": [[...]]} in, [label, ...] out."""

    protocol: str = "bentoml-json"
    where: str = "client-side adapter"

    def infer_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.base_url}/predict"

    def ready_url(self, endpoint: Endpoint) -> str:
        # BentoML's readiness: the entry service and every composed service it depends on are ready.
        return f"{endpoint.base_url}/readyz"

    def encode_infer(self, v2_body: dict) -> dict:
        return {"rows": rows_of(v2_body).tolist()}

    def decode_infer(self, answer, v2_body: dict, model_name: str) -> dict:
        return v2_response(answer, model_name, v2_body.get("id"), "BentoML /predict")

    def encode_detected(self, v2_body: dict) -> dict:
        return {"rows": rows_of(v2_body).tolist(), "request_id": str(v2_body.get("id") or "")}

    def encode_explain(self, rows) -> dict:
        return {"rows": [list(map(float, r)) for r in rows]}


ADAPTER = BentoMLAdapter()


def config_path(workdir) -> Path:
    return Path(workdir) / "testbed-bentoml.json"


def serving_worker(info: dict) -> tuple[int, str]:
    """(pid, how it was found) of the entry service's worker, from a state-file entry (pid, workdir): what the
    kill fault kills. Circus respawns a dead worker (BentoML's own recovery)."""
    for pid in processes.with_env(MARKER, str(config_path(info["workdir"]))):
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
    env = ENV
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

    def ready_url(self, endpoint: Endpoint) -> str:
        return ADAPTER.ready_url(endpoint)

    def member_pids(self) -> list[int]:
        """The arbiter and every worker (they are in sessions of their own)."""
        if self.workdir is None:
            return []
        return sorted(set(processes.with_env(MARKER, str(self.config_path(self.workdir)))
                          + (processes.session_members(self.pid) if self.pid else [])))

    def teardown(self, ctx=None) -> None:
        # SIGTERM to the arbiter stops its workers gracefully; whatever it left (it was killed, or hung)
        # is stopped by the marker.
        super().teardown(ctx)
        if self.workdir is None:
            return
        for pid in processes.with_env(MARKER, str(self.config_path(self.workdir))):
            processes.stop_session(pid, grace_s=5.0)

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
            protocol=ADAPTER.protocol, body="BentoML JSON {rows, request_id}: ADAPTER.encode_detected",
            kind_equivalent="none: the testbed has no kind deployment of BentoML; BentoML has no detection "
                            "mechanism")

    def make_endpoint(self, ports, model_name) -> Endpoint:
        base = f"http://127.0.0.1:{ports['http']}"
        return Endpoint(platform=self.platform, backend="local", base_url=base, model_name=model_name,
                        metrics_url=f"{base}/metrics", explain_url=f"{base}/explain",
                        notes=("BentoML's own JSON protocol, no V2: POST /predict {rows} -> [labels]; probes convert "
                               "V2 on the client side (deployers.bentoml.ADAPTER), so base_url has no /v2 routes",
                               "explanations: API /explain -> composed Explainer service (user code, alibi "
                               "KernelShap); body {rows}, answer the alibi Explanation document"))


PLATFORM = Platform(
    name="bentoml",
    display_name="BentoML",
    # /readyz and /metrics are counted too (endpoint label): select the infer route of the entry service.
    infer_requests_promql='sum(bentoml_service_request_total{job="bentoml",endpoint="/predict",'
                          f'service_name="{ENTRY_SERVICE}",http_response_code="200"}})',
    deployments={"local": BentoMLLocal},
    facts={"runtime": "bentoml serve (circus arbiter + one worker process per service)", "licence": "Apache-2.0",
           "protocol": "BentoML JSON (one route per @bentoml.api); V2 through a client-side adapter",
           "batching": "adaptive batching: @bentoml.api(batchable=True, max_batch_size, max_latency_ms); the wait is "
                       "learned, max_latency_ms is a rejection deadline (HTTP 503)",
           "explain": "none built in: a composed Explainer service (user code, alibi KernelShap)",
           "detection": "none built in: a composed Detector service (user code, alibi-detect)"},
)
