"""Statistics the probes and the report share: seeds derived by hashing, binomial intervals for rates,
bootstrap intervals for medians, and the rule that decides whether a drift magnitude is detected.

Pure functions, no I/O. Every interval names its method, so a reader of a cell knows what it is:
- rates (power, false-positive rate, recall, precision): Clopper-Pearson ("exact") 95% intervals on
  counts pooled over repeats; Wilson is offered for comparison;
- medians (delays): a seeded percentile bootstrap over the units (detected streams);
- minima of a grid get no interval: the magnitude ladder is fixed, so the uncertainty lives in the
  power of each rung, which is reported instead.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st

CONFIDENCE = 0.95
CLOPPER_PEARSON = "Clopper-Pearson 95%"
WILSON = "Wilson 95%"
BOOTSTRAP = "percentile bootstrap 95%"


def derive_seed(*parts) -> int:
    """A 63-bit seed from a hash of `parts` (run seed, repeat, stream kind, magnitude, ...).

    Addition makes neighbours collide (seed 7 + repeat 1 == seed 8 + repeat 0; kind k's magnitude m+1000
    == kind k+1's m): hashing the tuple gives every distinct tuple its own stream of draws. Floats are
    written with repr so 0.1 and 0.10000000000000002 stay apart, and ints and floats stay apart too."""
    text = "\x1f".join(f"{type(p).__name__}:{p!r}" for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Rate:
    """k successes in n trials, with an interval and the name of its method."""

    k: int
    n: int
    rate: float | None
    lo: float | None
    hi: float | None
    method: str

    def to_json(self) -> dict:
        return asdict(self)

    def text(self, digits: int = 2) -> str:
        if self.rate is None:
            return f"n=0 ({self.method})"
        return f"{self.rate:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}] {self.k}/{self.n}"


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> Rate:
    """The exact binomial interval: never narrower than the truth needs (conservative), defined at k=0 and k=n."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"binomial interval of {k} successes in {n} trials")
    if n == 0:
        return Rate(0, 0, None, None, None, CLOPPER_PEARSON)
    a = 1 - confidence
    lo = 0.0 if k == 0 else float(_st.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(_st.beta.ppf(1 - a / 2, k + 1, n - k))
    return Rate(k, n, k / n, lo, hi, CLOPPER_PEARSON)


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> Rate:
    k, n = int(k), int(n)
    if n == 0:
        return Rate(0, 0, None, None, None, WILSON)
    z = float(_st.norm.ppf(1 - (1 - confidence) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Rate(k, n, p, max(0.0, centre - half), min(1.0, centre + half), WILSON)


def pooled(counts, method=clopper_pearson) -> Rate:
    """One Rate from [(k, n), ...] (e.g. one per repeat): counts are added, then the interval is taken."""
    k = sum(int(c[0]) for c in counts)
    n = sum(int(c[1]) for c in counts)
    return method(k, n)


def detected_above_chance(power: Rate, fpr: Rate) -> bool:
    """A magnitude counts as detected when its power's lower bound exceeds the false-positive rate's
    upper bound: more alarms than chance can explain, at the stated confidence, on both sides."""
    return power.n > 0 and fpr.n > 0 and power.lo > fpr.hi


def smallest_detected(power_by_magnitude: dict[float, Rate], fpr: Rate) -> float | None:
    """The smallest magnitude detected above chance (None when none is: an undetectable drift stays undetected)."""
    hits = [m for m, p in power_by_magnitude.items() if detected_above_chance(p, fpr)]
    return min(hits) if hits else None


RELIABLE_POWER = 0.8
"""Power a magnitude must reach with confidence (lower bound) to be called reliably detected."""


def smallest_reliable(power_by_magnitude: dict[float, Rate], power: float = RELIABLE_POWER) -> float | None:
    """The smallest magnitude whose power's lower bound reaches `power`: detected in most windows, not just
    more often than chance."""
    hits = [m for m, p in power_by_magnitude.items() if p.n > 0 and p.lo >= power]
    return min(hits) if hits else None


@dataclass(frozen=True)
class Summary:
    """A distribution summarised: n, median with a bootstrap interval, and quartiles."""

    n: int
    median: float | None
    lo: float | None
    hi: float | None
    p25: float | None
    p75: float | None
    method: str = BOOTSTRAP

    def to_json(self) -> dict:
        return asdict(self)


def median_summary(values, seed: int = 0, resamples: int = 2000) -> Summary:
    """Median of `values` with a seeded percentile-bootstrap interval (None when n < 2: one value has none)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return Summary(0, None, None, None, None, None)
    med = float(np.median(v))
    p25, p75 = (float(x) for x in np.percentile(v, [25, 75]))
    if v.size < 2:
        return Summary(1, med, None, None, p25, p75)
    rng = np.random.default_rng(derive_seed("bootstrap-median", seed, v.size))
    boots = np.median(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
    lo, hi = (float(x) for x in np.percentile(boots, [2.5, 97.5]))
    return Summary(int(v.size), med, lo, hi, p25, p75)


def precision_bound(base_rate: float, fpr: float, recall: float = 1.0) -> float | None:
    """The precision a detector with this recall and false-positive rate reaches at this base rate of true
    positives: r*pi / (r*pi + f*(1 - pi)). At recall 1 it is the best any such detector can do."""
    num = recall * base_rate
    den = num + fpr * (1 - base_rate)
    return num / den if den > 0 else None
