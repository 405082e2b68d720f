"""BentoML serving one model per format (scikit-learn, XGBoost, LightGBM, ONNX) from one `@bentoml.service`:
user code, each model loaded with its library's own API (format_models.loader) in the service's
constructor, one API per format. BentoML 1.4's framework modules (bentoml.sklearn, ...) only save and
load models in its model store; the service code around them is the user's either way.

    bentoml serve formats_bentoml:Formats --working-dir deployers/runtimes --host 127.0.0.1 --port P
with TESTBED_FORMAT_MODELS naming the format model directory (`bentoml serve` passes no arguments).
Routes: POST /<format> {"rows": [[...]]} -> [label, ...]; POST /load_errors {} -> {format: error}.
A model whose library fails to load is left out and named by /load_errors (the others still serve).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bentoml  # noqa: E402
import numpy as np  # noqa: E402

from format_models import FILES, loader  # noqa: E402

MODELS = os.environ.get("TESTBED_FORMAT_MODELS", "")


@bentoml.service(workers=1, traffic={"timeout": 120})
class Formats:
    def __init__(self) -> None:
        self.predictors, self.errors = {}, {}
        for fmt in FILES:
            try:
                self.predictors[fmt] = loader(fmt, Path(MODELS))
            except Exception as exc:  # reported per format, never fatal for the others
                self.errors[fmt] = f"{type(exc).__name__}: {exc}"

    def _predict(self, fmt: str, rows: np.ndarray) -> np.ndarray:
        if fmt not in self.predictors:
            raise bentoml.exceptions.NotFound(f"the {fmt} model did not load: {self.errors.get(fmt)}")
        return self.predictors[fmt](np.asarray(rows, dtype=np.float64))

    @bentoml.api
    def sklearn(self, rows: np.ndarray) -> np.ndarray:
        return self._predict("sklearn", rows)

    @bentoml.api
    def xgboost(self, rows: np.ndarray) -> np.ndarray:
        return self._predict("xgboost", rows)

    @bentoml.api
    def lightgbm(self, rows: np.ndarray) -> np.ndarray:
        return self._predict("lightgbm", rows)

    @bentoml.api
    def onnx(self, rows: np.ndarray) -> np.ndarray:
        return self._predict("onnx", rows)

    @bentoml.api
    def load_errors(self, verbose: bool = False) -> dict:
        return dict(self.errors)
