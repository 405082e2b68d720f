"""Statistics of load runs: percentiles, rates and error fractions with bootstrap confidence intervals.

Percentiles are numpy's default (linear interpolation between order statistics). Their
bootstrap intervals use the exact bootstrap distribution of an order statistic rather than
Monte Carlo resampling: in a resample of n values, at most k-1 fall at or below x_(j) with
probability P(Binomial(n, j/n) < k), so the bootstrap CDF of the k-th order statistic is known in
closed form. That is the limit of the percentile bootstrap as resamples go to infinity, and it
costs O(n) on a million latencies. Rates (per-time-bin counts) and ratios use seeded Monte Carlo
bootstrap; error fractions use the exact binomial bootstrap distribution.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

PERCENTILES = (50.0, 90.0, 99.0)
CONFIDENCE = 0.95


def percentile(values, q: float) -> float:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    return float(np.percentile(values, q))


def _order_stat_ci(sorted_values: np.ndarray, k: int, confidence: float) -> tuple[float, float]:
    """Percentile-bootstrap interval of the k-th smallest value (1-based), from its exact distribution."""
    n = sorted_values.size
    j = np.arange(1, n + 1)
    # P(k-th order statistic of a resample <= x_(j)) = P(Binomial(n, j/n) >= k)
    cdf = _st.binom.sf(k - 1, n, j / n)
    alpha = (1 - confidence) / 2
    lo = int(np.searchsorted(cdf, alpha, side="left"))
    hi = int(np.searchsorted(cdf, 1 - alpha, side="left"))
    return float(sorted_values[min(lo, n - 1)]), float(sorted_values[min(hi, n - 1)])


def percentile_ci(values, q: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Bootstrap CI of the q-th percentile (q in 0..100); bounds are order statistics of values."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:
        return float(x[0]), float(x[0])
    # numpy's linear percentile sits between order statistics floor(h) and ceil(h) (1-based h);
    # the outer ones bound the interval.
    h = (n - 1) * q / 100.0 + 1
    lo_k, hi_k = int(np.floor(h)), int(np.ceil(h))
    return _order_stat_ci(x, lo_k, confidence)[0], _order_stat_ci(x, hi_k, confidence)[1]


def max_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Bootstrap interval of the maximum (lower bound only informative: the maximum is never exceeded)."""
    x = np.sort(np.asarray(values, dtype=float))
    if x.size == 0:
        return float("nan"), float("nan")
    return _order_stat_ci(x, x.size, confidence)


def proportion_ci(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Bootstrap interval of a fraction: a resample's count is Binomial(n, successes/n)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    alpha = (1 - confidence) / 2
    return float(_st.binom.ppf(alpha, n, p) / n), float(_st.binom.ppf(1 - alpha, n, p) / n)


def bootstrap(values, statistic=np.mean, n_boot: int = 2000, seed: int = 0,
              confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Seeded Monte Carlo percentile bootstrap of statistic(values) (for small samples, e.g. time bins)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.apply_along_axis(statistic, 1, x[idx]) if statistic not in (np.mean, np.median) \
        else statistic(x[idx], axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))


def ratio_ci(a, b, statistic=np.median, n_boot: int = 2000, seed: int = 0, confidence: float = CONFIDENCE,
             max_n: int = 20000) -> tuple[float, float, float]:
    """statistic(a) / statistic(b) and its bootstrap CI, resampling a and b independently.

    Samples above max_n values are resampled at size max_n (the interval is then slightly
    conservative), which keeps this cheap on long runs.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    point = float(statistic(a) / statistic(b))
    rng = np.random.default_rng(seed)

    def boots(x):
        m = min(x.size, max_n)
        out = np.empty(n_boot)
        for start in range(0, n_boot, 100):  # chunks bound memory at 100 * m values
            stop = min(n_boot, start + 100)
            out[start:stop] = statistic(x[rng.integers(0, x.size, size=(stop - start, m))], axis=1)
        return out

    r = boots(a) / boots(b)
    alpha = (1 - confidence) / 2
    return point, float(np.quantile(r, alpha)), float(np.quantile(r, 1 - alpha))


def difference_ci(a, b, statistic=np.median, n_boot: int = 2000, seed: int = 0, confidence: float = CONFIDENCE,
                  max_n: int = 20000) -> tuple[float, float, float]:
    """statistic(a) - statistic(b) and its bootstrap CI (independent resampling, as ratio_ci)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)

    def boots(x):
        m = min(x.size, max_n)
        out = np.empty(n_boot)
        for start in range(0, n_boot, 100):
            stop = min(n_boot, start + 100)
            out[start:stop] = statistic(x[rng.integers(0, x.size, size=(stop - start, m))], axis=1)
        return out

    d = boots(a) - boots(b)
    alpha = (1 - confidence) / 2
    return float(statistic(a) - statistic(b)), float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))


def rate_bins(done_s: np.ndarray, window_s: float, n_bins: int = 20) -> np.ndarray:
    """Completions per second in n_bins equal bins of [0, window_s] (completions after the window are left out)."""
    edges = np.linspace(0.0, window_s, n_bins + 1)
    counts, _ = np.histogram(done_s[(done_s >= 0) & (done_s <= window_s)], bins=edges)
    return counts / (window_s / n_bins)


def latency_summary(latency_s: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """p50/p90/p99/max (seconds) with bootstrap CIs, plus the count they were computed from."""
    out = {"n": int(latency_s.size)}
    for q in PERCENTILES:
        key = f"p{q:g}"
        out[key] = percentile(latency_s, q)
        out[f"{key}_ci"] = list(percentile_ci(latency_s, q, confidence))
    out["max"] = float(latency_s.max()) if latency_s.size else float("nan")
    out["max_ci"] = list(max_ci(latency_s, confidence))
    out["mean"] = float(latency_s.mean()) if latency_s.size else float("nan")
    return out


def nested_bootstrap(groups, statistic=np.median, n_boot: int = 2000, seed: int = 0,
                     max_n: int = 5000) -> np.ndarray:
    """Bootstrap replicates of statistic(pooled values) resampling at two levels: the groups (repeats)
    with replacement, then the values inside each chosen group. Between-repeat drift (a shared
    machine's load) thus widens the interval instead of hiding in a pooled sample."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(groups), size=len(groups))
        parts = []
        for i in picks:
            g = groups[i]
            parts.append(g[rng.integers(0, g.size, size=min(g.size, max_n))])
        out[b] = statistic(np.concatenate(parts))
    return out


def nested_ratio_ci(groups_a, groups_b, statistic=np.median, n_boot: int = 2000, seed: int = 0,
                    confidence: float = CONFIDENCE, difference: bool = False) -> tuple[float, float, float]:
    """statistic(pooled a) / statistic(pooled b) (or the difference) with a two-level bootstrap CI."""
    a = np.concatenate([np.asarray(g, dtype=float) for g in groups_a])
    b = np.concatenate([np.asarray(g, dtype=float) for g in groups_b])
    ra = nested_bootstrap(groups_a, statistic, n_boot, seed)
    rb = nested_bootstrap(groups_b, statistic, n_boot, seed + 1)
    if difference:
        point, reps = statistic(a) - statistic(b), ra - rb
    else:
        point, reps = statistic(a) / statistic(b), ra / rb
    alpha = (1 - confidence) / 2
    return float(point), float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))


def nested_ci(groups, statistic=np.mean, n_boot: int = 2000, seed: int = 0,
              confidence: float = CONFIDENCE) -> tuple[float, float]:
    reps = nested_bootstrap(groups, statistic, n_boot, seed)
    alpha = (1 - confidence) / 2
    return float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))
