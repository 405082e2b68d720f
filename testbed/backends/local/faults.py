"""Faults on the local backend: find a platform's serving worker, SIGKILL it, restore what did not recover.

Every target is a process recorded in the state file (pid + start ticks), so a fault never signals
a process the testbed did not start. Restoring re-executes the recorded process's own command line,
working directory and environment (read from /proc before the kill) in a new session on the same
ports, and records the new pid in the state file so `status` and `down` see it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from testbed import state
from testbed.backends.local import processes
from testbed.errors import FaultTargetMissing, PlatformNotUp, RuntimeStartFailed
from testbed.settings import Settings

WORKER_PATTERNS = {"rayserve": "ray::ServeReplica:reference:V2Model"}
"""Platform -> command-line prefix of its serving worker; otherwise the process listening on its port.
(Ray: app "reference" serves the infer route at "/", deployers/runtimes/ray_app.py; its ingress is V2Model.)"""


@dataclass
class Captured:
    """How to start a recorded process again."""
    cmd: list[str]
    cwd: str
    env: dict
    log: str


def recorded(settings: Settings, platform: str) -> dict:
    current = state.load(settings.run_dir) or {}
    info = (current.get("platforms") or {}).get(platform)
    if not info or not processes.is_ours(info.get("pid"), info.get("pid_start")):
        ready = [n for n, i in (current.get("platforms") or {}).items()
                 if processes.is_ours(i.get("pid"), i.get("pid_start"))]
        raise PlatformNotUp(platform, "not running (no live recorded process)" if info else "not part of this testbed",
                            ready)
    return info


def _cmdline(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def capture(pid: int, log: str) -> Captured:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    env = dict(kv.split("=", 1) for kv in raw if "=" in kv)
    return Captured(cmd=_cmdline(pid), cwd=os.readlink(f"/proc/{pid}/cwd"), env=env, log=log)


def serving_worker(platform: str, info: dict, base_url: str) -> tuple[int, str]:
    """(pid, how it was found) of the process that serves the platform's infer route."""
    members = processes.session_members(info["pid"])
    pattern = WORKER_PATTERNS.get(platform)
    if pattern:
        for pid in members:
            if " ".join(_cmdline(pid)).startswith(pattern):
                return pid, f"command line starts with {pattern!r}"
        raise FaultTargetMissing(platform, f"no process whose command line starts with {pattern!r} in session "
                                 f"{info['pid']} ({len(members)} processes)")
    port = urlsplit(base_url).port
    for pid, socks in processes.listening_sockets(members).items():
        if any(p == port for _, p in socks):
            return pid, f"listens on port {port}"
    raise FaultTargetMissing(platform, f"no process of session {info['pid']} listens on port {port}")


def kill(pid: int, what: str, platform: str) -> int:
    """SIGKILL pid; returns the wall-clock ns just before the signal (loadgen records: minus its start_unix_ns)."""
    t = time.time_ns()
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise FaultTargetMissing(platform, f"{what} (pid {pid}) exited before it could be killed") from None
    return t


def wait_ok(url: str, timeout_s: float, method: str = "GET", body: bytes | None = None) -> float | None:
    """Seconds until url answers 200 (polled), or None after timeout_s."""
    started = time.monotonic()
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - started < timeout_s:
            try:
                resp = client.request(method, url, content=body,
                                      headers={"content-type": "application/json"} if body else None)
                if resp.status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return None


def served_models(base_url: str) -> list[str]:
    """Models READY on a V2 server with the repository extension (MLServer loads them through it after
    start, so a restarted server must be told again); [] where the route does not exist."""
    try:
        resp = httpx.post(f"{base_url}/v2/repository/index", json={}, timeout=5.0)
        if resp.status_code != 200:
            return []
        return [m["name"] for m in resp.json() if m.get("state") == "READY"]
    except (httpx.HTTPError, ValueError, TypeError, KeyError):
        return []


def restart(settings: Settings, key: tuple[str, ...], captured: Captured, ready_url: str,
            timeout_s: float, base_url: str | None = None, models: list[str] = ()) -> float:
    """Stop what is left of the recorded session at state[key...], start captured again, record its pid.

    key: ("platforms", name) or ("detection", "processes", name). models: loaded in order through
    the V2 repository API at base_url once the server is live (what it had loaded before). Returns
    seconds until ready_url answered 200; RuntimeStartFailed (naming the log) when it does not."""
    current = state.load(settings.run_dir) or {}
    node = current
    for k in key:
        node = node[k]
    if node.get("pid") and processes.session_members(node["pid"]) and \
            (processes.is_ours(node["pid"], node.get("pid_start")) or not processes.alive(node["pid"])):
        processes.stop_session(node["pid"])
    started = time.monotonic()
    pid = processes.start(captured.cmd, Path(captured.log), cwd=Path(captured.cwd), env=captured.env)
    node["pid"], node["pid_start"] = pid, processes.start_ticks(pid)
    node.setdefault("restarts", []).append({"at": time.time(), "pid": pid, "by": "fault probe"})
    state.save(settings.run_dir, current)
    pending = list(models)
    with httpx.Client(timeout=2.0) as client:
        while True:
            if pending and base_url:
                try:
                    if client.get(f"{base_url}/v2/health/live").status_code == 200:
                        for name in pending:
                            client.post(f"{base_url}/v2/repository/models/{name}/load", timeout=timeout_s)
                        pending = []
                except httpx.HTTPError:
                    pass
            if not processes.alive(pid):
                processes.reap(pid)
                raise RuntimeStartFailed(key[-1], f"its restarted process (pid {pid}) exited", captured.log,
                                         processes.log_tail(Path(captured.log)))
            try:
                if client.get(ready_url).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout_s:
                raise RuntimeStartFailed(key[-1], f"{ready_url} did not answer 200 within {timeout_s:.0f}s after "
                                         f"a restart; `python -m testbed up` restarts the degraded testbed",
                                         captured.log, processes.log_tail(Path(captured.log)))
            time.sleep(0.25)
