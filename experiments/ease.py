"""Ease of deployment per platform: time to ready (the local backend's own status timings, each platform
brought up alone), lines of configuration or code a user writes (counted from the files the testbed
generates or uses), components installed (distributions in the runtime venv) and processes run.
Restarts the testbed (down/up per platform and repeat) and restores it afterwards.

    python experiments/ease.py [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("ease", "probes.ease", restarts_testbed=True)

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
