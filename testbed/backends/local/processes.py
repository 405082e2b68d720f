"""Processes on loopback: free ports, start in a session of their own, stop the whole session.

Runtimes fork helpers (Ray starts a dozen processes; seldon-core left a gRPC grandchild), so a
process is stopped by its session id, which every descendant inherits, not by its pid alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from testbed.errors import PortBusy, TestbedError

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on and this process has not handed out before, for a bind that
    follows at once (tests, benchmarks). The kernel may give the same ephemeral port to successive bind(0)
    calls once each socket is closed; a port meant for a process that binds seconds later, which another
    process on the machine could take meanwhile, is held instead (claim_port)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT and port not in _held and not is_listening(port):
            _HANDED_OUT.add(port)
            return port
    raise TestbedError("No free loopback port: 200 ports in a row from the kernel were in use or already handed "
                       "out by this process. Stop other servers on this machine, or pass fixed ports.")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    # Listeners on every interface (a Ray Serve replica's gRPC server) also make a loopback port unusable.
    return not is_listening(port)


def is_listening(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:port (unlike a failed bind, not fooled by TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# Ports chosen for processes that bind them later (after their imports: seconds to minutes), held by
# a socket bound with SO_REUSEADDR and not listening. The kernel skips a port held this way when it
# picks one for another bind(0) or connect(), while the process it is meant for binds it anyway:
# uvicorn, aiohttp, gRPC, Go's net package and Python's http.server all set SO_REUSEADDR. Without the
# hold, the ports of the detector service, KServe and MLServer came out the same (`up` then failed
# with "[Errno 98] address already in use" and uvicorn's STARTUP_FAILURE).
_held: dict[int, socket.socket] = {}


def _hold(port: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        raise
    port = s.getsockname()[1]
    _held[port] = s
    return port


def claim_port(port: int | None, owner: str) -> int:
    """A fixed port if it is free (else PortBusy naming who holds it), or a free one; either way held
    for its process until release_ports() (call it once the process listens)."""
    if port is None:
        return _hold(0)
    if port in _held:
        return port
    # Not port_is_free(): a process just killed leaves its accepted connections in TIME_WAIT on its port,
    # which fails a plain bind for a minute but not its own server's (SO_REUSEADDR) bind on restart.
    if is_listening(port):
        raise PortBusy(port, owner, port_holder(port))
    try:
        return _hold(port)
    except OSError:
        raise PortBusy(port, owner, port_holder(port)) from None


def release_ports(ports=None) -> None:
    """Stop holding the given ports (default: all held ones)."""
    for port in list(_held) if ports is None else list(ports):
        held = _held.pop(port, None)
        if held is not None:
            held.close()


def port_holder(port: int) -> str:
    """'pid 123 (nginx)' for the process listening on port, or '' when it cannot be told."""
    for pid, inode_ports in _listening_by_pid().items():
        if port in inode_ports:
            return f"pid {pid} ({command_name(pid)})"
    return ""


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def command_line(pid: int) -> str:
    """The process's argv joined by spaces (what `ps` shows; Ray retitles its workers), or '' when gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _socket_table() -> dict[int, tuple[str, int]]:
    """inode -> (local address, port) of every listening TCP socket (IPv4 and IPv6)."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "0A":  # LISTEN
                continue
            addr_hex, port_hex = parts[1].split(":")
            table[int(parts[9])] = (_decode_addr(addr_hex), int(port_hex, 16))
    return table


def _decode_addr(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def _listening_by_pid(pids: list[int] | None = None) -> dict[int, list[int]]:
    return {pid: [port for _, port in socks] for pid, socks in listening_sockets(pids).items()}


def listening_sockets(pids: list[int] | None = None) -> dict[int, list[tuple[str, int]]]:
    """pid -> [(address, port)] of its listening TCP sockets, for the given pids or all."""
    table = _socket_table()
    result: dict[int, list[tuple[str, int]]] = {}
    for pid in pids if pids is not None else _all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in table:
                    result.setdefault(pid, []).append(table[inode])
    return result


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1" or address.startswith("::ffff:127.")


_started: list[int] = []
"""Every session this process started, in order: an interrupt (Ctrl-C, SIGTERM) that lands after a start and
before the state file records it must not orphan it (seen: a results exporter left running by an
interrupted `up`); `up`'s rollback stops what it started since its first step (started_since)."""

_DEFERRED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def start(cmd: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start cmd in a new session, stdout+stderr to log_path; return its pid (= its session id)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    main = threading.current_thread() is threading.main_thread()
    # Interrupts wait until the pid is in _started, then act as they would have. They are caught and replayed,
    # not blocked: a child inherits a blocked signal mask across exec, so every runtime started under a
    # blocked mask ignored SIGTERM and every stop waited out its grace and SIGKILLed (measured: 10.1 s for
    # each MLflow format server); exec resets caught signals to their defaults.
    # An ignored signal (nohup, a background job's SIGINT) stays ignored: nothing to defer, and the child
    # inherits the ignoring as before.
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in _DEFERRED if signal.getsignal(sig) is not signal.SIG_IGN} if main else {}
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
        _started.append(proc.pid)
    finally:
        for sig, handler in previous.items():
            # None: a handler installed outside Python; the default is the closest we can restore.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)
    return proc.pid


def started_count() -> int:
    return len(_started)


def started_since(count: int) -> list[int]:
    """Sessions this process started after started_count() returned count."""
    return _started[count:]


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, identifies it across pid reuse."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_ours(pid: int | None, ticks: int | None) -> bool:
    """True when pid is still the live process we started (not a zombie, not a later process
    that reuses the pid)."""
    return bool(pid) and ticks is not None and alive(pid) and start_ticks(pid) == ticks


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def reap(pid: int) -> int | None:
    """Collect the exit status of our own child if it has exited (so it is not left a zombie)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def session_members(sid: int) -> list[int]:
    members = []
    for pid in _all_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3] is the session id
            members.append(pid)
    return members


def stop_session(sid: int, grace_s: float = 10.0) -> list[int]:
    """SIGTERM every process of the session, SIGKILL what is left after grace_s; return pids seen."""
    seen = session_members(sid)
    # The leader first: runtimes shut their own children down cleanly (Ray stops its actors).
    _signal(sid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s / 2
    while time.monotonic() < deadline and alive(sid):
        reap(sid)
        time.sleep(0.1)
    for pid in session_members(sid):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s / 2
    while time.monotonic() < deadline:
        reap(sid)
        if not session_members(sid):
            return seen
        time.sleep(0.1)
    for pid in session_members(sid):
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while session_members(sid) and time.monotonic() < deadline:
        reap(sid)
        time.sleep(0.05)
    reap(sid)
    return seen


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(log is empty)"


def with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment has name=value (readable ones: our own user's).

    Some runtimes put their workers in sessions of their own (BentoML's circus arbiter calls setsid
    for every worker), so a session does not find them, and a worker orphaned by a killed parent has
    no parent to find it by; the environment the testbed gave the leader is inherited by all of them.
    """
    needle = f"{name}={value}".encode()
    found = []
    for pid in _all_pids():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") and alive(pid):
                found.append(pid)
        except OSError:
            continue
    return found
