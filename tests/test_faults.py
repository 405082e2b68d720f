"""Fault probes: bad input (no server needed) and a real kill under short load (integration)."""

from __future__ import annotations

import socket
import sys
from dataclasses import replace

import pytest

from probes import kill
from probes.fault_io import BackgroundLoad
from probes.registry import context_from_status, expand
from testbed.backends.local import faults, processes
from testbed.errors import EndpointUnreachable, FaultTargetMissing, PlatformNotUp
from testbed.loadgen import LoadSpec
from testbed.settings import Settings


def test_fault_probes_are_not_part_of_all():
    assert not {"kill", "overload", "detector-outage"} & set(expand("all"))
    assert expand("kill") == ["kill"]


def test_fault_on_a_platform_that_is_not_running(tmp_path):
    with pytest.raises(PlatformNotUp, match="kserve"):
        faults.recorded(Settings(state_dir=tmp_path), "kserve")


def test_kill_that_finds_no_process(tmp_path):
    # A real process of our own in its own session, listening on nothing: no worker to kill.
    pid = processes.start([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "log", cwd=tmp_path)
    try:
        info = {"pid": pid, "pid_start": processes.start_ticks(pid)}
        with pytest.raises(FaultTargetMissing, match="listens on port"):
            faults.serving_worker("kserve", info, "http://127.0.0.1:9")
        with pytest.raises(FaultTargetMissing, match="ServeReplica"):
            faults.serving_worker("rayserve", info, "http://127.0.0.1:9")
        assert processes.alive(pid)  # nothing was signalled
    finally:
        processes.stop_session(pid, grace_s=1)
    with pytest.raises(FaultTargetMissing, match="exited"):
        faults.kill(pid, "gone", "kserve")


def test_load_that_cannot_start_sends_nothing():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(EndpointUnreachable):
            BackgroundLoad(LoadSpec(url=f"http://127.0.0.1:{port}/x", rate=10, duration_s=1))


@pytest.mark.integration
def test_kill_under_load_accounts_for_every_request(own_testbed, monkeypatch):
    """SIGKILL each runtime's serving worker under a short load (on a testbed of this module's own): the
    timeline accounts for every request, and the testbed is whole again afterwards (self-recovered or
    restored)."""
    status = own_testbed.ensure_running()
    monkeypatch.setenv("TESTBED_STATE_DIR", str(own_testbed.state_dir))  # the probe finds its processes there
    ctx = context_from_status(status, None, run_id="test-faults")
    ctx = replace(ctx, options={"rate": 20, "pre_s": 1, "post_s": 6, "extra_wait_s": 5})
    results = kill.run(ctx)
    assert {r.platform for r in results} == set(status["platforms"])
    for r in results:
        s, t = r.scores, r.measurements["timeline"]
        assert s["consistent"], r.platform
        n = len(t["status"])
        assert n == s["requests"] > 0
        # every request is exactly one of success, error or timeout (or due but unsent), none dropped
        assert sum(s[f"requests_{c}"] for c in ("ok", "http_error", "timeout", "transport_error", "not_sent")) == n
        assert set(t["class"]) <= {"http_error", "not_sent", "ok", "timeout", "transport_error"}
        assert s["ok_before_kill"] > 0 and s["failed_before_kill"] == 0, r.platform
        assert s["recovered_by_itself"] or s["restored_by_probe"], r.platform
        assert r.evidence["worker"]["pid"] > 0
    after = own_testbed.status()
    assert after["state"] == "running", after["problems"]
