"""Faults on the local backend (LocalFaults, testbed.faults.Faults): find a platform's serving worker,
SIGKILL it, restore what did not recover.

Every target is a process recorded in the state file (pid + start ticks), so a fault never signals
a process the testbed did not start. Restoring re-executes the recorded process's own command line,
working directory and environment (read from /proc before the kill) in a new session on the same
ports, and records the new pid in the state file so `status` and `down` see it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from testbed import state
from testbed.backends.local import processes
from testbed.errors import FaultTargetMissing, PlatformNotUp, RuntimeStartFailed
from testbed.faults import DetectorTarget, KillTarget
from testbed.settings import Settings

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
    """(pid, how it was found) of the process that serves the platform's infer route: the one its local
    Deployment names by command line (worker_pattern), otherwise the one listening on the endpoint's port."""
    from deployers import get_platform

    deployment = get_platform(platform).deployment_for("local")
    found = deployment.find_worker(info, base_url)
    if found is not None:
        return found
    members = processes.session_members(info["pid"])
    pattern = deployment.worker_pattern
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
            timeout_s: float, base_url: str | None = None, models: list[str] = (), is_ready=None) -> float:
    """Stop what is left of the recorded session at state[key...], start captured again, record its pid.

    key: ("platforms", name) or ("detection", "processes", name). models: loaded in order through
    the V2 repository API at base_url once the server is live (what it had loaded before). Returns
    seconds until ready_url answered 200 (or is_ready(client) said so: a platform's own readiness check);
    RuntimeStartFailed (naming the log) when it does not."""
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
                if is_ready(client) if is_ready else client.get(ready_url).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout_s:
                raise RuntimeStartFailed(key[-1], f"{ready_url} did not answer 200 within {timeout_s:.0f}s after "
                                         f"a restart; `python -m testbed up` restarts the degraded testbed",
                                         captured.log, processes.log_tail(Path(captured.log)))
            time.sleep(0.25)


def scrape(url: str) -> dict[str, float]:
    """{series name: summed value} of one /metrics page ({} when it cannot be read)."""
    try:
        text = httpx.get(url, timeout=3.0).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


DETECTOR_SERVICE = "detector-service"
RESTORE_TIMEOUT_S = 180.0


class LocalFaults:
    """testbed.faults.Faults on the local backend: signals only processes recorded in the state file."""

    backend = "local"
    kill_fault = "SIGKILL of the serving process"

    def __init__(self, settings: Settings, dry_run: bool = False, out=None):
        self.settings = settings
        self.dry_run = dry_run
        self.out = out or sys.stderr

    def note(self, text: str) -> None:
        if self.dry_run:
            print(text, file=self.out, flush=True)

    # --- kill ----------------------------------------------------------------------------------
    def kill_target(self, platform: str, endpoint) -> KillTarget:
        info = recorded(self.settings, platform)
        worker, how = serving_worker(platform, info, endpoint.base_url)
        log = info.get("log") or f"{self.settings.run_dir}/{platform}/runtime.log"
        return KillTarget(platform, f"pid {worker} ({how})",
                          evidence={"pid": worker, "found_by": how, "leader_pid": info["pid"],
                                    "was_leader": worker == info["pid"],
                                    # How long this platform took to get ready at `up`: a restart of its
                                    # worker by the platform itself may need as long (kill.recovery_wait_s).
                                    "ready_after_s": info.get("ready_after_s")},
                          handle={"leader": capture(info["pid"], log), "models": served_models(endpoint.base_url)})

    def kill(self, target) -> int:
        if self.dry_run:
            self.note(f"$ kill -KILL {target.evidence['pid']}   # {target.platform}: {target.description}")
            return time.time_ns()
        return kill(target.evidence["pid"], target.description, target.platform)

    def restore(self, target, endpoint) -> float | None:
        from deployers import protocol_of

        protocol = protocol_of(endpoint)
        if self.dry_run:
            self.note(f"# if {target.platform} is still down: restart its recorded command line "
                      f"({' '.join(target.handle['leader'].cmd[:3])} ...) and wait for {protocol.ready_url(endpoint)}")
            return None
        return restart(self.settings, ("platforms", target.platform), target.handle["leader"],
                       protocol.ready_url(endpoint), RESTORE_TIMEOUT_S, endpoint.base_url, target.handle["models"],
                       is_ready=lambda client: protocol.is_ready(client, endpoint))

    def after_kill(self, target) -> dict:
        current = (state.load(self.settings.run_dir) or {}).get("platforms", {}).get(target.platform) or {}
        return {"leader_pid": current.get("pid")}

    # --- detector outage -----------------------------------------------------------------------
    def detector_target(self, platform: str, endpoint) -> DetectorTarget:
        det = (state.load(self.settings.run_dir) or {}).get("detection") or {}
        info = (det.get("processes") or {}).get(DETECTOR_SERVICE)
        if not info or not processes.is_ours(info.get("pid"), info.get("pid_start")):
            raise FaultTargetMissing(platform, f"the {DETECTOR_SERVICE} is not running "
                                               f"(recorded: {info and info.get('pid')})")
        return DetectorTarget(det["service_url"], f"{DETECTOR_SERVICE} (pid {info['pid']})",
                              evidence={"pid": info["pid"]}, handle=capture(info["pid"], info["log"]))

    def stop_detector(self, target) -> int:
        pid = target.evidence["pid"]
        if self.dry_run:
            self.note(f"$ kill -KILL {pid}; stop its session   # {target.description}")
            return time.time_ns()
        t = kill(pid, DETECTOR_SERVICE, DETECTOR_SERVICE)
        processes.stop_session(pid, grace_s=1.0)  # the whole session: no half-dead service
        return t

    def start_detector(self, target, timeout_s: float) -> float:
        if self.dry_run:
            self.note(f"# restart {DETECTOR_SERVICE} from its recorded command line; wait for "
                      f"{target.service_url}/ready")
            return 0.0
        return restart(self.settings, ("detection", "processes", DETECTOR_SERVICE), target.handle,
                       f"{target.service_url}/ready", timeout_s)

    def metric_snapshot(self, platform: str, endpoint) -> dict[str, dict[str, float]]:
        current = state.load(self.settings.run_dir) or {}
        urls = {platform: endpoint.metrics_url} if endpoint.metrics_url else {}
        for name, info in ((current.get("detection") or {}).get("processes") or {}).items():
            if name.startswith(platform) and info.get("metrics_url"):
                urls[name] = info["metrics_url"]
        if self.dry_run:
            self.note(f"# read {', '.join(urls.values()) or 'no metrics page'}")
            return {k: {} for k in urls}
        return {k: scrape(u) for k, u in urls.items()}
