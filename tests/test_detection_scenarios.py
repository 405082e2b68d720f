"""Scenario generation and scoring: known inputs -> known truths and scores. No server."""

from __future__ import annotations

import numpy as np
import pytest

from probes import scoring
from probes.scenarios import (CATEGORICAL, IDX, control_stream, drift_stream, drift_suite, feature_mean,
                              feature_sd, outlier_stream, user_stream)
from testbed.errors import EmptyScenario
from testbed.population import Population

POP = Population(20261125)


# --- scenarios ------------------------------------------------------------------------------------
def test_streams_are_seeded_and_pure():
    a, b = control_stream(POP, 500, seed=3), control_stream(POP, 500, seed=3)
    assert np.array_equal(a.rows, b.rows)
    assert not np.array_equal(a.rows, control_stream(POP, 500, seed=4).rows)
    assert a.onset is None and not a.is_drifted.any() and not a.is_outlier.any()


def test_control_stream_is_drawn_like_training_data():
    X = control_stream(POP, 20000, seed=1).rows
    assert X.shape == (20000, 7)
    assert abs(X[:, IDX["x0"]].mean() - feature_mean(POP, "x0")) < 0.05
    assert abs(X[:, IDX["x0"]].std() - feature_sd(POP, "x0")) < 0.05
    assert abs(np.corrcoef(X[:, IDX["x3"]], X[:, IDX["x4"]])[0, 1] - 0.6) < 0.02
    freq = np.bincount(X[:, IDX["segment"]].astype(int), minlength=4) / len(X)
    assert np.allclose(freq, POP.segment_prior, atol=0.01)


def test_mean_shift_moves_only_its_feature_after_onset():
    # Same seed, magnitude 0: the same draws without the shift, so the difference is exact.
    s = drift_stream(POP, "mean_shift", 1.0, n=1000, onset=400, seed=5)
    base = drift_stream(POP, "mean_shift", 0.0, n=1000, onset=400, seed=5)
    diff = s.rows - base.rows
    assert np.allclose(diff[:400], 0.0)
    assert np.allclose(diff[400:, IDX["x0"]], feature_sd(POP, "x0"))
    assert np.allclose(np.delete(diff, IDX["x0"], axis=1), 0.0)
    assert s.is_drifted.sum() == 600 and s.is_drifted[400] and not s.is_drifted[399]
    v = drift_stream(POP, "variance", 0.5, n=1000, onset=400, seed=5)
    assert np.allclose(v.rows[400:, IDX["x5"]], 1.5 * base.rows[400:, IDX["x5"]])


def test_variance_correlation_and_prior_drifts_have_the_stated_magnitude():
    v = drift_stream(POP, "variance", 0.5, n=30000, onset=0, seed=6).rows
    assert v[:, IDX["x5"]].std() == pytest.approx(1.5, abs=0.03)
    c = drift_stream(POP, "correlation", 1.2, n=30000, onset=0, seed=7).rows
    assert np.corrcoef(c[:, IDX["x3"]], c[:, IDX["x4"]])[0, 1] == pytest.approx(-0.6, abs=0.02)
    assert c[:, IDX["x3"]].std() == pytest.approx(1.0, abs=0.02)  # marginals unchanged
    p = drift_stream(POP, "prior", 1.0, n=30000, onset=0, seed=8).rows
    freq = np.bincount(p[:, IDX["segment"]].astype(int), minlength=4) / len(p)
    assert np.allclose(freq, POP.segment_prior[::-1], atol=0.01)


def test_drift_suite_covers_every_kind_and_magnitude():
    suite = drift_suite(POP, seed=1, n=400, onset=100, magnitudes={"mean_shift": (0.1, 1.0), "prior": (0.5,)})
    assert [s.name for s in suite] == ["mean_shift@0.1", "mean_shift@1", "prior@0.5"]
    assert all(s.onset == 100 and s.n == 400 for s in suite)
    assert len({s.seed for s in suite}) == 3


def test_outliers_are_planted_where_and_as_stated():
    s = outlier_stream(POP, 3000, seed=9, rate=0.05)
    assert len(s.outlier_index) == 150 and np.all(np.diff(s.outlier_index) > 0)
    assert s.is_outlier.sum() == 150
    cats = set(CATEGORICAL["segment"])
    base = outlier_stream(POP, 3000, seed=9, rate=0.05)
    assert np.array_equal(base.rows, s.rows)
    for i, kind, sev in zip(s.outlier_index, s.outlier_kind, s.outlier_severity):
        row = s.rows[i]
        if kind == "impossible_segment":
            assert row[IDX["segment"]] not in cats
            assert min(abs(row[IDX["segment"]] - 0), abs(row[IDX["segment"]] - 3)) == pytest.approx(sev)
        elif kind == "far_tail":
            z = [abs(row[IDX[f]] - feature_mean(POP, f)) / feature_sd(POP, f) for f in ("x0", "x1", "x2", "x3", "x4", "x5")]
            assert max(z) == pytest.approx(sev)
        else:
            cov = np.array([[1.0, POP.noise_corr], [POP.noise_corr, 1.0]])
            x = row[[IDX["x3"], IDX["x4"]]]
            assert np.sqrt(x @ np.linalg.inv(cov) @ x) == pytest.approx(sev)
            assert max(abs(x)) < sev / 2  # each value alone is unremarkable
    normal = np.delete(s.rows, s.outlier_index, axis=0)
    assert set(np.unique(normal[:, IDX["segment"]])) <= cats


def test_zero_sample_scenarios_are_named_errors():
    with pytest.raises(EmptyScenario, match="control stream"):
        control_stream(POP, 0, seed=1)
    with pytest.raises(EmptyScenario, match="drift stream"):
        drift_stream(POP, "mean_shift", 1.0, n=0, onset=0, seed=1)
    with pytest.raises(EmptyScenario, match="outlier stream"):
        outlier_stream(POP, 10, seed=1, rate=0.01)  # rounds to zero outliers
    with pytest.raises(EmptyScenario, match="user data"):
        user_stream(np.zeros((0, 7)), name="empty.csv")
    with pytest.raises(ValueError, match="truth"):
        user_stream(np.zeros((3, 7)), name="x", truth=[0, 1])


# --- scoring --------------------------------------------------------------------------------------
def test_classification_scores():
    flags = [1, 1, 0, 0, 1, 0]
    truth = [1, 0, 1, 0, 1, 0]
    s = scoring.classification(flags, truth)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (2, 1, 1, 2)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["fpr"] == pytest.approx(1 / 3)
    none = scoring.classification([0, 0], [0, 1])
    assert none["precision"] is None and none["recall"] == 0 and none["f1"] == 0


def test_recall_by_group():
    flags = np.array([1, 0, 1, 1, 0])
    got = scoring.recall_by_group(flags, [0, 1, 3, 4], ["a", "a", "b", "b"])
    assert got == {"a": {"n": 2, "detected": 1, "recall": 0.5}, "b": {"n": 2, "detected": 1, "recall": 0.5}}


def _verdict(window, members, is_drift, t):
    return {"window": window, "members": members, "is_drift": is_drift, "time": t}


def test_windows_map_back_to_streams_and_score_fpr_and_delay():
    tag = "t1"
    rid = lambda s, start: scoring.request_id(tag, s, start)  # noqa: E731
    verdicts = [
        _verdict(0, [[rid("control", 0), 0, 10], [rid("control", 10), 0, 10]], 0, 1.0),
        _verdict(1, [[rid("control", 20), 0, 10], [rid("shift", 0), 0, 10]], 1, 2.0),   # false alarm: no drifted row
        _verdict(2, [[rid("shift", 10), 0, 10], [rid("shift", 20), 0, 10]], 0, 3.0),  # holds onset 15: missed
        _verdict(3, [[rid("shift", 30), 0, 10], [rid("shift", 40), 0, 5]], 1, 4.5),   # first alarm after onset
        _verdict(4, [["someone-else", 0, 5], [rid("shift", 40), 5, 5]], 1, 5.0),
    ]
    windows = [scoring.locate(v, tag) for v in verdicts]
    assert windows[3].rows == {"shift": (30, 44)}
    assert windows[4].foreign_rows == 5 and windows[4].rows == {"shift": (45, 49)}
    onsets = {"control": None, "shift": 15}
    fpr = scoring.false_positive_rate(windows, onsets)
    assert fpr == {"control_windows": 2, "false_alarms": 1, "fpr": 0.5}
    delay = scoring.detection_delay(windows, "shift", 15, onset_sent_at=4.0)
    assert delay["detected"] and delay["window"] == 3
    assert delay["delay_samples"] == 44 - 15 + 1 and delay["delay_seconds"] == pytest.approx(0.5)
    assert delay["post_onset_windows"] == 3
    missed = scoring.detection_delay(windows[:3], "shift", 15, onset_sent_at=None)
    assert not missed["detected"] and missed["delay_samples"] is None


def test_false_alarm_bound():
    # P[Bin(20, .05) <= 4] = 0.9974 < 0.999 <= P[<= 5] = 0.99967
    assert scoring.binomial_upper(20, 0.05, 0.999) == 5
    assert scoring.binomial_upper(0, 0.05) == 0


def test_latency_summary_ratio():
    s = scoring.latency_summary([0.002] * 10, [0.001] * 10)
    assert s["ratio_p50"] == pytest.approx(2.0) and s["with_detection"]["p50_ms"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        scoring.latency_summary([], [0.1])
