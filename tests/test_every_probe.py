"""The probes no other integration test runs, on every platform the session's testbed runs (marked integration):
formats and detection under load on it (they start servers of their own or only send requests), overload and
detector outage through `own_testbed` (they overload or stop what it runs; it is repaired after), ease on a
state dir of its own (it restarts each platform alone). Short options: these check that each probe measures every platform and accounts for
what it sent, not the figures the experiments report."""

from __future__ import annotations

import pytest

from probes import detection_load, detector_outage, ease, formats, overload
from probes.registry import context_from_status
from testbed_cli import run_testbed

pytestmark = pytest.mark.integration


def by_platform(results):
    return {r.platform: r for r in results}


def test_formats_serve_every_format_at_parity_on_every_platform(testbed_up):
    ctx = context_from_status(testbed_up, None, seed=3, run_id="pytest-formats")
    try:
        results = by_platform(formats.run(ctx))
    finally:
        formats.stop_servers()
    assert set(results) == set(testbed_up["platforms"])
    for platform, r in results.items():
        per_format = r.measurements["formats"]
        assert set(per_format) == set(formats.fmt_servers.FORMATS), platform
        assert r.scores["parity_failures"] == 0, (platform, per_format)
        # Every format a platform serves answers the in-process labels exactly.
        assert all(m["parity"] for m in per_format.values() if m["served"]), (platform, per_format)
        assert r.scores["working_formats"] >= 1, (platform, per_format)


def test_detection_under_load_accounts_for_every_request(testbed_up):
    ctx = context_from_status(testbed_up, None, seed=5, run_id="pytest-detection-load",
                              options={"sizes": [7], "factors": [0.5], "duration_s": 2.0, "capacity_s": 1.0,
                                       "verdict_wait_s": 30.0, "max_requests": 300})
    results = by_platform(detection_load.run(ctx))
    assert set(results) == set(testbed_up["platforms"])
    for platform, r in results.items():
        assert r.verdict == "measured", (platform, r.evidence.get("error"))
        assert r.scores["rows_ok"] > 0 and r.scores["cells"] == 1, (platform, r.scores)


@pytest.mark.parametrize("probe", [overload, detector_outage], ids=["overload", "detector-outage"])
def test_fault_probes_measure_every_platform(own_testbed, monkeypatch, probe):
    status = own_testbed.ensure_running()
    monkeypatch.setenv("TESTBED_STATE_DIR", str(own_testbed.state_dir))  # the probe finds its processes there
    options = {"overload_s": 2, "baseline_s": 1, "capacity_s": 1, "recovery_wait_s": 20} if probe is overload \
        else {"pre_s": 1, "outage_s": 3, "settle_s": 2}
    ctx = context_from_status(status, None, seed=9, run_id=f"pytest-{probe.PROBE}", options=options)
    results = by_platform(probe.run(ctx))
    assert set(results) == set(status["platforms"])
    for platform, r in results.items():
        s = r.scores
        assert s["consistent"], platform
        assert sum(s[f"requests_{c}"] for c in ("ok", "http_error", "timeout", "transport_error", "not_sent")) \
            == s["requests"] > 0, (platform, s)
    after = own_testbed.status()
    assert after["state"] == "running", after["problems"]


def test_ease_restarts_each_platform_alone_and_counts_what_a_user_writes(testbed_up, tmp_path, monkeypatch):
    """On a state dir of its own: the probe's `down` there stops nothing of the session's testbed, and nothing
    has to be restored afterwards (restoring six platforms cost another `up`)."""
    status = testbed_up
    state = tmp_path / "ease-state"
    monkeypatch.setenv("TESTBED_STATE_DIR", str(state))
    ctx = context_from_status(status, None, seed=0, run_id="pytest-ease")
    try:
        results = by_platform(ease.run(ctx))
    finally:
        run_testbed("down", state_dir=state, check=False)
    assert set(results) == set(status["platforms"])
    for platform, r in results.items():
        assert r.verdict == "ready" and r.scores["ready_s"] > 0 and r.scores["config_lines"] > 0, (platform, r.scores)
        assert r.scores["components"] > 0 and r.scores["processes"] >= 1, (platform, r.scores)
