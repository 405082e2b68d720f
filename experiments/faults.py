"""Faults under load, per platform: overload, detector outage, then kill (SIGKILL of the serving worker).

    python experiments/faults.py [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]

Local backend only. Each unit is bounded (seconds of loopback load); the kill restores a platform
that does not recover by itself (reported as restored_by_probe, not as recovery), and the detector
outage restarts the detector service, so the testbed is whole again after every unit.
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPECS = [
    ExperimentSpec("overload", "probes.overload"),
    ExperimentSpec("detector-outage", "probes.detector_outage"),
    ExperimentSpec("kill", "probes.kill"),
]
SPEC = SPECS[-1]

if __name__ == "__main__":
    sys.exit(main(SPECS, description=__doc__))
