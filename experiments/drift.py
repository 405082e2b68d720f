"""Drift detection at graded magnitudes: false-positive rate on the control stream, detection delay per magnitude.

    python experiments/drift.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

# Magnitudes per drift kind are the probe's own graded ladder (probes/scenarios.py: DRIFT_MAGNITUDES).
SPEC = ExperimentSpec("drift", "probes.drift")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
