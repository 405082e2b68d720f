"""Model formats: which of scikit-learn, XGBoost, LightGBM and ONNX each platform serves out of the box
(native runtime, user code, or not at all), each checked for prediction parity with the in-process model.

    python experiments/formats.py [--backend local] [--platforms ...] [--repeats N] [--seed S] [--resume RUN-ID]
"""

import sys

from testbed.experiment import ExperimentSpec, main

SPEC = ExperimentSpec("formats", "probes.formats")

if __name__ == "__main__":
    sys.exit(main(SPEC, description=__doc__))
