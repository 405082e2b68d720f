"""A static nginx endpoint on loopback, for benchmarking the load generator (it outruns any client here).

Its own config, pid file, logs and temp paths live in a temporary directory; no root needed for
the port (a free one above 1024). Stopped with the context manager's exit.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from testbed.backends.local import processes
from testbed.errors import MissingBinary, RuntimeStartFailed

CONFIG = """\
daemon off;
master_process on;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{ return 200 "ok\\n"; }}
        # A POST target: reads the whole body (as a model server must), answers a fixed small JSON.
        location /v2/models/static/infer {{
            client_body_buffer_size 1m;
            client_max_body_size 64m;
            default_type application/json;
            return 200 '{{"model_name":"static","outputs":[{{"name":"predict","datatype":"INT64","shape":[1],"data":[0]}}]}}';
        }}
        location /status/500 {{ return 500 "boom\\n"; }}
    }}
}}
"""


def find_nginx() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).exists():
            return candidate
    raise MissingBinary("nginx", "PATH", "apt-get install nginx-light")


@contextmanager
def static_nginx(workers: int = 1, port: int | None = None):
    """Yield the base URL of a static nginx on 127.0.0.1; stop it (and remove its dir) afterwards."""
    binary = find_nginx()
    port = processes.claim_port(port, "nginx")  # held until nginx listens
    workdir = Path(tempfile.mkdtemp(prefix="testbed-nginx-"))
    workdir.chmod(0o755)  # as root, nginx's workers run as nobody
    conf = workdir / "nginx.conf"
    conf.write_text(CONFIG.format(dir=workdir, port=port, workers=workers))
    log = workdir / "stdout.log"
    pid = processes.start([binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")],
                          log, cwd=workdir)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if not processes.alive(pid) or time.monotonic() > deadline:
                raise RuntimeStartFailed("nginx", "it did not answer on its port", workdir / "error.log",
                                         processes.log_tail(workdir / "error.log"))
            time.sleep(0.05)
        processes.release_ports([port])
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.release_ports([port])
        processes.stop_session(pid, grace_s=5)
        shutil.rmtree(workdir, ignore_errors=True)


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise MissingBinary("wrk", "PATH", "apt-get install wrk")
    return found


def run_wrk(url: str, connections: int, duration_s: float, threads: int = 2, extra_args=()) -> dict:
    """wrk's own numbers for the same endpoint: requests, seconds, rate, socket errors."""
    proc = subprocess.run([wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
                           *extra_args, url], capture_output=True, text=True, timeout=duration_s + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return parse_wrk(proc.stdout)


def parse_wrk(text: str) -> dict:
    import re

    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk output:\n{text}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    requests, seconds = int(m.group(1)), float(m.group(2)) * scale
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"requests": requests, "seconds": seconds, "rate": requests / seconds,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "raw": text}
