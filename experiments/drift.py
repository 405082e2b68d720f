"""Drift detection at graded magnitudes: false-positive rate on the control stream, detection delay per magnitude.

    python experiments/drift.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("drift", "probes.drift", options={"magnitudes": [0.25, 0.5, 1.0, 2.0]})

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
