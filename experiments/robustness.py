"""Robustness: the malformed-payload table (status, message, server still up) per platform.

    python experiments/robustness.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("robustness", "probes.robustness")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
