"""Probe verdicts and scores as Prometheus metrics: the numbers of the report, scrapeable.

A small process (`python -m testbed results-exporter --port P`, started by `up`) reads the result
sets on every scrape with the report's own run selection (latest run per experiment, same
artifact) and exports, per experiment, probe, platform and backend:
    testbed_probe_score{score=...}        mean over repeats (the report cell's value)
    testbed_probe_score_ci_low/_ci_high   its 95% t-interval (absent with one repeat)
    testbed_probe_repeats                 repeats behind the mean
    testbed_probe_verdict{verdict=...}    repeats with that verdict
    testbed_results_runs / testbed_results_skipped_runs
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from testbed.report.criteria import interval
from testbed.report.runs import select_runs

LABELS = ["experiment", "probe", "platform", "backend", "run_id"]


def collect_values(root: Path) -> tuple[list[tuple[dict, str, float]], int, int]:
    """Pure over the results directory: [(labels, metric suffix, value)], runs used, runs skipped."""
    sel = select_runs(root, [])
    groups: dict[tuple, list] = {}
    for run in sel.runs:
        for experiment, r in run.results:
            groups.setdefault((experiment, r.probe, r.platform, r.backend), []).append(r)
    out = []
    for (experiment, probe, platform, backend), rs in sorted(groups.items()):
        run_ids = ",".join(sorted({r.run_id for r in rs}))
        base = {"experiment": experiment, "probe": probe, "platform": platform, "backend": backend, "run_id": run_ids}
        out.append((base, "repeats", float(len(rs))))
        for verdict in sorted({r.verdict for r in rs}):
            out.append(({**base, "verdict": verdict}, "verdict", float(sum(r.verdict == verdict for r in rs))))
        keys = sorted({k for r in rs for k, v in r.scores.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for key in keys:
            values = [float(r.scores[key]) for r in rs if isinstance(r.scores.get(key), (int, float))]
            values = [v for v in values if math.isfinite(v)]
            if not values:
                continue
            m, lo, hi = interval(values, key)
            out.append(({**base, "score": key}, "score", m))
            if lo is not None:
                out.append(({**base, "score": key}, "score_ci_low", lo))
                out.append(({**base, "score": key}, "score_ci_high", hi))
    return out, len(sel.runs), len(sel.skipped)


class ResultsCollector(Collector):
    def __init__(self, root: Path, ttl_s: float = 2.0):
        self.root = root
        self.ttl_s = ttl_s
        self._cache: tuple[float, tuple] | None = None
        self._lock = threading.Lock()

    def _values(self):
        with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] > self.ttl_s:
                self._cache = (now, collect_values(self.root))
            return self._cache[1]

    def collect(self):
        try:
            values, runs, skipped = self._values()
            error = 0.0
        except Exception:  # a bad results directory must not take the exporter down
            values, runs, skipped, error = [], 0, 0, 1.0
        families = {
            "score": GaugeMetricFamily("testbed_probe_score", "Probe score, mean over repeats (as in the report)",
                                       labels=LABELS + ["score"]),
            "score_ci_low": GaugeMetricFamily("testbed_probe_score_ci_low", "Lower end of the 95% t-interval (fractions clipped to [0, 1])",
                                              labels=LABELS + ["score"]),
            "score_ci_high": GaugeMetricFamily("testbed_probe_score_ci_high", "Upper end of the 95% t-interval",
                                               labels=LABELS + ["score"]),
            "repeats": GaugeMetricFamily("testbed_probe_repeats", "Repeats behind the scores", labels=LABELS),
            "verdict": GaugeMetricFamily("testbed_probe_verdict", "Repeats with this verdict",
                                         labels=LABELS + ["verdict"]),
        }
        names = {"score": LABELS + ["score"], "score_ci_low": LABELS + ["score"], "score_ci_high": LABELS + ["score"],
                 "repeats": LABELS, "verdict": LABELS + ["verdict"]}
        for labels, suffix, value in values:
            families[suffix].add_metric([labels[k] for k in names[suffix]], value)
        yield from families.values()
        yield GaugeMetricFamily("testbed_results_runs", "Result sets exported", value=runs)
        yield GaugeMetricFamily("testbed_results_skipped_runs", "Result sets not exported (see the report)",
                                value=skipped)
        yield GaugeMetricFamily("testbed_results_read_error", "1 when the results directory could not be read",
                                value=error)


def registry_for(root: Path) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResultsCollector(root))
    return registry


def serve(port: int, root: Path) -> None:
    """Serve /metrics on 127.0.0.1:port until SIGTERM."""
    import signal

    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry_for(root))
    print(f"results exporter on http://127.0.0.1:{port}/metrics reading {root}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
