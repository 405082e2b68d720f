"""Detection on the real local testbed: every platform's path, the detector service and Prometheus.

Stated thresholds: a 1.5-sd mean shift is detected on every platform; the control stream raises no
more false alarms than a detector with false-positive rate p_val may raise in that many windows
(99.9% binomial bound); planted outliers are recalled at >= 0.8 with precision >= 0.6; Prometheus
counts exactly the rows sent; nothing is lost between platform and detector.
"""

from __future__ import annotations

import pytest

from probes import drift, outlier
from probes.context import ProbeContext
from testbed import artifact as artifact_mod
from testbed.endpoint import Endpoint
from testbed.prometheus import PrometheusClient

pytestmark = pytest.mark.integration

LABELS = {"kserve": "add-on", "seldon": "native", "rayserve": "user code", "bentoml": "user code",
          "mlflow": "user code", "torchserve": "user code"}


def _ctx(status: dict, **options) -> ProbeContext:
    endpoints = {name: Endpoint.from_json(p["endpoint"]) for name, p in status["platforms"].items()}
    return ProbeContext(endpoints=endpoints, prometheus=PrometheusClient(status["prometheus"]["url"]),
                        artifact=artifact_mod.load(status["model"]["path"]), backend=status["backend"], seed=11,
                        run_id="pytest", versions={n: p.get("versions", {}) for n, p in status["platforms"].items()},
                        options=options)


def test_every_platform_publishes_its_detection_path(testbed_up):
    for name, p in testbed_up["platforms"].items():
        detection = p["endpoint"]["detection"]
        assert detection["outlier"]["label"] == LABELS[name] and detection["drift"]["label"] == LABELS[name]
        assert detection["drift"]["window_rows"] == 200
    targets = {t["job"]: t["health"] for t in testbed_up["prometheus"]["targets"]}
    assert targets.get("detectors") == "up"


def test_drift_control_stays_quiet_and_a_large_shift_is_detected_everywhere(testbed_up):
    results = drift.run(_ctx(testbed_up, control_n=2000, drift_n=1600, onset=500, kinds=["mean_shift"],
                             magnitudes={"mean_shift": [1.5]}))
    assert {r.platform for r in results} == set(testbed_up["platforms"])
    for r in results:
        assert r.verdict == "detected", (r.platform, r.evidence.get("error"), r.scores)
        s = r.scores
        assert s["control_windows"] >= 10
        assert s["fpr_within_configured"], (r.platform, s["false_alarms"], s["allowed_false_alarms"])
        shift = s["streams"]["mean_shift@1.5"]
        assert shift["detected"] and shift["delay_samples"] <= 300, (r.platform, shift)
        assert s["events_lost"] == 0 and s["prometheus_matches_sent"], (r.platform, s)
        assert s["alarms_counted_prometheus"] == s["alarms_in_verdict_log"], (r.platform, s)
        assert r.mechanism == LABELS[r.platform]
        if r.platform == "seldon":  # MLServer's own drift metric agrees with the verdicts
            assert s["native_windows_counted_prometheus"] == s["windows"], s
            assert s["native_alarms_counted_prometheus"] == s["alarms_in_verdict_log"], s
        assert r.evidence["promql"]["rows"].startswith("sum(testbed_detector_rows_total{")


def test_planted_outliers_are_recalled_and_counted(testbed_up):
    results = outlier.run(_ctx(testbed_up, n=1000, rate=0.05, latency_pairs=20))
    for r in results:
        assert r.verdict == "detected", (r.platform, r.evidence.get("error"))
        s = r.scores
        assert s["recall"] >= 0.8 and s["precision"] >= 0.6, (r.platform, s)
        assert s["rows_without_verdict"] == 0 and s["events_lost"] == 0 and s["prometheus_matches_sent"], (r.platform, s)
        assert s["flags_counted_prometheus"] == s["flagged"], (r.platform, s)
        assert s["latency"]["ratio_p50"] > 0
        assert r.evidence["detector"]["detector"] == "Mahalanobis"
    # The same saved detectors serve every platform: identical flags for identical rows.
    flags = {r.platform: r.measurements["flags"] for r in results}
    assert len({tuple(f) for f in flags.values()}) == 1
