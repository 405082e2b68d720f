"""The local testbed end to end: real runtimes, real Prometheus (marked integration)."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest

from testbed_cli import run_testbed, session_platforms
from deployers import PLATFORMS
from testbed import v2
from probes.detection_io import prometheus_sum, wait_counter
from testbed.prometheus import PrometheusClient

pytestmark = pytest.mark.integration
N_REQUESTS = 25


def _settled(prom, queries: dict[str, str], quiet_s: float = 8.0, timeout_s: float = 60.0) -> dict[str, float]:
    """Counter values once none has changed for quiet_s (runtimes export with a delay)."""
    values = {n: prometheus_sum(prom, q) for n, q in queries.items()}
    changed_at = time.monotonic()
    deadline = changed_at + timeout_s
    while time.monotonic() - changed_at < quiet_s and time.monotonic() < deadline:
        time.sleep(1.0)
        now = {n: prometheus_sum(prom, q) for n, q in queries.items()}
        if now != values:
            values, changed_at = now, time.monotonic()
    return values


def test_status_contract(testbed_up):
    status = testbed_up
    assert status["schema"] == "testbed.status/v1" and status["state"] == "running"
    assert set(status["platforms"]) == set(session_platforms())
    assert len(status["model"]["sha256"]) == 64 and status["model"]["features"][0] == "x0"
    for name, p in status["platforms"].items():
        assert p["state"] == "ready", name
        assert p["v2_base_url"].startswith("http://127.0.0.1:")
        assert p["model_name"] == status["model"]["name"]
        assert p["metrics_url"] is None or p["metrics_url"].startswith("http://127.0.0.1:")
    health = {t["job"]: t["health"] for t in status["prometheus"]["targets"]}
    scraped = {n for n, p in status["platforms"].items() if p["metrics_url"]}  # a platform may expose none
    assert scraped and set(health) >= {*scraped, "testbed-results"} and set(health.values()) == {"up"}
    # Every process `up` started is listed and checked: runtimes, detection paths, exporter, Prometheus.
    started = {p["name"]: p for p in status["processes"]}
    sidecars = {"kserve": {"kserve-transformer"}, "seldon": {"seldon-detector-server", "seldon-pipeline"}}
    expected = {*status["platforms"], "detector-service", "results-exporter", "prometheus"}
    for name in status["platforms"]:
        expected |= sidecars.get(name, set())
    assert expected <= set(started)
    assert {p["state"] for p in started.values()} == {"ready"} and status["problems"] == []


def test_exposure_audit_lists_every_listening_socket(testbed_up):
    for name, p in testbed_up["platforms"].items():
        ports = {s["port"] for s in p["listening"]}
        assert set(p["ports"].values()) <= ports, name
    exposed = testbed_up["exposure"]["non_loopback_sockets"]
    # MLServer honours host=127.0.0.1; KServe's servers are moved to loopback (kserve_loopback.py); Ray's node
    # address is loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). What stays open is Ray Serve's per-replica
    # inter-deployment gRPC server, hard-coded to [::], and nothing else goes unexplained.
    assert {x["owner"] for x in exposed} <= {"rayserve"}
    assert all(x["cause"] and x["process"].startswith("ray::ServeRepli") for x in exposed), exposed
    assert testbed_up["exposure"]["unexplained"] == 0


def test_requests_are_counted_by_each_platform_in_prometheus(testbed_up):
    prom = PrometheusClient(testbed_up["prometheus"]["url"])
    rows = np.random.default_rng(1).normal(size=(1, 7))
    rows[0, -1] = 1.0
    queries = {n: PLATFORMS[n].metrics.infer_requests_promql for n in testbed_up["platforms"]
               if PLATFORMS[n].metrics and PLATFORMS[n].metrics.infer_requests_promql}
    before = _settled(prom, queries)
    with httpx.Client(timeout=10) as client:
        for name, p in testbed_up["platforms"].items():
            for i in range(N_REQUESTS):
                # The platform's own route and body (status' infer_url is its protocol's route).
                r = PLATFORMS[name].protocol.post(client, p["infer_url"], v2.request_body(rows, f"count-{i}"))
                assert r.status_code == 200, (name, r.text)
    for name, q in queries.items():
        wait_counter(prom, q, before[name] + N_REQUESTS, timeout_s=45.0)
    after = _settled(prom, queries)
    for name, q in queries.items():
        assert after[name] - before[name] == N_REQUESTS, f"{name}: {q} rose by {after[name] - before[name]}"


def test_parity_recorded_at_up(testbed_up):
    from testbed.settings import Settings

    state = json.loads((Settings().run_dir / "state.json").read_text())
    assert state["parity"]["ok"] and state["parity"]["rows"] == 32
    assert set(state["parity"]["platforms"]) == set(session_platforms())


def test_second_up_reports_what_runs(testbed_up):
    before = json.loads(run_testbed("status", "--json").stdout)
    proc = run_testbed("up")
    assert "already up" in proc.stderr
    after = json.loads(run_testbed("status", "--json").stdout)
    assert {n: p["pid"] for n, p in after["platforms"].items()} == {n: p["pid"] for n, p in before["platforms"].items()}


def test_metrics_verb_prints_a_table(testbed_up):
    out = run_testbed("metrics", "sum by (job) (up)").stdout.splitlines()
    assert out[0].split() == ["job", "value"]
    jobs = {t["job"] for t in testbed_up["prometheus"]["targets"]}
    assert sorted(line.split()[0] for line in out[1:]) == sorted(jobs)
