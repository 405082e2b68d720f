"""The testbed survives its own crashes: interrupted `up`, killed runtimes, stale state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
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
    run_testbed("artifact", state_dir=state_dir)
    env = {**os.environ, "TESTBED_STATE_DIR": str(state_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "up", "--platforms", "kserve,seldon"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = Output(proc.stderr)
    # The event the interrupt must follow: every runtime started (the state file names its pid). However
    # long the steps before it take (a cold machine builds the runtime environments first: minutes), `up`
    # says what it is doing; a silence this long means it hangs.
    while True:
        st = _state(state_dir)
        if st and st.get("platforms") and all(p.get("pid") for p in st["platforms"].values()):
            break
        if proc.poll() is not None:
            pytest.fail(f"up exited {proc.returncode} before it started its runtimes:\n{output.text()[-3000:]}")
        if output.silent_for() > HANG_S:
            proc.kill()
            pytest.fail(f"up printed nothing for {HANG_S:.0f}s before it started its runtimes:\n{output.text()[-3000:]}")
        time.sleep(0.2)
    started = _state(state_dir)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    assert proc.returncode == 130, output.text()[-3000:]
    for name, info in started["platforms"].items():
        assert processes.session_members(info["pid"]) == [], f"{name} survived the interrupt"
    assert _state(state_dir) is None  # archived to last-run/, so the next `up` starts clean
    assert (state_dir / "last-run" / "state.json").exists()


HANG_S = 900.0


class Output:
    """A pipe read in the background: its text so far, and how long it has been silent."""

    def __init__(self, pipe):
        self.lines: list[str] = []
        self.last = time.monotonic()
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for line in pipe:
            self.lines.append(line)
            self.last = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self.last

    def text(self) -> str:
        return "".join(self.lines)


def test_up_after_an_interrupted_up_starts_afresh(tmp_path):
    """What an interrupted `up` (killed with SIGKILL: no rollback) left is stopped, and `up` starts anew."""
    state_dir = tmp_path / "state"
    env = {**os.environ, "TESTBED_STATE_DIR": str(state_dir), "TESTBED_DETECTION": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "up", "--platforms", "kserve"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ((_state(state_dir) or {}).get("platforms", {}).get("kserve") or {}).get("pid"):
        assert proc.poll() is None, "up exited before it started kserve"
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    orphan = _state(state_dir)["platforms"]["kserve"]["pid"]
    try:
        assert processes.session_members(orphan)  # nothing stopped it
        run_testbed("up", "--platforms", "kserve", state_dir=state_dir, env={"TESTBED_DETECTION": "0"})
        assert processes.session_members(orphan) == []
        after = json.loads(run_testbed("status", "--json", state_dir=state_dir).stdout)
        assert after["state"] == "running" and after["platforms"]["kserve"]["pid"] != orphan
    finally:
        run_testbed("down", state_dir=state_dir, check=False)
