"""Monitoring coverage: after a known traffic pattern, which signals each platform exposes in Prometheus and whether counts match.

    python experiments/monitoring.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("monitoring", "probes.monitoring")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
