"""The reference model's data-generating process, with structure known by construction.

Only x0..x2 carry the label (class-conditional Gaussian means); x3..x5 are noise, x3 and x4
correlated with each other; `segment` is a categorical code independent of the label. Because
the process is explicit, scenarios can draw fresh rows "like the training data" and know exactly
what drift or outliers they add, and an explainer's answer can be scored against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FEATURES = ("x0", "x1", "x2", "x3", "x4", "x5", "segment")
INFORMATIVE = ("x0", "x1", "x2")
CATEGORICAL = {"segment": (0, 1, 2, 3)}
N_CLASSES = 3


@dataclass(frozen=True)
class Population:
    seed: int
    """Fixes the class means; rows are drawn with a separate generator per call."""

    class_prior: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
    segment_prior: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    noise_corr: float = 0.6
    """Correlation between noise features x3 and x4."""

    class_means: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        # Class means 2.5 sd apart on average: separable but not trivially.
        object.__setattr__(self, "class_means", rng.normal(0.0, 2.0, size=(N_CLASSES, len(INFORMATIVE))))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return (X, y): n rows in FEATURES order (float64) and their class labels."""
        y = rng.choice(N_CLASSES, size=n, p=self.class_prior)
        informative = self.class_means[y] + rng.normal(0.0, 1.0, size=(n, len(INFORMATIVE)))
        cov = np.array([[1.0, self.noise_corr], [self.noise_corr, 1.0]])
        x34 = rng.multivariate_normal([0.0, 0.0], cov, size=n)
        x5 = rng.normal(0.0, 1.0, size=(n, 1))
        segment = rng.choice(len(self.segment_prior), size=(n, 1), p=self.segment_prior)
        X = np.hstack([informative, x34, x5, segment.astype(np.float64)])
        return X, y

    def feature_ranges(self) -> dict[str, tuple[float, float]]:
        """Value ranges that are physically possible for each feature (used to plant impossible values)."""
        ranges = {name: (-np.inf, np.inf) for name in FEATURES}
        ranges["segment"] = (0.0, float(max(CATEGORICAL["segment"])))
        return ranges
