"""A model file of any served format, loaded with its library's own API, behind one small interface.

Runs inside runtime environments only (numpy, joblib; xgboost, lightgbm, onnxruntime, pandas imported when
the format needs them; no testbed imports). A joblib/pickle file runs code while it loads: the testbed
never loads one in its own process, only here, in a runtime's environment.

    model = load(path, fmt, features)      # features: the artifact's metadata["features"] (optional)
    model.task, model.classes, model.predict(rows), model.outputs(rows)

`rows` are float64 arrays in the artifact's feature order, categorical string features as codes into
their `categories` (testbed/tabular.py); `to_input` turns them into what the model takes (an array, or
a pandas DataFrame with the reference's column names and values when the model selects columns by name).
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np

CLASSIFICATION, REGRESSION = "classification", "regression"
ARRAY, FRAME = "array", "frame"


class ModelLoadError(RuntimeError):
    """The file did not load with its format's library, or is a kind of model the testbed does not serve."""


class Loaded:
    """What every runtime asks of the model: task, classes, labels/values, and the explainer's output."""

    format = ""
    library = ""
    estimator = ""
    task = CLASSIFICATION
    classes: list | None = None
    feature_names: list | None = None
    """Names the model recorded for its inputs (None: it recorded none)."""

    n_features: int | None = None
    input_kind = ARRAY
    notes: list

    def __init__(self):
        self.notes = []
        self.features = None
        """The artifact's features (metadata["features"]); set by `load` when given."""

    def raw_predict(self, X):
        raise NotImplementedError

    def raw_proba(self, X):
        return None

    # --- rows (float codes) -> model input -> outputs ----------------------------------------------
    def to_input(self, rows):
        """What the model takes, from float rows (codes) or from a DataFrame a V2 'pd' request decoded into."""
        if hasattr(rows, "columns"):  # a DataFrame: the columns layout (testbed/v2.py)
            if self.input_kind == FRAME:
                return rows[[f["name"] for f in self.features]]
            return codes_from_frame(rows, self.features)
        rows = np.asarray(rows, dtype=np.float64)
        if self.input_kind == FRAME:
            return to_frame(rows, self.features)
        return rows

    def predict(self, rows) -> np.ndarray:
        """Class labels (classification) or values (regression), one per row."""
        out = np.asarray(self.raw_predict(self.to_input(rows)))
        return out.reshape(len(rows), -1)[:, 0] if self.task == REGRESSION else out.ravel()

    def proba(self, rows):
        p = self.raw_proba(self.to_input(rows))
        return None if p is None else np.asarray(p, dtype=np.float64)

    def predict_proba(self, rows):
        """scikit-learn's name, for callers written against it (alibi's KernelShap, the runtimes)."""
        p = self.proba(rows)
        if p is None:
            raise AttributeError(f"{self.estimator} has no predict_proba")
        return p

    def outputs(self, rows) -> np.ndarray:
        """What explanations attribute: class probabilities (n, classes), or the regression value (n, 1)."""
        if self.task == REGRESSION:
            return np.asarray(self.predict(rows), dtype=np.float64).reshape(-1, 1)
        p = self.proba(rows)
        if p is None:
            raise ModelLoadError(f"{self.estimator} has no class probabilities (predict_proba): an explanation "
                                 f"of a classifier attributes probabilities")
        return p

    def describe(self) -> dict:
        return {"format": self.format, "library": self.library, "estimator": self.estimator, "task": self.task,
                "classes": self.classes, "feature_names": self.feature_names, "n_features": self.n_features,
                "input": self.input_kind, "has_proba": self.task == CLASSIFICATION and self._has_proba(),
                "notes": list(self.notes)}

    def _has_proba(self) -> bool:
        return True


def to_frame(rows, features):
    """A DataFrame with the reference's column names and values: string categories from their codes, whole
    numbers as int64 (a model fitted on a DataFrame checks names, and its encoders see the original values)."""
    import pandas as pd

    if not features:
        raise ModelLoadError("a model that takes a DataFrame needs the artifact's feature list")
    columns = {}
    for j, f in enumerate(features):
        col = rows[:, j]
        if f.get("kind") == "categorical" and f.get("dtype") == "string":
            cats = f.get("categories") or []
            columns[f["name"]] = np.array([cats[int(c)] if 0 <= c < len(cats) and float(c).is_integer()
                                           else unseen_label(c) for c in col], dtype=object)
        elif f.get("dtype") == "int64" and np.all(np.floor(col) == col):
            columns[f["name"]] = col.astype(np.int64)
        else:
            columns[f["name"]] = col
    return pd.DataFrame(columns)


def unseen_label(code) -> str:
    code = float(code)
    return f"unseen-category-{int(code) if code.is_integer() else code}"


def codes_from_frame(frame, features) -> np.ndarray:
    """The inverse of to_frame: a DataFrame (V2 'pd' request) back to float rows in the feature order."""
    out = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, f in enumerate(features):
        if f["name"] not in frame.columns:
            raise ValueError(f"input has no column {f['name']!r}")
        col = frame[f["name"]]
        if f.get("kind") == "categorical" and f.get("dtype") == "string":
            index = {c: i for i, c in enumerate(f.get("categories") or [])}
            out[:, j] = [index.get(v.decode() if isinstance(v, bytes) else v, len(index)) for v in col]
        else:
            out[:, j] = np.asarray(col, dtype=np.float64)
    return out


# --- scikit-learn -----------------------------------------------------------------------------------
class SklearnModel(Loaded):
    format = "sklearn"
    library = "scikit-learn"

    def __init__(self, path: Path):
        super().__init__()
        import joblib
        import sklearn
        from sklearn.base import is_classifier, is_regressor

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = joblib.load(path)
            except Exception as exc:  # noqa: BLE001 - anything a pickle raises means "does not load"
                raise ModelLoadError(f"joblib.load failed: {type(exc).__name__}: {exc}") from None
        for w in caught:
            original = getattr(w.message, "original_sklearn_version", None)
            if original:
                self.notes.append(f"pickled with scikit-learn {original}; loaded with {sklearn.__version__}: "
                                  f"scikit-learn does not support unpickling across versions (results may differ "
                                  f"from the user's own environment)")
        self.model = model
        self.estimator = _describe_estimator(model)
        if not hasattr(model, "predict"):
            raise ModelLoadError(f"it unpickled to a {type(model).__module__}.{type(model).__name__}, which has no "
                                 f"predict(): the testbed serves fitted estimators and Pipelines")
        if is_classifier(model):
            self.task = CLASSIFICATION
            classes = getattr(model, "classes_", None)
            if classes is None:
                raise ModelLoadError(f"{self.estimator} is a classifier without classes_: is it fitted?")
            self.classes = [_plain(c) for c in np.asarray(classes).tolist()]
        elif is_regressor(model):
            self.task = REGRESSION
        else:
            kind = getattr(model, "_estimator_type", None) or "neither a classifier nor a regressor"
            raise ModelLoadError(f"{self.estimator} is {kind if kind != 'clusterer' else 'a clusterer'}: the testbed "
                                 f"serves classifiers and regressors")
        names = getattr(model, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else None
        n = getattr(model, "n_features_in_", None)
        self.n_features = int(n) if n is not None else None

    def raw_predict(self, X):
        return self.model.predict(X)

    def raw_proba(self, X):
        if not hasattr(self.model, "predict_proba"):
            return None
        return self.model.predict_proba(X)

    def _has_proba(self) -> bool:
        try:
            return hasattr(self.model, "predict_proba")
        except AttributeError:  # e.g. SVC(probability=False) raises from the property
            return False


def _describe_estimator(model) -> str:
    name = type(model).__name__
    steps = getattr(model, "steps", None)
    if steps:
        return f"{name}({', '.join(type(s).__name__ for _, s in steps)})"
    return name


def _plain(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    return v


# --- XGBoost ----------------------------------------------------------------------------------------
class XGBoostModel(Loaded):
    format = "xgboost"
    library = "xgboost"

    def __init__(self, path: Path):
        super().__init__()
        import xgboost as xgb

        try:
            booster = xgb.Booster(model_file=str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"xgboost.Booster could not load it: {type(exc).__name__}: {exc}") from None
        config = json.loads(booster.save_config())
        objective = config["learner"]["objective"]["name"]
        num_class = int(config["learner"]["learner_model_param"].get("num_class", "0") or 0)
        self.objective = objective
        self.sklearn_meta = _xgb_sklearn_type(path)
        self.notes.append(f"objective {objective}" + (f", {num_class} classes" if num_class else ""))
        if objective.startswith(("binary:", "multi:")):
            self.task = CLASSIFICATION
            k = max(num_class, 2)
            self.classes = list(range(k))
            model = xgb.XGBClassifier()
            if objective == "multi:softmax":
                raise ModelLoadError("its objective multi:softmax outputs labels only (no probabilities): retrain "
                                     "with multi:softprob (XGBClassifier's default) to serve and explain it")
        elif objective.startswith(("reg:", "count:", "survival:")) or objective in ("reg:squarederror",):
            self.task = REGRESSION
            model = xgb.XGBRegressor()
        else:
            raise ModelLoadError(f"its objective {objective} is neither classification nor regression (ranking "
                                 f"models are not served)")
        try:
            model.load_model(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{type(model).__name__}.load_model failed: {type(exc).__name__}: {exc}") from None
        self.model = model
        self.estimator = f"{type(model).__name__} ({booster.num_boosted_rounds()} rounds)"
        self.feature_names = list(booster.feature_names) if booster.feature_names else None
        self.n_features = int(booster.num_features())

    def raw_predict(self, X):
        return self.model.predict(X)

    def raw_proba(self, X):
        return self.model.predict_proba(X) if self.task == CLASSIFICATION else None


def _xgb_sklearn_type(path: Path):
    """The scikit-learn estimator type XGBoost's sklearn API saved in the file, or None (Booster.save_model).
    MLServer's xgboost runtime relies on it to tell a classifier from a regressor."""
    import xgboost as xgb

    try:
        booster = xgb.Booster(model_file=str(path))
        meta = booster.attr("scikit_learn")
        return json.loads(meta).get("_estimator_type") if meta else None
    except Exception:  # noqa: BLE001
        return None


# --- LightGBM ---------------------------------------------------------------------------------------
LGB_CLASSIFICATION = ("binary", "multiclass", "multiclassova", "cross_entropy", "xentropy")
LGB_REGRESSION = ("regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma", "tweedie")


class LightGBMModel(Loaded):
    format = "lightgbm"
    library = "lightgbm"

    def __init__(self, path: Path):
        super().__init__()
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_file=str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"lightgbm.Booster could not load it: {type(exc).__name__}: {exc}") from None
        dump = booster.dump_model(num_iteration=1)
        objective = str(dump.get("objective", "")).split()[0]
        self.objective = objective
        self.num_class = int(dump.get("num_class", 1))
        self.notes.append(f"objective {dump.get('objective')}")
        if objective in LGB_CLASSIFICATION:
            self.task = CLASSIFICATION
            self.classes = list(range(max(self.num_class, 2)))
            self.notes.append("a LightGBM text model keeps no class labels: classes are 0..k-1")
        elif objective in LGB_REGRESSION:
            self.task = REGRESSION
        else:
            raise ModelLoadError(f"its objective {objective!r} is neither classification nor regression (ranking "
                                 f"models are not served)")
        self.model = booster
        self.estimator = f"lightgbm.Booster ({booster.num_trees()} trees)"
        names = booster.feature_name()
        self.feature_names = None if all(n == f"Column_{i}" for i, n in enumerate(names)) else list(names)
        self.n_features = int(booster.num_feature())

    def raw_proba(self, X):
        if self.task != CLASSIFICATION:
            return None
        p = np.asarray(self.model.predict(X), dtype=np.float64)
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p

    def raw_predict(self, X):
        if self.task == REGRESSION:
            return self.model.predict(X)
        return self.raw_proba(X).argmax(axis=1)


# --- ONNX -------------------------------------------------------------------------------------------
ONNX_FLOAT = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class ONNXModel(Loaded):
    format = "onnx"
    library = "onnxruntime"

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"onnxruntime could not load it: {type(exc).__name__}: {exc}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"it has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); the testbed "
                                 f"serves ONNX models with one [n, features] numeric input: convert the model with "
                                 f"one input tensor (skl2onnx: initial_types=[('input', DoubleTensorType([None, n]))])")
        self.input = inputs[0]
        if self.input.type not in ONNX_FLOAT:
            raise ModelLoadError(f"its input {self.input.name!r} is {self.input.type}; the testbed sends numbers "
                                 f"(tensor(float) or tensor(double))")
        self.dtype = ONNX_FLOAT[self.input.type]
        shape = self.input.shape
        self.n_features = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.estimator = f"ONNX graph (input {self.input.name} {self.input.type}, outputs " \
                         f"{', '.join(f'{o.name} {o.type}' for o in outputs)})"
        if len(outputs) >= 2 and outputs[0].type in ("tensor(int64)", "tensor(string)"):
            self.task = CLASSIFICATION
            self.classes = _onnx_class_labels(path)
        elif len(outputs) == 1 and outputs[0].type in ONNX_FLOAT:
            self.task = REGRESSION
        else:
            raise ModelLoadError(f"its outputs ({', '.join(f'{o.name}: {o.type}' for o in outputs)}) are neither a "
                                 f"classifier's (label, probabilities) nor a regressor's (one float tensor)")
        if self.dtype == np.float32:
            self.notes.append("the ONNX input is float32: rows are cast from float64 (values may round)")

    def _run(self, X):
        return self.session.run(None, {self.input.name: np.asarray(X, dtype=self.dtype)})

    def raw_predict(self, X):
        out = self._run(X)[0]
        return np.asarray(out).reshape(len(X), -1)[:, 0] if self.task == REGRESSION else np.asarray(out).ravel()

    def raw_proba(self, X):
        if self.task != CLASSIFICATION:
            return None
        p = self._run(X)[1]
        if isinstance(p, list):  # ZipMap: a list of {label: probability}
            keys = self.classes or sorted(p[0])
            return np.array([[row[k] for k in keys] for row in p], dtype=np.float64)
        return np.asarray(p, dtype=np.float64)


def _onnx_class_labels(path: Path):
    """Class labels from the graph's classifier node (skl2onnx, onnxmltools write classlabels_*)."""
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.load(str(path)).graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in ("classlabels_ints", "classlabels_int64s"):
                return [int(v) for v in attr.ints]
            if attr.name == "classlabels_strings":
                return [s.decode() for s in attr.strings]
    return None


LOADERS = {"sklearn": SklearnModel, "xgboost": XGBoostModel, "lightgbm": LightGBMModel, "onnx": ONNXModel}


def load(path, fmt: str, features=None, input_kind: str | None = None) -> Loaded:
    """The model at `path` loaded as `fmt` (ModelLoadError if it does not load as that)."""
    if fmt not in LOADERS:
        raise ModelLoadError(f"unknown format {fmt!r} (known: {', '.join(LOADERS)})")
    model = LOADERS[fmt](Path(path))
    model.features = features
    if input_kind:
        model.input_kind = input_kind
    return model


def load_artifact(artifact_dir):
    """(model, metadata) of an artifact directory, after checking the model file's sha256 (artifact_io)."""
    from artifact_io import verified_model_file

    model_file, metadata = verified_model_file(artifact_dir)
    model = load(model_file, metadata.get("format", "sklearn"), metadata["features"], metadata.get("input"))
    return model, metadata


def v2_output(values, name: str = "predict") -> dict:
    """One V2 output tensor of predictions: INT64 labels, FP64 values, or BYTES (string class labels)."""
    values = np.asarray(values).ravel()
    if values.dtype.kind in "iub":
        return {"name": name, "datatype": "INT64", "shape": [len(values)], "data": values.astype(np.int64).tolist()}
    if values.dtype.kind == "f":
        return {"name": name, "datatype": "FP64", "shape": [len(values)], "data": values.astype(np.float64).tolist()}
    return {"name": name, "datatype": "BYTES", "shape": [len(values)], "data": [str(v) for v in values.tolist()]}


def json_value(v):
    """A prediction as JSON: numbers stay numbers, NaN refused upstream."""
    v = _plain(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
