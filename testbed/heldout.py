"""Rows "like the training data" for a user's model: its reference CSV's held-out rows, resampled.

The testbed's own model has a known data-generating process (testbed/population.py) to draw fresh rows
from. A user's model has only the rows they gave: the artifact keeps part of them out of every fit
(detectors, explainer background) and probes draw from that part, uniformly with replacement. A stream
drawn here is an i.i.d. sample of the held-out rows' empirical distribution, so with H held-out rows a
detector sees the population through H rows: its false-positive rate on such a control carries an extra
O(1/sqrt(H)) deviation that is the same for every window (the artifact's `split` records H).
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
        """n rows drawn uniformly with replacement (no labels: a user's scenarios know no classes)."""
        return self.rows[rng.integers(0, len(self.rows), size=n)].copy(), None

    @property
    def numeric(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f.kind != CATEGORICAL]

    @property
    def categorical(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f.kind == CATEGORICAL]
