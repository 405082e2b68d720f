"""The fault probes on a real kind cluster: pod deletion under load, overload, detector outage.

Opt-in like every e2e test (`pytest tests/e2e --e2e`). Runs after test_kind_e2e.py (file order) on
the same session cluster; every test leaves the testbed whole again (it waits for each platform's
ready route), so the order of the tests below does not matter.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx
import pytest

from deployers import offered_on
from probes import detector_outage, kill, overload
from probes.registry import context_from_status
from testbed.backends.kind.faults import KindFaults
from testbed.errors import PlatformNotUp
from testbed.settings import Settings

from kind_cli import READY_TIMEOUT_S, cli

PLATFORM_NAMES = sorted(offered_on("kind"))
CLASSES = ("ok", "http_error", "timeout", "transport_error", "not_sent")


def fresh_context(platform: str, **options):
    status = json.loads(cli("status", "--backend", "kind", "--json").stdout)
    ctx = context_from_status(status, (platform,), run_id="e2e-faults")
    return replace(ctx, options=options)


def wait_whole(status: dict, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Every platform's model ready again (a test must not leave the shared cluster degraded)."""
    deadline = time.monotonic() + timeout_s
    for name, info in status["platforms"].items():
        url = info["endpoint"]["base_url"] + f"/v2/models/{info['endpoint']['model_name']}/ready"
        while True:
            try:
                if httpx.get(url, timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{name} not ready again within {timeout_s:.0f}s ({url})"
            time.sleep(3)


def assert_accounted(result) -> None:
    s, t = result.scores, result.measurements["timeline"]
    assert s["consistent"], result.platform
    assert len(t["status"]) == s["requests"] > 0
    assert sum(s[f"requests_{c}"] for c in CLASSES) == s["requests"]


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_pod_deletion_under_load(kind_up, platform):
    ctx = fresh_context(platform, rate=10, pre_s=5, post_s=60, extra_wait_s=300)
    try:
        [result] = kill.run(ctx)
        assert_accounted(result)
        s, worker = result.scores, result.evidence["worker"]
        assert s["ok_before_kill"] > 0 and s["failed_before_kill"] == 0
        assert worker["pods"] and all(p["phase"] == "Running" for p in worker["pods"])
        assert not s["restored_by_probe"]  # never on kind: the platform's controllers or nothing
        # Kubernetes recreates a deleted pod of every platform here (ReplicaSet / KubeRay).
        assert s["recovered_by_itself"], json.dumps(s)
        assert worker["new_pods"] >= 1, worker
    finally:
        wait_whole(kind_up)


def test_overload_on_the_node_port(kind_up):
    ctx = fresh_context("kserve", factor=3, capacity_s=2, baseline_s=2, overload_s=4, recovery_wait_s=30)
    [result] = overload.run(ctx)
    assert_accounted(result)
    assert result.scores["behaviour"] in ("sheds", "queues", "keeps up")
    assert result.measurements["recovery_samples"]


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_detector_outage(kind_up, platform):
    ctx = fresh_context(platform, rate=5, pre_s=3, outage_s=10, settle_s=5)
    if not (ctx.endpoints[platform].detection or {}).get("outlier"):
        pytest.fail(f"{platform} publishes no detection path on kind")
    try:
        [result] = detector_outage.run(ctx)
        assert_accounted(result)
        s = result.scores
        assert s["requests_during_outage"] > 0
        # Inference does not depend on the detector being up (every path here is asynchronous).
        assert s["inference_ok_fraction"] >= 0.99, json.dumps(s)
        assert s["path_restored"], json.dumps(s)
    finally:
        wait_whole(kind_up)


def test_fault_on_a_platform_not_in_the_testbed(kind_up):
    faults = KindFaults(Settings(backend="kind"))
    faults.recorded = {**faults.recorded, "platforms": {}}
    endpoint = fresh_context("kserve").endpoints["kserve"]
    with pytest.raises(PlatformNotUp, match="kserve"):
        faults.kill_target("kserve", endpoint)
