"""The Kubeflow pipeline's verification as an experiment: a deployed model answers exactly like the
in-process one (parity on fixed and fresh rows). Feeds the report's CI/CD column; the pipeline
(`python -m testbed pipeline run-local`) runs the same spec.

    python experiments/pipeline_verify.py [--backend local|kind] [--platforms ...] [--repeats N] [--seed S]
"""

import sys

from probes.parity_probe import verify
from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("pipeline", verify)

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
