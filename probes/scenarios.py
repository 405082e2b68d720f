"""Scenario streams with ground truth: pure, seeded, no I/O.

Every stream is drawn from `testbed.population.Population`, the exact process the reference model
was trained on, and carries its truth:
- control: rows drawn like the training data; nothing is true.
- drift (mean_shift, variance, correlation, prior): rows before `onset` are drawn like the training
  data; from `onset` on, one named parameter of the process is changed by `magnitude`.
- outliers: rows like the training data, with rows replaced at known indices by planted outliers of
  a known kind and severity (far tails, impossible values, unseen combinations).

Magnitudes and severities are in units that need no estimate:
- mean_shift: the shift of one feature's mean, in that feature's population standard deviation;
- variance: the factor by which one feature's standard deviation grows, minus one;
- correlation: how much the correlation of x3 and x4 drops (0.6 -> 0.6 - magnitude); their
  marginals do not change, so a detector that tests features one at a time cannot see it;
- prior: the weight m in segment_prior' = (1 - m) * prior + m * reversed(prior).
- far_tail: distance of one numeric feature from its mean, in standard deviations;
- impossible_segment: distance of `segment` outside its category range {0..3};
- unseen_combination: Mahalanobis distance of (x3, x4) = (a, -a) under their joint distribution,
  while each of x3 and x4 alone lies only a = severity * sqrt((1 - rho) / 2) standard deviations out
  (rho = 0.6: severity 6 puts each at 1.9 sd, a value seen in about 6% of training rows).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from probes.stats import derive_seed
from testbed.errors import EmptyScenario
from testbed.population import CATEGORICAL, FEATURES, INFORMATIVE, Population

IDX = {name: i for i, name in enumerate(FEATURES)}
NUMERIC = tuple(f for f in FEATURES if f not in CATEGORICAL)

DRIFT_KINDS = ("mean_shift", "variance", "correlation", "prior")
DRIFT_FEATURE = {"mean_shift": "x0", "variance": "x5", "correlation": "x3,x4", "prior": "segment"}
# Graded from "should be invisible in a 200-row window" to "cannot be missed".
DRIFT_MAGNITUDES = {
    "mean_shift": (0.05, 0.15, 0.3, 0.6, 1.5),
    "variance": (0.05, 0.15, 0.3, 0.6, 1.5),
    "correlation": (0.3, 0.6, 1.2),
    "prior": (0.05, 0.15, 0.3, 0.6, 1.0),
}

OUTLIER_KINDS = ("far_tail", "impossible_segment", "unseen_combination")
OUTLIER_SEVERITIES = {
    "far_tail": (4.0, 6.0, 10.0),
    "impossible_segment": (1.0, 3.0, 10.0),
    "unseen_combination": (4.0, 6.0, 10.0),
}


@dataclass(frozen=True)
class Stream:
    """Rows in the model's feature order, plus what is true about them."""

    name: str
    kind: str
    """control, one of DRIFT_KINDS, or outliers."""

    rows: np.ndarray = field(repr=False)
    seed: int
    magnitude: float = 0.0
    onset: int | None = None
    """Index of the first drifted row (drift streams); None when nothing drifts."""

    feature: str | None = None
    """The feature(s) a drift acts on."""

    outlier_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    """Sorted indices of planted outliers."""

    outlier_kind: tuple[str, ...] = ()
    """Kind of each planted outlier, aligned with outlier_index."""

    outlier_severity: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Severity of each planted outlier (units in the module docstring), aligned with outlier_index."""

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])

    @property
    def is_outlier(self) -> np.ndarray:
        truth = np.zeros(self.n, dtype=bool)
        truth[self.outlier_index] = True
        return truth

    @property
    def is_drifted(self) -> np.ndarray:
        truth = np.zeros(self.n, dtype=bool)
        if self.onset is not None:
            truth[self.onset:] = True
        return truth

    def summary(self) -> dict:
        """Everything but the rows, for a Result's evidence."""
        out = {"name": self.name, "kind": self.kind, "n": self.n, "seed": self.seed, "magnitude": self.magnitude,
               "onset": self.onset, "feature": self.feature}
        if len(self.outlier_index):
            out["n_outliers"] = int(len(self.outlier_index))
            out["outliers_by_kind"] = {k: int(sum(1 for x in self.outlier_kind if x == k))
                                       for k in sorted(set(self.outlier_kind))}
        return out


def _check_n(n: int, what: str) -> None:
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise EmptyScenario(what, n)


def feature_sd(population: Population, name: str) -> float:
    """Exact population standard deviation of a numeric feature (no sampling)."""
    if name in INFORMATIVE:
        j = INFORMATIVE.index(name)
        prior = np.asarray(population.class_prior)
        means = population.class_means[:, j]
        between = float(np.sum(prior * (means - np.sum(prior * means)) ** 2))
        return float(np.sqrt(1.0 + between))
    if name in NUMERIC:
        return 1.0
    raise ValueError(f"{name!r} is not a numeric feature")


def feature_mean(population: Population, name: str) -> float:
    if name in INFORMATIVE:
        return float(np.sum(np.asarray(population.class_prior) * population.class_means[:, INFORMATIVE.index(name)]))
    if name in NUMERIC:
        return 0.0
    raise ValueError(f"{name!r} is not a numeric feature")


def control_stream(population: Population, n: int, seed: int, name: str = "control") -> Stream:
    _check_n(n, f"control stream {name!r}")
    X, _ = population.sample(n, np.random.default_rng(seed))
    return Stream(name=name, kind="control", rows=X, seed=seed)


def drifted_population(population: Population, kind: str, magnitude: float) -> Population:
    """The process after onset, for the kinds that change one of its parameters."""
    if kind == "correlation":
        return dataclasses.replace(population, noise_corr=float(np.clip(population.noise_corr - magnitude, -0.95, 0.95)))
    if kind == "prior":
        if not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"prior drift magnitude must lie in [0, 1], got {magnitude}")
        p = np.asarray(population.segment_prior)
        return dataclasses.replace(population, segment_prior=tuple((1 - magnitude) * p + magnitude * p[::-1]))
    return population


def drift_stream(population: Population, kind: str, magnitude: float, n: int, onset: int, seed: int) -> Stream:
    """Rows like the training data up to `onset`, then with one parameter changed by `magnitude`."""
    if kind not in DRIFT_KINDS:
        raise ValueError(f"unknown drift kind {kind!r}; known: {', '.join(DRIFT_KINDS)}")
    name = f"{kind}@{magnitude:g}"
    _check_n(n, f"drift stream {name!r}")
    if not 0 <= onset < n:
        raise ValueError(f"drift stream {name!r}: onset {onset} must lie in [0, {n})")
    rng = np.random.default_rng(seed)
    before, _ = population.sample(onset, rng) if onset else (np.zeros((0, len(FEATURES))), None)
    after, _ = drifted_population(population, kind, magnitude).sample(n - onset, rng)
    feature = DRIFT_FEATURE[kind]
    if kind == "mean_shift":
        after[:, IDX[feature]] += magnitude * feature_sd(population, feature)
    elif kind == "variance":
        j = IDX[feature]
        mu = feature_mean(population, feature)
        after[:, j] = mu + (after[:, j] - mu) * (1.0 + magnitude)
    return Stream(name=name, kind=kind, rows=np.vstack([before, after]), seed=seed, magnitude=float(magnitude),
                  onset=int(onset), feature=feature)


def drift_suite(population: Population, seed: int, n: int = 1000, onset: int = 400,
                magnitudes: dict[str, tuple[float, ...]] | None = None, repeat: int = 0,
                onset_jitter: int = 0) -> list[Stream]:
    """One stream per (kind, magnitude), each seeded by a hash of (seed, repeat, kind, magnitude): no two
    streams of any run or repeat share draws (addition would: seed + 1000k + m collides across repeats).

    onset_jitter > 0 moves each stream's onset by a seeded uniform 0..onset_jitter-1 rows, so that, with
    onset_jitter = the detector's window, an onset falls at a random phase of the window it lands in."""
    magnitudes = DRIFT_MAGNITUDES if magnitudes is None else magnitudes
    streams = []
    for kind in DRIFT_KINDS:
        for magnitude in magnitudes.get(kind, ()):
            stream_seed = derive_seed(seed, repeat, kind, float(magnitude))
            shift = int(np.random.default_rng(derive_seed(stream_seed, "onset")).integers(onset_jitter)) \
                if onset_jitter > 0 else 0
            streams.append(drift_stream(population, kind, magnitude, n, onset + shift, stream_seed))
    return streams


def outlier_row(population: Population, base: np.ndarray, kind: str, severity: float,
                rng: np.random.Generator) -> np.ndarray:
    """One planted outlier made from a normal row `base`."""
    row = base.copy()
    sign = rng.choice((-1.0, 1.0))
    if kind == "far_tail":
        name = NUMERIC[rng.integers(len(NUMERIC))]
        row[IDX[name]] = feature_mean(population, name) + sign * severity * feature_sd(population, name)
    elif kind == "impossible_segment":
        lo, hi = min(CATEGORICAL["segment"]), max(CATEGORICAL["segment"])
        row[IDX["segment"]] = lo - severity if sign < 0 else hi + severity
    elif kind == "unseen_combination":
        # (a, -a) has Mahalanobis distance a * sqrt(2 / (1 - rho)) under corr(x3, x4) = rho.
        a = severity / np.sqrt(2.0 / (1.0 - population.noise_corr))
        row[IDX["x3"]], row[IDX["x4"]] = sign * a, -sign * a
    else:
        raise ValueError(f"unknown outlier kind {kind!r}; known: {', '.join(OUTLIER_KINDS)}")
    return row


def outlier_stream(population: Population, n: int, seed: int, rate: float = 0.05,
                   severities: dict[str, tuple[float, ...]] | None = None, name: str = "outliers") -> Stream:
    """Rows like the training data with round(rate * n) planted outliers, kinds and severities in turn."""
    _check_n(n, f"outlier stream {name!r}")
    severities = OUTLIER_SEVERITIES if severities is None else severities
    plan = [(kind, s) for kind in OUTLIER_KINDS for s in severities.get(kind, ())]
    n_out = int(round(rate * n))
    if not plan or n_out == 0:
        raise EmptyScenario(f"outlier stream {name!r} (rate {rate}, {len(plan)} kinds x severities)", n_out)
    rng = np.random.default_rng(seed)
    X, _ = population.sample(n, rng)
    index = np.sort(rng.choice(n, size=min(n_out, n), replace=False))
    kinds, sev = [], []
    for i, row_index in enumerate(index):
        kind, s = plan[i % len(plan)]
        X[row_index] = outlier_row(population, X[row_index], kind, s, rng)
        kinds.append(kind)
        sev.append(s)
    return Stream(name=name, kind="outliers", rows=X, seed=seed, outlier_index=index.astype(np.int64),
                  outlier_kind=tuple(kinds), outlier_severity=np.asarray(sev, dtype=float))


def user_stream(rows: np.ndarray, name: str, truth: np.ndarray | None = None, kind: str = "user") -> Stream:
    """A stream of rows a user brought (CSV): truth is a 0/1 outlier flag per row, if given."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise EmptyScenario(f"user data {name!r}", 0 if rows.ndim != 2 else rows.shape[0])
    index = np.zeros(0, dtype=np.int64)
    if truth is not None:
        truth = np.asarray(truth).astype(int).ravel()
        if truth.shape[0] != rows.shape[0]:
            raise ValueError(f"user data {name!r}: {rows.shape[0]} rows but {truth.shape[0]} truth values")
        index = np.flatnonzero(truth).astype(np.int64)
    return Stream(name=name, kind=kind, rows=rows, seed=-1, outlier_index=index,
                  outlier_kind=tuple("user" for _ in index), outlier_severity=np.full(len(index), np.nan))
