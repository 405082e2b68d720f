"""The testbed survives its own crashes: interrupted `up`, killed runtimes, stale state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from testbed_cli import REPO, run_testbed
from testbed.backends.local import processes

pytestmark = pytest.mark.integration


def _state(state_dir):
    path = state_dir / "run" / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_interrupted_up_stops_what_it_started(tmp_path):
    state_dir = tmp_path / "state"
    run_testbed("artifact", state_dir=state_dir)  # so the interrupt lands while runtimes start
    env = {**os.environ, "TESTBED_STATE_DIR": str(state_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "up", "--platforms", "kserve,seldon"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = _state(state_dir)
        if st and all(p.get("pid") for p in st["platforms"].values()):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("up never started its runtimes")
    started = _state(state_dir)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    for name, info in started["platforms"].items():
        assert processes.session_members(info["pid"]) == [], f"{name} survived the interrupt"
    assert _state(state_dir) is None  # archived to last-run/, so the next `up` starts clean
    assert (state_dir / "last-run" / "state.json").exists()


def test_up_after_a_crash_recovers(tmp_path):
    state_dir = tmp_path / "state"
    run_testbed("up", "--platforms", "kserve,seldon", state_dir=state_dir)
    try:
        before = _state(state_dir)
        # A crash: the runtime dies without `down`, and the state file stays behind.
        processes.stop_session(before["platforms"]["kserve"]["pid"], grace_s=0)
        status = run_testbed("status", "--json", state_dir=state_dir, check=False)
        assert status.returncode == 1
        assert json.loads(status.stdout)["platforms"]["kserve"]["state"] == "dead"

        run_testbed("up", "--platforms", "kserve,seldon", state_dir=state_dir)
        after = json.loads(run_testbed("status", "--json", state_dir=state_dir).stdout)
        assert after["state"] == "running"
        assert after["platforms"]["seldon"]["pid"] != before["platforms"]["seldon"]["pid"]
        # The surviving runtime of the crashed run was stopped, not orphaned.
        assert processes.session_members(before["platforms"]["seldon"]["pid"]) == []
    finally:
        run_testbed("down", state_dir=state_dir, check=False)
