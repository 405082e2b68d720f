"""Detection under load: the pure scoring of one (size, rate) cell from request records and verdicts. No server."""

from __future__ import annotations

import numpy as np
import pytest

from probes import detection_load as dl
from probes import scoring, stats
from testbed.population import Population

TAG = "t"


def rid(stream, start):
    return scoring.request_id(TAG, stream, start)


def _sent(ids, t0=100.0, status=200):
    return [{"id": i, "due": t0 + k, "sent": t0 + k + 0.01, "done": t0 + k + 0.05, "status": status}
            for k, i in enumerate(ids)]


def test_lost_rows_missing_verdicts_mixed_windows_and_delays():
    size = 10
    ids = [rid(s, j * size) for j in range(4) for s in ("control", "drift")]
    sent = _sent(ids)
    sent[-1]["status"] = 503  # the last drift request failed
    outlier = [{"kind": "outlier", "request_id": r["id"], "flags": [0] * size, "received": r["sent"] + 0.5}
               for r in sent if r["id"] != rid("control", 30)]  # one answered request never reached the detector
    drift = [
        {"kind": "drift", "window": 0, "rows": 20, "is_drift": 0, "time": 105.0, "received": 105.0,
         "members": [[rid("control", 0), 0, 10], [rid("drift", 0), 0, 10]]},
        {"kind": "drift", "window": 1, "rows": 20, "is_drift": 1, "time": 107.0, "received": 107.2,
         "members": [[rid("drift", 20), 0, 10], [rid("drift", 10), 0, 10]]},
    ]
    got = dl.score_cell(sent, outlier + drift, TAG, size, {"control": None, "drift": 20}, without=_sent(ids))
    assert got["requests_ok"] == 7 and got["requests_failed"] == 1
    assert got["rows_ok"] == 70 and got["rows_lost"] == 10 and got["verdicts_missing"] == 1
    assert got["verdicts_for_failed_requests"] == 1  # the detector saw a request the platform failed
    assert got["rows_lost_share"] == pytest.approx(10 / 70) and got["rows_lost_lo"] < 10 / 70 < got["rows_lost_hi"]
    assert got["drift_windows"] == 2 and got["windows_mixing_streams"] == 1 and got["window_rows_median"] == 20
    assert got["verdict_delay_p50_s"] == pytest.approx(0.5)
    onset_sent = next(r["sent"] for r in sent if r["id"] == rid("drift", 20))
    assert got["drift_alarm_delay_s"] == pytest.approx(107.2 - onset_sent)
    assert got["with_detection_p50_ms"] == pytest.approx(50.0) and got["without_detection_ok"] == 8


def test_interleaved_requests_alternate_streams_with_a_known_onset():
    bodies, streams, onsets = dl.interleaved_requests(Population(7), 7, 40, (1, 0, 7, 1.0), TAG)
    assert len(bodies) == 40 and bodies[0][0] == rid("control", 0) and bodies[1][0] == rid("drift", 0)
    assert onsets == {"control": None, "drift": 70} and streams["drift"].shape == (140, 7)
    other, _, _ = dl.interleaved_requests(Population(7), 7, 40, (1, 1, 7, 1.0), TAG)
    assert other[0][1] != bodies[0][1]  # another repeat, other draws


def test_summary_pools_cells():
    cells = [{"rows_ok": 100, "rows_lost": 0, "verdicts_missing": 0, "drift_windows": 10, "windows_mixing_streams": 10,
              "size": 1, "window_rows_median": 10.0, "verdict_delay_p99_s": 0.2},
             {"rows_ok": 100, "rows_lost": 5, "verdicts_missing": 1, "drift_windows": 10, "windows_mixing_streams": 0,
              "size": 20, "window_rows_median": 200.0, "verdict_delay_p99_s": 3.0}]
    s = dl.summary(cells)
    assert s["rows_lost_share"] == 0.025 and s["windows_mixing_share"] == 0.5
    assert s["window_rows_by_size"] == {"1": 10.0, "20": 200.0} and s["worst_verdict_delay_p99_s"] == 3.0
    assert (s["rows_lost_lo"], s["rows_lost_hi"]) == pytest.approx(
        (stats.clopper_pearson(5, 200).lo, stats.clopper_pearson(5, 200).hi))


def test_outage_scoring_counts_what_the_detector_never_saw():
    size = 10
    ids = [rid("drift", j * size) for j in range(6)]
    sent = _sent(ids)  # sent at 100.01, 101.01, ... 105.01
    sent[3]["status"] = 502
    verdicts = [{"kind": "outlier", "request_id": r["id"], "flags": [0] * size, "received": r["sent"] + 0.1}
                for r in sent if r["id"] not in (rid("drift", 20), rid("drift", 30))]
    verdicts.append({"kind": "drift", "window": 0, "rows": 20, "is_drift": 1, "time": 106.0, "received": 106.0,
                     "members": [[rid("drift", 40), 0, 10], [rid("drift", 50), 0, 10]]})
    got = dl.score_outage(sent, verdicts, TAG, size, onset=20, down=101.5, up=103.5)
    assert got["requests_during_outage"] == 2 and got["statuses_during_outage"] == {"200": 1, "502": 1}
    assert got["inference_ok_during_outage"] == 0.5 and got["requests_unseen_during_outage"] == 1
    assert got["alarmed_after_onset"] and got["drift_alarm_delay_s"] == pytest.approx(106.0 - 102.01)
    assert got["rows_lost"] == 10 and got["unavailable_s"] == 2.0
