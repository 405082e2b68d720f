"""Detection as user code inside a serving runtime: the saved detectors run in the platform's own
process and their verdicts go to the detector service's /verdicts sink, in order, from a background
thread (the contract of docs/detection.md: POST {"request_id", "n_rows", "verdicts", "computed_by"}).

The same class serves BentoML (a composed `Detector` service), MLflow (a pyfunc wrapper model) and
TorchServe (handler code), each from its own environment. Standard library, numpy and
detectors_io (alibi-detect) only.
"""

import json
import queue
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import detectors_io  # noqa: E402

QUEUE_LIMIT = 10000


class UserCodeDetector:
    """Outlier verdict per request, drift verdicts per full window, reported to `sink` in arrival order."""

    def __init__(self, detectors_dir, model_sha256: str, n_features: int, sink: str, computed_by: str):
        self.meta, self.outlier, drift = detectors_io.load(detectors_dir, model_sha256, n_features)
        self.windows = detectors_io.DriftWindows(drift, self.meta["drift"]["window_rows"], self.meta["feature_names"])
        self.n_features = int(n_features)
        self.sink = sink
        self.computed_by = computed_by
        self.dropped = 0
        """Reports not queued because the sink fell QUEUE_LIMIT reports behind (events lost, by design)."""
        self._reports: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
        # One lock over outlier + drift: the legacy Mahalanobis detector is not thread-safe, and a
        # request's drift rows must enter the windows in the order its report is queued.
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, name="verdict-reporter", daemon=True).start()

    def detect(self, rows, request_id) -> dict:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected shape [n, {self.n_features}], got {list(rows.shape)}")
        with self._lock:
            verdicts = [detectors_io.outlier_verdict(self.outlier, rows, request_id)]
            verdicts += self.windows.add(rows, request_id)
            report = {"request_id": request_id, "n_rows": int(rows.shape[0]), "verdicts": verdicts,
                      "computed_by": self.computed_by}
            try:
                self._reports.put_nowait(report)
            except queue.Full:
                self.dropped += 1
        return {"flags": verdicts[0]["flags"], "drift_windows": len(verdicts) - 1}

    def _drain(self) -> None:
        while True:
            report = self._reports.get()
            req = urllib.request.Request(self.sink, data=json.dumps(report).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except OSError as exc:
                print(f"detector sink unreachable: {exc}", file=sys.stderr, flush=True)
