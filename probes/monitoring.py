"""Monitoring: after a known traffic pattern, which signals each platform exposes in Prometheus,
and whether the counts Prometheus holds equal what was sent.

Each platform's metric catalogue (its module's PLATFORM.metrics, testbed.platforms.MetricsCatalogue)
says where to look: for each signal, the PromQL that answers it
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
from dataclasses import dataclass

import httpx
import numpy as np

from deployers import get_platform, protocol_of
from probes.context import ProbeContext
from testbed import v2
from testbed.endpoint import Endpoint
from testbed.errors import TestbedError
from testbed.platforms import ALL, FAILED, OK, MetricsCatalogue, Signal
from testbed.results import Result

PROBE = "monitoring"

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


def catalogue_of(platform: str) -> MetricsCatalogue | None:
    """The platform's metric catalogue (its module's PLATFORM.metrics); None when it has none."""
    return get_platform(platform).metrics


def series_sources(catalogue: MetricsCatalogue, backend: str) -> dict[str, list[str]]:
    """Signal -> the sources of the series its query reads, on `backend` ({} when the catalogue names none)."""
    known = catalogue.sources.get(backend) or {}
    return {name: sorted({source for prefix, source in known.items() if prefix in signal.query})
            for name, signal in catalogue.signals.items() if signal.query is not None and known}


def render(signal: Signal, platform: str, model: str) -> str | None:
    if signal.query is None:
        return None
    return string.Template(signal.query).substitute(platform=platform, model=model)


# --- pure scoring ------------------------------------------------------------------------------
def expected_counts(answered_ok: int, answered_failed: int) -> dict[str, int]:
    """What each kind of count signal should have grown by. Only answered requests are expected: one
    that got no HTTP answer may or may not have reached the server (it is reported as no_answer)."""
    return {ALL: answered_ok + answered_failed, OK: answered_ok, FAILED: answered_failed}


def score(catalogue: MetricsCatalogue, before: dict[str, float | None], after: dict[str, float | None],
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


def counts_reached(catalogue: MetricsCatalogue, before: dict, current: dict, expected: dict[str, int]) -> bool:
    """True once every exposed count signal has grown by at least its expected count."""
    for name, signal in catalogue.signals.items():
        if signal.counts and signal.query is not None:
            if current.get(name) is None or current[name] - (before.get(name) or 0.0) < expected[signal.counts]:
                return False
    return True


# --- discovery: what the scrape holds, whatever the catalogue says -----------------------------
STATUS_LABELS = ("code", "status", "status_code", "http_status", "response_code", "http_response_code")
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

    def requests(self, population, n_features: int, wire=None) -> list[tuple[str, dict]]:
        """[(kind, body)] in a seeded interleaved order; bad = a well-formed V2 body of the wrong width."""
        rng = np.random.default_rng(self.seed)
        rows, _ = population.sample(self.good, rng)
        good = [("good", v2.request_body(rows[i:i + 1], request_id=f"monitoring-{i}", wire=wire))
                for i in range(self.good)]
        bad_width = max(1, n_features - 4)
        bad = [("bad", v2.request_body(rng.normal(size=(1, bad_width)), request_id=f"monitoring-bad-{i}"))
               for i in range(self.bad)]
        order = rng.permutation(len(good) + len(bad))
        both = good + bad
        return [both[i] for i in order]


def send(endpoint: Endpoint, requests: list[tuple[str, dict]], timeout_s: float = 10.0) -> dict:
    """The traffic, through the platform's protocol (a client-side adapter converts each body)."""
    protocol = protocol_of(endpoint)
    url = protocol.infer_url(endpoint)
    statuses: list[int | None] = []
    errors: list[str] = []
    with httpx.Client(timeout=timeout_s) as client:
        for i, (_, body) in enumerate(requests):
            try:
                statuses.append(protocol.post(client, url, body).status_code)
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
    population = ctx.artifact.data_source()  # rows like the training data (a user's: held-out rows)
    model = ctx.artifact.name
    catalogues = {p: catalogue_of(p) for p in ctx.endpoints}
    platforms = [p for p in ctx.endpoints if catalogues[p] is not None]
    count_queries, all_queries = {}, {}
    for p in platforms:
        rendered = {n: render(s, p, model) for n, s in catalogues[p].signals.items() if s.query is not None}
        all_queries[p] = rendered
        count_queries[p] = {n: q for n, q in rendered.items() if catalogues[p].signals[n].counts}
    quiet = {p: catalogues[p].export_lag_s + 2 * scrape_s for p in platforms}

    before = settle(ctx.prometheus, count_queries, quiet, timeout_s=60.0, poll_s=scrape_s / 2)
    # An idle interval as long as the wait for the traffic's scrape: what moves in it moves by itself.
    snaps_quiet = {p: snapshot(ctx.prometheus, p) for p in platforms}
    time.sleep(max(quiet.values(), default=0.0))
    before_all = {p: read(ctx.prometheus, all_queries[p]) for p in platforms}
    snaps_before = {p: snapshot(ctx.prometheus, p) for p in platforms}
    traffic, sent_at = {}, {}
    requests = plan.requests(population, len(ctx.artifact.feature_names), v2.wire_for(ctx.artifact))
    for p in platforms:
        traffic[p] = send(ctx.endpoints[p], requests)
        sent_at[p] = time.monotonic()

    expected = {p: expected_counts(t["answered_ok"], t["answered_failed"]) for p, t in traffic.items()}
    visible_after: dict[str, float | None] = {p: None for p in platforms}
    deadline = time.monotonic() + max(quiet.values(), default=0) + 30.0
    while time.monotonic() < deadline and any(v is None for v in visible_after.values()):
        for p in platforms:
            if visible_after[p] is None and counts_reached(catalogues[p], before[p],
                                                            read(ctx.prometheus, count_queries[p]), expected[p]):
                visible_after[p] = round(time.monotonic() - sent_at[p], 2)
        time.sleep(scrape_s / 2)
    # Two more scrapes (plus Ray's export lag) so a late over-count shows up too.
    time.sleep(2 * scrape_s + max((catalogues[p].export_lag_s for p in platforms), default=0))

    results = []
    for p in platforms:
        after = read(ctx.prometheus, all_queries[p])
        found = discover(snaps_before[p], snapshot(ctx.prometheus, p), model, traffic[p]["answered_failed"],
                         quiet=snaps_quiet[p])
        scored = score(catalogues[p], {**before_all[p], **before[p]}, after, expected[p], found)
        results.append(Result(
            probe=PROBE, platform=p, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            # The platform's own metrics, or none at all (no metrics endpoint: nothing it exposes is counted).
            verdict=scored["verdict"], mechanism="native" if ctx.endpoints[p].metrics_url else "none",
            scores={**scored["scores"], "visible_after_s": visible_after[p], "no_answer": traffic[p]["no_answer"]},
            measurements={"signals": scored["signals"], "traffic": traffic[p], "before": before[p], "after": after},
            evidence={"queries": all_queries[p], "seed": ctx.seed, "good": plan.good, "bad": plan.bad,
                      "bad_request": f"well-formed V2 body of width {max(1, len(ctx.artifact.feature_names) - 4)}",
                      "protocol": protocol_of(ctx.endpoints[p]).describe(),
                      **({} if ctx.endpoints[p].metrics_url else {
                          "no_metrics_endpoint": "the platform exposes no metrics (its Endpoint has no metrics_url): "
                                                 "nothing to scrape, every signal is absent"}),
                      "scrape_interval_s": scrape_s, "export_lag_s": catalogues[p].export_lag_s,
                      "metrics_url": ctx.endpoints[p].metrics_url, "versions": ctx.versions.get(p, {}),
                      "series_sources": series_sources(catalogues[p], ctx.backend),
                      "other_sources": {k: v for k, v in (catalogues[p].sources.get(ctx.backend) or {}).items()
                                        if not any(k in q for q in all_queries[p].values())}},
            run_id=ctx.run_id, repeat=ctx.repeat))
    for p in ctx.endpoints:
        if catalogues[p] is None:
            results.append(Result(probe=PROBE, platform=p, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
                                  verdict="unsupported", evidence={"reason": f"no metric catalogue for {p!r}"},
                                  run_id=ctx.run_id, repeat=ctx.repeat))
    return results
