"""Statistics of the load generator on known data (no server)."""

import numpy as np
import pytest

from testbed.loadgen import stats


def test_percentiles_on_known_data():
    x = np.arange(1, 101)  # 1..100
    assert stats.percentile(x, 50) == 50.5
    assert stats.percentile(x, 90) == pytest.approx(90.1)
    assert stats.percentile(x, 99) == pytest.approx(99.01)
    assert np.isnan(stats.percentile([], 50))


def test_exact_percentile_bootstrap_matches_monte_carlo():
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 1, size=400)
    for q in (50, 90, 99):
        lo, hi = stats.percentile_ci(x, q)
        boots = np.percentile(x[rng.integers(0, x.size, size=(20000, x.size))], q, axis=1)
        mc_lo, mc_hi = np.quantile(boots, [0.025, 0.975])
        srt = np.sort(x)
        rank = lambda v: np.searchsorted(srt, v)  # noqa: E731
        # Same interval up to a couple of order statistics (Monte Carlo error, interpolation).
        assert abs(rank(lo) - rank(mc_lo)) <= 3 and abs(rank(hi) - rank(mc_hi)) <= 3, (q, lo, hi, mc_lo, mc_hi)
        assert lo <= stats.percentile(x, q) <= hi


def test_percentile_ci_covers_the_true_median():
    # 95% intervals from 200 samples of U(0,1): the true median 0.5 is inside ~95% of the time.
    rng = np.random.default_rng(2)
    hits = sum(lo <= 0.5 <= hi for lo, hi in (stats.percentile_ci(rng.random(200), 50) for _ in range(300)))
    assert 0.90 <= hits / 300 <= 0.99


def test_proportion_and_ratio_intervals():
    assert stats.proportion_ci(0, 1000) == (0.0, 0.0)
    lo, hi = stats.proportion_ci(100, 1000)
    assert 0.08 < lo < 0.1 < hi < 0.12
    rng = np.random.default_rng(3)
    b = rng.exponential(1.0, 3000)
    a = 2.0 * rng.exponential(1.0, 3000)
    point, lo, hi = stats.ratio_ci(a, b, seed=4)
    assert lo < point < hi and lo < 2.0 < hi and hi - lo < 0.5
    d, dlo, dhi = stats.difference_ci(b + 1.0, b, seed=5)
    assert d == pytest.approx(1.0) and dlo <= 1.0 <= dhi


def test_rate_bins_count_only_the_window():
    done = np.array([0.05, 0.1, 0.6, 0.9, 1.5])  # the last one is after a 1 s window
    bins = stats.rate_bins(done, 1.0, n_bins=2)
    assert bins.tolist() == [4.0, 4.0]  # 2 per half second each


def test_nested_bootstrap_widens_with_between_repeat_drift():
    rng = np.random.default_rng(6)
    steady = [rng.normal(100, 5, 50) for _ in range(3)]
    drifting = [rng.normal(m, 5, 50) for m in (80, 100, 120)]
    lo1, hi1 = stats.nested_ci(steady, np.mean, n_boot=500)
    lo2, hi2 = stats.nested_ci(drifting, np.mean, n_boot=500)
    assert lo1 < 100 < hi1 and (hi2 - lo2) > 3 * (hi1 - lo1)
    point, lo, hi = stats.nested_ratio_ci([g * 2 for g in steady], steady, np.mean, n_boot=500)
    assert lo < point < hi and lo < 2.0 < hi
