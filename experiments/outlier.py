"""Outlier detection: planted outliers with known positions; precision/recall/F1 per platform.

    python experiments/outlier.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("outlier", "probes.outlier")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
