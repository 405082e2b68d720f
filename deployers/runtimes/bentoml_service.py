"""BentoML: the artifact as a `@bentoml.service`, with explanations and detection as composed services.

BentoML has its own JSON protocol (one route per `@bentoml.api`, named after the method), no V2,
no explainer and no detector: the `Explainer` and `Detector` services below are user code, composed
with `bentoml.depends` the way BentoML documents multi-service inference graphs. Each service runs
in worker processes of its own under one `bentoml serve`.

Routes of the entry service (request bodies are JSON objects keyed by parameter name):
    POST /predict            {"rows": [[...], ...]}                    -> [label, ...]
    POST /explain            {"rows": [[...], ...]}                    -> alibi Explanation document
    POST /predict_detected   {"rows": [[...], ...], "request_id": "x"} -> [label, ...]  (with detectors)
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

    @_predict_api
    def predict(self, rows: np.ndarray) -> np.ndarray:
        # With batching on, `rows` is several requests' rows stacked along dim 0; BentoML splits the labels back.
        return self.model.predict(as_rows(rows, self.n_features)).astype(np.int64)

    @bentoml.api
    async def explain(self, rows: np.ndarray) -> dict:
        return await self.explainer.to_async.explain(rows=as_rows(rows, self.n_features))

    if DETECTORS:
        @bentoml.api
        async def predict_detected(self, rows: np.ndarray, request_id: str = "") -> np.ndarray:
            """The model's answer, with the Detector service scoring the same rows at the same time."""
            rows = as_rows(rows, self.n_features)
            verdict = asyncio.ensure_future(self.detector.to_async.detect(rows=rows, request_id=request_id))
            labels = self.model.predict(rows).astype(np.int64)
            await verdict
            return labels
