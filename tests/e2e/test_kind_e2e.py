"""End to end on a real kind cluster: `up --backend kind`, inference through every endpoint, Prometheus
scraping every platform, a deployment per platform in its own namespace, then `down`.

Opt-in (see conftest.py): `pytest tests/e2e --e2e` on a machine with Docker, kind, kubectl and helm.
The first run pulls several GB of images; the workflow allows 90 minutes (durations not yet measured).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from deployers import PLATFORMS, offered_on
from testbed import artifact as artifact_mod
from testbed import v2
from testbed.backends.kind.backend import KindBackend
from testbed.errors import ManifestRejected
from testbed.prometheus import PrometheusClient
from testbed.settings import Settings

from kind_cli import PINS, READY_TIMEOUT_S, cli

PLATFORM_NAMES = sorted(offered_on("kind"))
# Request counters each platform exports itself (the platform's own metric names), per metrics source.
SERVED_REQUESTS = {
    "kserve": ("request_predict_seconds_count",),
    # Seldon's pod has two sources (manifests/seldon/podmonitor.yaml): the executor and MLServer.
    "seldon": ("seldon_api_executor_server_requests_seconds_count", "model_infer_request_success_total"),
    "rayserve": ("ray_serve_num_http_requests_total",),
}


@pytest.fixture(scope="session")
def reference(kind_up):
    art = artifact_mod.load(Path(kind_up["model"]["path"]))
    rows = art.probe_rows()
    return rows, [int(x) for x in art.load_model().predict(rows)]


def infer(url: str, rows: np.ndarray, source: str) -> list[int]:
    resp = httpx.post(url, json=v2.request_body(rows, request_id="e2e"), timeout=30)
    assert resp.status_code == 200, f"{source}: HTTP {resp.status_code}: {resp.text[:300]}"
    return [int(x) for x in v2.predictions(resp.json(), source)]


def wait_for(promql: str, ok, timeout_s: float = 180) -> list[dict]:
    client = PrometheusClient(f"http://127.0.0.1:{PINS.prometheus_port}")
    deadline, rows = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        rows = client.query(promql)
        if rows and ok(rows):
            return rows
        time.sleep(3)
    raise AssertionError(f"Prometheus: {promql} -> {rows} after {timeout_s:.0f}s")


def test_up_reports_every_platform_ready(kind_up):
    assert kind_up["state"] == "running", json.dumps(kind_up, indent=2)[:3000]
    assert set(kind_up["platforms"]) == set(PLATFORM_NAMES)
    for name, platform in kind_up["platforms"].items():
        assert platform["state"] == "ready" and platform["resource_state"] == "Ready", name
        assert platform["v2_base_url"] == f"http://127.0.0.1:{PINS.node_port(name)}"
    assert kind_up["prometheus"]["state"] == "ready"


def test_up_again_changes_nothing(kind_up):
    proc = cli("up", "--backend", "kind", timeout=300)
    assert proc.returncode == 0 and "already up" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_inference_through_each_endpoint(kind_up, reference, platform):
    rows, expected = reference
    assert infer(kind_up["platforms"][platform]["infer_url"], rows, platform) == expected


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_prometheus_scrapes_each_platform(kind_up, reference, platform):
    rows, _ = reference
    targets = len(SERVED_REQUESTS[platform])  # one `up` series per metrics source of the platform's one pod
    wait_for(f'up{{job="{platform}",namespace="testbed"}}',
             lambda rs: len(rs) >= targets and all(r["value"] == 1 for r in rs))
    client = PrometheusClient(f"http://127.0.0.1:{PINS.prometheus_port}")
    metrics = [f'sum({name}{{job="{platform}",namespace="testbed"}})' for name in SERVED_REQUESTS[platform]]
    before = {m: sum(r["value"] for r in client.query(m)) for m in metrics}
    for _ in range(5):
        infer(kind_up["platforms"][platform]["infer_url"], rows[:1], platform)
    for metric in metrics:
        wait_for(metric, lambda rs, m=metric: rs[0]["value"] >= before[m] + 5)


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_deploy_in_its_own_namespace(kind_up, reference, platform):
    """One platform in a fresh namespace on a spare port: ready, inferring, scraped; all deleted after."""
    rows, expected = reference
    backend = KindBackend()
    namespace = f"e2e-{platform}-{uuid.uuid4().hex[:6]}"
    ctx = backend.attach(Settings(backend="kind"), namespace)
    port = PINS.spare_ports[PLATFORM_NAMES.index(platform)]
    deployment = PLATFORMS[platform].deployments["kind"](namespace=namespace, node_port=port)
    try:
        deployment.deploy(ctx)
        endpoint = deployment.wait_ready(ctx, READY_TIMEOUT_S)
        assert endpoint.base_url == f"http://127.0.0.1:{port}"
        assert infer(endpoint.infer_url, rows, platform) == expected
        wait_for(f'up{{job="{platform}",namespace="{namespace}"}}', lambda rs: all(r["value"] == 1 for r in rs))
    finally:
        deployment.teardown(ctx)
        backend.detach(ctx)
    assert ctx.extra["kind"].kube.get("v1", "Namespace", namespace) is None


def test_api_server_rejection_is_shown_verbatim(kind_up):
    backend = KindBackend()
    namespace = f"e2e-reject-{uuid.uuid4().hex[:6]}"
    ctx = backend.attach(Settings(backend="kind"), namespace)
    try:
        deployment = PLATFORMS["kserve"].deployments["kind"](namespace=namespace, node_port=PINS.spare_ports[0])
        isvc = deployment.render_resource(deployment.target(ctx))
        isvc["spec"]["predictor"]["model"]["modelFromat"] = {"name": "sklearn"}
        with pytest.raises(ManifestRejected) as info:
            ctx.extra["kind"].kube.apply(isvc)
        assert "modelFromat" in info.value.message  # the API server's own words (strict field validation)
    finally:
        backend.detach(ctx)


def test_detector_service_is_ready(kind_up):
    detection = kind_up["detection"]
    assert detection["state"] == "ready" and detection["resource_state"] == "Available", detection
    assert detection["service_url"] == f"http://127.0.0.1:{PINS.detection_port}"
    assert detection["deployment"] == {"name": "detector-service", "namespace": "testbed"}
    wait_for('up{job="detectors",namespace="testbed"}', lambda rs: all(r["value"] == 1 for r in rs))


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_detection_path_delivers_each_request(kind_up, reference, platform):
    """Requests through the platform's detection path (KServe/Seldon payload logger, Ray's detected
    application) reach the detector service: verdicts in its log, events counted in Prometheus."""
    rows, expected = reference
    path = kind_up["platforms"][platform]["endpoint"]["detection"]["outlier"]
    query = "sum(testbed_detector_events_total{%s})" % ",".join(
        f'{k}="{v}"' for k, v in sorted(path["prometheus_labels"].items()))
    client = PrometheusClient(f"http://127.0.0.1:{PINS.prometheus_port}")
    before = sum(r["value"] for r in client.query(query))
    ids = [f"e2e-detect-{platform}-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    for rid in ids:
        resp = httpx.post(path["url"], json=v2.request_body(rows[:4], request_id=rid), timeout=30)
        assert resp.status_code == 200, f"{platform}: HTTP {resp.status_code}: {resp.text[:300]}"
        assert [int(x) for x in v2.predictions(resp.json(), platform)] == expected[:4]
    deadline, seen = time.monotonic() + 60, set()
    while time.monotonic() < deadline and seen != set(ids):
        records = httpx.get(path["verdicts_url"], params={"limit": 20000}, timeout=10).json()["records"]
        seen = {r.get("request_id") for r in records if r["kind"] == "outlier"} & set(ids)
        time.sleep(1)
    assert seen == set(ids), f"{platform}: verdicts for {sorted(seen)} of {ids}"
    wait_for(query, lambda rs: sum(r["value"] for r in rs) >= before + len(ids))
