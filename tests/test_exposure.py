"""Listeners beyond loopback: the audit in `status`, its causes, and how they reach the robustness row
(no runtime: real sockets of processes started here)."""

import socket
import subprocess
import sys
import time

import pytest

from deployers.kserve import KServeLocal
from deployers.rayserve import LOCAL_RAY_ENV, RayServeLocal
from probes.context import exposure_from_status
from probes.robustness import exposure_scores
from testbed.backends.local import backend as local_backend, processes
from testbed.cli import render_status
from testbed.report.criteria import BY_KEY, measured_cell
from testbed.results import Result

LISTEN = "import socket, time; s = socket.socket(); s.bind(({host!r}, 0)); s.listen(); print(s.getsockname()[1], " \
         "flush=True); time.sleep(60)"


@pytest.fixture
def listener():
    """Start a real process in its own session listening on a host; yields (pid, port)."""
    started = []

    def start(host: str) -> tuple[int, int]:
        proc = subprocess.Popen([sys.executable, "-c", LISTEN.format(host=host)], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        started.append(proc)
        port = int(proc.stdout.readline())
        return proc.pid, port

    yield start
    for proc in started:
        processes.stop_session(proc.pid, grace_s=1.0)
        proc.wait(timeout=5)


def test_ray_runs_with_cluster_mode_off_so_a_loopback_node_address_sticks():
    # Without it Ray rewrites 127.0.0.1 to the machine's address (services.resolve_ip_for_localhost).
    assert LOCAL_RAY_ENV["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert RayServeLocal().extra_env(None)["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"


def test_only_the_known_ray_serve_listener_has_a_cause():
    replica = "ray::ServeReplica:reference:V2Model"
    assert "replica.py" in RayServeLocal.listener_cause(replica, "::")
    assert RayServeLocal.listener_cause(replica, "0.0.0.0") is None  # another bind of the same process
    assert RayServeLocal.listener_cause("gcs_server --node-ip-address=192.0.2.2", "::") is None
    assert KServeLocal.listener_cause("python kserve_server.py", "0.0.0.0") is None  # closed, so never explained
    # What keeps a platform on loopback without a setting of its own is said, so no result credits the platform.
    assert "kserve_loopback.py" in KServeLocal.loopback_by_testbed[0]
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in RayServeLocal.loopback_by_testbed[0]


def test_status_audits_every_process_up_started(listener):
    open_pid, open_port = listener("0.0.0.0")
    loop_pid, loop_port = listener("127.0.0.1")
    deadline = time.monotonic() + 5
    while not processes.listening_sockets([open_pid]) and time.monotonic() < deadline:
        time.sleep(0.05)
    current = {"detection": {"processes": {"kserve-transformer": {"pid": open_pid,
                                                                    "pid_start": processes.start_ticks(open_pid)}}},
               "results_exporter": {"pid": loop_pid, "pid_start": processes.start_ticks(loop_pid)},
               # a pid that is no longer the process up started is not audited (it may be anyone's now)
               "prometheus": {"pid": open_pid, "pid_start": 1}}
    exposure = local_backend._exposure(current, {})
    assert [{k: v for k, v in x.items() if k != "process"} for x in exposure["non_loopback_sockets"]] == [
        {"owner": "detection kserve-transformer", "platform": None, "pid": open_pid, "address": "0.0.0.0",
         "port": open_port, "loopback": False, "cause": None}]
    assert (exposure["count"], exposure["unexplained"]) == (1, 1)
    assert loop_port not in {x["port"] for x in exposure["non_loopback_sockets"]}


def test_status_prints_each_cause_once_and_flags_the_unexplained():
    cause = "hard-coded upstream"
    status = {"backend": "local", "state": "running", "platforms": {}, "exposure": {"non_loopback_sockets": [
        {"owner": "rayserve", "platform": "rayserve", "pid": 1, "process": "ray::ServeRepli", "address": "::",
         "port": 4001, "loopback": False, "cause": cause},
        {"owner": "rayserve", "platform": "rayserve", "pid": 2, "process": "ray::ServeRepli", "address": "::",
         "port": 4002, "loopback": False, "cause": cause},
        {"owner": "detection x", "platform": None, "pid": 3, "process": "python", "address": "0.0.0.0",
         "port": 4003, "loopback": False, "cause": None}]}}
    text = render_status(status)
    assert "3 listening sockets NOT bound to loopback, 1 unexplained" in text
    assert text.count(cause) == 1 and text.count("[1]") == 3
    assert "0.0.0.0:4003  (python, pid 3)  UNEXPLAINED" in text
    status["exposure"]["loopback_by_testbed"] = {"kserve": ["a subclass binds 127.0.0.1"]}
    assert "kept on loopback by the testbed (kserve): a subclass binds 127.0.0.1" in render_status(status)


def test_probes_see_listeners_only_where_the_backend_audits_them():
    sock = {"pid": 1, "process": "p", "address": "::", "port": 1, "loopback": False, "cause": "c"}
    local = {"platforms": {"rayserve": {"listening": [sock, {**sock, "address": "127.0.0.1", "loopback": True}],
                                        "loopback_by_testbed": ["env var"]},
                           "seldon": {"listening": []}}}
    assert exposure_from_status(local, ["rayserve", "seldon"]) == {
        "rayserve": {"listeners": [sock], "loopback_by_testbed": ["env var"]},
        "seldon": {"listeners": [], "loopback_by_testbed": []}}
    assert exposure_from_status({"platforms": {"kserve": {"state": "ready"}}}, ["kserve"]) is None
    assert exposure_scores(None) == {}
    assert exposure_scores([sock, {**sock, "cause": None}]) == {"listeners_beyond_loopback": 2,
                                                                "unexplained_listeners": 1}
    assert exposure_scores([]) == {"listeners_beyond_loopback": 0, "unexplained_listeners": 0}


def test_robustness_row_shows_the_count_and_each_cause():
    def result(repeat, listeners):
        return Result(probe="robustness", platform="rayserve", backend="local", artifact_sha256="a" * 64,
                      verdict="pass", scores={"client_errors_as_4xx": 1.0, **exposure_scores(listeners)},
                      measurements={"listeners_beyond_loopback": listeners},
                      evidence={"loopback_by_testbed": ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"]}, run_id="r1",
                      repeat=repeat)

    replica = {"address": "::", "cause": "replica gRPC, hard-coded"}
    cell = measured_cell(BY_KEY["robustness"], [result(0, [replica] * 4), result(1, [replica] * 4 + [{}])], {})
    assert cell.lines[0] == ("client errors as 4xx 1 [1, 1] n=2; "
                             "listeners beyond loopback 4.5 [0, 10.9] n=2")
    assert cell.lines[2:5] == ["listeners beyond loopback: 4 × replica gRPC, hard-coded",
                               "listeners beyond loopback: 1 × unexplained",
                               "loopback by testbed: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"]
