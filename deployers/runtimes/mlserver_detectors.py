"""MLServer's alibi-detect runtime, loading the outlier detector that save_detector cannot save.

Seldon Core v2 serves detectors with `mlserver_alibi_detect.AlibiDetectRuntime`, which loads them
with `alibi_detect.saving.load_detector`. Without TensorFlow, alibi-detect 0.13.0 can save (and
load) drift detectors but no legacy outlier detector, so the outlier detector is a verified joblib
pickle (deployers/runtimes/detectors_fit.py). This subclass swaps only the loading; prediction,
batching, response encoding and metrics are the upstream runtime's. The drift detector is served by
the upstream runtime unchanged.

model-settings.json: {"implementation": "mlserver_detectors.PickledAlibiDetectRuntime",
  "parameters": {"uri": "<detectors dir>", "extra": {"model_sha256": ..., "n_features": 7}}}
MLServer finds this module through PYTHONPATH (the Seldon deployer sets it).
"""

from functools import cached_property

import mlserver
from mlserver.errors import MLServerError
from mlserver.utils import get_model_uri
from mlserver_alibi_detect import AlibiDetectRuntime

import detectors_io

OWN_KEYS = ("model_sha256", "n_features")


class PickledAlibiDetectRuntime(AlibiDetectRuntime):
    def __init__(self, settings):
        extra = dict(settings.parameters.extra or {}) if settings.parameters else {}
        # AlibiDetectSettings forbids unknown keys: take ours out before the upstream runtime reads them.
        self._expect = {k: extra.pop(k, None) for k in OWN_KEYS}
        if settings.parameters is not None:
            settings.parameters.extra = extra
        super().__init__(settings)

    async def load(self) -> bool:
        self._model_uri = await get_model_uri(self._settings)
        try:
            meta = detectors_io.read_metadata(self._model_uri, self._expect["model_sha256"],
                                              self._expect["n_features"])
            self._model = detectors_io.load_outlier(self._model_uri, meta)
        except (detectors_io.DetectorArtifactError, OSError, ValueError) as exc:
            raise MLServerError(f"Invalid detector artifact for model {self._settings.name}: {exc}") from exc
        mlserver.register("seldon_model_drift", "Drift metrics")
        self._online = hasattr(self._model, "save_state")
        return True

    # The upstream runtime names a detector's type and method after its module (alibi_detect.od.mahalanobis ->
    # outlier, mahalanobis) for its response headers; detectors_io.TabularOutlier (a user's data) is ours.
    @cached_property
    def alibi_type(self) -> str:
        if type(self._model).__module__.startswith("alibi_detect."):
            return super().alibi_type
        return getattr(self._model, "meta", {}).get("detector_type", "unknown")

    @cached_property
    def alibi_method(self) -> str:
        if type(self._model).__module__.startswith("alibi_detect."):
            return super().alibi_method
        return type(self._model).__name__
