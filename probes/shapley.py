"""Exact interventional Shapley values, and explanations scored against them value by value.

For a model f (rows -> class probabilities), a background set B and a row x, the interventional value of a
coalition S of features is v(S) = mean over b in B of f(x_S, b_rest): x's values on S, the background row's
elsewhere. The Shapley value of feature i is the weighted sum over coalitions S not holding i of
|S|! (n - |S| - 1)! / n! * (v(S + i) - v(S)). With 7 features there are 2^7 = 128 coalitions, so every value
is computed exactly: 128 * |B| model evaluations per explained row, no sampling. This is the quantity that
KernelSHAP with a background B estimates (and recovers exactly when it enumerates every coalition), so an
explainer's answer can be checked number by number, not by whether the planted features come out on top.

Pure: `exact` takes any callable; `score` takes arrays.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

MAX_FEATURES = 12
"""2^12 coalitions is still exact and quick; beyond it `exact` refuses and `permutation` samples."""

PERMUTATIONS = 2000
"""Samples (permutation, background row) per explained row for `permutation` (models with > MAX_FEATURES)."""

Z_BOUND = 3.29
"""A sampled value's error bound is Z_BOUND standard errors (two-sided 99.9% under the normal approximation of
a mean of PERMUTATIONS independent marginal contributions)."""

TOLERANCE = 0.01
"""Largest absolute error (in probability) between an explainer's value and the exact one for `pass`."""


def coalitions(n_features: int) -> np.ndarray:
    """All 2^n masks, shape (2^n, n), bool."""
    if not 1 <= n_features <= MAX_FEATURES:
        raise ValueError(f"exact Shapley values need 1..{MAX_FEATURES} features, got {n_features}")
    return np.array(list(itertools.product((False, True), repeat=n_features)), dtype=bool)


def exact(predict, rows: np.ndarray, background: np.ndarray) -> dict:
    """Exact interventional Shapley values of `predict` (rows -> (n, outputs)) at each row of `rows`.

    Returns {"values": (outputs, rows, features), "expected_value": (outputs,) = mean predict(background),
    "prediction": (rows, outputs) = predict(rows), "coalitions": 2^n, "evaluations": count}."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    background = np.atleast_2d(np.asarray(background, dtype=np.float64))
    n = rows.shape[1]
    if background.shape[1] != n:
        raise ValueError(f"background has {background.shape[1]} features, rows have {n}")
    masks = coalitions(n)
    index = {tuple(m): j for j, m in enumerate(masks)}
    size = masks.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) if s < n else 0.0
                       for s in range(n + 1)])
    values, predictions = [], []
    evaluations = 0
    for x in rows:
        # (coalitions, background, features): x on the coalition, the background row elsewhere.
        grid = np.where(masks[:, None, :], x[None, None, :], background[None, :, :])
        out = np.asarray(predict(grid.reshape(-1, n)), dtype=np.float64)
        evaluations += grid.shape[0] * grid.shape[1]
        out = out.reshape(len(masks), len(background), -1)
        v = out.mean(axis=1)  # (coalitions, outputs)
        phi = np.zeros((v.shape[1], n))
        for j, m in enumerate(masks):
            for i in np.flatnonzero(~m):
                with_i = m.copy()
                with_i[i] = True
                phi[:, i] += weight[size[j]] * (v[index[tuple(with_i)]] - v[j])
        values.append(phi)
        predictions.append(v[index[(True,) * n]])
    expected = np.asarray(predict(background), dtype=np.float64).mean(axis=0)
    return {"values": np.stack(values, axis=1), "expected_value": expected, "prediction": np.asarray(predictions),
            "coalitions": len(masks), "evaluations": evaluations}


def permutation(predict, rows: np.ndarray, background: np.ndarray, samples: int = PERMUTATIONS,
                seed: int = 0) -> dict:
    """Interventional Shapley values estimated by sampling, for models with more than MAX_FEATURES features.

    Each sample draws a permutation of the features and a background row b uniformly; walking the permutation,
    feature i's marginal contribution is f(x on the features before it and i, b elsewhere) - f(x on the features
    before it, b elsewhere). Its mean over all permutations and background rows is exactly the value `exact`
    computes, so the sample mean is unbiased; "stderr" is each value's standard error (sample sd / sqrt(samples)),
    and every sample costs n + 1 model evaluations. Same return shape as `exact`, plus "stderr" and "permutations".
    """
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    background = np.atleast_2d(np.asarray(background, dtype=np.float64))
    n = rows.shape[1]
    if background.shape[1] != n:
        raise ValueError(f"background has {background.shape[1]} features, rows have {n}")
    if samples < 2:
        raise ValueError("permutation sampling needs at least 2 samples per row")
    rng = np.random.default_rng(seed)
    values, errors, predictions = [], [], []
    evaluations = 0
    steps = np.arange(n + 1)[:, None] > np.arange(n)[None, :]  # (n+1, n): step k has the first k positions on
    for x in rows:
        perms = np.argsort(rng.random((samples, n)), axis=1)
        base = background[rng.integers(len(background), size=samples)]
        on = np.zeros((samples, n + 1, n), dtype=bool)
        # position p of permutation m is feature perms[m, p]: switched on from step p + 1 onwards.
        on[np.arange(samples)[:, None, None], np.arange(n + 1)[None, :, None], perms[:, None, :]] = steps[None]
        grid = np.where(on, x[None, None, :], base[:, None, :])
        out = np.asarray(predict(grid.reshape(-1, n)), dtype=np.float64).reshape(samples, n + 1, -1)
        evaluations += samples * (n + 1)
        delta = out[:, 1:, :] - out[:, :-1, :]  # (samples, positions, outputs): contribution of perms[m, p]
        contrib = np.zeros((samples, delta.shape[2], n))
        idx = np.arange(samples)[:, None]
        for o in range(delta.shape[2]):
            contrib[idx, o, perms] = delta[:, :, o]
        values.append(contrib.mean(axis=0))
        errors.append(contrib.std(axis=0, ddof=1) / np.sqrt(samples))
        predictions.append(np.asarray(predict(x[None, :]), dtype=np.float64)[0])
        evaluations += 1
    expected = np.asarray(predict(background), dtype=np.float64).mean(axis=0)
    return {"values": np.stack(values, axis=1), "stderr": np.stack(errors, axis=1), "expected_value": expected,
            "prediction": np.asarray(predictions), "permutations": samples, "evaluations": evaluations}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.all(ra == ra[0]) or np.all(rb == rb[0]):
        return 1.0 if np.array_equal(ra, rb) else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def score(values, truth: dict, expected_value=None, prediction=None, k: int = 3,
          sign_floor: float = 1e-3) -> dict:
    """An explainer's values (outputs, rows, features) against `exact`'s, value by value.

    - max_abs_error / mean_abs_error: |value - exact value| over every class, row and feature;
    - sign_agreement: share of values whose sign matches, among exact values larger than `sign_floor` (smaller
      ones have no meaningful sign);
    - rank_agreement: mean Spearman correlation of |values| with |exact values| per (class, row);
    - topk_agreement: share of (class, row) whose k largest |values| are the exact k largest;
    - additivity_error: max |sum of values + expected_value - prediction|, with the explainer's own expected
      value and prediction when it reports them (the efficiency property every Shapley explanation has).
    Verdict `pass` needs max_abs_error <= TOLERANCE, sign agreement 1 and additivity within TOLERANCE.
    When the truth was sampled (`permutation`: truth["stderr"]), each value may differ by TOLERANCE plus its
    error bound (Z_BOUND standard errors), and a sign counts only where |truth| exceeds that bound too."""
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(truth["values"], dtype=np.float64)
    if v.shape != t.shape:
        raise ValueError(f"explanation values of shape {list(v.shape)}, exact values of shape {list(t.shape)}")
    bound = np.zeros_like(t) if truth.get("stderr") is None else Z_BOUND * np.asarray(truth["stderr"], dtype=np.float64)
    err = np.abs(v - t)
    big = np.abs(t) > np.maximum(sign_floor, bound)
    signs = float(np.mean(np.sign(v[big]) == np.sign(t[big]))) if big.any() else None
    ranks, tops = [], []
    for c in range(t.shape[0]):
        for r in range(t.shape[1]):
            a, b = np.abs(v[c, r]), np.abs(t[c, r])
            ranks.append(_spearman(a, b))
            tops.append(set(np.argsort(-a, kind="stable")[:k]) == set(np.argsort(-b, kind="stable")[:k]))
    ev = np.asarray(truth["expected_value"] if expected_value is None else expected_value, dtype=np.float64)
    pred = np.asarray(truth["prediction"] if prediction is None else prediction, dtype=np.float64)
    additivity = float(np.max(np.abs(v.sum(axis=2) + ev.reshape(-1, 1) - pred.T)))
    scores = {
        "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
        "sign_agreement": signs, "rank_agreement": float(np.mean(ranks)), "topk_agreement": float(np.mean(tops)),
        "additivity_error": additivity,
        "expected_value_error": float(np.max(np.abs(ev - np.asarray(truth["expected_value"])))),
        "values_compared": int(v.size), "k": k, "tolerance": TOLERANCE,
        "truth": "exact" if truth.get("stderr") is None else "permutation-sampled",
        "max_truth_error_bound": float(bound.max()),
        "values_outside_tolerance": int(np.sum(err > TOLERANCE + bound)),
    }
    ok = scores["values_outside_tolerance"] == 0 and (signs is None or signs == 1.0) and additivity <= TOLERANCE
    return {"scores": scores, "verdict": "pass" if ok else "fail"}


def mean_abs_deviation_explainer(rows: np.ndarray, background: np.ndarray, n_outputs: int) -> np.ndarray:
    """A fake explainer that ignores the model: |x - mean(background)| for every class. It ranks large-spread
    features first, which on the reference data are also the planted ones; the exact scoring must fail it."""
    dev = np.abs(np.asarray(rows, dtype=np.float64) - np.asarray(background).mean(axis=0))
    return np.repeat(dev[None], n_outputs, axis=0)


# --- model variants that make an explainer's test hard ----------------------------------------------
def variant_models(seed: int, n_train: int = 4000) -> dict:
    """Models on the reference population (testbed/population.py) built so that shortcuts fail:

    - `reference`: LogisticRegression as the testbed serves it (x0..x2 carry the label);
    - `wide_zero_noise`: x5 is multiplied by 50 in every row and its coefficients are set to 0: the feature
      with by far the largest spread has exactly zero effect, so an explainer that follows spread, not the
      model, puts it first; its exact Shapley values are exactly 0;
    - `leans_on_noise`: labels made to depend on x3 (a noise feature of the population), so the model leans
      on it: the planted features are no longer the top ones, and only the model's own behaviour says so.
    Returns name -> {"model", "transform" (raw population rows -> model input), "note"}."""
    from sklearn.linear_model import LogisticRegression

    from testbed.population import Population

    pop = Population(seed)
    rng = np.random.default_rng(seed + 1)
    X, y = pop.sample(n_train, rng)
    out = {"reference": {"model": LogisticRegression(max_iter=1000).fit(X, y), "transform": lambda a: a,
                         "note": "the served model's recipe"}}
    wide = np.ones(X.shape[1])
    wide[5] = 50.0
    m = LogisticRegression(max_iter=1000).fit(X * wide, y)
    m.coef_[:, 5] = 0.0
    out["wide_zero_noise"] = {"model": m, "transform": lambda a, w=wide: np.asarray(a) * w,
                              "note": "x5 x50, coefficients of x5 set to 0"}
    lean_y = np.where(X[:, 3] > 0.5, 2, np.where(X[:, 3] < -0.5, 0, y))
    out["leans_on_noise"] = {"model": LogisticRegression(max_iter=1000).fit(X, lean_y), "transform": lambda a: a,
                             "note": "labels overwritten by the sign of x3 where |x3| > 0.5"}
    return out
