"""Explainability: top-k recall of the planted informative features and explanation latency per platform.

    python experiments/explain.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("explain", "probes.explain")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
