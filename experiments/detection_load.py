"""Detection under load: rows lost, verdicts missing, window semantics, verdict delay and latency with vs without
the detection path, at fractions of each platform's measured capacity and at request sizes 1, 7, 20, 100 rows.

    python experiments/detection_load.py [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("detection-load", "probes.detection_load")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
