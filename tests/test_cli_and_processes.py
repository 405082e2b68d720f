import os
import socket
import sys
import time

import pytest

from deployers import PLATFORMS, default_platforms, parse_platforms
from testbed.backends import get_backend
from testbed.backends.local import processes
from testbed.cli import build_parser
from testbed.errors import PortBusy, UnknownBackend, UnknownPlatform
from testbed.settings import Settings


def test_verbs_parse():
    parser = build_parser()
    assert parser.parse_args(["up"]).backend == "local"
    args = parser.parse_args(["up", "--platforms", "kserve,seldon", "--timeout", "30", "--prometheus-port", "9999"])
    assert (args.platforms, args.timeout, args.prometheus_port) == ("kserve,seldon", 30.0, 9999)
    assert parser.parse_args(["status", "--json"]).json
    assert parser.parse_args(["metrics"]).promql == "up"
    assert parser.parse_args(["metrics", "sum(up)"]).promql == "sum(up)"
    with pytest.raises(SystemExit):
        parser.parse_args(["launch"])


def test_platform_names_are_checked_all_at_once():
    assert parse_platforms("kserve, rayserve") == ("kserve", "rayserve")
    assert parse_platforms(None) == default_platforms() == Settings().platforms
    assert set(default_platforms()) <= set(PLATFORMS) and parse_platforms("all") == tuple(PLATFORMS)
    with pytest.raises(UnknownPlatform) as err:
        parse_platforms("kserve,nosuchserve,bento-x")
    assert "nosuchserve, bento-x" in str(err.value) and "seldon" in str(err.value)
    # Verbs on the running testbed (probe): `all` is every running platform, as no --platforms is.
    from testbed.cli import running_subset

    assert running_subset("all") is None and running_subset(None) is None
    assert running_subset("seldon") == ("seldon",)


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(UnknownBackend, match="local"):
        get_backend("docker-compose")


def test_every_platform_has_a_local_deployment():
    for platform in PLATFORMS.values():
        dep = platform.deployment_for("local")
        assert dep.platform == platform.name and dep.env.requirements


def test_settings_state_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("TESTBED_ENVS_DIR", raising=False)
    s = Settings()
    assert s.state_dir == tmp_path and s.run_dir == tmp_path / "run" and s.envs_dir == tmp_path / "envs"
    monkeypatch.setenv("TESTBED_ENVS_DIR", str(tmp_path / "shared"))
    assert Settings().envs_dir == tmp_path / "shared" and Settings().run_dir == tmp_path / "run"


def test_a_held_port_is_not_handed_out_again_and_its_process_still_binds_it():
    """The port race of issue 16: free ports chosen for processes that bind seconds later came out the
    same (Linux hands a just-closed port to the next bind(0)); a held port is skipped, and a server
    that sets SO_REUSEADDR (as uvicorn, gRPC, Go and http.server do) binds it."""
    import http.server
    import threading

    held = [processes.claim_port(None, "test") for _ in range(20)]
    try:
        assert len(set(held)) == len(held)
        assert not set(held) & {processes.free_port() for _ in range(200)}
        server = http.server.HTTPServer(("127.0.0.1", held[0]), http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=server.handle_request, daemon=True).start()
        assert processes.is_listening(held[0])
        server.server_close()
    finally:
        processes.release_ports(held)
    assert not set(held) & set(processes._held)


def test_a_busy_port_names_its_holder():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not processes.port_is_free(port)
        with pytest.raises(PortBusy) as err:
            processes.claim_port(port, "Prometheus")
        assert str(port) in str(err.value) and f"pid {os.getpid()}" in str(err.value)
    assert processes.port_is_free(port)


def test_stop_session_stops_grandchildren(tmp_path):
    # A parent that forks a child which ignores SIGTERM: both must be gone afterwards.
    script = ("import os, signal, subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
              "time.sleep(60)\n")
    pid = processes.start([sys.executable, "-c", script], tmp_path / "log", cwd=tmp_path)
    deadline = time.monotonic() + 10
    while len(processes.session_members(pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = processes.session_members(pid)
    assert len(members) == 2
    processes.stop_session(pid, grace_s=1.0)
    assert processes.session_members(pid) == []
    assert not any(processes.alive(p) for p in members)


def test_listening_sockets_reports_addresses():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        mine = processes.listening_sockets([os.getpid()])[os.getpid()]
        assert ("127.0.0.1", port) in mine
        assert processes.is_loopback("127.0.0.1") and not processes.is_loopback("0.0.0.0")


def test_a_reused_pid_is_not_ours():
    me = os.getpid()
    ticks = processes.start_ticks(me)
    assert processes.is_ours(me, ticks)
    assert not processes.is_ours(me, ticks - 1)  # same pid, another start time: someone else
    assert not processes.is_ours(me, None)


def test_rollback_stops_what_the_attempt_started_before_the_state_file_named_it(tmp_path):
    """An interrupt between a process's start and its entry in the state file must not orphan it."""
    import io
    import sys

    from testbed.backends.local.backend import LocalBackend
    from testbed.steps import UpContext

    before = processes.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "a.log", cwd=tmp_path)
    ctx = UpContext(settings=Settings(state_dir=tmp_path / "state"), out=io.StringIO())
    ctx.extra["started_from"] = processes.started_count()
    unrecorded = processes.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "b.log",
                                 cwd=tmp_path)
    try:
        LocalBackend().rollback(ctx)
        assert processes.session_members(unrecorded) == []
        assert processes.session_members(before)  # not this attempt's: left alone
        assert f"stopped session {unrecorded}" in ctx.out.getvalue()
    finally:
        processes.stop_session(before, grace_s=1)
        processes.stop_session(unrecorded, grace_s=1)


def _signal_set(pid: int, field: str) -> set[int]:
    """The signals in a SigBlk/SigIgn/SigCgt line of /proc/<pid>/status."""
    mask = next(int(line.split()[1], 16) for line in open(f"/proc/{pid}/status") if line.startswith(field + ":"))
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def test_a_started_process_can_be_stopped_by_sigterm(tmp_path):
    """start() defers interrupts while it starts a process; the process must not inherit that: a blocked
    SIGTERM made every runtime ignore `down`'s SIGTERM until SIGKILL (the MLflow format server, all six
    runtimes)."""
    import signal

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    pid = processes.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "a.log", cwd=tmp_path)
    try:
        deferred = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        assert not _signal_set(pid, "SigBlk") & deferred
        assert not _signal_set(pid, "SigIgn") & {signal.SIGTERM}
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)  # returns only once SIGTERM ended it
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    finally:
        processes.stop_session(pid, grace_s=1)
    # and in this process: the handlers start() replaced are back
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert not _signal_set(os.getpid(), "SigBlk") & deferred


def test_an_interrupt_during_start_acts_once_the_process_is_on_the_list(tmp_path, monkeypatch):
    """Ctrl-C that lands while start() runs raises after the new session is recorded, so rollback finds it."""
    import signal
    import subprocess

    real_popen = subprocess.Popen

    def interrupted_popen(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # delivered now, acted on after start() recorded the pid
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(processes.subprocess, "Popen", interrupted_popen)
    # Ctrl-C's usual handler (a test run in the background starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        count = processes.started_count()
        with pytest.raises(KeyboardInterrupt):
            processes.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "a.log", cwd=tmp_path)
        [pid] = processes.started_since(count)
        try:
            assert processes.session_members(pid) == [pid]
            assert not _signal_set(pid, "SigBlk") & {signal.SIGTERM, signal.SIGINT}
        finally:
            processes.stop_session(pid, grace_s=1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_ignored_signal_stays_ignored_in_the_started_process(tmp_path):
    """Under nohup (SIGHUP ignored) start() leaves the ignoring alone, and the child inherits it as before."""
    import signal

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        pid = processes.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "a.log", cwd=tmp_path)
        try:
            assert signal.SIGHUP in _signal_set(pid, "SigIgn")
            assert not _signal_set(pid, "SigBlk") & {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        finally:
            processes.stop_session(pid, grace_s=1)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
