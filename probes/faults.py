"""Pure scoring of fault probes (kill, overload, detector outage) over load-generator timelines.

A timeline is the load generator's per-request records (testbed.loadgen.RECORD_DTYPE: intended,
sent and done times in ns from the engine's start, HTTP status, engine error code). Every request
is put in exactly one class (ok, http_error, timeout, transport_error, not_sent) and the counts
must add up to the number of records: nothing is dropped from the statistics. No I/O here.
"""

from __future__ import annotations

import numpy as np

from testbed.loadgen.engine import ERRORS

TIMEOUT, NOT_SENT = 3, 5
"""Engine error codes (testbed/loadgen/engine.py ERRORS)."""


def classes(records: np.ndarray) -> np.ndarray:
    """One class name per request."""
    err, status = records["error"], records["status"]
    out = np.full(records.size, "transport_error", dtype=object)
    out[(err == 0) & (status >= 200) & (status < 300)] = "ok"
    out[(err == 0) & ~((status >= 200) & (status < 300))] = "http_error"
    out[err == TIMEOUT] = "timeout"
    out[err == NOT_SENT] = "not_sent"
    return out


def account(records: np.ndarray) -> dict:
    """Counts per class and per engine error kind; `consistent` when the classes add up to the total."""
    cls = classes(records)
    counts = {c: int(np.count_nonzero(cls == c)) for c in ("ok", "http_error", "timeout", "transport_error",
                                                          "not_sent")}
    kinds = {ERRORS.get(int(e), str(int(e))): int(n)
             for e, n in zip(*np.unique(records["error"][records["error"] != 0], return_counts=True))}
    statuses = {str(int(s)): int(n)
                for s, n in zip(*np.unique(records["status"][records["error"] == 0], return_counts=True))}
    finished = records["done_ns"] >= 0
    return {"requests": int(records.size), **counts, "error_kinds": kinds, "status_counts": statuses,
            "unfinished": int(np.count_nonzero(~finished & (records["error"] != NOT_SENT))),
            "consistent": sum(counts.values()) == records.size}


def timeline(records: np.ndarray, origin_ns: int = 0) -> dict:
    """The raw timeline as JSON columns (ms from origin_ns; -1 ms stays 'never' as null)."""
    def ms(col):
        v = records[col]
        return [None if x < 0 else round((int(x) - origin_ns) / 1e6, 3) for x in v]

    return {"origin": "kill" if origin_ns else "load start", "intended_ms": ms("intended_ns"), "sent_ms": ms("sent_ns"),
            "done_ms": ms("done_ns"), "status": records["status"].astype(int).tolist(),
            "error": records["error"].astype(int).tolist(), "class": classes(records).tolist()}


def _ok(records: np.ndarray) -> np.ndarray:
    return (records["error"] == 0) & (records["status"] >= 200) & (records["status"] < 300)


def score_kill(records: np.ndarray, kill_ns: int, end_ns: int | None = None) -> dict:
    """Time to the first success after a kill, and what was lost.

    first_success_s: the first 2xx answer to a request SENT after the kill (an answer to a request
    already in flight may come from a process the kill did not reach). lost: requests that did
    not succeed among those due at or after the kill, plus those in flight at the kill that failed.
    """
    acc = account(records)
    ok = _ok(records)
    due_after = records["intended_ns"] >= kill_ns
    in_flight = (records["sent_ns"] >= 0) & (records["sent_ns"] < kill_ns) & \
        ((records["done_ns"] < 0) | (records["done_ns"] >= kill_ns))
    before = ~due_after & ~in_flight
    sent_after_ok = ok & (records["sent_ns"] >= kill_ns)
    first = float((records["done_ns"][sent_after_ok].min() - kill_ns) / 1e9) if sent_after_ok.any() else None
    after_recovery = due_after & (records["intended_ns"] >= kill_ns + (first or 0) * 1e9) if first is not None \
        else np.zeros(records.size, bool)
    n_after = int(np.count_nonzero(after_recovery))
    end = end_ns if end_ns is not None else int(records["intended_ns"].max()) if records.size else kill_ns
    return {
        **{f"requests_{k}": v for k, v in acc.items() if k in ("ok", "http_error", "timeout", "transport_error",
                                                               "not_sent")},
        "requests": acc["requests"],
        "consistent": acc["consistent"],
        "ok_before_kill": int(np.count_nonzero(ok & before)),
        "failed_before_kill": int(np.count_nonzero(~ok & before)),
        "in_flight_at_kill": int(np.count_nonzero(in_flight)),
        "in_flight_failed": int(np.count_nonzero(in_flight & ~ok)),
        "requests_lost": int(np.count_nonzero(~ok & (due_after | in_flight))),
        "first_success_s": first,
        "recovered": first is not None,
        "observed_s": round((end - kill_ns) / 1e9, 3),
        "error_rate_after_recovery": (int(np.count_nonzero(after_recovery & ~ok)) / n_after) if n_after else None,
    }


def score_overload(baseline: np.ndarray, overload: np.ndarray, capacity_rps: float, rate: float,
                   overload_window_s: float, recovery_s: float | None, open_loop: bool = True) -> dict:
    """Error rate, latency growth, shed vs queue, and the time back to baseline latency.

    Latency is from when a request was due (open loop: client queueing counts, as a user sees it).
    sheds: >= 5% of requests refused fast (an HTTP error answered within 2x the baseline p99).
    queues: the latency of successful requests grows over the overload (last quarter's median
    >= 3x the first quarter's) or its p99 is >= 10x the baseline p99.
    """
    def lat(r):
        start = r["intended_ns"] if open_loop else np.where(r["sent_ns"] >= 0, r["sent_ns"], r["intended_ns"])
        return (r["done_ns"] - start) / 1e9

    b_ok = _ok(baseline)
    if not b_ok.any():
        raise ValueError("the baseline run has no successful request: no baseline latency")
    b_lat = lat(baseline)[b_ok]
    base_p50, base_p99 = float(np.percentile(b_lat, 50)), float(np.percentile(b_lat, 99))
    acc = account(overload)
    ok = _ok(overload)
    o_lat = lat(overload)
    finished = overload["done_ns"] >= 0
    fast_refusals = (overload["error"] == 0) & ~ok & (o_lat <= max(2 * base_p99, 0.005))
    n = max(int(overload.size), 1)
    n_sent = int(np.count_nonzero(overload["error"] != NOT_SENT))
    ok_lat = o_lat[ok]
    p50 = float(np.percentile(ok_lat, 50)) if ok_lat.size else None
    p99 = float(np.percentile(o_lat[finished], 99)) if finished.any() else None
    growth = None
    if ok.sum() >= 8:
        order = np.argsort(overload["intended_ns"][ok])
        q = max(len(order) // 4, 1)
        first_q, last_q = np.median(ok_lat[order[:q]]), np.median(ok_lat[order[-q:]])
        growth = float(last_q / first_q) if first_q > 0 else None
    sheds = np.count_nonzero(fast_refusals) / n >= 0.05
    queues = bool((growth is not None and growth >= 3) or (p99 is not None and p99 >= 10 * base_p99))
    done_ok_in_window = ok & (overload["done_ns"] <= overload_window_s * 1e9)
    return {
        **{f"requests_{k}": v for k, v in acc.items() if k in ("ok", "http_error", "timeout", "transport_error",
                                                               "not_sent")},
        "requests": acc["requests"], "consistent": acc["consistent"],
        "capacity_rps": capacity_rps, "offered_rps": rate, "overload_factor": rate / capacity_rps if capacity_rps else None,
        "goodput_rps": int(np.count_nonzero(done_ok_in_window)) / overload_window_s,
        # Requests the client could not send (all `connections` busy: the server held them) are not
        # errors of the server; they are the queue beyond the client's connection cap.
        "error_rate": (n_sent - int(ok.sum())) / n_sent if n_sent else None,
        "unsent_fraction": acc["not_sent"] / n,
        "fast_refusals": int(np.count_nonzero(fast_refusals)),
        "baseline_p50_s": base_p50, "baseline_p99_s": base_p99,
        "overload_p50_ok_s": p50, "overload_p99_s": p99,
        "latency_growth_p99": (p99 / base_p99) if p99 is not None and base_p99 > 0 else None,
        "latency_trend": growth,
        "behaviour": "sheds" if sheds else ("queues" if queues else "keeps up"),
        "recovery_s": recovery_s,
        "recovered": recovery_s is not None,
    }


def back_to_baseline(samples: list[tuple[float, float | None]], baseline_p50_s: float, factor: float = 2.0,
                     run: int = 3) -> float | None:
    """Seconds after the overload until `run` consecutive probes answered within factor x baseline p50.

    samples: (seconds since the overload ended, latency in s or None for a failure), in order."""
    streak = 0
    for i, (t, latency) in enumerate(samples):
        if latency is not None and latency <= factor * max(baseline_p50_s, 0.001):
            streak += 1
            if streak == run:
                return samples[i - run + 1][0]
        else:
            streak = 0
    return None


def score_outage(records: np.ndarray, outage_start_ns: int, outage_end_ns: int, delivered_late: int | None,
                 error_metrics: dict) -> dict:
    """Inference through the detection path while the detector service was down.

    delivered_late: payloads the restarted service received for requests made during the outage
    (a path that buffers and retries delivers them); dropped = successful requests during the
    outage minus those. error_metrics: {metric name: increase} of error-like series the platform
    (or its detection sidecar) exposes, as seen by scraping before and after.
    """
    acc = account(records)
    ok = _ok(records)
    during = (records["intended_ns"] >= outage_start_ns) & (records["intended_ns"] < outage_end_ns)
    n_during = int(np.count_nonzero(during))
    ok_during = int(np.count_nonzero(ok & during))
    dropped = None if delivered_late is None else max(ok_during - delivered_late, 0)
    return {
        **{f"requests_{k}": v for k, v in acc.items() if k in ("ok", "http_error", "timeout", "transport_error",
                                                               "not_sent")},
        "requests": acc["requests"], "consistent": acc["consistent"],
        "requests_during_outage": n_during,
        "ok_during_outage": ok_during,
        "inference_ok_fraction": ok_during / n_during if n_during else None,
        "payloads_dropped": dropped,
        "dropped_fraction": (dropped / ok_during) if dropped is not None and ok_during else None,
        "delivered_late": delivered_late,
        "reported_in_metrics": bool(error_metrics),
        "outage_reported": float(bool(error_metrics)),
        "error_metrics": error_metrics,
    }
