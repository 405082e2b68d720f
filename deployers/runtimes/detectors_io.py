"""The saved detectors, inside a runtime: verify, load, and run them over a stream of requests.

Imported by the detector service, the Ray Serve composed application and MLServer's runtime, each
from its own environment (all pin alibi-detect 0.13.0 and scikit-learn 1.5.2). Standard library,
numpy, joblib and alibi-detect only.

Layout of a detectors directory (written by detectors_fit.py):
    metadata.json          model sha256, feature count, detector configs, sha256 of every file
    drift/                 TabularDrift saved with alibi_detect.saving.save_detector
    outlier/detector.joblib   the frozen Mahalanobis detector (save_detector cannot save legacy
                           outlier detectors without TensorFlow; see detectors_fit.py)
"""

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


class DetectorArtifactError(RuntimeError):
    """The detectors directory is unusable or was fitted for another model."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(directory, model_sha256=None, n_features=None) -> dict:
    """metadata.json, after checking every file's sha256 and (if given) the model it was fitted for."""
    directory = Path(directory)
    meta_file = directory / "metadata.json"
    if not meta_file.is_file():
        raise DetectorArtifactError(f"{directory}: metadata.json is missing")
    meta = json.loads(meta_file.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise DetectorArtifactError(f"{directory}: format_version {meta.get('format_version')!r}, "
                                    f"expected {FORMAT_VERSION}")
    if model_sha256 is not None and meta.get("model_sha256") != model_sha256:
        raise DetectorArtifactError(f"{directory}: fitted for model sha256 {str(meta.get('model_sha256'))[:12]}, "
                                    f"but the model served has sha256 {model_sha256[:12]}")
    if n_features is not None and meta.get("n_features") != n_features:
        raise DetectorArtifactError(f"{directory}: fitted on {meta.get('n_features')} features, "
                                    f"but the model takes {n_features}")
    for rel, expected in meta.get("files", {}).items():
        f = directory / rel
        if not f.is_file() or _sha256(f) != expected:
            raise DetectorArtifactError(f"{directory}: {rel} is missing or does not match its recorded sha256")
    return meta


class TabularOutlier:
    """The outlier detector of a user's data: the frozen Mahalanobis detector over the numeric features that
    vary in the reference, and every categorical value the reference never had flagged (its score is the
    Mahalanobis score plus UNSEEN_FACTOR x the threshold). Mahalanobis distances over category codes would
    measure nothing: a string category's code is an index, not a quantity.

    predict() answers like alibi-detect's outlier detectors ({"data": {"instance_score", "feature_score",
    "is_outlier"}, "meta"}), so every runtime serves it as it serves them (MLServer's runtime included)."""

    UNSEEN_FACTOR = 100.0

    def __init__(self, mahalanobis, numeric, categories):
        self.mahalanobis = mahalanobis
        self.numeric = [int(j) for j in numeric]
        self.categories = {int(j): np.asarray(sorted(c), dtype=np.float64) for j, c in categories.items()}
        self.threshold = float(mahalanobis.threshold) if mahalanobis is not None else 0.0
        self.meta = {"name": "TabularOutlier", "detector_type": "outlier", "online": False, "data_type": "tabular"}

    def predict(self, X, **kwargs):
        X = np.asarray(X, dtype=np.float64)
        score = np.zeros(len(X))
        flags = np.zeros(len(X), dtype=bool)
        if self.mahalanobis is not None and self.numeric:
            pred = self.mahalanobis.predict(X[:, self.numeric])["data"]
            score = np.asarray(pred["instance_score"], dtype=np.float64)
            flags = np.asarray(pred["is_outlier"]).astype(bool)
        unseen = np.zeros(len(X), dtype=bool)
        for j, cats in self.categories.items():
            unseen |= ~np.isin(X[:, j], cats)
        score = score + unseen * self.UNSEEN_FACTOR * max(self.threshold, 1.0)
        return {"data": {"instance_score": score, "feature_score": None, "is_outlier": (flags | unseen).astype(int)},
                "meta": self.meta}


def load_outlier(directory, meta: dict):
    import joblib

    return joblib.load(Path(directory) / meta["outlier"]["path"])


def load_drift(directory, meta: dict):
    from alibi_detect.saving import load_detector

    return load_detector(str(Path(directory) / meta["drift"]["path"]))


def load(directory, model_sha256=None, n_features=None):
    """(metadata, outlier detector, drift detector), verified against the model."""
    meta = read_metadata(directory, model_sha256, n_features)
    return meta, load_outlier(directory, meta), load_drift(directory, meta)


def columns_layout(body: dict) -> bool:
    """Whether a V2 request is in the columns layout (testbed/v2.py: content_type "pd", or one input per feature):
    what a model that takes named columns is sent. The client side's twin is testbed.adapters.is_columns."""
    return (body.get("parameters") or {}).get("content_type") == "pd" or len(body.get("inputs") or []) > 1


def rows_of_v2(body: dict, n_features: int, features=None) -> np.ndarray:
    """A V2 request's rows as a 2-D float array; ValueError if it holds none. The tensor layout (one [n, features]
    input) as is; the columns layout (one input per feature, testbed/v2.py) through `features` (the artifact's
    typed features, in the detectors' metadata): string categories become their codes, an unseen one
    len(categories)."""
    if features and len(body.get("inputs") or []) > 1:
        return rows_of_columns(body, features)
    try:
        tensor = body["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=np.float64).reshape([int(d) for d in tensor["shape"]])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"not a V2 request with one [n, {n_features}] tensor: {exc}") from None
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ValueError(f"expected shape [n, {n_features}], got {list(rows.shape)}")
    return rows


def rows_of_columns(body: dict, features) -> np.ndarray:
    try:
        columns = {i["name"]: i["data"] for i in body["inputs"]}
        n = len(next(iter(columns.values())))
    except (KeyError, TypeError, StopIteration) as exc:
        raise ValueError(f"not a V2 request with one input per feature: {exc}") from None
    out = np.empty((n, len(features)), dtype=np.float64)
    for j, f in enumerate(features):
        if f["name"] not in columns:
            raise ValueError(f"V2 request has no input named {f['name']!r}")
        values = columns[f["name"]]
        if len(values) != n:
            raise ValueError(f"input {f['name']!r} has {len(values)} values, others {n}")
        if f.get("kind") == "categorical" and f.get("dtype") == "string":
            index = {c: i for i, c in enumerate(f.get("categories") or [])}
            out[:, j] = [index.get(v, len(index)) for v in values]
        else:
            out[:, j] = np.asarray(values, dtype=np.float64)
    return out


def outlier_verdict(detector, rows: np.ndarray, request_id) -> dict:
    pred = detector.predict(rows)["data"]
    return {"kind": "outlier", "request_id": request_id, "n_rows": int(rows.shape[0]),
            "scores": np.asarray(pred["instance_score"], dtype=float).round(6).tolist(),
            "flags": np.asarray(pred["is_outlier"]).astype(int).tolist(),
            "threshold": float(detector.threshold), "time": time.time()}


def drift_verdict(prediction: dict, window: int, members: list, feature_names) -> dict:
    """A drift window's verdict from a detector's predict() output (TabularDrift, batch mode)."""
    data = prediction["data"]
    return {"kind": "drift", "window": window, "rows": int(sum(m[2] for m in members)), "members": members,
            "is_drift": int(np.asarray(data["is_drift"]).ravel()[0]),
            "p_vals": np.asarray(data["p_val"], dtype=float).ravel().round(8).tolist(),
            "threshold": float(data["threshold"]), "features": list(feature_names), "time": time.time()}


class DriftWindows:
    """Tumbling windows of `window_rows` rows over a stream of requests; tests each full window.

    `members` of a verdict are [request_id, first row offset in that request, rows taken]: which rows
    a window covered, so a probe can map them back to its stream.
    """

    def __init__(self, detector, window_rows: int, feature_names):
        self.detector = detector
        self.window_rows = int(window_rows)
        self.feature_names = list(feature_names)
        self._rows: list[np.ndarray] = []
        self._members: list[list] = []
        self._filled = 0
        self.windows = 0
        self._lock = threading.Lock()

    def add(self, rows: np.ndarray, request_id) -> list[dict]:
        verdicts = []
        with self._lock:
            offset = 0
            while offset < rows.shape[0]:
                take = min(self.window_rows - self._filled, rows.shape[0] - offset)
                self._rows.append(rows[offset:offset + take])
                self._members.append([request_id, offset, int(take)])
                self._filled += take
                offset += take
                if self._filled == self.window_rows:
                    window = np.vstack(self._rows)
                    verdicts.append(drift_verdict(self.detector.predict(window), self.windows, self._members,
                                                  self.feature_names))
                    self.windows += 1
                    self._rows, self._members, self._filled = [], [], 0
        return verdicts

    @property
    def pending(self) -> int:
        return self._filled
