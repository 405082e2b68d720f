"""The control plane's processes: how each is started, where it logs, when it is ready, how it stops.

Every process listens on 127.0.0.1 only, on ports chosen free at `up` and recorded in the state file;
each runs in a session of its own (testbed.backends.local.processes), so `down` stops it with its
children. A process's record carries its start time, so a reused pid is never mistaken for it.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testbed.backends.local import processes as proc
from testbed.errors import TestbedError


class ProcessFailed(TestbedError):
    def __init__(self, name: str, reason: str, log: Path):
        tail = _tail(log)
        super().__init__(f"{name} did not become ready: {reason}. Its log is {log}; last lines:\n{tail}\n"
                         f"`python -m testbed down --backend controlplane` stops what was started.")


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    health: str = ""
    """URL answering 200 once the process serves (https URLs are checked with the control plane's CA
    or, for a component's own self-signed serving certificate, without verification)."""

    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)
    pid: int | None = None
    ticks: int | None = None

    def record(self) -> dict:
        return {"pid": self.pid, "ticks": self.ticks, "log": str(self.log), "argv": self.argv, "health": self.health,
                "ports": self.ports}


def start(p: Proc) -> Proc:
    p.log.parent.mkdir(parents=True, exist_ok=True)
    p.pid = proc.start(p.argv, p.log, cwd=p.cwd or p.log.parent, env=p.env)
    p.ticks = proc.start_ticks(p.pid)
    return p


def wait_healthy(p: Proc, timeout_s: float, client_cert: tuple[str, str] | None = None, ca: str | None = None) -> float:
    """Poll p.health until 200; ProcessFailed when the process exits or the time is up. Returns seconds."""
    started = time.monotonic()
    verify: ssl.SSLContext | bool = False
    if ca:
        verify = ssl.create_default_context(cafile=ca)
        if client_cert:
            verify.load_cert_chain(*client_cert)
    last = "no answer yet"
    with httpx.Client(timeout=3.0, verify=verify) as client:
        while time.monotonic() - started < timeout_s:
            if not proc.alive(p.pid):
                code = proc.reap(p.pid)
                raise ProcessFailed(p.name, f"it exited (status {code})", p.log)
            if not p.health:
                return round(time.monotonic() - started, 2)
            try:
                resp = client.get(p.health)
                if resp.status_code == 200:
                    return round(time.monotonic() - started, 2)
                last = f"{p.health} answered {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{p.health}: {type(exc).__name__}: {exc}"
            time.sleep(0.5)
    raise ProcessFailed(p.name, f"no healthy answer within {timeout_s:.0f}s ({last})", p.log)


def running(record: dict) -> bool:
    return proc.is_ours(record.get("pid"), record.get("ticks"))


def stop(record: dict, grace_s: float = 10.0) -> bool:
    """Stop a recorded process (and its session) if it is still the one we started."""
    if not running(record):
        return False
    proc.stop_session(record["pid"], grace_s=grace_s)
    return True


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(no log)"


def free_port() -> int:
    return proc.free_port()
