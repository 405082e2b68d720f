"""Drift statistics: seeds by hashing, binomial intervals, window classes, the detection rule, and the rule
applied to windows scored by a per-feature test (KS and chi-square, as TabularDrift does). No server."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as st

from probes import drift, scoring, stats
from probes.scenarios import DRIFT_MAGNITUDES, IDX, drift_suite
from testbed.population import Population

POP = Population(20261125)


# --- seeds ------------------------------------------------------------------------------------------
def test_derived_seeds_do_not_collide_where_addition_did():
    # The old scheme: seed + 1000 (k + 1) + m, and repeat r ran with seed + r.
    assert stats.derive_seed(7, 1, "mean_shift", 0.05) != stats.derive_seed(8, 0, "mean_shift", 0.05)
    assert stats.derive_seed(0, 0, 1) != stats.derive_seed(0, 0, 1.0)
    assert stats.derive_seed(0, 0, "a") == stats.derive_seed(0, 0, "a")
    assert 0 <= stats.derive_seed("x") < 2 ** 63


def test_repeats_and_runs_share_no_stream_draws():
    mags = {k: v for k, v in DRIFT_MAGNITUDES.items()}
    suites = [drift_suite(POP, seed, n=300, onset=100, magnitudes=mags, repeat=r)
              for seed, r in ((7, 0), (7, 1), (8, 0), (7, 2))]
    streams = [s for suite in suites for s in suite]
    assert len({s.seed for s in streams}) == len(streams)
    # No two streams of any repeat hold the same pre-onset rows (undrifted draws are comparable across kinds).
    firsts = {tuple(np.round(s.rows[0], 12)) for s in streams}
    assert len(firsts) == len(streams)


def test_onsets_fall_at_random_phases_of_the_window():
    suite = drift_suite(POP, 3, n=1400, onset=300, repeat=0, onset_jitter=200)
    onsets = [s.onset for s in suite]
    assert all(300 <= o < 500 for o in onsets)
    assert len({o % 200 for o in onsets}) >= 10  # not one phase (18 draws of 200 share some by chance)
    again = drift_suite(POP, 3, n=1400, onset=300, repeat=0, onset_jitter=200)
    assert [s.onset for s in again] == onsets


# --- intervals --------------------------------------------------------------------------------------
def test_clopper_pearson_matches_known_values_and_edges():
    r = stats.clopper_pearson(5, 20)
    assert (r.lo, r.hi) == pytest.approx((0.0866, 0.4910), abs=1e-4)
    zero, full = stats.clopper_pearson(0, 10), stats.clopper_pearson(10, 10)
    assert zero.lo == 0.0 and zero.hi == pytest.approx(1 - 0.025 ** (1 / 10))
    assert full.hi == 1.0 and full.lo == pytest.approx(0.025 ** (1 / 10))
    assert stats.clopper_pearson(0, 0).rate is None
    with pytest.raises(ValueError):
        stats.clopper_pearson(3, 2)


def test_wilson_is_inside_clopper_pearson_and_pooling_adds_counts():
    cp, w = stats.clopper_pearson(7, 30), stats.wilson(7, 30)
    assert cp.lo <= w.lo and w.hi <= cp.hi
    p = stats.pooled([(1, 10), (2, 10), (0, 10)])
    assert (p.k, p.n) == (3, 30) and p.method == stats.CLOPPER_PEARSON


def test_clopper_pearson_covers_at_least_95_percent():
    rng = np.random.default_rng(stats.derive_seed("coverage"))
    for p, n in ((0.05, 40), (0.3, 25), (0.9, 60)):
        ks = rng.binomial(n, p, size=4000)
        hit = np.array([(r.lo <= p <= r.hi) for r in (stats.clopper_pearson(k, n) for k in range(n + 1))])
        covered = hit[ks].mean()
        assert covered >= 0.94, (p, n, covered)


def test_median_summary_is_seeded_and_has_no_interval_for_one_value():
    a = stats.median_summary([100, 120, 140, 300], seed=1)
    assert a == stats.median_summary([100, 120, 140, 300], seed=1)
    assert a.median == 130 and a.lo <= a.median <= a.hi
    one = stats.median_summary([5])
    assert one.n == 1 and one.lo is None
    assert stats.median_summary([]).median is None


def test_precision_bound():
    assert stats.precision_bound(0.05, 0.011) == pytest.approx(0.05 / (0.05 + 0.011 * 0.95))
    assert stats.precision_bound(0.0, 0.0) is None


# --- the detection rule -----------------------------------------------------------------------------
def test_detected_needs_power_above_the_false_positive_upper_bound():
    fpr = stats.clopper_pearson(12, 300)  # 0.04 [0.021, 0.069]
    power = {0.05: stats.clopper_pearson(2, 40), 0.15: stats.clopper_pearson(11, 40),
             0.3: stats.clopper_pearson(35, 40), 0.6: stats.clopper_pearson(40, 40)}
    assert stats.smallest_detected(power, fpr) == 0.15  # above chance ...
    assert stats.smallest_reliable(power) == 0.6  # ... but only 0.6 reaches 0.8 with confidence (0.3: lo 0.73)
    assert stats.smallest_detected({0.3: stats.clopper_pearson(2, 40)}, fpr) is None
    assert stats.smallest_detected(power, stats.clopper_pearson(0, 0)) is None  # no control windows: no claim


# --- windows ----------------------------------------------------------------------------------------
def _w(i, rows, is_drift=False, foreign=0):
    return scoring.Window(index=i, is_drift=is_drift, time=float(i), rows=rows, foreign_rows=foreign)


def test_window_classes_and_counts():
    onsets = {"control": None, "a": 100, "b": 50}
    ws = [_w(0, {"control": (0, 199)}, True),                 # control, false alarm
          _w(1, {"a": (0, 99)}),                             # control: before onset
          _w(2, {"a": (100, 299)}, True),                    # drifted by a
          _w(3, {"a": (300, 399), "b": (0, 99)}, True),      # partial: mixes a's drifted rows with b
          _w(4, {"b": (40, 239)}),                           # partial: straddles b's onset
          _w(5, {"b": (240, 439)}, foreign=3)]               # foreign rows: not ours to score
    got = scoring.window_counts(ws, onsets)
    assert got["control"] == [1, 2] and got["drifted"] == {"a": [1, 1], "b": [0, 0]}
    assert got["partial"] == [1, 2] and got["foreign"] == 1 and got["mixing_streams"] == 2


# --- the rule on a per-feature test, the statistics TabularDrift applies ----------------------------
def _tabular_drift(reference, window, p_val=0.05):
    """Two-sample KS per numeric feature, chi-square on segment, Bonferroni over 7 features: the test
    TabularDrift makes, so this checks the scoring pipeline, not alibi-detect (tests/test_detectors.py
    runs the real one)."""
    ps = []
    for j in range(reference.shape[1]):
        if j == IDX["segment"]:
            cats = np.arange(4)
            obs = np.array([(window[:, j] == c).sum() for c in cats])
            ref = np.array([(reference[:, j] == c).sum() for c in cats])
            ps.append(st.chi2_contingency(np.vstack([ref, obs]) + 1e-9)[1])
        else:
            ps.append(st.ks_2samp(reference[:, j], window[:, j]).pvalue)
    return int(min(ps) < p_val / reference.shape[1])


def _simulate(seed, repeats=4, window=200):
    """Windows as a platform that counts rows would cut them, through the probe's own scenario and scoring."""
    reference, _ = POP.sample(2000, np.random.default_rng(stats.derive_seed(seed, "reference")))
    all_scores = []
    for repeat in range(repeats):
        class Ctx:
            options = {"control_n": 2000, "drift_n": 1400, "onset": 300,
                       "magnitudes": {"mean_shift": (0.05, 1.5), "correlation": (0.6, 1.2)}}
            artifact = type("A", (), {"feature_names": list(IDX), "is_user": False, "metadata": {"recipe": {"seed": POP.seed}}})
        Ctx.seed, Ctx.repeat = seed, repeat
        streams = drift.scenario(Ctx, window)
        tag = "sim"
        rows = [(s.name, i, s.rows[i]) for s in streams for i in range(s.n)]
        offset = int(np.random.default_rng(stats.derive_seed(seed, repeat, "phase")).integers(window))
        rows = rows[offset:]
        windows, sent_at = [], {}
        for s in streams:
            for start in range(0, s.n, 20):
                sent_at[scoring.request_id(tag, s.name, start)] = float(start)
        for w, chunk in enumerate(itertools.zip_longest(*[iter(rows)] * window)):
            if chunk[-1] is None:
                break
            members = {}
            for name, i, _ in chunk:
                members.setdefault(name, [i, i])[1] = i
            X = np.vstack([r for _, _, r in chunk])
            windows.append(scoring.Window(index=w, is_drift=bool(_tabular_drift(reference, X)), time=float(w),
                                          rows={k: tuple(v) for k, v in members.items()}))
        all_scores.append(drift.score(streams, windows, sent_at, tag, 0.05))
    return all_scores


def test_pooled_rule_leaves_correlation_undetected_and_finds_a_large_mean_shift():
    scores = _simulate(seed=stats.derive_seed("pooled-rule"))
    fpr = stats.pooled([(s["false_alarms"], s["control_windows"]) for s in scores])
    power = {kind: {float(m): stats.pooled([s["power_counts"][kind][m] for s in scores])
                    for m in scores[0]["power_counts"][kind]} for kind in ("mean_shift", "correlation")}
    assert fpr.n >= 50 and fpr.hi < 0.15, fpr
    assert stats.smallest_detected(power["correlation"], fpr) is None, power["correlation"]
    assert stats.smallest_detected(power["mean_shift"], fpr) == 1.5, power["mean_shift"]
    assert power["mean_shift"][1.5].n >= 12 and power["mean_shift"][1.5].lo > 0.7
    for s in scores:  # every drifted stream was seen in whole drifted windows, and seeds differ per repeat
        assert all(v["drifted_windows"] >= 3 for v in s["streams"].values()), s["streams"]
    assert len({v["seed"] for s in scores for v in s["streams"].values()}) == 4 * len(scores)


# --- outliers ---------------------------------------------------------------------------------------
def test_outlier_scores_carry_intervals_per_kind_and_the_base_rate_bound():
    from probes import outlier
    from probes.scenarios import outlier_stream

    s = outlier_stream(POP, 2000, seed=stats.derive_seed("outlier-score"), rate=0.05)
    flags = s.is_outlier.copy()
    flags[[i for i, k in zip(s.outlier_index, s.outlier_kind) if k == "impossible_segment"]] = False
    clean = np.flatnonzero(~s.is_outlier)[:19]  # 19 of 1900 clean rows flagged: FPR 0.01
    flags[clean] = True
    got = outlier.score(s, flags, np.zeros(s.n))
    assert got["recall_by_kind"]["impossible_segment"]["recall"] == 0.0
    assert got["recall_by_kind"]["far_tail"]["recall"] == 1.0 and got["recall_by_kind"]["far_tail"]["lo"] < 1.0
    assert got["fpr"] == pytest.approx(0.01) and got["fpr_lo"] < 0.01 < got["fpr_hi"]
    assert got["base_rate"] == pytest.approx(0.05)
    assert got["precision_bound"] == pytest.approx(0.05 / (0.05 + 0.01 * 0.95))
    assert got["precision"] <= got["precision_bound"] + 1e-12
