"""Detection under load: what each platform's detection path delivers when traffic is concurrent and open loop.

The drift and outlier probes send one request at a time, which makes every platform's numbers those of the
shared detector. This probe measures what the platform adds. For each request size (rows per request) it
measures the detection path's capacity (closed loop), then, at fractions of that capacity, sends two streams
open loop and interleaved: a control stream, and a drift stream (mean shift of 1.5 sd from its middle row),
every request named by its stream and first row. It then reads the verdict log and reports:

- rows lost: rows the platform answered 200 for that no outlier verdict covers (the detector never saw them);
- verdicts missing: requests answered 200 without an outlier verdict; verdicts for requests that failed;
- window semantics: rows per drift window as measured (a path that counts requests, not rows, cuts windows of
  a different size per request size) and windows mixing the two streams;
- verdict delay in seconds: from a request's send to its outlier verdict's receipt, and from the onset request
  to the first alarm on a window holding drifted rows;
- inference p50/p99 with the detection path and without it (the plain inference route), same schedule.

Intervals: shares are Clopper-Pearson; latency percentiles carry the exact order-statistic bootstrap of
testbed/loadgen/stats.py. Options (ctx.options): sizes [1, 7, 20, 100], factors [0.5, 1, 2], duration_s 4,
workers 48, capacity_s 2, verdict_wait_s 30. Nothing here is keyed by platform: everything comes from the
Endpoint's detection path.
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np

from deployers import protocol_of
from probes import detection_io as dio
from probes import scoring, stats
from probes.context import ProbeContext
from probes.scenarios import control_stream, drift_stream
from testbed import v2
from testbed.loadgen import LoadSpec, run_load
from testbed.loadgen import stats as lstats
from testbed.population import Population
from testbed.results import Result

PROBE = "detection-load"
DRIFT, CONTROL = "drift", "control"


def options(ctx: ProbeContext) -> dict:
    o = ctx.options or {}
    return {"sizes": [int(x) for x in o.get("sizes", (1, 7, 20, 100))],
            "factors": [float(x) for x in o.get("factors", (0.5, 1.0, 2.0))],
            "duration_s": float(o.get("duration_s", 4.0)), "workers": int(o.get("workers", 48)),
            "capacity_s": float(o.get("capacity_s", 2.0)), "verdict_wait_s": float(o.get("verdict_wait_s", 30.0)),
            "max_requests": int(o.get("max_requests", 2000)), "timeout_s": float(o.get("timeout_s", 10.0))}


# --- open-loop sending with a body per request --------------------------------------------------
def open_loop(url: str, bodies: list[tuple[str, bytes]], rate: float, workers: int, timeout_s: float) -> list[dict]:
    """Send bodies[i] when it is due (i / rate after start), from `workers` threads; one record per request:
    {"id", "due", "sent", "done" (wall clock), "status" (HTTP code or error name)}. A request whose worker was
    busy leaves late: its lateness is in sent - due and its latency is counted from `due` (open loop)."""
    records: list[dict | None] = [None] * len(bodies)
    n_workers = max(1, min(workers, len(bodies)))
    # Clients are made before the clock starts: an httpx.Client costs tens of ms (an SSL context), which made
    # the first requests seconds late when each worker built its own on the way.
    clients = [httpx.Client(timeout=timeout_s, headers={"content-type": "application/json"}) for _ in range(n_workers)]
    start = time.time() + 0.2
    counter = iter(range(len(bodies)))
    lock = threading.Lock()

    def worker(client):
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            due = start + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            rid, body = bodies[i]
            sent = time.time()
            try:
                status = client.post(url, content=body).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            records[i] = {"id": rid, "due": due, "sent": sent, "done": time.time(), "status": status}

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in clients:
            c.close()
    return [r for r in records if r is not None]


def _json_bytes(body: dict) -> bytes:
    import json

    return json.dumps(body).encode()


def interleaved_requests(population: Population, size: int, n_requests: int, seed_parts: tuple,
                         tag: str, encode=_json_bytes) -> tuple[list[tuple[str, bytes]], dict, dict]:
    """Alternating requests of a control stream and a drift stream (mean shift 1.5 sd from its middle row).
    Returns (bodies, rows per stream, onsets); `encode` turns each V2 request into the bytes sent (the
    platform's protocol at the route they go to)."""

    per_stream = max(1, n_requests // 2)
    n_rows = per_stream * size
    onset = (per_stream // 2) * size
    streams = {CONTROL: control_stream(population, n_rows, seed=stats.derive_seed(*seed_parts, CONTROL)).rows,
               DRIFT: drift_stream(population, "mean_shift", 1.5, n=n_rows, onset=max(1, onset),
                                   seed=stats.derive_seed(*seed_parts, DRIFT)).rows}
    bodies = []
    for j in range(per_stream):
        for name in (CONTROL, DRIFT):
            start = j * size
            rid = scoring.request_id(tag, name, start)
            bodies.append((rid, encode(v2.request_body(streams[name][start:start + size], request_id=rid))))
    return bodies, streams, {CONTROL: None, DRIFT: max(1, onset)}


# --- pure scoring ------------------------------------------------------------------------------------
def score_cell(sent: list[dict], verdicts: list[dict], tag: str, size: int, onsets: dict, without: list[dict]) -> dict:
    """Scores of one (size, rate) cell from the request records and the verdict log. Pure."""
    ok = {r["id"]: r for r in sent if r["status"] == 200}
    failed = {r["id"] for r in sent if r["status"] != 200}
    outlier = {}
    for v in verdicts:
        if v["kind"] == "outlier" and scoring.parse_request_id(v.get("request_id"), tag) is not None:
            outlier.setdefault(v["request_id"], v)
    rows_ok = size * len(ok)
    covered = sum(len(outlier[rid]["flags"]) for rid in ok if rid in outlier)
    missing = [rid for rid in ok if rid not in outlier]
    windows = [scoring.locate(v, tag) for v in verdicts if v["kind"] == "drift"]
    wrows = [int(v.get("rows") or 0) for v in verdicts if v["kind"] == "drift"]
    mixing = sum(scoring.mixes_streams(w) for w in windows)
    delays = [outlier[rid]["received"] - ok[rid]["sent"] for rid in ok if rid in outlier and "received" in outlier[rid]]
    onset_delay = None
    onset = onsets.get(DRIFT)
    if onset is not None:
        onset_rid = scoring.request_id(tag, DRIFT, (onset // size) * size)
        t_onset = (ok.get(onset_rid) or {}).get("sent")
        post = sorted((w for w in windows if DRIFT in w.rows and w.rows[DRIFT][1] >= onset and w.is_drift),
                      key=lambda w: w.index)
        alarm = next((v for v in verdicts if v["kind"] == "drift" and post and v["window"] == post[0].index), None)
        if alarm is not None and t_onset is not None:
            onset_delay = float(alarm.get("received", alarm["time"]) - t_onset)
    lost = stats.clopper_pearson(max(0, rows_ok - covered), rows_ok) if rows_ok else stats.clopper_pearson(0, 0)
    mix = stats.clopper_pearson(mixing, len(windows))
    out = {
        "requests_sent": len(sent), "requests_ok": len(ok), "requests_failed": len(failed),
        "rows_ok": rows_ok, "rows_lost": max(0, rows_ok - covered), "rows_lost_share": lost.rate,
        "rows_lost_lo": lost.lo, "rows_lost_hi": lost.hi,
        "verdicts_missing": len(missing), "verdicts_for_failed_requests": sum(1 for rid in failed if rid in outlier),
        "drift_windows": len(windows), "windows_mixing_streams": mixing, "mixing_share": mix.rate,
        "mixing_lo": mix.lo, "mixing_hi": mix.hi,
        "window_rows_median": float(np.median(wrows)) if wrows else None,
        "window_rows_min": min(wrows) if wrows else None, "window_rows_max": max(wrows) if wrows else None,
        "verdict_delay_p50_s": lstats.percentile(delays, 50) if delays else None,
        "verdict_delay_p99_s": lstats.percentile(delays, 99) if delays else None,
        "verdict_delay_p50_s_ci": list(lstats.percentile_ci(delays, 50)) if len(delays) > 1 else None,
        "verdict_delay_p99_s_ci": list(lstats.percentile_ci(delays, 99)) if len(delays) > 1 else None,
        "verdicts_timed": len(delays),
        "drift_alarm_delay_s": onset_delay, "interval_method": stats.CLOPPER_PEARSON,
        "send_lag_p99_s": lstats.percentile([r["sent"] - r["due"] for r in sent], 99) if sent else None,
    }
    for name, recs in (("with_detection", sent), ("without_detection", without)):
        lat = [r["done"] - r["due"] for r in recs if r["status"] == 200]
        if lat:
            for q in (50, 99):
                lo, hi = lstats.percentile_ci(lat, q)
                out[f"{name}_p{q}_ms"] = lstats.percentile(lat, q) * 1e3
                out[f"{name}_p{q}_ms_ci"] = [lo * 1e3, hi * 1e3]
        out[f"{name}_ok"] = len(lat)
    return out


# --- I/O -----------------------------------------------------------------------------------------
def collect(verdicts_url: str, since: int, tag: str, expected: int, timeout_s: float,
            stall_s: float = 8.0) -> tuple[list[dict], float]:
    """This cell's verdicts once every answered request has its outlier verdict, or when none arrived for
    `stall_s` (a path that dropped some will not deliver them later), or at `timeout_s`."""
    started = last_change = time.monotonic()
    count = -1
    while True:
        records = [r for r in dio.fetch_verdicts(verdicts_url, since) if dio._ours(r, tag)]
        have = sum(1 for r in records if r["kind"] == "outlier")
        now = time.monotonic()
        if have != count:
            count, last_change = have, now
        if have >= expected or now - last_change > stall_s or now - started > timeout_s:
            return records, now - started
        time.sleep(0.5)


def capacity(url: str, body: bytes, seconds: float, timeout_s: float) -> float:
    run = run_load(LoadSpec(url=url, method="POST", body=body, concurrency=4, duration_s=seconds,
                            timeout_s=timeout_s, threads=1))
    ok = run.ok & (run.records["done_ns"] <= run.engine["window_ns"])
    return float(ok.sum()) / run.window_s


def measure(ctx: ProbeContext, endpoint) -> Result:
    opt = options(ctx)
    protocol = protocol_of(endpoint)
    plain = protocol.request_bytes  # the platform's own route

    def detected(body: dict) -> bytes:  # its detection path
        return protocol.request_bytes(body, detected=True)

    result, path, tag = dio.open_result(ctx, endpoint, PROBE, "drift", {"options": opt})
    if path is None:
        return result
    population = Population(ctx.artifact.metadata["recipe"]["seed"])
    cells, capacities = [], {}
    try:
        for size in opt["sizes"]:
            probe_rows = control_stream(population, size, seed=stats.derive_seed(ctx.seed, ctx.repeat, "cap", size)).rows
            body = detected(v2.request_body(probe_rows))
            capacities[size] = capacity(path["url"], body, opt["capacity_s"], opt["timeout_s"])
            for factor in opt["factors"]:
                rate = max(1.0, factor * capacities[size])
                n = int(min(opt["max_requests"], max(20, rate * opt["duration_s"])))
                cell_tag = f"{tag}-s{size}-f{factor:g}"
                parts = (ctx.seed, ctx.repeat, size, factor)
                bodies, _, onsets = interleaved_requests(population, size, n, parts, cell_tag, detected)
                plain_bodies, _, _ = interleaved_requests(population, size, n, parts, cell_tag, plain)
                # Without first: the detection path's verdicts may still be computed after its load ends, and
                # that work must not land in the plain route's latencies (collect waits for it below).
                without = open_loop(protocol.infer_url(endpoint), plain_bodies, rate, opt["workers"], opt["timeout_s"])
                since = dio.last_seq(path["verdicts_url"])
                sent = open_loop(path["url"], bodies, rate, opt["workers"], opt["timeout_s"])
                expected = sum(1 for r in sent if r["status"] == 200)
                verdicts, waited = collect(path["verdicts_url"], since, cell_tag, expected, opt["verdict_wait_s"])
                scored = score_cell(sent, verdicts, cell_tag, size, onsets, without)
                cells.append({"size": size, "factor": factor, "rate": rate, "capacity": capacities[size],
                              "verdict_wait_s": round(waited, 2), **scored})
        result.scores = summary(cells)
        result.measurements = {"cells": cells, "capacity_per_size": capacities}
        result.verdict = "measured"
    except Exception as exc:  # noqa: BLE001 - a failing cell must not lose the cells measured so far
        result.evidence["error"] = dio.error_text(exc)
        result.measurements = {"cells": cells, "capacity_per_size": capacities}
        result.verdict = "error"
    result.finished_at = time.time()
    return result


def summary(cells: list[dict]) -> dict:
    """Flat scores for tables: totals over cells and the worst cell, per measure."""
    if not cells:
        return {}
    rows_ok = sum(c["rows_ok"] for c in cells)
    lost = sum(c["rows_lost"] for c in cells)
    r = stats.clopper_pearson(lost, rows_ok) if rows_ok else stats.clopper_pearson(0, 0)
    windows = sum(c["drift_windows"] for c in cells)
    mix = stats.clopper_pearson(sum(c["windows_mixing_streams"] for c in cells), windows)
    return {"rows_lost_share": r.rate, "rows_lost_lo": r.lo, "rows_lost_hi": r.hi, "rows_ok": rows_ok,
            "verdicts_missing": sum(c["verdicts_missing"] for c in cells),
            "windows_mixing_share": mix.rate, "windows_mixing_lo": mix.lo, "windows_mixing_hi": mix.hi,
            "drift_windows": windows,
            "window_rows_by_size": {str(c["size"]): c["window_rows_median"] for c in cells},
            "worst_verdict_delay_p99_s": max((c["verdict_delay_p99_s"] or 0) for c in cells),
            "cells": len(cells), "interval_method": stats.CLOPPER_PEARSON}


def run(ctx: ProbeContext) -> list[Result]:
    ctx.artifact.require_own("The detection-under-load experiment")
    return [measure(ctx, endpoint) for endpoint in ctx.endpoints.values()]


# --- detector outage at a drift onset ----------------------------------------------------------------
OUTAGE_PROBE = "detector-outage-onset"


def score_outage(sent: list[dict], verdicts: list[dict], tag: str, size: int, onset: int, down: float,
                 up: float) -> dict:
    """Pure: what the platform answered while the detector was down, what the detector never saw, and whether
    the drift that began during the outage was still alarmed afterwards (and how late)."""
    during = [r for r in sent if down <= r["sent"] <= up]
    statuses: dict[str, int] = {}
    for r in during:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    cell = score_cell(sent, verdicts, tag, size, {CONTROL: None, DRIFT: onset}, without=[])
    seen = {v["request_id"] for v in verdicts if v["kind"] == "outlier"}
    ok_during = [r for r in during if r["status"] == 200]
    lost_during = sum(1 for r in ok_during if r["id"] not in seen)
    windows = [scoring.locate(v, tag) for v in verdicts if v["kind"] == "drift"]
    post = [w for w in windows if DRIFT in w.rows and w.rows[DRIFT][1] >= onset]
    lost = stats.clopper_pearson(lost_during, len(ok_during)) if ok_during else stats.clopper_pearson(0, 0)
    return {"requests_during_outage": len(during), "statuses_during_outage": statuses,
            "inference_ok_during_outage": len(ok_during) / len(during) if during else None,
            "requests_unseen_during_outage": lost_during, "unseen_share": lost.rate, "unseen_lo": lost.lo,
            "unseen_hi": lost.hi, "rows_lost": cell["rows_lost"], "verdicts_missing": cell["verdicts_missing"],
            "post_onset_windows": len(post), "alarmed_after_onset": any(w.is_drift for w in post),
            "drift_alarm_delay_s": cell["drift_alarm_delay_s"], "unavailable_s": round(up - down, 3),
            "interval_method": stats.CLOPPER_PEARSON}


def outage_at_onset(ctx: ProbeContext, endpoint, faults, rate: float = 10.0, n_requests: int = 80,
                    size: int = 20, outage_s: float = 3.0, tail_requests: int = 40) -> Result:
    """A drift stream at `rate` requests/s; the detector is taken down (the backend's fault: testbed.faults)
    as the onset request is due and brought back `outage_s` later. Once it is back (restarting takes its
    own time, during which the stream goes on), `tail_requests` more drifted requests follow: does the
    restarted path alarm, and how long after the onset request was sent?"""
    protocol = protocol_of(endpoint)
    result, path, tag = dio.open_result(ctx, endpoint, OUTAGE_PROBE, "drift",
                                        {"rate": rate, "requests": n_requests, "size": size, "outage_s": outage_s})
    if path is None:
        return result
    population = Population(ctx.artifact.metadata["recipe"]["seed"])
    onset = (n_requests // 2) * size
    rows = drift_stream(population, "mean_shift", 1.5, n=(n_requests + tail_requests) * size, onset=onset,
                        seed=stats.derive_seed(ctx.seed, ctx.repeat, "outage-onset")).rows
    all_bodies = [(scoring.request_id(tag, DRIFT, i * size),
                   protocol.request_bytes(v2.request_body(rows[i * size:(i + 1) * size], request_id=scoring.request_id(
                       tag, DRIFT, i * size)), detected=True)) for i in range(n_requests + tail_requests)]
    bodies, tail = all_bodies[:n_requests], all_bodies[n_requests:]
    target = faults.detector_target(endpoint.platform, endpoint)
    since = dio.last_seq(path["verdicts_url"])
    box: dict = {}
    sender = threading.Thread(target=lambda: box.update(sent=open_loop(path["url"], bodies, rate, 4, 10.0)))
    t0 = time.time()
    sender.start()
    time.sleep(max(0.0, 0.2 + (onset // size) / rate - (time.time() - t0) - 0.05))
    # The service keeps its verdict log in memory: read it just before the fault, or those verdicts are gone too.
    before = [r for r in dio.fetch_verdicts(path["verdicts_url"], since) if dio._ours(r, tag)]
    down = time.time()
    faults.stop_detector(target)
    time.sleep(outage_s)
    up = time.time()
    restart_s = faults.start_detector(target, 120.0)
    back = time.time()  # the detector answers again: requests between `down` and here had nothing to reach
    sender.join()
    sent = (box.get("sent") or []) + open_loop(path["url"], tail, rate, 4, 10.0)
    # The restarted service's log starts empty: what it holds now plus what was read before the fault.
    after, _ = collect(path["verdicts_url"], 0, tag, sum(r["status"] == 200 for r in sent) - len(before), 30.0)
    seen = {(r["kind"], r.get("request_id"), r.get("window")) for r in before}
    verdicts = before + [r for r in after if (r["kind"], r.get("request_id"), r.get("window")) not in seen]
    result.scores = {**score_outage(sent, verdicts, tag, size, onset, down, back),
                     "service_restart_s": round(restart_s, 2), "commanded_outage_s": round(up - down, 3)}
    result.measurements = {"requests": [{**r, "due": round(r["due"] - down, 3), "sent": round(r["sent"] - down, 3),
                                         "done": round(r["done"] - down, 3)} for r in sent]}
    result.evidence.update({"since_seq": since, "fault": target.description, "onset_row": onset,
                            "note": "times relative to the detector going down"})
    result.verdict = "alarmed" if result.scores["alarmed_after_onset"] else "drift missed"
    result.finished_at = time.time()
    return result


def run_outage(ctx: ProbeContext) -> list[Result]:
    ctx.artifact.require_own("The detector-outage-at-onset experiment")
    from probes.fault_io import faults_for

    faults = faults_for(ctx)
    return [outage_at_onset(ctx, endpoint, faults) for endpoint in ctx.endpoints.values()]
