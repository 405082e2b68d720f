"""BentoML, MLflow and TorchServe runtimes for real (marked integration). The checks that only send requests
run against the session's testbed (`testbed_up`, which runs every platform unless TESTBED_TEST_PLATFORMS
names fewer): parity, loopback, malformed input, metrics, explanations, the user-code detection paths.
Server-side batching and the kill each start the platform's local Deployment alone, on free loopback
ports in a state directory of the test's own, and stop it.

Runtime environments are the session's (TESTBED_ENVS_DIR, tests/conftest.py), built once and reused
while their pins are unchanged: TorchServe's holds torch with its CUDA libraries (~2.6 GB download,
~6.5 GB on disk). Probes reach each platform through its PLATFORM.protocol, as the probes do.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deployers import bentoml as bentoml_platform, mlflow as mlflow_platform, torchserve as torchserve_platform
from testbed import artifact as artifact_mod, v2
from testbed.endpoint import Endpoint
from testbed.backends.local import detection, processes
from testbed.backends.local import faults as local_faults
from probes.explain import parse_response, request_body
from testbed.settings import Batching, Settings
from testbed.steps import UpContext

pytestmark = pytest.mark.integration

MODULES = {"bentoml": bentoml_platform, "mlflow": mlflow_platform, "torchserve": torchserve_platform}
LOCAL = {"bentoml": bentoml_platform.BentoMLLocal, "mlflow": mlflow_platform.MLflowLocal,
         "torchserve": torchserve_platform.TorchServeLocal}
READY_TIMEOUT_S = 420.0


class OnTestbed:
    """One platform of the session's testbed, from its `status --json`: what the tests need to reach it."""

    def __init__(self, name: str, status: dict):
        p = status["platforms"][name]
        self.name = name
        self.adapter = MODULES[name].PLATFORM.protocol
        self.endpoint = Endpoint.from_json(p["endpoint"])
        self.artifact = artifact_mod.load(Path(status["model"]["path"]))
        self.ports = p["ports"]
        self.service_url = (status.get("detection") or {}).get("service_url")
        self._info = {"pid": p["pid"], "ports": p["ports"], "workdir": p["workdir"]}

    def info(self) -> dict:
        return self._info

    def pids(self) -> list[int]:
        return LOCAL[self.name].members(self.info())


class Running:
    """One platform's Deployment up on its own (a test's state dir), and what the tests need to reach it."""

    def __init__(self, name: str, ctx: UpContext, dep, ready_s: float):
        self.name, self.ctx, self.dep, self.ready_s = name, ctx, dep, ready_s
        self.adapter = MODULES[name].PLATFORM.protocol
        self.endpoint = dep.endpoint(ctx)
        self.artifact = ctx.artifact
        self.ports = dep.ports

    def info(self) -> dict:
        """What the state file records of the deployment (what members and the kill target are found from)."""
        return {"pid": self.dep.pid, "ports": dict(self.dep.ports), "workdir": str(self.dep.workdir)}

    def pids(self) -> list[int]:
        return type(self.dep).members(self.info())


def _up(name: str, state_dir: Path, batching: Batching = Batching(), detect: bool = True) -> Running:
    settings = Settings(state_dir=state_dir, detection=detect, batching=batching)
    ctx = UpContext(settings=settings)
    ctx.artifact = artifact_mod.ensure(settings.artifacts_dir, settings.artifact_seed)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    dep = LOCAL[name]()
    ctx.deployments = {name: dep}
    saved = lambda ctx: None  # noqa: E731  (no state file: nothing outside this test reads it)
    try:
        if detect:
            detection.step_detectors(ctx, saved)
        started = time.monotonic()
        dep.deploy(ctx)
        ctx.endpoints[name] = dep.wait_ready(ctx, READY_TIMEOUT_S)
        ready_s = time.monotonic() - started
        if detect:
            detection.step_wait_paths(ctx, saved)
    except BaseException:
        _down(ctx, dep)
        raise
    return Running(name, ctx, dep, ready_s)


def _down(ctx: UpContext, dep) -> None:
    dep.teardown(ctx)
    for sidecar in ctx.extra.get("detection_sidecars", {}).values():
        if sidecar.pid:
            processes.stop_session(sidecar.pid)


def _down_and_check(up: Running) -> None:
    pids, ports = up.pids(), dict(up.dep.ports)
    _down(up.ctx, up.dep)
    left = [p for p in pids if processes.alive(p)]
    assert not left, f"{up.name}: processes left after teardown: {left}"
    assert not [p for p in ports.values() if processes.is_listening(p)], f"{up.name}: ports still open {ports}"


@pytest.fixture(scope="module", params=sorted(MODULES))
def running(request, testbed_up):
    if request.param not in testbed_up["platforms"]:
        pytest.skip(f"the session's testbed does not run {request.param} (TESTBED_TEST_PLATFORMS)")
    return OnTestbed(request.param, testbed_up)


def test_predictions_equal_the_in_process_model_on_the_probe_rows(running):
    rows = running.artifact.probe_rows()
    expected = running.artifact.load_model().predict(rows).astype(int).tolist()
    with httpx.Client(timeout=30.0) as client:
        answer = running.adapter.infer(client, running.endpoint, v2.request_body(rows, request_id="parity"))
    assert answer["id"] == "parity"
    assert [int(x) for x in v2.predictions(answer, running.name)] == expected


def test_every_listening_socket_is_on_loopback(running):
    sockets = processes.listening_sockets(running.pids())
    listening = [s for socks in sockets.values() for s in socks]
    assert {port for _, port in listening} >= {running.ports["http"]}
    assert all(processes.is_loopback(addr) for addr, _ in listening), listening


def test_a_malformed_request_is_rejected_by_the_platform(running):
    bad = v2.request_body(np.zeros((2, 3)), request_id="bad")  # 3 features, the model takes 7
    with httpx.Client(timeout=30.0) as client:
        resp = client.post(running.adapter.infer_url(running.endpoint), json=running.adapter.encode_infer(bad))
    assert resp.status_code in (400, 422), (resp.status_code, resp.text[:300])


def _metric(text: str, name: str, **labels) -> float:
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


COUNTERS = {
    "bentoml": ("bentoml_service_request_total", {"endpoint": "/predict", "http_response_code": "200",
                                                  "service_name": bentoml_platform.ENTRY_SERVICE}),
    "torchserve": ("ts_inference_requests_total", {"model_name": None}),
}


def test_metrics_count_the_requests_sent(running):
    ep, n = running.endpoint, 12
    body = v2.request_body(running.artifact.probe_rows()[:1])
    if running.name == "mlflow":
        # A measured finding, not an error: MLflow's scoring server has no metrics route.
        assert ep.metrics_url is None
        assert httpx.get(f"{ep.base_url}/metrics", timeout=5.0).status_code == 404
        return
    name, labels = COUNTERS[running.name]
    labels = {k: (v if v is not None else ep.model_name) for k, v in labels.items()}
    before = _metric(httpx.get(ep.metrics_url, timeout=5.0).text, name, **labels)
    with httpx.Client(timeout=30.0) as client:
        for _ in range(n):
            running.adapter.infer(client, ep, body)
    after = _metric(httpx.get(ep.metrics_url, timeout=5.0).text, name, **labels)
    assert after - before == n, (name, labels, before, after)


def _explain(running, rows: np.ndarray) -> dict:
    path = MODULES[running.name].PLATFORM.explain  # what the explain probe sends and reads
    with httpx.Client(timeout=180.0) as client:
        resp = client.post(running.endpoint.explain_url, json=request_body(path, rows))
    assert resp.status_code == 200, resp.text[:300]
    return parse_response(path, resp.json())


def test_explanations_are_kernel_shap_values_that_add_up_to_the_model_output(running):
    """SHAP's local accuracy: per class, expected value + the row's attributions = predict_proba of the row."""
    rows = running.artifact.probe_rows()[:3]
    explanation = _explain(running, rows)
    assert explanation["meta"]["name"] == "KernelShap"
    shap_values = np.asarray(explanation["data"]["shap_values"], dtype=float)
    expected_value = np.asarray(explanation["data"]["expected_value"], dtype=float)
    proba = running.artifact.load_model().predict_proba(rows)
    assert shap_values.shape == (proba.shape[1], len(rows), rows.shape[1])
    np.testing.assert_allclose(shap_values.sum(axis=2).T + expected_value, proba, atol=1e-6)


def _verdicts(service_url: str, platform: str) -> list[dict]:
    return httpx.get(f"{service_url}/verdicts", params={"platform": platform}, timeout=10.0).json()["records"]


def test_detection_path_reports_the_detector_services_own_verdicts(running):
    """The user-code detectors inside the platform flag exactly what the detector service flags for the same
    rows (same saved detectors), and every request reaches the verdict log with its id and row count."""
    path = running.endpoint.detection["outlier"]
    assert path["label"] == "user code"
    service = running.service_url
    rng = np.random.default_rng(20261129)
    rows = running.artifact.probe_rows()[:10].copy()
    rows[::3, :3] += rng.normal(8.0, 1.0, size=(len(rows[::3]), 3))  # far outside the reference: outliers
    with httpx.Client(timeout=60.0) as client:
        for i in range(0, len(rows), 5):
            body = v2.request_body(rows[i:i + 5], request_id=f"det-{running.name}-{i}")
            running.adapter.infer(client, running.endpoint, body, url=path["url"], detected=True)
            client.post(f"{service}/events", params={"platform": f"check-{running.name}", "mechanism": "add-on"},
                        json=body).raise_for_status()
    deadline = time.monotonic() + 30
    mine = f"det-{running.name}-"  # the session's testbed has served other tests' traffic on this path too
    while True:
        got = [v for v in _verdicts(service, running.name) if v["kind"] == "outlier"
               and str(v["request_id"]).startswith(mine)]
        if len(got) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    want = [v for v in _verdicts(service, f"check-{running.name}") if v["kind"] == "outlier"]
    assert [(v["request_id"], v["n_rows"]) for v in got] == [(f"det-{running.name}-{i}", 5) for i in (0, 5)]
    assert [v["flags"] for v in got] == [v["flags"] for v in want]
    assert sum(map(sum, (v["flags"] for v in got))) >= 3
    assert {v["mechanism"] for v in got} == {"user code"}


def test_drift_windows_account_for_every_row_once_under_concurrency(running):
    """20 concurrent-ish requests of 20 rows (two windows' worth) through the detection path: the rows that
    complete windows are exactly those sent minus what the previous traffic left pending, each request's
    rows are taken once, and no request's rows are split out of order.
    What was pending is read from the first window that took these rows (its members from other requests),
    not predicted from the verdict log: a worker killed and respawned earlier in the session (the kill fault,
    self-recovery) started its windows afresh, so the log's row total no longer says what is pending."""
    path = running.endpoint.detection["drift"]
    service = running.service_url
    window = path["window_rows"]
    rows = running.artifact.reference()[:window * 2]
    n_requests = len(rows) // 20

    def send(i: int) -> None:
        with httpx.Client(timeout=60.0) as client:
            running.adapter.infer(client, running.endpoint, v2.request_body(rows[i * 20:(i + 1) * 20], f"win-{i}"),
                                  url=path["url"], detected=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(send, range(n_requests)))
    deadline = time.monotonic() + 30
    while True:
        records = _verdicts(service, running.name)
        ids = {v["request_id"] for v in records if v["kind"] == "outlier"}
        if {f"win-{i}" for i in range(n_requests)} <= ids or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {f"win-{i}" for i in range(n_requests)} <= ids
    ours = lambda member: str(member[0]).startswith("win-")  # noqa: E731
    windows = sorted((v for v in records if v["kind"] == "drift" and any(map(ours, v["members"]))),
                     key=lambda v: v["seq"])
    assert len(windows) == 2, [v["members"] for v in windows]  # 2 windows of rows, less what was pending before
    pending_before = sum(n for m in windows[0]["members"] if not ours(m) for n in [m[2]])
    assert 0 <= pending_before < window and all(map(ours, windows[1]["members"]))
    members = [m for v in windows for m in v["members"] if ours(m)]
    taken: dict[str, list] = {}
    for request_id, offset, n in members:
        taken.setdefault(request_id, []).append((offset, n))
    assert sum(n for parts in taken.values() for _, n in parts) == len(rows) - pending_before
    for request_id, parts in taken.items():
        offsets = [o for o, _ in parts]
        assert offsets == sorted(offsets) and sum(n for _, n in parts) <= 20, (request_id, parts)
        assert all(o2 == o1 + n1 for (o1, n1), (o2, _) in zip(parts, parts[1:])), (request_id, parts)


def test_the_adapter_is_reported_where_it_converts(running):
    adapter = running.adapter
    assert adapter.where == {"bentoml": "client-side adapter", "mlflow": "client-side adapter",
                             "torchserve": "user code"}[running.name]
    assert json.dumps(adapter.encode_infer(v2.request_body(np.ones((1, 7)))))


def _batch_sizes(up: Running, answers: list[dict]) -> list[float]:
    """Requests per model call: BentoML's adaptive_batch_size histogram; TorchServe's handler reports it."""
    if up.name == "bentoml":
        text = httpx.get(up.endpoint.metrics_url, timeout=5.0).text
        labels = {"method_name": "predict", "service_name": bentoml_platform.ENTRY_SERVICE}
        count = _metric(text, "bentoml_service_adaptive_batch_size_count", **labels)
        return [_metric(text, "bentoml_service_adaptive_batch_size_sum", **labels) / count] if count else []
    return [a["parameters"]["batch_requests"] for a in answers]


@pytest.mark.parametrize("name", ["bentoml", "torchserve"])
def test_server_side_batching_merges_concurrent_requests(name, tmp_path):
    """Settings.batching reaches the platform's own batcher: 64 concurrent single-row requests are answered
    correctly and some model calls serve more than one request. (MLflow's scoring server has no batching.)"""
    up = _up(name, tmp_path / "state", Batching(enabled=True, max_batch_size=16, max_batch_time_ms=50.0),
             detect=False)
    try:
        rows = up.artifact.probe_rows()
        expected = up.artifact.load_model().predict(rows).astype(int).tolist()
        n = 64

        def send(i: int) -> dict:
            with httpx.Client(timeout=60.0) as client:
                return up.adapter.infer(client, up.endpoint, v2.request_body(rows[i % len(rows)][None, :], f"b{i}"))

        for _ in range(3):  # BentoML's dispatcher trains on the first requests before it batches
            with ThreadPoolExecutor(max_workers=32) as pool:
                answers = list(pool.map(send, range(n)))
        assert [int(v2.predictions(a, name)[0]) for a in answers] == [expected[i % len(rows)] for i in range(n)]
        assert [a["id"] for a in answers] == [f"b{i}" for i in range(n)]
        sizes = _batch_sizes(up, answers)
        assert sizes and max(sizes) > 1, sizes
        assert max(sizes) <= 16
    finally:
        _down_and_check(up)


def _serves(up: Running, client: httpx.Client) -> bool:
    try:
        answer = up.adapter.infer(client, up.endpoint, v2.request_body(up.artifact.probe_rows()[:2], "alive"))
    except (httpx.HTTPError, ValueError):
        return False
    return [int(x) for x in v2.predictions(answer, up.name)] == \
        up.artifact.load_model().predict(up.artifact.probe_rows()[:2]).astype(int).tolist()


@pytest.mark.parametrize("name, recovers", [("bentoml", True), ("mlflow", False), ("torchserve", True)])
def test_killing_the_serving_worker(name, recovers, tmp_path):
    """SIGKILL of what each module names as its serving worker (the kill fault's target): BentoML's circus
    arbiter respawns its entry worker and TorchServe's frontend its python worker, and predictions come back;
    MLflow's scoring server has no supervisor, so the platform stays down: nothing serves within three times its
    own cold start (at least 60 s), longer than a supervisor's restart of the same process would take."""
    import signal

    up = _up(name, tmp_path / "state", detect=False)
    try:
        info = up.info()
        pid, how = local_faults.serving_worker(name, info, up.endpoint.base_url)
        assert pid in up.pids() and how
        assert name != "torchserve" or pid != up.dep.pid  # the worker, not the launcher or the java frontend
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        back = False
        limit_s = 240.0 if recovers else max(60.0, 3 * up.ready_s)
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() - killed_at < limit_s and not back:
                time.sleep(1.0)
                back = _serves(up, client)
        assert back == recovers, f"{name}: serving again = {back} within {limit_s:.0f} s of the kill"
        if recovers:
            new_pid, _ = local_faults.serving_worker(name, info, up.endpoint.base_url)
            assert new_pid != pid
    finally:
        _down_and_check(up)
