"""Performance: serving overhead, throughput vs concurrency, offline batch scoring, and cost.

Measurement functions take an Endpoint (and, for cost, the runtime's session id); a platform's own
offline batch tool and batching evidence are its module's (PLATFORM.batching); scoring
functions (`overhead_scores`, `batching_gain`, `curve_scores`) are pure and need no server.
All load goes through testbed.loadgen (compiled engine, every request recorded, errors kept).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from deployers import protocol_of
from testbed import v2
from testbed.endpoint import Endpoint
from testbed.errors import InvalidPayload
from testbed.loadgen import LoadSpec, run_load, stats, summarize
from testbed.procstats import Prices, SessionMeter, cost_per_1000

# --- serving overhead ----------------------------------------------------------------------------


def one_row_body(row: np.ndarray, endpoint: Endpoint | None = None) -> bytes:
    """One row as a V2 request, encoded as the endpoint's platform takes it (its protocol); plain V2 without one."""
    body = v2.request_body(np.asarray(row, dtype=np.float64).reshape(1, -1))
    return protocol_of(endpoint).request_bytes(body) if endpoint is not None else json.dumps(body).encode()


def infer_url(endpoint: Endpoint) -> str:
    """The platform's own inference route (its protocol's), where the pre-encoded bodies go."""
    return protocol_of(endpoint).infer_url(endpoint)


def inprocess_latencies(model, row: np.ndarray, n: int = 2000, warmup: int = 100) -> np.ndarray:
    """Seconds per bare `model.predict` of one row (2-D, as a server would pass it), n calls."""
    x = np.asarray(row, dtype=np.float64).reshape(1, -1)
    for _ in range(warmup):
        model.predict(x)
    out = np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        model.predict(x)
        out[i] = clock() - t0
    return out / 1e9


def served_latencies(endpoint: Endpoint, body: bytes, n: int = 1000, max_s: float = 30.0,
                     warmup: int = 50) -> dict:
    """Single-row requests one at a time (low load: concurrency 1), every latency recorded."""
    if warmup:
        run_load(LoadSpec(url=infer_url(endpoint), method="POST", body=body, concurrency=1, threads=1,
                          duration_s=10, max_requests=warmup))
    run = run_load(LoadSpec(url=infer_url(endpoint), method="POST", body=body, concurrency=1, threads=1,
                            duration_s=max_s, max_requests=n))
    return {"summary": summarize(run), "latency_s": run.latency_s, "ok": run.ok}


def _groups(x) -> list[np.ndarray]:
    return [np.asarray(g, dtype=float) for g in x] if isinstance(x, (list, tuple)) else [np.asarray(x, dtype=float)]


def overhead_scores(served_s, inprocess_s, seed: int = 0, n_boot: int = 1000) -> dict:
    """Served vs bare predict: ratio and absolute difference of medians (and p99), bootstrap CIs.

    Each argument is one array of latencies (seconds) or a list of them, one per repeat; with
    several repeats the bootstrap resamples repeats too (stats.nested_bootstrap). served_s holds
    every request's latency, failures included (a failure is not faster service).
    """
    sg, ig = _groups(served_s), _groups(inprocess_s)
    served_s, inprocess_s = np.concatenate(sg), np.concatenate(ig)
    ratio, rlo, rhi = stats.nested_ratio_ci(sg, ig, np.median, n_boot=n_boot, seed=seed)
    diff, dlo, dhi = stats.nested_ratio_ci(sg, ig, np.median, n_boot=n_boot, seed=seed + 1, difference=True)
    p99 = lambda x: np.percentile(x, 99)  # noqa: E731
    r99, r99lo, r99hi = stats.nested_ratio_ci(sg, ig, p99, n_boot=n_boot, seed=seed + 2)
    return {"ratio_p50": ratio, "ratio_p50_ci": [rlo, rhi],
            "diff_p50_ms": diff * 1e3, "diff_p50_ms_ci": [dlo * 1e3, dhi * 1e3],
            "ratio_p99": r99, "ratio_p99_ci": [r99lo, r99hi],
            "served_p50_ms": float(np.median(served_s)) * 1e3,
            "served_p50_ms_ci": [v * 1e3 for v in stats.percentile_ci(served_s, 50)],
            "inprocess_p50_ms": float(np.median(inprocess_s)) * 1e3,
            "inprocess_p50_ms_ci": [v * 1e3 for v in stats.percentile_ci(inprocess_s, 50)],
            "served_n": int(served_s.size), "inprocess_n": int(inprocess_s.size)}


# --- throughput vs concurrency -------------------------------------------------------------------


def throughput_point(endpoint: Endpoint, body: bytes, concurrency: int, duration_s: float,
                     session_id: int | None, prices: Prices, timeout_s: float = 30.0, members=None) -> dict:
    """One closed-loop run at a concurrency, with the runtime's CPU and memory over the same window (its
    session's processes, or members() where the runtime starts some outside it)."""
    spec = LoadSpec(url=infer_url(endpoint), method="POST", body=body, concurrency=concurrency,
                    threads=min(2, concurrency), duration_s=duration_s, timeout_s=timeout_s,
                    max_requests=10_000_000)
    if session_id:
        with SessionMeter(session_id, members=members) as meter:
            run = run_load(spec)
        usage = meter.usage
    else:
        run, usage = run_load(spec), None
    s = summarize(run)
    ok = run.ok
    done_s = run.records["done_ns"] / 1e9
    point = {"concurrency": concurrency, "throughput_rps": s["throughput_rps"],
             "throughput_rps_ci": s["throughput_rps_ci"], "requests": s["requests"], "ok": s["ok"],
             "errors": s["errors"], "error_kinds": s["error_kinds"], "status_counts": s["status_counts"],
             "error_rate": s["error_rate"], "latency_s": s["latency_s"], "client_cpu_fraction": s["client_cpu_fraction"],
             "rate_bins": stats.rate_bins(done_s[ok], run.window_s).tolist(), "window_s": run.window_s,
             # the client must not be what limits the rate: flag it when its threads were nearly busy
             "client_saturated": s["client_cpu_fraction"] > 0.8 * spec.threads}
    if usage is not None:
        point["usage"] = {"cpu_s": usage.cpu_s, "wall_s": usage.wall_s, "peak_rss_mb": usage.peak_rss_bytes / 2**20,
                          "mean_rss_mb": usage.mean_rss_bytes / 2**20}
        point["cost"] = cost_per_1000(usage, s["ok"], prices)
    return point


def open_loop_point(endpoint: Endpoint, body: bytes, rate: float, duration_s: float, max_connections: int = 64,
                    timeout_s: float = 30.0) -> dict:
    """Latency at a fixed offered rate (open loop, queueing counted); says when the rate was not sustained."""
    run = run_load(LoadSpec(url=infer_url(endpoint), method="POST", body=body, rate=rate, concurrency=max_connections,
                            duration_s=duration_s, timeout_s=timeout_s, max_requests=10_000_000))
    s = summarize(run)
    return {k: s[k] for k in ("target_rps", "sustained", "not_sustained_because", "throughput_rps",
                              "throughput_rps_ci", "offered_rps", "requests", "ok", "errors", "error_kinds",
                              "latency_s", "send_lag_p99_s")}


def curve_scores(points_by_repeat: list[list[dict]], seed: int = 0) -> list[dict]:
    """Pool repeats per concurrency: mean rate with a bootstrap CI over the per-bin rates of all repeats."""
    by_c: dict[int, list[dict]] = {}
    for points in points_by_repeat:
        for p in points:
            by_c.setdefault(p["concurrency"], []).append(p)
    out = []
    for c in sorted(by_c):
        groups = [np.asarray(p["rate_bins"], dtype=float) for p in by_c[c]]
        bins = np.concatenate(groups)
        lo, hi = stats.nested_ci(groups, np.mean, seed=seed + c)
        p50s = [p["latency_s"].get("p50", float("nan")) for p in by_c[c]]
        out.append({"concurrency": c, "throughput_rps": float(bins.mean()), "throughput_rps_ci": [lo, hi],
                    "repeats": len(by_c[c]), "per_repeat_rps": [p["throughput_rps"] for p in by_c[c]],
                    "errors": int(sum(p["errors"] for p in by_c[c])), "requests": int(sum(p["requests"] for p in by_c[c])),
                    "p50_ms_median_over_repeats": float(np.nanmedian(p50s)) * 1e3,
                    "_groups": groups})
    return out


def batching_gain(off: list[dict], on: list[dict], seed: int = 0) -> dict:
    """Throughput with batching on / off: at each concurrency, and peak over peak; bootstrap CIs over time bins."""
    off_by = {p["concurrency"]: p for p in off}
    on_by = {p["concurrency"]: p for p in on}
    per_c = []
    for c in sorted(set(off_by) & set(on_by)):
        a, b = on_by[c]["_groups"], off_by[c]["_groups"]
        if np.concatenate(b).mean() == 0:
            continue
        g, lo, hi = stats.nested_ratio_ci(a, b, np.mean, seed=seed + c)
        per_c.append({"concurrency": c, "gain": g, "gain_ci": [lo, hi]})
    peak_off = max(off, key=lambda p: p["throughput_rps"])
    peak_on = max(on, key=lambda p: p["throughput_rps"])
    g, lo, hi = stats.nested_ratio_ci(peak_on["_groups"], peak_off["_groups"], np.mean, seed=seed)
    return {"peak_gain": g, "peak_gain_ci": [lo, hi], "peak_off_rps": peak_off["throughput_rps"],
            "peak_off_concurrency": peak_off["concurrency"], "peak_on_rps": peak_on["throughput_rps"],
            "peak_on_concurrency": peak_on["concurrency"], "per_concurrency": per_c}


# --- offline batch -------------------------------------------------------------------------------


def offline_inprocess(model, X: np.ndarray, chunk: int = 10000) -> dict:
    t0 = time.perf_counter()
    labels = np.concatenate([model.predict(X[i:i + chunk]) for i in range(0, len(X), chunk)])
    seconds = time.perf_counter() - t0
    return {"path": "in-process predict", "rows": int(len(labels)), "seconds": seconds,
            "rows_per_s": len(labels) / seconds, "labels": labels}


def offline_v2(endpoint: Endpoint, X: np.ndarray, chunk: int = 5000, workers: int = 2,
               timeout_s: float = 300.0) -> dict:
    """Large requests (chunk rows each; V2, through the platform's protocol), `workers` at a time; bodies are
    encoded before the clock starts."""
    protocol = protocol_of(endpoint)
    requests = [v2.request_body(X[i:i + chunk]) for i in range(0, len(X), chunk)]
    bodies = [protocol.request_bytes(r) for r in requests]
    results: list = [None] * len(bodies)
    errors: list[str] = []

    def send(i, client):
        try:
            r = client.post(infer_url(endpoint), content=bodies[i], headers={"Content-Type": "application/json"})
            if r.status_code != 200:
                errors.append(f"chunk {i}: HTTP {r.status_code} {r.text[:200]}")
                return
            answer = protocol.decode_infer(r.json(), requests[i], endpoint.model_name)
            results[i] = v2.predictions(answer, endpoint.platform)
        except (httpx.HTTPError, ValueError, InvalidPayload) as exc:
            errors.append(f"chunk {i}: {type(exc).__name__}: {exc}")

    with httpx.Client(timeout=timeout_s) as client:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda i: send(i, client), range(len(bodies))))
        seconds = time.perf_counter() - t0
    labels = np.concatenate([np.asarray(r, dtype=np.int64) if r is not None else np.full(min(chunk, len(X) - i * chunk), -1)
                             for i, r in enumerate(results)])
    rows_ok = int(sum(len(r) for r in results if r is not None))
    return {"path": f"{protocol.protocol} requests of {chunk} rows, {workers} concurrent", "rows": rows_ok, "seconds": seconds,
            "rows_per_s": rows_ok / seconds, "errors": errors[:10], "n_errors": len(errors), "labels": labels}


def agreement(labels: np.ndarray, expected: np.ndarray) -> float:
    """Fraction of rows whose label equals in-process predict (unscored rows count as disagreement)."""
    if labels is None or len(labels) != len(expected):
        return 0.0
    return float(np.mean(np.asarray(labels) == np.asarray(expected)))
