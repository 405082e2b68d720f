"""The testbed's load generator: closed loop at a concurrency or open loop at a rate, every request recorded.

    spec = LoadSpec(url="http://127.0.0.1:8080/v2/models/m/infer", method="POST", body=b"{...}",
                    concurrency=8, duration_s=5)
    run = run_load(spec)            # raises EndpointUnreachable / NonLoopbackTarget before any load
    summary = summarize(run)        # p50/p90/p99/max, throughput, errors, each with a bootstrap CI

The requests are made by a compiled engine (engine.c: epoll, HTTP/1.1 keep-alive) so that the
client is not the bottleneck; experiments/loadgen_vs_wrk.py compares its top rate with wrk's.
Bounded in time (duration_s) and count (max_requests), loopback only unless allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import numpy as np

from testbed.errors import EndpointUnreachable, NonLoopbackTarget
from testbed.loadgen import stats
from testbed.loadgen.engine import ERRORS, RECORD_DTYPE, run_engine

__all__ = ["LoadSpec", "LoadRun", "run_load", "summarize", "RECORD_DTYPE", "ERRORS"]

SUSTAIN_TOLERANCE = 0.95
"""An open-loop run sustained its target when it sent >= this fraction of it and left none unsent."""

MAX_SEND_LAG_S = 0.050
"""... and its requests left at most this long after they were due (p99)."""

MAX_NOT_SENT = 0.005
"""... and at most this fraction of due requests was still unsent at the end (one request due in the
run's last instant can miss a connection without the rate being false)."""


@dataclass(frozen=True)
class LoadSpec:
    url: str
    method: str = "GET"
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    concurrency: int = 1
    """Closed loop: connections, each with one request in flight. Open loop: the most connections to open."""

    rate: float | None = None
    """Requests per second; set = open loop (requests are due on schedule whatever the server does)."""

    duration_s: float = 10.0
    max_requests: int = 1_000_000
    timeout_s: float = 10.0
    """Per request; a request still unanswered after this is a timeout error."""

    threads: int = 2
    """Engine threads (event loops); one per core is enough."""

    allow_non_loopback: bool = False
    """Targets outside 127.0.0.0/8 and ::1 are refused unless this is set."""

    @property
    def mode(self) -> str:
        return "open" if self.rate else "closed"

    def describe(self) -> dict:
        d = asdict(self)
        d["body_bytes"] = len(self.body) if self.body else 0
        d.pop("body")
        d["headers"] = [list(h) for h in self.headers]
        d["mode"] = self.mode
        return d


@dataclass
class LoadRun:
    spec: LoadSpec
    records: np.ndarray
    """RECORD_DTYPE: one row per request, times in ns from the engine's start."""

    engine: dict
    """The engine's own summary (record count, window, connections opened, start time)."""

    client_cpu: dict = field(default_factory=dict)

    @property
    def window_s(self) -> float:
        return self.engine["window_ns"] / 1e9

    @property
    def ok(self) -> np.ndarray:
        """Requests answered with a 2xx status."""
        r = self.records
        return (r["error"] == 0) & (r["status"] >= 200) & (r["status"] < 300)

    @property
    def latency_s(self) -> np.ndarray:
        """Per request: open loop from when it was due (queueing included), closed loop from its send."""
        r = self.records
        start = r["intended_ns"] if self.spec.mode == "open" else np.where(r["sent_ns"] >= 0, r["sent_ns"],
                                                                            r["intended_ns"])
        return (r["done_ns"] - start) / 1e9


def resolve_target(url: str, allow_non_loopback: bool = False) -> tuple[str, int, str]:
    """(numeric host, port, path?query) for url; NonLoopbackTarget unless loopback or allowed."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: only http://host:port/path URLs are supported")
    port = parts.port or 80
    infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    address = infos[0][4][0]
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            if not allow_non_loopback:
                raise NonLoopbackTarget(url, info[4][0])
        else:
            address = info[4][0]
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return address, port, path


def check_reachable(url: str, host: str, port: int, timeout_s: float = 2.0) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect((host, port))
        except OSError as exc:
            raise EndpointUnreachable(url, f"{type(exc).__name__}: {exc}") from None


def run_load(spec: LoadSpec) -> LoadRun:
    host, port, path = resolve_target(spec.url, spec.allow_non_loopback)
    check_reachable(spec.url, host, port)
    if spec.concurrency < 1 or spec.duration_s <= 0 or spec.max_requests < 1:
        raise ValueError(f"concurrency, duration_s and max_requests must be positive: {spec}")
    args = ["--host", host, "--port", str(port), "--path", path, "--method", spec.method,
            "--connections", str(spec.concurrency), "--threads", str(spec.threads),
            "--duration", repr(float(spec.duration_s)), "--requests", str(spec.max_requests),
            "--timeout", repr(float(spec.timeout_s))]
    if spec.rate:
        args += ["--rate", repr(float(spec.rate))]
    headers = list(spec.headers)
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="testbed-body-") as body_file:
        if spec.body is not None:
            body_file.write(spec.body)
            body_file.flush()
            args += ["--body-file", body_file.name]
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("Content-Type", "application/json"))
        for k, v in headers:
            args += ["--header", f"{k}: {v}"]
        summary, records, cpu = run_engine(args, timeout_s=spec.duration_s + 2 * spec.timeout_s + 30)
    return LoadRun(spec=spec, records=records, engine=summary, client_cpu=cpu)


def summarize(run: LoadRun, confidence: float = stats.CONFIDENCE, seed: int = 0) -> dict:
    """Everything the report needs from one run; errors are counted in every statistic, never dropped.

    latency: over ALL requests (a failed request's latency is the time until its failure was
    seen); latency_ok: over 2xx answers only. throughput: 2xx answers completed inside the
    window per second; offered: requests sent per second.
    """
    r = run.records
    n = int(r.size)
    ok = run.ok
    lat = run.latency_s
    window = run.window_s
    done_s = r["done_ns"] / 1e9
    sent = r["sent_ns"] >= 0
    bins = stats.rate_bins(done_s[ok], window)
    tp_ci = stats.bootstrap(bins, np.mean, seed=seed, confidence=confidence)
    ok_in_window = int(np.count_nonzero(ok & (done_s <= window)))
    errors = {ERRORS.get(int(code), str(code)): int(count)
              for code, count in zip(*np.unique(r["error"][r["error"] != 0], return_counts=True))}
    statuses = {str(int(s)): int(c) for s, c in zip(*np.unique(r["status"][r["error"] == 0], return_counts=True))}
    n_bad = n - int(ok.sum())
    out = {
        "spec": run.spec.describe(),
        "requests": n,
        "ok": int(ok.sum()),
        "errors": n_bad,
        "error_kinds": errors,
        "status_counts": statuses,
        "error_rate": n_bad / n if n else float("nan"),
        "error_rate_ci": list(stats.proportion_ci(n_bad, n, confidence)),
        "window_s": window,
        "throughput_rps": ok_in_window / window,
        "throughput_rps_ci": list(tp_ci),
        "offered_rps": int(np.count_nonzero(sent & (r["sent_ns"] <= run.engine["window_ns"]))) / window,
        "latency_s": stats.latency_summary(lat, confidence) if n else {"n": 0},
        "latency_ok_s": stats.latency_summary(lat[ok], confidence) if ok.any() else {"n": 0},
        "connections_opened": run.engine.get("connects"),
        "client_cpu_s": round(run.client_cpu.get("user_s", 0) + run.client_cpu.get("system_s", 0), 3),
        "confidence": confidence,
    }
    out["client_cpu_fraction"] = out["client_cpu_s"] / max(run.engine["elapsed_ns"] / 1e9, 1e-9)
    if run.spec.mode == "open":
        out.update(sustain_check(run))
    return out


def sustain_check(run: LoadRun) -> dict:
    """Whether an open-loop run really offered its target rate; the reason when it did not."""
    r = run.records
    target = float(run.spec.rate)
    window = run.window_s
    sent = r["sent_ns"] >= 0
    not_sent = int(np.count_nonzero(r["error"] == 5))
    scheduled = int(r.size)
    expected = min(target * window, run.spec.max_requests)
    lag = (r["sent_ns"][sent] - r["intended_ns"][sent]) / 1e9
    lag_p99 = float(np.percentile(lag, 99)) if lag.size else float("nan")
    reasons = []
    if scheduled < SUSTAIN_TOLERANCE * expected:
        reasons.append(f"only {scheduled} of {expected:.0f} requests were scheduled (the client fell behind)")
    if not_sent > MAX_NOT_SENT * max(scheduled, 1):
        reasons.append(f"{not_sent} due requests were never sent (no free connection before the end)")
    if lag.size and lag_p99 > MAX_SEND_LAG_S:
        reasons.append(f"p99 send lag {lag_p99 * 1e3:.1f} ms > {MAX_SEND_LAG_S * 1e3:.0f} ms (requests queued "
                       f"in the client: the server or the machine cannot keep up)")
    return {"target_rps": target, "sustained": not reasons, "not_sustained_because": reasons,
            "send_lag_p99_s": lag_p99, "not_sent": not_sent}
