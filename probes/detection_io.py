"""I/O shared by the outlier and drift probes: send a stream through a detection path, collect verdicts.

Everything a probe needs comes from the Endpoint (Endpoint.detection[kind]: the inference URL of the
path, its label, where its verdicts and metrics are) and from Prometheus. Streams are sent in order,
one request in flight, `request_rows` rows per request, each request named by
`scoring.request_id(tag, stream, first row)` so verdicts map back to rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from probes import scoring
from probes.scenarios import Stream, user_stream
from testbed import v2
from testbed.endpoint import Endpoint
from testbed.errors import DetectionPathDown, PrometheusError, TestbedError
from testbed.platforms import WireProtocol
from testbed.prometheus import PrometheusClient

V2 = WireProtocol()
"""The identity protocol (a detection path that takes V2 as it is)."""

VERDICT_WAIT_S = 90.0
PROMETHEUS_WAIT_S = 30.0


def path_of(endpoint: Endpoint, kind: str) -> dict:
    """The endpoint's detection path for `kind`, checked to be up; DetectionPathDown otherwise."""
    path = (endpoint.detection or {}).get(kind)
    if not path or not path.get("url"):
        raise DetectionPathDown(endpoint.platform, kind, "its Endpoint names no detection path "
                                f"(backend {endpoint.backend}); nothing routes its traffic to a detector")
    # A path on a platform without V2 routes names its own readiness route.
    ready = path.get("ready_url") or path["url"].rsplit("/infer", 1)[0] + "/ready"
    try:
        code = httpx.get(ready, timeout=5.0).status_code
    except httpx.HTTPError as exc:
        raise DetectionPathDown(endpoint.platform, kind, f"{ready} is unreachable: {type(exc).__name__}") from None
    if code != 200:
        raise DetectionPathDown(endpoint.platform, kind, f"{ready} answered HTTP {code}")
    try:
        httpx.get(path["verdicts_url"], params={"limit": 0}, timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        raise DetectionPathDown(endpoint.platform, kind, f"its verdict log {path['verdicts_url']} is unreachable "
                                f"({type(exc).__name__})") from None
    return path


@dataclass
class Sent:
    """What a probe sent through one path."""

    requests: int = 0
    rows: int = 0
    failed: list = field(default_factory=list)
    """[(request id, status or error)] of requests the platform did not answer with 200."""

    sent_at: dict = field(default_factory=dict)
    """request id -> wall-clock time the request was sent."""

    latency_s: list = field(default_factory=list)
    seconds: float = 0.0


def send_stream(client: httpx.Client, url: str, stream: Stream, tag: str, request_rows: int, sent: Sent,
                protocol: WireProtocol = V2, wire: v2.Wire | None = None) -> None:
    """The stream through a detection path at url, as the platform's protocol takes it there (encode_detected), in
    the model's layout (`wire`: columns for a model that takes named columns)."""
    started = time.monotonic()
    for start in range(0, stream.n, request_rows):
        rid = scoring.request_id(tag, stream.name, start)
        body = protocol.request_bytes(v2.request_body(stream.rows[start:start + request_rows], request_id=rid,
                                                      wire=wire), detected=True)
        t0 = time.time()
        try:
            resp = client.post(url, content=body, headers={"content-type": "application/json"})
            status = resp.status_code
        except httpx.HTTPError as exc:
            status = f"{type(exc).__name__}: {exc}"
        sent.latency_s.append(time.time() - t0)
        sent.sent_at[rid] = t0
        sent.requests += 1
        if status == 200:
            sent.rows += min(request_rows, stream.n - start)
        else:
            sent.failed.append((rid, status))
    sent.seconds += time.monotonic() - started


def last_seq(verdicts_url: str) -> int:
    return int(httpx.get(verdicts_url, params={"limit": 0}, timeout=10.0).json()["next"])


def fetch_verdicts(verdicts_url: str, since: int) -> list[dict]:
    records, seq = [], since
    while True:
        page = httpx.get(verdicts_url, params={"since": seq, "limit": 20000}, timeout=30.0).json()
        records += page["records"]
        seq = page["next"]
        if not page["more"]:
            return records


def collect(verdicts_url: str, since: int, tag: str, expected_requests: int,
            timeout_s: float = VERDICT_WAIT_S) -> tuple[list[dict], float]:
    """Verdicts since `since` for this probe's requests, once every request's outlier verdict is in
    (paths deliver asynchronously) or the timeout passes; returns (records, seconds waited)."""
    started = time.monotonic()
    while True:
        records = [r for r in fetch_verdicts(verdicts_url, since) if _ours(r, tag)]
        have = sum(1 for r in records if r["kind"] == "outlier")
        if have >= expected_requests or time.monotonic() - started > timeout_s:
            return records, time.monotonic() - started
        time.sleep(0.5)


def _ours(record: dict, tag: str) -> bool:
    if record["kind"] == "outlier":
        return scoring.parse_request_id(record.get("request_id"), tag) is not None
    return any(scoring.parse_request_id(m[0], tag) is not None for m in record.get("members", []))


def outlier_flags(records: list[dict], stream: Stream, tag: str, request_rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(flags, scores, rows without a verdict) per row of `stream`, from outlier verdicts."""
    flags = np.zeros(stream.n, dtype=bool)
    scores = np.full(stream.n, np.nan)
    covered = np.zeros(stream.n, dtype=bool)
    for r in records:
        if r["kind"] != "outlier":
            continue
        parsed = scoring.parse_request_id(r.get("request_id"), tag)
        if parsed is None or parsed[0] != stream.name:
            continue
        start = parsed[1]
        n = len(r["flags"])
        flags[start:start + n] = np.asarray(r["flags"], dtype=bool)
        scores[start:start + n] = r["scores"]
        covered[start:start + n] = True
    return flags, scores, int((~covered).sum())


def prometheus_sum(prom: PrometheusClient, query: str) -> float:
    rows = prom.query(query)
    return float(sum(r["value"] for r in rows)) if rows else 0.0


def counter_query(metric: str, path: dict) -> str:
    labels = path["prometheus_labels"]
    sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"sum({metric}_total{{{sel}}})"


def wait_counter(prom: PrometheusClient, query: str, target: float, timeout_s: float = PROMETHEUS_WAIT_S) -> float:
    """The counter's value once it reaches `target` (scrapes lag traffic) or when the timeout passes."""
    deadline = time.monotonic() + timeout_s
    value = prometheus_sum(prom, query)
    while value < target and time.monotonic() < deadline:
        time.sleep(1.0)
        value = prometheus_sum(prom, query)
    return value


def side_by_side_latency(endpoint: Endpoint, path: dict, rows: np.ndarray, pairs: int, request_rows: int,
                         tag: str, wire: v2.Wire | None = None) -> dict:
    """Inference latency with and without the detection path, alternating requests (same rows), each body
    encoded for its route before the clock starts (the platform's protocol)."""
    from deployers import protocol_of

    protocol = protocol_of(endpoint)
    with_s, without_s = [], []
    with httpx.Client(timeout=30.0) as client:
        for i in range(pairs):
            start = (i * request_rows) % max(1, rows.shape[0] - request_rows)
            chunk = rows[start:start + request_rows]
            order = ((path["url"], with_s, True), (protocol.infer_url(endpoint), without_s, False))
            for url, bucket, detected in (order if i % 2 == 0 else order[::-1]):
                body = protocol.request_bytes(v2.request_body(chunk, request_id=f"{tag}-latency/{i}", wire=wire),
                                              detected)
                t0 = time.perf_counter()
                resp = client.post(url, content=body, headers={"content-type": "application/json"})
                elapsed = time.perf_counter() - t0
                if resp.status_code == 200:
                    bucket.append(elapsed)
    summary = scoring.latency_summary(with_s, without_s)
    summary.update({"pairs": pairs, "request_rows": request_rows, "order": "alternating, first side swapped each pair"})
    return summary


def user_rows(path, features, name: str, truth_path=None) -> Stream:
    """A user's CSV (probes/userdata.py) as one stream; truth: a 0/1 outlier label per row."""
    from probes import userdata

    rows = userdata.read_rows(path, features)
    truth = userdata.read_truth(truth_path, rows.shape[0]) if truth_path else None
    return user_stream(rows, name=name, truth=truth)


def open_result(ctx, endpoint: Endpoint, probe: str, kind: str, evidence: dict):
    """(Result, path, tag): a Result for this platform, the detection path of `kind` (None, with the
    Result's verdict `error` naming why, when the path is absent or down) and a unique request-id tag."""
    from testbed.results import Result

    evidence = {**evidence, "seed": ctx.seed, "versions": ctx.versions.get(endpoint.platform, {})}
    result = Result(probe=probe, platform=endpoint.platform, backend=endpoint.backend,
                    artifact_sha256=ctx.artifact.sha256, verdict="error", evidence=evidence, run_id=ctx.run_id,
                    repeat=ctx.repeat)
    tag = f"{ctx.run_id or 'probe'}-{probe}-r{ctx.repeat}-{int(time.time() * 1000) % 10**9}"
    try:
        path = path_of(endpoint, kind)
    except TestbedError as exc:
        result.mechanism = (endpoint.detection or {}).get(kind, {}).get("label", "none")
        result.evidence["error"] = error_text(exc)
        return result, None, tag
    result.mechanism = path["label"]
    result.evidence.update({"detection_path": {k: path.get(k) for k in PATH_EVIDENCE if path.get(k)},
                            "detector": path.get("detector"), "detectors_path": path.get("detectors_path"),
                            "tag": tag})
    return result, path, tag


PATH_EVIDENCE = ("label", "url", "computed_by", "routing", "kind_equivalent", "native_metrics", "notes")


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


__all__ = ["path_of", "Sent", "send_stream", "collect", "outlier_flags", "side_by_side_latency", "TestbedError",
           "PrometheusError"]
