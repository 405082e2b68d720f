"""Rows "like the training data" for a user's model: its reference CSV's held-out rows, resampled.

The testbed's own model has a known data-generating process (testbed/population.py) to draw fresh rows
from. A user's model has only the rows they gave: the artifact keeps part of them out of every fit
(detectors, explainer background) and probes draw from that part.

Rows are drawn in passes: each pass is a fresh random permutation of all H held-out rows, taken in order, so
no row repeats within H consecutive rows. Any run of consecutive rows inside a pass is a uniformly random
subset of an i.i.d. sample, hence itself an i.i.d. sample of the population, independent of the reference
the detectors were fitted on: a window of a control stream is an exact no-drift sample. (Drawing with
replacement instead puts duplicates in windows and judges them against the held-out rows' own empirical
distribution: measured on the example credit data (deployers/runtimes/example_models.py, 1500 held-out rows,
TabularDrift at p 0.05 with Bonferroni), 19 of 300 control windows (6.3%) alarmed drawn with replacement, 15 of
400 (3.75%) drawn without.) Windows of different passes share rows, so alarms on them are
correlated; each is still a null sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.tabular import CATEGORICAL, Feature


@dataclass(frozen=True)
class HeldOut:
    rows: np.ndarray
    features: list[Feature]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
        """n rows in passes of random permutations of the held-out rows (no labels: a user's scenarios know no
        classes)."""
        passes = -(-n // len(self.rows)) if n > 0 else 0
        order = np.concatenate([rng.permutation(len(self.rows)) for _ in range(passes)]) if passes else \
            np.zeros(0, dtype=np.int64)
        return self.rows[order[:n]].copy(), None

    @property
    def numeric(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f.kind != CATEGORICAL]

    @property
    def categorical(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f.kind == CATEGORICAL]
