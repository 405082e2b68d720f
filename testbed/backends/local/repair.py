"""Every process the local testbed started, whether each still lives, and how `up` restarts the dead.

A process is recorded in the state file as it starts (pid + start ticks, ports, log, and `launch`:
its command line, working directory and the testbed's additions to the environment). `status`
checks each one; a later `up` on a degraded testbed starts exactly the dead ones again, on the same
ports and from the same command line (their configuration is still in the run directory), waits for
them, runs what follows their start (MLServer's model loads, Ray's detected application), and then
checks prediction parity and the scrape targets as a fresh `up` does.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from testbed.backends.local import processes
from testbed.backends.local.detection import renice_session
from testbed.errors import RuntimeStartFailed
from testbed.steps import UpContext

PLATFORM, DETECTION, EXPORTER, PROMETHEUS = "platform", "detection", "results exporter", "Prometheus"


def recorded(current: dict) -> list[tuple[str, str, dict]]:
    """(kind, name, state entry) of every process `up` started, in start order."""
    out = [(PLATFORM, name, info) for name, info in (current.get("platforms") or {}).items()]
    if current.get("results_exporter"):
        out.append((EXPORTER, "results-exporter", current["results_exporter"]))
    out += [(DETECTION, name, info) for name, info in ((current.get("detection") or {}).get("processes") or {}).items()]
    if current.get("prometheus"):
        out.append((PROMETHEUS, "prometheus", current["prometheus"]))
    return out


def liveness(info: dict) -> str:
    if not info.get("pid"):
        return "not started"
    return "running" if processes.is_ours(info["pid"], info.get("pid_start")) else "dead"


def check(current: dict, client: httpx.Client) -> list[dict]:
    """One line per recorded process: name, kind, pid, state (ready | not ready | dead | not started).

    Ready means its own readiness route answers 200 (a platform's model route is checked by the
    backend's platform status, which this leaves at `running`)."""
    rows = []
    for kind, name, info in recorded(current):
        state = liveness(info)
        if state == "running" and kind != PLATFORM and info.get("ready_url"):
            try:
                state = "ready" if client.get(info["ready_url"]).status_code == 200 else "not ready"
            except httpx.HTTPError:
                state = "not ready"
        rows.append({"name": name, "kind": kind, "pid": info.get("pid"), "state": state, "log": info.get("log")})
    return rows


def dead(current: dict) -> list[tuple[str, str, dict]]:
    return [(kind, name, info) for kind, name, info in recorded(current) if liveness(info) != "running"]


def relaunch(name: str, info: dict) -> float:
    """Start a recorded non-platform process again, on its recorded ports; updates info in place and
    returns when it started (time.monotonic())."""
    launch = info.get("launch")
    if not launch:
        raise RuntimeStartFailed(name, "the state file does not say how it was started (a testbed started by an "
                                 "older version)", Path(info.get("log") or "-"), "")
    if info.get("pid") and processes.session_members(info["pid"]):
        processes.stop_session(info["pid"])
    ports = info.get("ports") or ({"port": info["port"]} if info.get("port") else {})
    for port_name, port in ports.items():
        processes.claim_port(port, f"{name} {port_name}")
    pid = processes.start(launch["cmd"], Path(info["log"]), cwd=Path(launch["cwd"]), env=launch["env"])
    info.update(pid=pid, pid_start=processes.start_ticks(pid))
    info.setdefault("restarts", []).append({"at": time.time(), "pid": pid, "by": "up"})
    return time.monotonic()


def wait_ready(name: str, info: dict, started: float, timeout_s: float) -> float:
    """Seconds from `started` until info's ready_url answered 200; RuntimeStartFailed naming its log."""
    log = Path(info.get("log") or "-")
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not processes.alive(info["pid"]):
                processes.reap(info["pid"])
                raise RuntimeStartFailed(name, f"its restarted process (pid {info['pid']}) exited", log,
                                         processes.log_tail(log))
            try:
                if client.get(info["ready_url"]).status_code == 200:
                    renice_session(info["pid"], 0)
                    return round(time.monotonic() - started, 2)
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout_s:
                raise RuntimeStartFailed(name, f"{info['ready_url']} did not answer 200 within {timeout_s:.0f}s after "
                                         f"a restart", log, processes.log_tail(log))
            time.sleep(0.25)


def entry(ctx: UpContext, kind: str, name: str) -> dict:
    """The live state entry (in ctx.extra, which the backend saves) of a recorded non-platform process."""
    if kind == EXPORTER:
        return ctx.extra["results_exporter"]
    if kind == PROMETHEUS:
        return ctx.extra["prometheus"]
    return ctx.extra["detection"]["processes"][name]
