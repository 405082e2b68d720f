"""BentoML: the artifact as a `@bentoml.service`, with explanations and detection as composed services.

The service is user code, as every BentoML service is: it loads the artifact's model file with its own
library (model_io.py: scikit-learn joblib/pickle, XGBoost, LightGBM, ONNX), after checking its sha256.

BentoML has its own JSON protocol (one route per `@bentoml.api`, named after the method), no V2,
no explainer and no detector: the `Explainer` and `Detector` services below are user code, composed
with `bentoml.depends` the way BentoML documents multi-service inference graphs. Each service runs
in worker processes of its own under one `bentoml serve`.

Routes of the entry service (request bodies are JSON objects keyed by parameter name):
    POST /predict            {"rows": [[...], ...]}                    -> [label or value, ...]
                             {"rows": [{"column": value, ...}, ...]}   (a model that takes named columns: a
                                                                        pandas DataFrame, "records" orient)
    POST /explain            {"rows": [[...], ...]}                    -> alibi Explanation document
    POST /predict_detected   {"rows": <as /predict>, "request_id": "x"} -> [label or value, ...]  (with detectors)
Answers are the model's own: int or string class labels, or regression values.
    GET  /readyz, /livez, /metrics                                       (BentoML's own)

`bentoml serve` takes no arguments for user code, so this file reads its configuration from the
environment (deployers/bentoml.py sets it):
    TESTBED_ARTIFACT     the artifact directory (model.joblib, sha256-checked before unpickling)
    TESTBED_BATCHING     {"max_batch_size": int, "max_latency_ms": float} turns on adaptive batching
    TESTBED_DETECTORS    {"dir", "model_sha256", "n_features", "sink"} composes the Detector service
"""

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bentoml  # noqa: E402
import numpy as np  # noqa: E402

from artifact_io import load_verified  # noqa: E402

ARTIFACT = os.environ.get("TESTBED_ARTIFACT", "")
BATCHING = json.loads(os.environ.get("TESTBED_BATCHING") or "null")
DETECTORS = json.loads(os.environ.get("TESTBED_DETECTORS") or "null")
# The model and the explainer are small and CPU-bound: one worker each on a 2-core machine.
TRAFFIC = {"timeout": 120}
# What the model takes decides the predict APIs' parameter type (BentoML reads it off the annotation): the
# metadata only, the model itself is loaded by each service's worker.
METADATA = json.loads((Path(ARTIFACT) / "metadata.json").read_text()) if ARTIFACT else {"features": []}
FEATURES = METADATA["features"]
TAKES_COLUMNS = METADATA.get("input") == "frame"

if TAKES_COLUMNS:
    from typing import Annotated

    import pandas as pd
    from bentoml.validators import DataframeSchema

    # BentoML's pandas IO: a JSON list of {column: value} records becomes a DataFrame with these columns.
    Rows = Annotated[pd.DataFrame, DataframeSchema(orient="records", columns=[f["name"] for f in FEATURES])]
else:
    Rows = np.ndarray


def as_codes(rows) -> np.ndarray:
    """The rows as the detectors take them: float64, string categories as codes (model_io.codes_from_frame)."""
    if hasattr(rows, "columns"):
        import model_io

        try:
            return model_io.codes_from_frame(rows, FEATURES)
        except (ValueError, TypeError) as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from None
    return as_rows(rows, len(FEATURES))


def answer(predictions) -> np.ndarray:
    """The model's predictions as BentoML's numpy IO serialises them (a JSON list): int labels, string labels
    (as str: an object array would not serialise) or float values."""
    out = np.asarray(predictions).ravel()
    return out.astype(str) if out.dtype.kind in "OSU" else out


def as_rows(rows: np.ndarray, n_features: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise bentoml.exceptions.InvalidArgument(f"expected rows of shape [n, {n_features}], got {list(rows.shape)}")
    return rows


@bentoml.service(workers=1, traffic=TRAFFIC)
class Explainer:
    """alibi KernelShap over the model's class probabilities (explainer_io.py): one configuration on every platform."""

    def __init__(self) -> None:
        import explainer_io

        self.io = explainer_io
        self.model, self.metadata = load_verified(ARTIFACT)
        self.explainer = explainer_io.fit(self.model, ARTIFACT, self.metadata)

    @bentoml.api
    def explain(self, rows: np.ndarray) -> dict:
        return self.io.explain(self.explainer, as_rows(rows, len(self.metadata["features"])))


@bentoml.service(workers=1, traffic=TRAFFIC)
class Detector:
    """The saved detectors (alibi-detect) in one worker (drift windows are state), reporting verdicts to the
    detector service in order (usercode_detector.py)."""

    def __init__(self) -> None:
        from usercode_detector import UserCodeDetector

        self.detector = UserCodeDetector(DETECTORS["dir"], DETECTORS["model_sha256"], int(DETECTORS["n_features"]),
                                         DETECTORS["sink"], "BentoML service `Detector` (user code, alibi-detect)")

    @bentoml.api
    def detect(self, rows: np.ndarray, request_id: str = "") -> dict:
        return self.detector.detect(rows, request_id or None)


def _predict_api(fn):
    """@bentoml.api for predict: adaptive batching when TESTBED_BATCHING asks for it."""
    if BATCHING:
        return bentoml.api(batchable=True, batch_dim=0, max_batch_size=int(BATCHING["max_batch_size"]),
                           max_latency_ms=int(BATCHING["max_latency_ms"]))(fn)
    return bentoml.api(fn)


@bentoml.service(workers=1, traffic=TRAFFIC)
class ReferenceClassifier:
    explainer = bentoml.depends(Explainer)
    if DETECTORS:
        detector = bentoml.depends(Detector)

    def __init__(self) -> None:
        self.model, self.metadata = load_verified(ARTIFACT)
        self.n_features = len(self.metadata["features"])

    def _model_rows(self, rows):
        if hasattr(rows, "columns"):  # a DataFrame: model_io selects the model's columns by name
            if len(rows) == 0:
                raise bentoml.exceptions.InvalidArgument("no rows")
            missing = [f["name"] for f in FEATURES if f["name"] not in rows.columns]
            if missing:
                raise bentoml.exceptions.InvalidArgument(f"rows lack the model's columns {missing}")
            return rows
        return as_rows(rows, self.n_features)

    @_predict_api
    def predict(self, rows: Rows) -> np.ndarray:
        # With batching on, `rows` is several requests' rows stacked along dim 0; BentoML splits the answers back.
        return answer(self.model.predict(self._model_rows(rows)))

    @bentoml.api
    async def explain(self, rows: np.ndarray) -> dict:
        return await self.explainer.to_async.explain(rows=as_rows(rows, self.n_features))

    if DETECTORS:
        @bentoml.api
        async def predict_detected(self, rows: Rows, request_id: str = "") -> np.ndarray:
            """The model's answer, with the Detector service scoring the same rows at the same time."""
            rows = self._model_rows(rows)
            verdict = asyncio.ensure_future(self.detector.to_async.detect(rows=as_codes(rows), request_id=request_id))
            predictions = answer(self.model.predict(rows))
            await verdict
            return predictions
