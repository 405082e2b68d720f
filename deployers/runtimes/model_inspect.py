"""Inspect a user's model inside a runtime environment, and compute what needs the model itself: its
predictions on the artifact's rows (parity's expected answers) and exact Shapley values (explanations'
ground truth). The testbed runs this with a runtime environment's python, never in its own process:
loading a joblib/pickle file runs code.

    python model_inspect.py describe --model FILE --format F
    python model_inspect.py check --model FILE --format F --features FEATURES.json --rows ROWS.npy
    python model_inspect.py predict --artifact DIR --rows ROWS.npy
    python model_inspect.py shapley --artifact DIR --rows ROWS.npy --background B.npy [--permutations N --seed S]
Each prints one JSON document on stdout; a model that does not load exits 3 with {"error": ...}.
"""

import argparse
import json
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent.parent))  # the repository: probes/shapley.py is pure numpy

import numpy as np  # noqa: E402

import model_io  # noqa: E402

LIBRARIES = ("scikit-learn", "numpy", "joblib", "pandas", "scipy", "xgboost", "lightgbm", "onnxruntime", "onnx")


def library_versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def describe(model_file: Path, fmt: str) -> dict:
    model = model_io.load(model_file, fmt)
    out = model.describe()
    out["versions"] = library_versions()
    if fmt == "xgboost":
        out["sklearn_estimator_type"] = model.sklearn_meta
    return out


def check(model_file: Path, fmt: str, features: list, rows: np.ndarray) -> dict:
    """Which input the model takes (an array, or a DataFrame with the reference's names and values), and its
    predictions on `rows`. An input kind is kept only if predict works on every row."""
    model = model_io.load(model_file, fmt, features)
    coded = [f["name"] for f in features if f.get("kind") == "categorical" and f.get("dtype") == "string"]
    kinds = [model_io.FRAME] if coded else [model_io.ARRAY, model_io.FRAME]
    if fmt != "sklearn":
        kinds = [model_io.ARRAY]
    errors = {}
    for kind in kinds:
        model.input_kind = kind
        try:
            started = time.perf_counter()
            labels = model.predict(rows)
            seconds = time.perf_counter() - started
            outputs = model.outputs(rows[: min(len(rows), 256)]) if (model.task == model_io.REGRESSION or
                                                                       model._has_proba()) else None
        except Exception as exc:  # noqa: BLE001 - reported: this input kind does not work
            errors[kind] = f"{type(exc).__name__}: {exc}"
            continue
        if len(labels) != len(rows):
            errors[kind] = f"predict returned {len(labels)} values for {len(rows)} rows"
            continue
        classes = model.classes
        if model.task == model_io.CLASSIFICATION and classes is None and outputs is not None:
            classes = classes_from_argmax(outputs, labels[: len(outputs)])
            model.notes.append("the model names no class labels: each probability column's label was read off the "
                               "predictions on the reference (the label predicted where that column is largest)")
        return {"input": kind, "predictions": [model_io.json_value(v) for v in labels.tolist()], "classes": classes,
                "outputs_shape": None if outputs is None else list(np.shape(outputs)),
                "predict_seconds_per_row": seconds / len(rows), "errors": errors, "coded_features": coded,
                "notes": model.notes}
    return {"input": None, "errors": errors, "coded_features": coded, "notes": model.notes}


def classes_from_argmax(probabilities, labels) -> list:
    """Column j's class label: the label predicted where column j is the largest (None if it never is)."""
    winner = np.asarray(probabilities).argmax(axis=1)
    out = []
    for j in range(np.shape(probabilities)[1]):
        seen = [labels[i] for i in np.flatnonzero(winner == j)]
        out.append(model_io.json_value(seen[0]) if seen else None)
    return out


def predict(artifact_dir: Path, rows: np.ndarray) -> dict:
    model, meta = model_io.load_artifact(artifact_dir)
    labels = model.predict(rows)
    out = {"predictions": [model_io.json_value(v) for v in labels.tolist()], "task": model.task}
    if model.task == model_io.REGRESSION or model._has_proba():
        out["outputs"] = np.asarray(model.outputs(rows), dtype=np.float64).tolist()
    return out


def shapley(artifact_dir: Path, rows: np.ndarray, background: np.ndarray, permutations: int, seed: int) -> dict:
    from probes import shapley as sh

    model, meta = model_io.load_artifact(artifact_dir)
    started = time.perf_counter()
    if rows.shape[1] <= sh.MAX_FEATURES and not permutations:
        truth = sh.exact(model.outputs, rows, background)
        method = {"method": "exact", "coalitions": truth["coalitions"]}
    else:
        truth = sh.permutation(model.outputs, rows, background, permutations or sh.PERMUTATIONS, seed)
        method = {"method": "permutation", "permutations": truth["permutations"], "seed": seed}
    return {"values": np.asarray(truth["values"]).tolist(),
            "stderr": None if truth.get("stderr") is None else np.asarray(truth["stderr"]).tolist(),
            "expected_value": np.asarray(truth["expected_value"]).tolist(),
            "prediction": np.asarray(truth["prediction"]).tolist(), "evaluations": truth["evaluations"],
            "seconds": time.perf_counter() - started, "output": "probabilities" if model.task == "classification"
            else "value", **method}


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("describe")
    d.add_argument("--model", type=Path, required=True)
    d.add_argument("--format", required=True)
    c = sub.add_parser("check")
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("--format", required=True)
    c.add_argument("--features", type=Path, required=True)
    c.add_argument("--rows", type=Path, required=True)
    p = sub.add_parser("predict")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--rows", type=Path, required=True)
    s = sub.add_parser("shapley")
    s.add_argument("--artifact", type=Path, required=True)
    s.add_argument("--rows", type=Path, required=True)
    s.add_argument("--background", type=Path, required=True)
    s.add_argument("--permutations", type=int, default=0)
    s.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    try:
        if opts.cmd == "describe":
            out = describe(opts.model, opts.format)
        elif opts.cmd == "check":
            out = check(opts.model, opts.format, json.loads(opts.features.read_text()), np.load(opts.rows))
        elif opts.cmd == "predict":
            out = predict(opts.artifact, np.load(opts.rows))
        else:
            out = shapley(opts.artifact, np.load(opts.rows), np.load(opts.background), opts.permutations, opts.seed)
    except model_io.ModelLoadError as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
