"""Scenario streams with ground truth for a user's model, made from the held-out rows of their reference CSV.

Pure and seeded, like probes/scenarios.py (whose Stream they return), but with no data-generating process
to change: every stream resamples the held-out rows (testbed/heldout.py), which no detector was fitted on,
and the truth is what was done to them.
- control: held-out rows, nothing changed (the no-drift control: false alarms are counted on it).
- drift, applied from `onset` on, in the units the probes report:
  * mean_shift: one numeric feature + magnitude x its reference standard deviation;
  * variance: one numeric feature's deviations from its reference mean scaled by 1 + magnitude;
  * correlation: the most correlated pair of numeric features (|r| >= MIN_PAIR_CORR in the reference) loses
    `magnitude` of its correlation: the second feature's values are shuffled among a share `magnitude` of the
    rows, which keeps both marginals exactly and scales the correlation by about 1 - magnitude;
  * prior: one categorical feature's category distribution p becomes (1 - m) p + m reversed(p) (categories
    ordered by reference frequency), by resampling whole held-out rows with weights p'/p.
  The features acted on are chosen from the reference and recorded on each stream (`feature`).
- outliers, planted in held-out rows at known indices, relative to the reference:
  * far_tail: one numeric feature set `severity` reference standard deviations beyond the reference's range;
  * impossible_category: one categorical feature set to a value the reference never had (`severity` steps
    beyond its largest code or value);
  * unseen_combination: the most correlated numeric pair (|r| >= MIN_PAIR_CORR) set to (m1 + a sd1,
    m2 - sign(r) a sd2), Mahalanobis distance `severity` under the pair's reference covariance, each feature
    alone only a = severity / sqrt(2 / (1 - |r|)) standard deviations from its mean.
A kind that the data cannot carry (no numeric feature, no categorical feature, no correlated pair) is left out,
and `plan` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probes.scenarios import Stream
from probes.stats import derive_seed
from testbed.errors import EmptyScenario
from testbed.heldout import HeldOut

DRIFT_MAGNITUDES = {
    "mean_shift": (0.05, 0.15, 0.3, 0.6, 1.5),
    "variance": (0.05, 0.15, 0.3, 0.6, 1.5),
    "correlation": (0.25, 0.5, 1.0),
    "prior": (0.05, 0.15, 0.3, 0.6, 1.0),
}
OUTLIER_SEVERITIES = {
    "far_tail": (0.5, 2.0, 5.0),
    "impossible_category": (1.0, 3.0, 10.0),
    "unseen_combination": (4.0, 6.0, 10.0),
}
MIN_PAIR_CORR = 0.3
"""A correlation drift or an unseen combination needs a pair of numeric features correlated at least this much."""

MIN_CONTINUOUS = 20
"""mean_shift and variance act on the first numeric feature with at least this many distinct reference values
(the most continuous one when none has)."""


@dataclass(frozen=True)
class Plan:
    """Which features each kind acts on, from the reference rows, and the kinds left out (with the reason)."""

    reference_mean: np.ndarray = field(repr=False)
    reference_sd: np.ndarray = field(repr=False)
    reference_min: np.ndarray = field(repr=False)
    reference_max: np.ndarray = field(repr=False)
    names: tuple[str, ...]
    shift_feature: int | None
    pair: tuple[int, int] | None
    pair_corr: float | None
    prior_feature: int | None
    prior_order: tuple = ()
    prior_p: tuple = ()
    categorical: tuple[int, ...] = ()
    numeric: tuple[int, ...] = ()
    left_out: dict = field(default_factory=dict)

    def describe(self) -> dict:
        n = self.names
        return {"mean_shift/variance feature": None if self.shift_feature is None else n[self.shift_feature],
                "correlated pair": None if self.pair is None else [n[self.pair[0]], n[self.pair[1]]],
                "pair correlation": self.pair_corr,
                "prior feature": None if self.prior_feature is None else n[self.prior_feature],
                "left out": dict(self.left_out)}


def plan(reference: np.ndarray, source: HeldOut) -> Plan:
    """Choose the features each kind acts on, from the reference rows (the detectors' own reference)."""
    ref = np.asarray(reference, dtype=np.float64)
    names = tuple(f.name for f in source.features)
    numeric = [j for j in source.numeric if float(np.std(ref[:, j])) > 0]
    categorical = list(source.categorical)
    left_out = {}
    shift = None
    if numeric:
        distinct = {j: len(np.unique(ref[:, j])) for j in numeric}
        continuous = [j for j in numeric if distinct[j] >= MIN_CONTINUOUS]
        shift = continuous[0] if continuous else max(numeric, key=lambda j: distinct[j])
    else:
        left_out["mean_shift"] = left_out["variance"] = left_out["far_tail"] = \
            "no numeric feature varies in the reference"
    pair, corr = None, None
    if len(numeric) >= 2:
        c = np.corrcoef(ref[:, numeric], rowvar=False)
        np.fill_diagonal(c, 0.0)
        a, b = np.unravel_index(np.nanargmax(np.abs(c)), c.shape)
        if abs(c[a, b]) >= MIN_PAIR_CORR:
            pair, corr = (numeric[min(a, b)], numeric[max(a, b)]), float(c[a, b])
    if pair is None:
        left_out["correlation"] = left_out["unseen_combination"] = \
            f"no pair of numeric features correlates with |r| >= {MIN_PAIR_CORR} in the reference"
    prior, order, p = None, (), ()
    if categorical:
        # the categorical feature whose reversed distribution moves the most probability mass
        best = None
        for j in categorical:
            values, counts = np.unique(ref[:, j], return_counts=True)
            if len(values) < 2:
                continue
            idx = np.argsort(-counts, kind="stable")
            probs = counts[idx] / counts.sum()
            moved = float(np.abs(probs - probs[::-1]).sum())
            if best is None or moved > best[0]:
                best = (moved, j, tuple(values[idx].tolist()), tuple(probs.tolist()))
        if best is not None and best[0] > 0:
            _, prior, order, p = best
        else:
            left_out["prior"] = "every categorical feature's reference distribution is symmetric or constant"
    else:
        left_out["prior"] = left_out["impossible_category"] = "no categorical feature"
    return Plan(reference_mean=ref.mean(axis=0), reference_sd=ref.std(axis=0), reference_min=ref.min(axis=0),
                reference_max=ref.max(axis=0), names=names, shift_feature=shift, pair=pair, pair_corr=corr,
                prior_feature=prior, prior_order=order, prior_p=p, categorical=tuple(categorical),
                numeric=tuple(numeric), left_out=left_out)


def drift_kinds(p: Plan) -> tuple[str, ...]:
    return tuple(k for k in DRIFT_MAGNITUDES if k not in p.left_out)


def outlier_kinds(p: Plan) -> tuple[str, ...]:
    return tuple(k for k in OUTLIER_SEVERITIES if k not in p.left_out)


def control_stream(source: HeldOut, n: int, seed: int, name: str = "control") -> Stream:
    if n <= 0:
        raise EmptyScenario(f"control stream {name!r}", n)
    rows, _ = source.sample(n, np.random.default_rng(seed))
    return Stream(name=name, kind="control", rows=rows, seed=seed)


def drift_stream(source: HeldOut, p: Plan, kind: str, magnitude: float, n: int, onset: int, seed: int) -> Stream:
    if kind not in drift_kinds(p):
        raise ValueError(f"drift kind {kind!r} cannot be made from this data: "
                         f"{p.left_out.get(kind, 'unknown kind')}")
    name = f"{kind}@{magnitude:g}"
    if n <= 0:
        raise EmptyScenario(f"drift stream {name!r}", n)
    if not 0 <= onset < n:
        raise ValueError(f"drift stream {name!r}: onset {onset} must lie in [0, {n})")
    rng = np.random.default_rng(seed)
    before, _ = source.sample(onset, rng)
    if kind == "prior":
        j = p.prior_feature
        if not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"prior drift magnitude must lie in [0, 1], got {magnitude}")
        probs = np.asarray(p.prior_p)
        target = (1 - magnitude) * probs + magnitude * probs[::-1]
        col = source.rows[:, j]
        weights = np.zeros(len(col))
        for value, pr, tg in zip(p.prior_order, probs, target):
            members = col == value
            if members.any():
                weights[members] = tg / members.sum()
        weights /= weights.sum()
        after = source.rows[rng.choice(len(col), size=n - onset, p=weights)].copy()
        feature = p.names[j]
    else:
        after, _ = source.sample(n - onset, rng)
        if kind == "mean_shift":
            j = p.shift_feature
            after[:, j] += magnitude * p.reference_sd[j]
            feature = p.names[j]
        elif kind == "variance":
            j = p.shift_feature
            mu = p.reference_mean[j]
            after[:, j] = mu + (after[:, j] - mu) * (1.0 + magnitude)
            feature = p.names[j]
        else:  # correlation
            a, b = p.pair
            share = float(np.clip(magnitude, 0.0, 1.0))
            chosen = np.flatnonzero(rng.random(len(after)) < share)
            after[chosen, b] = after[rng.permutation(chosen), b]
            feature = f"{p.names[a]},{p.names[b]}"
    return Stream(name=name, kind=kind, rows=np.vstack([before, after]), seed=seed, magnitude=float(magnitude),
                  onset=int(onset), feature=feature)


def drift_suite(source: HeldOut, p: Plan, seed: int, n: int, onset: int, magnitudes: dict | None = None,
                repeat: int = 0, onset_jitter: int = 0) -> list[Stream]:
    """One stream per (kind the data carries, magnitude), seeded by hashing (seed, repeat, kind, magnitude)."""
    magnitudes = DRIFT_MAGNITUDES if magnitudes is None else magnitudes
    streams = []
    for kind in drift_kinds(p):
        for magnitude in magnitudes.get(kind, ()):
            stream_seed = derive_seed(seed, repeat, "user", kind, float(magnitude))
            shift = int(np.random.default_rng(derive_seed(stream_seed, "onset")).integers(onset_jitter)) \
                if onset_jitter > 0 else 0
            streams.append(drift_stream(source, p, kind, magnitude, n, onset + shift, stream_seed))
    return streams


def outlier_row(base: np.ndarray, p: Plan, kind: str, severity: float, rng: np.random.Generator) -> tuple:
    """(row, feature name) of one planted outlier made from a held-out row."""
    row = base.copy()
    up = bool(rng.integers(2))
    if kind == "far_tail":
        j = p.numeric[rng.integers(len(p.numeric))]
        sd = p.reference_sd[j]
        row[j] = p.reference_max[j] + severity * sd if up else p.reference_min[j] - severity * sd
        return row, p.names[j]
    if kind == "impossible_category":
        j = p.categorical[rng.integers(len(p.categorical))]
        step = max(1.0, np.round(severity))
        row[j] = p.reference_max[j] + step if up else p.reference_min[j] - step
        return row, p.names[j]
    if kind == "unseen_combination":
        a, b = p.pair
        r = abs(p.pair_corr)
        dist = severity / np.sqrt(2.0 / (1.0 - r))
        sign = 1.0 if up else -1.0
        row[a] = p.reference_mean[a] + sign * dist * p.reference_sd[a]
        row[b] = p.reference_mean[b] - np.sign(p.pair_corr) * sign * dist * p.reference_sd[b]
        return row, f"{p.names[a]},{p.names[b]}"
    raise ValueError(f"unknown outlier kind {kind!r}")


def outlier_stream(source: HeldOut, p: Plan, n: int, seed: int, rate: float = 0.05, severities: dict | None = None,
                   name: str = "outliers") -> Stream:
    """Held-out rows with round(rate * n) planted outliers, kinds and severities in turn (kinds the data
    carries only)."""
    if n <= 0:
        raise EmptyScenario(f"outlier stream {name!r}", n)
    severities = OUTLIER_SEVERITIES if severities is None else severities
    schedule = [(k, s) for k in outlier_kinds(p) for s in severities.get(k, ())]
    n_out = int(round(rate * n))
    if not schedule or n_out == 0:
        raise EmptyScenario(f"outlier stream {name!r} (rate {rate}, kinds {list(outlier_kinds(p))})", n_out)
    rng = np.random.default_rng(seed)
    rows, _ = source.sample(n, rng)
    index = np.sort(rng.choice(n, size=min(n_out, n), replace=False))
    kinds, sev = [], []
    for i, r in enumerate(index):
        kind, s = schedule[i % len(schedule)]
        rows[r], _ = outlier_row(rows[r], p, kind, s, rng)
        kinds.append(kind)
        sev.append(s)
    return Stream(name=name, kind="outliers", rows=rows, seed=seed, outlier_index=index.astype(np.int64),
                  outlier_kind=tuple(kinds), outlier_severity=np.asarray(sev, dtype=float))
