"""Monitoring: after a known traffic pattern, which signals each platform exposes in Prometheus,
and whether the counts Prometheus holds equal what was sent.

The metric catalogue below says where to look: for each platform and signal, the PromQL that answers it
(or None where none was found when it was written), what it counts, and why. It never decides the answer:
a signal counts as exposed only when a series is found in the scrape AND it moved with the traffic the
probe sent. Besides the catalogue's queries, every series of the platform is snapshotted before and after
the traffic and searched by generic patterns (`discover`: a status-code label with a non-2xx value that
grew, a queue or batch metric whose value changed, any series labelled with the model's name that grew, a
latency histogram whose count grew), so a metric the catalogue does not know, or a catalogue entry set to
None, is still found, and a catalogued series that does not move is not counted.

Scoring (`score`) is pure: recorded query values before and after the traffic in, per-signal
exposure and count accuracy out. `run` does the I/O: settle, send, wait for the scrape, query.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from probes.context import ProbeContext
from testbed import v2
from testbed.endpoint import Endpoint
from testbed.errors import TestbedError
from testbed.population import Population
from testbed.results import Result

PROBE = "monitoring"

# What a signal counts, so the expected value can be derived from the traffic sent.
ALL, OK, FAILED = "all", "ok", "failed"

SIGNALS = ("requests_total", "requests_ok", "requests_failed", "latency_histogram", "status_codes",
           "queue_or_batch", "model_label")
"""The signals asked of every platform, in table order."""

SIGNAL_DOC = {
    "requests_total": "a counter of inference requests (any outcome)",
    "requests_ok": "a counter of successful inference requests",
    "requests_failed": "a counter of failed inference requests",
    "latency_histogram": "a bucketed latency histogram of inference requests (observations counted)",
    "status_codes": "request counts by HTTP status code (non-2xx counted)",
    "queue_or_batch": "a queue-length or batch-size metric",
    "model_label": "request metrics carry a label naming the served model",
}


@dataclass(frozen=True)
class Signal:
    query: str | None
    """PromQL template; $platform and $model are filled in. None: the platform has no such metric."""

    counts: str | None = None
    """ALL / OK / FAILED: the query's increase must equal that many requests. None: presence only."""

    note: str = ""


@dataclass(frozen=True)
class PlatformMetrics:
    signals: dict[str, Signal]
    export_lag_s: float = 0.0
    """Extra delay between a request and its count on the metrics page (Ray exports periodically)."""

    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    """backend -> {metric name prefix: which process exports those series and where Prometheus scrapes them}.
    Where a platform's pod has more than one metrics source (Seldon on kind: MLServer and the executor)."""


def series_sources(catalogue: PlatformMetrics, backend: str) -> dict[str, list[str]]:
    """Signal -> the sources of the series its query reads, on `backend` ({} when the catalogue names none)."""
    known = catalogue.sources.get(backend) or {}
    return {name: sorted({source for prefix, source in known.items() if prefix in signal.query})
            for name, signal in catalogue.signals.items() if signal.query is not None and known}


# Ray Serve labels metrics by application and deployment, not by model: these mirror the names
# in deployers/runtimes/ray_app.py (serve.run(name="reference"), class V2Model).
RAY_APP, RAY_DEPLOYMENT = "reference", "V2Model"
# Templates use $platform and $model (string.Template): PromQL needs the braces.
KSERVE_MODEL = 'platform="$platform",model_name="$model"'
MLSERVER_INFER = 'platform="$platform",path="/v2/models/{model_name}/infer",method="POST"'
RAY_INFER = f'platform="$platform",application="{RAY_APP}",route="/v2/models/{{name}}/infer",method="POST"'

# Seldon: every signal below reads MLServer's series. Locally MLServer is the whole platform; on kind each
# SeldonDeployment pod has two metrics sources, which its PodMonitor (manifests/seldon/podmonitor.yaml)
# scrapes as two endpoints of job "seldon", told apart by the `endpoint` and `container` labels.
MLSERVER_PREFIXES = ("rest_server_", "model_infer_", "batch_request_queue", "parallel_request_queue")
SELDON_SOURCES = {
    "local": {p: "MLServer 1.7.1 (its metrics port, /metrics)" for p in MLSERVER_PREFIXES},
    "kind": {**{p: 'MLServer 1.7.1 in the model container: <pod IP>:6000/prometheus (MLSERVER_METRICS_PORT/'
                   '_ENDPOINT, set by the operator but not declared), series labelled endpoint="mlserver-metrics", '
                   'container="<model name>"' for p in MLSERVER_PREFIXES},
             "seldon_api_executor_": 'Seldon Core v1.18.2 executor sidecar (seldon-container-engine): port metrics '
                                     '(8000) /prometheus, series labelled endpoint="metrics", '
                                     'container="seldon-container-engine"; the requests it forwards, timed from the '
                                     'executor (no signal above reads them)'},
}

CATALOGUE: dict[str, PlatformMetrics] = {
    "kserve": PlatformMetrics(signals={
        "requests_total": Signal(
            "sum(request_predict_seconds_count{%s})" % KSERVE_MODEL, ALL,
            "predict-step histogram count: observed for every request that reaches predict, also when it "
            "raises (KServe 0.20 has no request counter)"),
        "requests_ok": Signal(
            "sum(request_postprocess_seconds_count{%s})" % KSERVE_MODEL, OK,
            "derived: postprocess runs only after a successful predict"),
        "requests_failed": Signal(
            "sum(request_predict_seconds_count{%s}) - (sum(request_postprocess_seconds_count{%s}) or vector(0))"
            % (KSERVE_MODEL, KSERVE_MODEL), FAILED,
            "derived: predict observations minus postprocess observations; requests rejected before "
            "predict (bad JSON, unknown model) are counted nowhere"),
        "latency_histogram": Signal(
            'sum(request_predict_seconds_bucket{%s,le="+Inf"})' % KSERVE_MODEL, ALL,
            "request_{preprocess,predict,postprocess,explain}_seconds: per step, not end to end"),
        "status_codes": Signal(None, note="no HTTP status metric in KServe 0.20's ModelServer"),
        "queue_or_batch": Signal(None, note="no queue or batch metric in KServe 0.20's ModelServer"),
        "model_label": Signal("count(request_predict_seconds_count{%s})" % KSERVE_MODEL, note="model_name label"),
    }),
    "seldon": PlatformMetrics(signals={
        "requests_total": Signal("sum(rest_server_requests_total{%s})" % MLSERVER_INFER, ALL,
                                 "REST middleware counter; its path label is the route template, so it "
                                 "sums every model on the server"),
        "requests_ok": Signal('sum(model_infer_request_success_total{platform="$platform",model="$model"})', OK),
        "requests_failed": Signal('sum(model_infer_request_failure_total{platform="$platform",model="$model"})',
                                  FAILED),
        "latency_histogram": Signal('sum(rest_server_request_duration_seconds_bucket{%s,le="+Inf"})'
                                    % MLSERVER_INFER, ALL,
                                    "model_infer_request_duration is a summary (no buckets); the REST "
                                    "histogram has buckets"),
        "status_codes": Signal('sum(rest_server_requests_total{%s,status_code!~"2.."})' % MLSERVER_INFER, FAILED,
                               "status_code label on rest_server_requests_total"),
        "queue_or_batch": Signal('count({platform="$platform",'
                                 '__name__=~"batch_request_queue.*|parallel_request_queue.*"})',
                                 note="batch_request_queue exists only with adaptive batching (max_batch_size > 1), "
                                 "parallel_request_queue only with parallel workers; the testbed runs neither"),
        "model_label": Signal('count(model_infer_request_success_total{platform="$platform",model="$model"})',
                              note="model and version labels on model_infer_request_*"),
    }, sources=SELDON_SOURCES),
    "rayserve": PlatformMetrics(export_lag_s=10.0, signals={
        "requests_total": Signal("sum(ray_serve_num_http_requests_total{%s})" % RAY_INFER, ALL),
        "requests_ok": Signal('sum(ray_serve_num_http_requests_total{%s,status_code=~"2.."})' % RAY_INFER, OK),
        "requests_failed": Signal("sum(ray_serve_num_http_error_requests_total{%s})" % RAY_INFER, FAILED),
        "latency_histogram": Signal('sum(ray_serve_http_request_latency_ms_bucket{%s,le="+Inf"})' % RAY_INFER, ALL),
        "status_codes": Signal('sum(ray_serve_num_http_requests_total{%s,status_code!~"2.."})' % RAY_INFER, FAILED),
        "queue_or_batch": Signal('count(ray_serve_deployment_queued_queries{platform="$platform",'
                                 f'application="{RAY_APP}"}})',
                                 note="queued queries per deployment; ray_serve_batch_queue_length and "
                                 "ray_serve_actual_batch_size appear only with @serve.batch"),
        "model_label": Signal('count(ray_serve_deployment_request_counter_total{platform="$platform",'
                              f'application="{RAY_APP}",deployment="{RAY_DEPLOYMENT}"}})',
                              note="application/deployment labels; the model name itself is not a label"),
    }),
}


def render(signal: Signal, platform: str, model: str) -> str | None:
    if signal.query is None:
        return None
    return string.Template(signal.query).substitute(platform=platform, model=model)


# --- pure scoring ------------------------------------------------------------------------------
def expected_counts(answered_ok: int, answered_failed: int) -> dict[str, int]:
    """What each kind of count signal should have grown by. Only answered requests are expected: one
    that got no HTTP answer may or may not have reached the server (it is reported as no_answer)."""
    return {ALL: answered_ok + answered_failed, OK: answered_ok, FAILED: answered_failed}


def score(catalogue: PlatformMetrics, before: dict[str, float | None], after: dict[str, float | None],
          expected: dict[str, int], discovered: dict[str, dict] | None = None) -> dict:
    """Exposure and count accuracy per signal, from query values before and after the traffic.

    `before`/`after` map signal name -> the catalogue query's value (None: no series). A signal is exposed when
    a series of it was found and moved with the traffic: the catalogue's count query grew (count signals), or
    a series `discover` found moved (every signal). A count signal is exact when its growth equals the expected
    count of what it counts. The catalogue only points; nothing is exposed on its word alone."""
    discovered = discovered or {}
    per_signal = {}
    for name in SIGNALS:
        signal = catalogue.signals.get(name, Signal(None))
        value = after.get(name)
        found_by = discovered.get(name, {"found": [], "moved": []})
        entry = {"counts": signal.counts, "note": signal.note, "catalogue_query": signal.query is not None,
                 "found": (signal.query is not None and value is not None) or bool(found_by["found"]),
                 "discovered": found_by["found"][:5], "discovered_moving": found_by["moved"][:5]}
        moved = bool(found_by["moved"])
        if signal.counts and signal.query is not None and value is not None:
            observed = value - (before.get(name) or 0.0)
            entry.update(expected=expected[signal.counts], observed=observed,
                         exact=abs(observed - expected[signal.counts]) < 1e-9)
            moved = moved or observed > 0
        elif not signal.counts and signal.query is not None and value is not None and before.get(name) is not None:
            moved = moved or value != before.get(name)
        entry["moved"] = moved
        entry["exposed"] = entry["found"] and moved
        if entry["found"] and not moved:
            entry["note"] = (entry["note"] + "; " if entry["note"] else "") + "found in the scrape, did not move " \
                            "with the traffic sent"
        per_signal[name] = entry
    counted = [e for e in per_signal.values() if "exact" in e]
    exposed = sum(e["exposed"] for e in per_signal.values())
    scores = {
        "coverage": exposed / len(SIGNALS),
        "signals_exposed": exposed,
        "signals_found": sum(e["found"] for e in per_signal.values()),
        "count_signals": len(counted),
        "count_accuracy": (sum(e["exact"] for e in counted) / len(counted)) if counted else None,
        "max_count_error": max((abs(e["observed"] - e["expected"]) for e in counted), default=None),
    }
    verdict = "pass" if counted and all(e["exact"] for e in counted) else "fail"
    return {"signals": per_signal, "scores": scores, "verdict": verdict}


def counts_reached(catalogue: PlatformMetrics, before: dict, current: dict, expected: dict[str, int]) -> bool:
    """True once every exposed count signal has grown by at least its expected count."""
    for name, signal in catalogue.signals.items():
        if signal.counts and signal.query is not None:
            if current.get(name) is None or current[name] - (before.get(name) or 0.0) < expected[signal.counts]:
                return False
    return True


# --- discovery: what the scrape holds, whatever the catalogue says -----------------------------
STATUS_LABELS = ("code", "status", "status_code", "http_status", "response_code")
QUEUE_NAME = re.compile(r"queue|batch|pending|ongoing|in_flight|inflight|concurren", re.I)
LATENCY_NAME = re.compile(r"(latency|duration|seconds|_ms)[a-z_]*_bucket$", re.I)
REQUEST_NAME = re.compile(r"request.*(_total|_count)$", re.I)


def series_key(metric: dict) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{metric.get('__name__', '')}{{{labels}}}"


def snapshot(prometheus, platform: str) -> dict[str, tuple[dict, float]]:
    """Every series Prometheus holds for the platform's scrape: key -> (labels, value)."""
    rows = prometheus.query(f'{{platform="{platform}"}}')
    return {series_key(r["metric"]): (r["metric"], float(r["value"])) for r in rows if "value" in r}


def discover(before: dict, after: dict, model: str, bad_sent: int, quiet: dict | None = None) -> dict[str, dict]:
    """Per signal, series found by generic patterns and those among them that moved with the traffic:
    {signal: {"found": [keys], "moved": [keys]}}. Pure.

    `quiet` is a snapshot taken an idle interval before `before`: a series that changed while nothing was sent
    (Ray's GCS timings, process gauges) moves by itself, so its change during the traffic is no evidence."""
    out = {name: {"found": [], "moved": []} for name in SIGNALS}
    background = {k for k, (_, v) in (quiet or {}).items() if k in before and before[k][1] != v}

    def delta(key):
        if key in background:
            return 0.0
        return after[key][1] - (before[key][1] if key in before else 0.0)

    for key, (labels, value) in after.items():
        name = labels.get("__name__", "")
        if name.startswith(("testbed_", "up", "scrape_")):
            continue  # the testbed's own exporters and Prometheus' synthetic series
        grew = delta(key) > 0
        status = next((labels[k] for k in STATUS_LABELS if k in labels), None)
        if status is not None and not str(status).startswith("2"):
            out["status_codes"]["found"].append(key)
            if bad_sent and delta(key) >= 1:
                out["status_codes"]["moved"].append(key)
        if QUEUE_NAME.search(name):
            out["queue_or_batch"]["found"].append(key)
            if key not in background and (key not in before or before[key][1] != value):
                out["queue_or_batch"]["moved"].append(key)
        if model and any(v == model for k, v in labels.items() if k != "__name__"):
            out["model_label"]["found"].append(key)
            if grew:
                out["model_label"]["moved"].append(key)
        if LATENCY_NAME.search(name):
            out["latency_histogram"]["found"].append(key)
            if grew:
                out["latency_histogram"]["moved"].append(key)
        if REQUEST_NAME.search(name):
            out["requests_total"]["found"].append(key)
            if grew:
                out["requests_total"]["moved"].append(key)
    return out


# --- traffic -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrafficPlan:
    good: int = 20
    bad: int = 5
    seed: int = 0

    def validate(self) -> None:
        if self.good < 1 or self.bad < 1:
            raise TestbedError(f"The monitoring probe needs at least one good and one bad request "
                               f"(got {self.good} good, {self.bad} bad): with zero of either, a missing "
                               f"counter cannot be told from an absent one.")

    def requests(self, population: Population, n_features: int) -> list[tuple[str, dict]]:
        """[(kind, body)] in a seeded interleaved order; bad = a well-formed V2 body of the wrong width."""
        rng = np.random.default_rng(self.seed)
        rows, _ = population.sample(self.good, rng)
        good = [("good", v2.request_body(rows[i:i + 1], request_id=f"monitoring-{i}")) for i in range(self.good)]
        bad_width = max(1, n_features - 4)
        bad = [("bad", v2.request_body(rng.normal(size=(1, bad_width)), request_id=f"monitoring-bad-{i}"))
               for i in range(self.bad)]
        order = rng.permutation(len(good) + len(bad))
        both = good + bad
        return [both[i] for i in order]


def send(endpoint: Endpoint, requests: list[tuple[str, dict]], timeout_s: float = 10.0) -> dict:
    statuses: list[int | None] = []
    errors: list[str] = []
    with httpx.Client(timeout=timeout_s) as client:
        for i, (_, body) in enumerate(requests):
            try:
                statuses.append(client.post(endpoint.infer_url, json=body).status_code)
            except httpx.HTTPError as exc:
                statuses.append(None)
                errors.append(f"request {i}: {type(exc).__name__}: {exc}"[:200])
    kinds = [k for k, _ in requests]
    return {
        "sent": len(requests),
        "answered_ok": sum(1 for s in statuses if s is not None and 200 <= s < 300),
        "answered_failed": sum(1 for s in statuses if s is not None and not 200 <= s < 300),
        "no_answer": sum(1 for s in statuses if s is None),
        "good_sent": kinds.count("good"),
        "bad_sent": kinds.count("bad"),
        "status_by_kind": {k: sorted({str(s) for kk, s in zip(kinds, statuses) if kk == k}) for k in set(kinds)},
        "transport_errors": errors,
    }


# --- Prometheus I/O ----------------------------------------------------------------------------
def read(prometheus, queries: dict[str, str]) -> dict[str, float | None]:
    out = {}
    for name, q in queries.items():
        rows = prometheus.query(q)
        out[name] = float(rows[0]["value"]) if rows else None
    return out


def settle(prometheus, queries: dict[str, dict[str, str]], quiet_s: dict[str, float], timeout_s: float,
           poll_s: float) -> dict[str, dict]:
    """Query values once they have stopped changing for quiet_s per platform (earlier traffic scraped)."""
    started = time.monotonic()
    last = {p: read(prometheus, q) for p, q in queries.items()}
    stable_since = {p: started for p in queries}
    done: dict[str, dict] = {}
    while len(done) < len(queries):
        now = time.monotonic()
        for p in queries:
            if p in done:
                continue
            if now - stable_since[p] >= quiet_s[p] or now - started > timeout_s:
                done[p] = last[p]
        if len(done) == len(queries):
            break
        time.sleep(poll_s)
        for p, q in queries.items():
            if p not in done:
                current = read(prometheus, q)
                if current != last[p]:
                    last[p], stable_since[p] = current, time.monotonic()
    return done


def run(ctx: ProbeContext) -> list[Result]:
    plan = TrafficPlan(good=int(ctx.options.get("good", 20)), bad=int(ctx.options.get("bad", 5)), seed=ctx.seed)
    plan.validate()
    scrape_s = float(ctx.options.get("scrape_interval_s", 2.0))
    population = Population(ctx.artifact.metadata["recipe"]["seed"])
    model = ctx.artifact.name
    platforms = [p for p in ctx.endpoints if p in CATALOGUE]
    count_queries, all_queries = {}, {}
    for p in platforms:
        rendered = {n: render(s, p, model) for n, s in CATALOGUE[p].signals.items() if s.query is not None}
        all_queries[p] = rendered
        count_queries[p] = {n: q for n, q in rendered.items() if CATALOGUE[p].signals[n].counts}
    quiet = {p: CATALOGUE[p].export_lag_s + 2 * scrape_s for p in platforms}

    before = settle(ctx.prometheus, count_queries, quiet, timeout_s=60.0, poll_s=scrape_s / 2)
    # An idle interval as long as the wait for the traffic's scrape: what moves in it moves by itself.
    snaps_quiet = {p: snapshot(ctx.prometheus, p) for p in platforms}
    time.sleep(max(quiet.values(), default=0.0))
    before_all = {p: read(ctx.prometheus, all_queries[p]) for p in platforms}
    snaps_before = {p: snapshot(ctx.prometheus, p) for p in platforms}
    traffic, sent_at = {}, {}
    requests = plan.requests(population, len(ctx.artifact.feature_names))
    for p in platforms:
        traffic[p] = send(ctx.endpoints[p], requests)
        sent_at[p] = time.monotonic()

    expected = {p: expected_counts(t["answered_ok"], t["answered_failed"]) for p, t in traffic.items()}
    visible_after: dict[str, float | None] = {p: None for p in platforms}
    deadline = time.monotonic() + max(quiet.values(), default=0) + 30.0
    while time.monotonic() < deadline and any(v is None for v in visible_after.values()):
        for p in platforms:
            if visible_after[p] is None and counts_reached(CATALOGUE[p], before[p],
                                                            read(ctx.prometheus, count_queries[p]), expected[p]):
                visible_after[p] = round(time.monotonic() - sent_at[p], 2)
        time.sleep(scrape_s / 2)
    # Two more scrapes (plus Ray's export lag) so a late over-count shows up too.
    time.sleep(2 * scrape_s + max((CATALOGUE[p].export_lag_s for p in platforms), default=0))

    results = []
    for p in platforms:
        after = read(ctx.prometheus, all_queries[p])
        found = discover(snaps_before[p], snapshot(ctx.prometheus, p), model, traffic[p]["answered_failed"],
                         quiet=snaps_quiet[p])
        scored = score(CATALOGUE[p], {**before_all[p], **before[p]}, after, expected[p], found)
        results.append(Result(
            probe=PROBE, platform=p, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict=scored["verdict"], mechanism="native",
            scores={**scored["scores"], "visible_after_s": visible_after[p], "no_answer": traffic[p]["no_answer"]},
            measurements={"signals": scored["signals"], "traffic": traffic[p], "before": before[p], "after": after},
            evidence={"queries": all_queries[p], "seed": ctx.seed, "good": plan.good, "bad": plan.bad,
                      "bad_request": f"well-formed V2 body of width {max(1, len(ctx.artifact.feature_names) - 4)}",
                      "scrape_interval_s": scrape_s, "export_lag_s": CATALOGUE[p].export_lag_s,
                      "metrics_url": ctx.endpoints[p].metrics_url, "versions": ctx.versions.get(p, {}),
                      "series_sources": series_sources(CATALOGUE[p], ctx.backend),
                      "other_sources": {k: v for k, v in (CATALOGUE[p].sources.get(ctx.backend) or {}).items()
                                        if not any(k in q for q in all_queries[p].values())}},
            run_id=ctx.run_id, repeat=ctx.repeat))
    for p in ctx.endpoints:
        if p not in CATALOGUE:
            results.append(Result(probe=PROBE, platform=p, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
                                  verdict="unsupported", evidence={"reason": f"no metric catalogue for {p!r}"},
                                  run_id=ctx.run_id, repeat=ctx.repeat))
    return results
