"""Fault probes: bad input (no server needed). The kill under load runs in tests/test_local_repair.py, on a
testbed of its own."""

from __future__ import annotations

import socket
import sys

import pytest

from probes.fault_io import BackgroundLoad
from probes.registry import expand
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
