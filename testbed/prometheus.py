"""Prometheus: scrape-config generation (pure), the server binary, and a small HTTP API client."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import yaml

from testbed.errors import MissingBinary, PrometheusError

INSTALL_HINT = "on Debian/Ubuntu: apt-get install prometheus; elsewhere: https://prometheus.io/download/"


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    """Prometheus job name; the platform's registry name."""

    url: str
    """Full metrics URL, e.g. http://127.0.0.1:8082/metrics."""

    labels: tuple[tuple[str, str], ...] = ()
    """Extra target labels, e.g. (("platform", "kserve"), ("backend", "local"))."""


def scrape_config(targets: list[ScrapeTarget], interval_s: float) -> dict:
    """A prometheus.yml document scraping each target as its own job."""
    jobs = []
    for t in targets:
        parts = urlsplit(t.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
            raise ValueError(f"scrape target {t.job!r}: {t.url!r} is not an http(s)://host:port/path URL")
        jobs.append({
            "job_name": t.job,
            "scheme": parts.scheme,
            "metrics_path": parts.path or "/metrics",
            "static_configs": [{"targets": [f"{parts.hostname}:{parts.port}"], "labels": dict(t.labels)}],
        })
    names = [j["job_name"] for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate scrape job names: {names}")
    interval = f"{int(interval_s * 1000)}ms"
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}


def render_config(targets: list[ScrapeTarget], interval_s: float) -> str:
    return yaml.safe_dump(scrape_config(targets, interval_s), sort_keys=False)


def find_binary(explicit: str | None) -> str:
    """The server binary from TESTBED_PROMETHEUS / settings, else PATH; MissingBinary otherwise."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise MissingBinary("prometheus", "TESTBED_PROMETHEUS", f"{explicit} is not an executable file; " + INSTALL_HINT)
    found = shutil.which("prometheus")
    if not found:
        raise MissingBinary("prometheus", "TESTBED_PROMETHEUS", INSTALL_HINT)
    return found


def server_command(binary: str, config_file, data_dir, port: int, retention: str = "7d") -> list[str]:
    return [binary, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
            f"--storage.tsdb.retention.time={retention}", f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle"]


class PrometheusClient:
    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self._timeout = timeout_s

    def _get(self, path: str, params: dict | None = None) -> dict:
        try:
            resp = httpx.get(f"{self.url}{path}", params=params, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"at {self.url} is not reachable", f"{exc}. Is the testbed up "
                                  "(`python -m testbed status`)?") from None
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusError(f"at {self.url} answered {path} with HTTP {resp.status_code}",
                                  resp.text[:300]) from None
        if body.get("status") != "success":
            raise PrometheusError(f"rejected the request {path} {params or ''}",
                                  f"{body.get('errorType', '')}: {body.get('error', resp.text[:300])}")
        return body["data"]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, promql: str) -> list[dict]:
        """Instant query; returns [{"metric": {...}, "value": float}] (vectors and scalars alike)."""
        data = self._get("/api/v1/query", {"query": promql})
        kind, result = data["resultType"], data["result"]
        if kind == "vector":
            return [{"metric": r["metric"], "value": float(r["value"][1])} for r in result]
        if kind in ("scalar", "string"):
            return [{"metric": {}, "value": result[1] if kind == "string" else float(result[1])}]
        if kind == "matrix":
            return [{"metric": r["metric"], "values": [(float(t), float(v)) for t, v in r["values"]]} for r in result]
        return []

    def targets(self) -> list[dict]:
        """Active scrape targets: job, url, health (up/down/unknown), last error."""
        data = self._get("/api/v1/targets", {"state": "active"})
        return [{"job": t["labels"].get("job", t.get("scrapePool")), "url": t["scrapeUrl"], "health": t["health"],
                 "last_error": t.get("lastError", ""), "last_scrape": t.get("lastScrape")}
                for t in data["activeTargets"]]


def format_table(rows: list[dict]) -> str:
    """Query results as an aligned text table: one column per label, then the value."""
    if not rows:
        return "(no data)"
    labels = sorted({k for r in rows for k in r["metric"]})
    header = [*labels, "value"]
    body = [[r["metric"].get(k, "") for k in labels] + [_fmt(r.get("value", r.get("values")))] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *body]]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return f"{len(value)} samples, last {value[-1][1]:g}" if value else "0 samples"
    return str(value)
