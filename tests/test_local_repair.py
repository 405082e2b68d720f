"""Killing what the testbed runs, on the testbed the session keeps for such tests (own_testbed): the kill fault probe
under load, and a crash of any one process (`status` says `degraded` naming it, exit 1; the next `up`
restarts exactly that process, then checks prediction parity and every scrape target again).
Each test starts by making that testbed whole (`up`), so none depends on another's order."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace

import pytest

from deployers import PLATFORMS
from probes import kill
from probes.registry import context_from_status
from testbed.backends.local import processes

pytestmark = pytest.mark.integration


def pids_of(status: dict) -> dict[str, int]:
    """name -> pid of every process the testbed started."""
    return {p["name"]: p["pid"] for p in status["processes"]}


def crash(sid: int) -> None:
    """What a crash (or the OOM killer) does: SIGKILL to every process of the session, no clean stop."""
    for pid in processes.session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while processes.session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes.session_members(sid)


@pytest.mark.parametrize("victim", ["kserve", "seldon", "detector-service", "prometheus"])
def test_a_dead_process_is_named_and_the_next_up_restarts_it_alone(own_testbed, victim):
    before = own_testbed.ensure_running()
    if victim not in before["platforms"] and victim in PLATFORMS:
        pytest.skip(f"the session's testbed does not run {victim} (TESTBED_TEST_PLATFORMS)")
    pids = pids_of(before)
    assert {*before["platforms"], "detector-service", "results-exporter", "prometheus"} <= set(pids)
    crash(pids[victim])

    proc = own_testbed.cli("status", "--json", check=False)
    assert proc.returncode == 1
    status = json.loads(proc.stdout)
    assert status["state"] == "degraded"
    assert [p for p in status["problems"] if p.startswith(f"{victim} (") and p.endswith("is dead")], status["problems"]
    # Only the victim is dead; a process in front of it (Seldon's pipeline stand-in before MLServer) may be
    # alive and not ready until it is back.
    assert {p["name"] for p in status["processes"] if p["state"] == "dead"} == {victim}, status["problems"]
    text = own_testbed.cli("status", check=False).stdout
    assert "state: degraded" in text and f"{victim} (" in text

    up = own_testbed.cli("up")
    assert f"restarting {victim} " in up.stderr, up.stderr[-2000:]
    after = own_testbed.status()
    assert after["state"] == "running", after["problems"]
    now = pids_of(after)
    assert now[victim] != pids[victim]
    assert {n: p for n, p in now.items() if n != victim} == {n: p for n, p in pids.items() if n != victim}
    targets = after["prometheus"]["targets"]
    assert len(targets) == len(before["prometheus"]["targets"]) and all(t["health"] == "up" for t in targets), targets
    assert {n: p["ports"] for n, p in after["platforms"].items()} == \
        {n: p["ports"] for n, p in before["platforms"].items()}  # same ports: same URLs


def test_up_on_a_running_testbed_changes_nothing(own_testbed):
    before = own_testbed.ensure_running()
    up = own_testbed.cli("up")
    assert "already up; nothing to do" in up.stderr
    assert pids_of(own_testbed.status()) == pids_of(before)


@pytest.mark.integration
def test_kill_under_load_accounts_for_every_request(own_testbed, monkeypatch):
    """SIGKILL each runtime's serving worker under a short load : the
    timeline accounts for every request, and the testbed is whole again afterwards (self-recovered or
    restored)."""
    status = own_testbed.ensure_running()
    monkeypatch.setenv("TESTBED_STATE_DIR", str(own_testbed.state_dir))  # the probe finds its processes there
    ctx = context_from_status(status, None, run_id="test-faults")
    ctx = replace(ctx, options={"rate": 20, "pre_s": 2, "post_s": 6, "extra_wait_s": 5})
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
