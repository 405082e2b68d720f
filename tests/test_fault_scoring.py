"""Fault probe scoring on hand-made timelines (no server)."""

import numpy as np
import pytest

from probes import faults
from probes.detector_outage import error_increase
from testbed.loadgen import RECORD_DTYPE

MS = 1_000_000


def records(rows):
    """rows: (intended_ms, sent_ms, done_ms, status, error)."""
    return np.array([(i * MS, s * MS if s >= 0 else -1, d * MS if d >= 0 else -1, st, e)
                     for i, s, d, st, e in rows], dtype=RECORD_DTYPE)


def kill_timeline():
    # kill at 1000 ms: one request in flight fails (closed), refused connects, first success at 1500+5 ms
    return records([
        (0, 0, 5, 200, 0), (500, 500, 505, 200, 0),
        (990, 990, 1002, 0, 2),                       # in flight at the kill, connection closed
        (1100, 1100, 1101, 0, 1), (1200, 1200, 1201, 0, 1),  # refused
        (1300, 1300, 3300, 0, 3),                     # timeout
        (1400, 1400, 1403, 503, 0),                   # HTTP error
        (1500, 1500, 1505, 200, 0), (1600, 1600, 1605, 200, 0),
        (1700, -1, -1, 0, 5),                         # due but never sent
    ])


def test_every_request_is_accounted_for_once():
    acc = faults.account(kill_timeline())
    assert acc["consistent"]
    assert (acc["ok"], acc["http_error"], acc["timeout"], acc["transport_error"], acc["not_sent"]) == (4, 1, 1, 3, 1)
    assert acc["requests"] == 10
    assert acc["error_kinds"] == {"closed": 1, "connect": 2, "timeout": 1, "not sent": 1}


def test_kill_scores_first_success_and_losses():
    s = faults.score_kill(kill_timeline(), kill_ns=1000 * MS)
    assert s["consistent"]
    assert s["first_success_s"] == pytest.approx(0.505)
    assert s["recovered"]
    assert s["in_flight_at_kill"] == 1 and s["in_flight_failed"] == 1
    # refused x2, timeout, 503, not sent, and the in-flight one
    assert s["requests_lost"] == 6
    assert s["ok_before_kill"] == 2 and s["failed_before_kill"] == 0
    assert s["error_rate_after_recovery"] == pytest.approx(0.5)  # due after 1505 ms: 1600 ok, 1700 not sent


def test_kill_without_recovery():
    r = records([(0, 0, 5, 200, 0), (1100, 1100, 1101, 0, 1), (1200, 1200, 1201, 0, 1)])
    s = faults.score_kill(r, kill_ns=1000 * MS)
    assert not s["recovered"] and s["first_success_s"] is None
    assert s["requests_lost"] == 2 and s["error_rate_after_recovery"] is None


def test_answer_to_a_request_sent_before_the_kill_is_not_recovery():
    r = records([(900, 900, 1200, 200, 0), (1100, 1100, 1101, 0, 1)])
    s = faults.score_kill(r, kill_ns=1000 * MS)
    assert not s["recovered"] and s["in_flight_failed"] == 0


def test_overload_queues_vs_sheds():
    base = records([(i * 10, i * 10, i * 10 + 2, 200, 0) for i in range(50)])
    # latency grows from 5 ms to 500 ms: queueing, no errors
    queue = records([(i * 10, i * 10, i * 10 + 5 + i * 5, 200, 0) for i in range(100)])
    s = faults.score_overload(base, queue, capacity_rps=100, rate=300, overload_window_s=1.0, recovery_s=0.4)
    assert s["behaviour"] == "queues" and s["error_rate"] == 0 and s["consistent"]
    assert s["latency_trend"] > 3 and s["overload_factor"] == 3
    # half the requests refused at once with 503: shedding
    shed = records([(i * 10, i * 10, i * 10 + (1 if i % 2 else 3), 503 if i % 2 else 200, 0) for i in range(100)])
    s = faults.score_overload(base, shed, capacity_rps=100, rate=300, overload_window_s=1.0, recovery_s=None)
    assert s["behaviour"] == "sheds" and s["error_rate"] == pytest.approx(0.5) and not s["recovered"]


def test_overload_needs_a_baseline():
    bad = records([(0, 0, 1, 500, 0)])
    with pytest.raises(ValueError):
        faults.score_overload(bad, bad, 1, 3, 1, None)


def test_back_to_baseline_needs_a_streak():
    samples = [(0.0, None), (0.1, 0.5), (0.2, 0.01), (0.3, 0.011), (0.4, 0.5), (0.5, 0.01), (0.6, 0.01), (0.7, 0.01)]
    assert faults.back_to_baseline(samples, baseline_p50_s=0.01) == 0.5
    assert faults.back_to_baseline(samples[:5], baseline_p50_s=0.01) is None


def test_outage_drops_and_metrics():
    r = records([(i * 100, i * 100, i * 100 + 5, 200, 0) for i in range(20)])
    s = faults.score_outage(r, 500 * MS, 1500 * MS, delivered_late=2, error_metrics={})
    assert s["requests_during_outage"] == 10 and s["ok_during_outage"] == 10
    assert s["inference_ok_fraction"] == 1.0 and s["payloads_dropped"] == 8 and not s["reported_in_metrics"]
    assert faults.score_outage(r, 500 * MS, 1500 * MS, None, {"x": {"a": 1}})["payloads_dropped"] is None


def test_error_increase_only_error_like_series_that_grew():
    before = {"http_errors_total": 1, "requests_total": 10, "drop_count": 0}
    after = {"http_errors_total": 4, "requests_total": 20, "drop_count": 0, "new_failures_total": 2}
    assert error_increase(before, after) == {"http_errors_total": 3, "new_failures_total": 2}


def test_timeline_keeps_every_request():
    t = faults.timeline(kill_timeline(), origin_ns=1000 * MS)
    assert len(t["status"]) == len(t["class"]) == 10
    assert t["sent_ms"][-1] is None and t["intended_ms"][0] == -1000.0
