"""The detector service: receives inference payloads or verdicts, exports verdicts to Prometheus.

One process (the `detectors` environment: alibi-detect, prometheus-client, standard library HTTP).
It plays two roles, each per `platform` (a query parameter every caller sets):
- POST /events?platform=P&mechanism=M   body: a V2 inference request (as KServe's payload logger
  sends it, CloudEvents binary mode: `ce-id` names the request when the body has no `id`). The
  service runs the saved detectors itself: the outlier detector on every row, the drift detector on
  tumbling windows of `window_rows` rows. This is what KServe's add-on path calls.
- POST /verdicts?platform=P&mechanism=M  body: {"request_id", "n_rows", "verdicts": [...],
  "computed_by"}: verdicts computed elsewhere (MLServer's alibi-detect runtime, a Ray deployment)
  are recorded and exported the same way.
Read side: GET /metrics (Prometheus), GET /verdicts?platform=P&since=SEQ (the verdict log, for
probes that score flags against truth), GET /ready, GET /config.

    python detector_service.py --detectors DIR --port P [--host H] [--model-sha256 SHA --n-features N]
"""

import argparse
import collections
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest  # noqa: E402

import detectors_io  # noqa: E402

LOG_LIMIT = 500_000
SCORE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 50, 100, 1000, float("inf"))


class Metrics:
    def __init__(self, feature_names):
        self.registry = CollectorRegistry()
        labels = ("platform", "mechanism")
        r = self.registry
        self.events = Counter("testbed_detector_events", "Inference requests whose payload reached the detectors",
                              labels, registry=r)
        self.rows = Counter("testbed_detector_rows", "Rows (instances) that reached the detectors", labels, registry=r)
        self.rejected = Counter("testbed_detector_rejected_events", "Payloads the service could not decode",
                                labels, registry=r)
        self.outlier_rows = Counter("testbed_outlier_rows", "Rows scored by the outlier detector", labels, registry=r)
        self.outlier_flags = Counter("testbed_outlier_flags", "Rows flagged as outliers", labels, registry=r)
        self.outlier_score = Histogram("testbed_outlier_score", "Outlier scores (Mahalanobis distance squared)",
                                       labels, buckets=SCORE_BUCKETS, registry=r)
        self.drift_windows = Counter("testbed_drift_windows", "Drift tests run (one per window)", labels, registry=r)
        self.drift_alarms = Counter("testbed_drift_alarms", "Drift tests that flagged drift", labels, registry=r)
        self.drift_is_drift = Gauge("testbed_drift_is_drift", "Verdict of the latest drift window (0/1)", labels,
                                    registry=r)
        self.drift_p_value = Gauge("testbed_drift_p_value", "p-value per feature in the latest drift window",
                                   (*labels, "feature"), registry=r)
        self.drift_window_rows = Gauge("testbed_drift_window_rows", "Rows per drift window", labels, registry=r)
        self.feature_names = list(feature_names)

    def record(self, platform: str, mechanism: str, n_rows: int, verdicts: list) -> None:
        lab = (platform, mechanism)
        self.events.labels(*lab).inc()
        self.rows.labels(*lab).inc(n_rows)
        for v in verdicts:
            if v["kind"] == "outlier":
                self.outlier_rows.labels(*lab).inc(len(v["flags"]))
                self.outlier_flags.labels(*lab).inc(sum(v["flags"]))
                for s in v["scores"]:
                    self.outlier_score.labels(*lab).observe(s)
            elif v["kind"] == "drift":
                self.drift_windows.labels(*lab).inc()
                self.drift_alarms.labels(*lab).inc(v["is_drift"])
                self.drift_is_drift.labels(*lab).set(v["is_drift"])
                self.drift_window_rows.labels(*lab).set(v["rows"])
                for name, p in zip(v.get("features") or self.feature_names, v["p_vals"]):
                    self.drift_p_value.labels(*lab, name).set(p)


class Service:
    def __init__(self, directory, model_sha256=None, n_features=None):
        self.meta, self.outlier, self.drift = detectors_io.load(directory, model_sha256, n_features)
        self.n_features = self.meta["n_features"]
        self.metrics = Metrics(self.meta["feature_names"])
        self.windows: dict[str, detectors_io.DriftWindows] = {}
        self.log = collections.deque(maxlen=LOG_LIMIT)
        self.seq = 0
        self.lock = threading.Lock()
        self.outlier_lock = threading.Lock()

    def _append(self, platform, mechanism, request_id, n_rows, verdicts, computed_by) -> None:
        with self.lock:
            for v in verdicts:
                self.seq += 1
                self.log.append({"seq": self.seq, "platform": platform, "mechanism": mechanism,
                                 "computed_by": computed_by, "received": time.time(), **v})
            self.metrics.record(platform, mechanism, n_rows, verdicts)

    def event(self, platform, mechanism, body: dict, ce_id=None) -> int:
        rows = detectors_io.rows_of_v2(body, self.n_features, self.meta.get("features"))
        request_id = body.get("id") or ce_id
        with self.outlier_lock:
            verdicts = [detectors_io.outlier_verdict(self.outlier, rows, request_id)]
        with self.lock:
            win = self.windows.get(platform)
            if win is None:
                win = self.windows[platform] = detectors_io.DriftWindows(
                    self.drift, self.meta["drift"]["window_rows"], self.meta["feature_names"])
        verdicts += win.add(rows, request_id)
        self._append(platform, mechanism, request_id, rows.shape[0], verdicts, "detector service (alibi-detect)")
        return rows.shape[0]

    def report(self, platform, mechanism, body: dict) -> int:
        n_rows = int(body["n_rows"])
        verdicts = list(body.get("verdicts", []))
        for v in verdicts:
            if v.get("kind") not in ("outlier", "drift"):
                raise ValueError(f"verdict kind {v.get('kind')!r} is not outlier or drift")
        self._append(platform, mechanism, body.get("request_id"), n_rows, verdicts, body.get("computed_by", "?"))
        return n_rows

    def since(self, platform, seq: int, limit: int) -> dict:
        with self.lock:
            records = [r for r in self.log if r["seq"] > seq and (platform is None or r["platform"] == platform)]
            last = self.seq
        return {"records": records[:limit], "next": records[limit - 1]["seq"] if len(records) > limit else last,
                "more": len(records) > limit}


def make_handler(service: Service):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: with Nagle on, each keep-alive response waits for
        # the client's delayed ACK (~40 ms), capping a sender at ~25 events/s.
        disable_nagle_algorithm = True

        def log_message(self, *args):  # one line per request would swamp the log
            pass

        def _send(self, code: int, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _query(self):
            parts = urlsplit(self.path)
            return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}

        def do_GET(self):
            path, q = self._query()
            if path == "/metrics":
                return self._send(200, generate_latest(service.metrics.registry), CONTENT_TYPE_LATEST)
            if path in ("/ready", "/v2/health/ready", "/v2/health/live"):
                return self._send(200, {"ready": True})
            if path == "/config":
                return self._send(200, {k: service.meta[k] for k in ("model_sha256", "n_features", "feature_names",
                                                                   "drift", "outlier", "versions", "config_key")})
            if path == "/verdicts":
                return self._send(200, service.since(q.get("platform"), int(q.get("since", 0)),
                                                     int(q.get("limit", 20000))))
            return self._send(404, {"error": f"no route {path}"})

        def do_POST(self):
            path, q = self._query()
            platform, mechanism = q.get("platform", "unknown"), q.get("mechanism", "unknown")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            except (ValueError, json.JSONDecodeError) as exc:
                service.metrics.rejected.labels(platform, mechanism).inc()
                return self._send(400, {"error": f"body is not JSON: {exc}"})
            try:
                if path == "/events":
                    n = service.event(platform, mechanism, body, self.headers.get("ce-id"))
                elif path == "/verdicts":
                    n = service.report(platform, mechanism, body)
                else:
                    return self._send(404, {"error": f"no route {path}"})
            except (ValueError, KeyError, TypeError) as exc:
                service.metrics.rejected.labels(platform, mechanism).inc()
                return self._send(400, {"error": str(exc)})
            return self._send(202, {"accepted_rows": n})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detectors", required=True)
    parser.add_argument("--port", type=int, required=True)
    # Loopback by default (the local backend); a pod binds 0.0.0.0 so its Service and kubelet probes reach it.
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model-sha256")
    parser.add_argument("--n-features", type=int)
    opts = parser.parse_args()
    started = time.monotonic()
    try:
        service = Service(opts.detectors, opts.model_sha256, opts.n_features)
    except detectors_io.DetectorArtifactError as exc:
        print(f"detector artifact rejected: {exc}", flush=True)
        raise SystemExit(3)
    server = ThreadingHTTPServer((opts.host, opts.port), make_handler(service))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"detector service on {opts.host}:{opts.port}, detectors loaded in {time.monotonic() - started:.1f}s",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
