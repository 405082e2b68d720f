"""Prediction parity with the in-process model on fixed and fresh rows, plus a small single-row latency sample.

    python experiments/parity.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("parity", "probes.parity_probe")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
