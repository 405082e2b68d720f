"""Detector outage at a drift onset: the detector taken down (the backend's fault) as the first drifted request
is due and brought back 3 s later, while a drift stream flows at 10 requests/s; what each platform answered,
which requests the detector never saw, and whether the drift was still alarmed afterwards.

    python experiments/detector_outage_onset.py [--platforms ...] [--repeats N] [--seed S]
"""

import sys

from probes.detection_load import run_outage
from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("detector-outage-onset", run_outage)

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
