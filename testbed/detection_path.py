"""Endpoint.detection in one shape on every backend: where a platform's detection path is, and where
its verdicts and metrics can be read. Backends supply the URLs and Prometheus labels they know;
the probes (probes/outlier.py, drift.py, detector_outage.py) read only this shape.
"""

from __future__ import annotations

from testbed.detectors import Detectors


def sink_urls(service_url: str, platform: str, mechanism: str) -> dict:
    """The detector service's routes for one platform; `mechanism` becomes the metrics' label."""
    q = f"platform={platform}&mechanism={mechanism.replace(' ', '+')}"
    return {"events": f"{service_url}/events?{q}", "verdicts": f"{service_url}/verdicts?{q}",
            "log": f"{service_url}/verdicts?platform={platform}", "metrics": f"{service_url}/metrics",
            "service": service_url}


def describe(fitted: Detectors, platform: str, infer_url: str, label: str, service_url: str,
             prometheus_labels: dict, **details) -> dict:
    """{"outlier": ..., "drift": ...} for one platform: the same path serves both kinds of detection.

    service_url is the detector service as the host reaches it (verdict log, /metrics);
    prometheus_labels select this platform's testbed_detector_* series in the testbed's Prometheus.
    """
    sink = sink_urls(service_url, platform, label)
    common = {"url": infer_url, "label": label, "verdicts_url": sink["log"], "metrics_url": sink["metrics"],
              "prometheus_labels": dict(prometheus_labels),
              "detectors_path": str(fitted.path), "detectors_sha256": fitted.metadata["files"], **details}
    summary = fitted.summary()
    return {"outlier": {**common, "detector": summary["outlier"]},
            "drift": {**common, "detector": summary["drift"],
                      "window_rows": fitted.window_rows, "request_rows": fitted.request_rows}}
