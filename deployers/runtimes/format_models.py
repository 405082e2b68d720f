"""One model in several serialisation formats, and the library-native way to load and predict each.

Runs inside runtime venvs (numpy, joblib and the format libraries only; no testbed imports):
    python format_models.py build --train-x X.npy --train-y y.npy --sklearn model.joblib --seed S --out DIR
    python format_models.py predict --dir DIR --rows rows.npy        (JSON: format -> labels | error)
`build` writes DIR/<format>/<file> for scikit-learn, XGBoost, LightGBM and ONNX, plus DIR/formats.json.
The ONNX model is the scikit-learn model converted with skl2onnx; the others are trained on the same data.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FILES = {"sklearn": "model.joblib", "xgboost": "model.json", "lightgbm": "model.bst", "onnx": "model.onnx"}


def build(train_x: Path, train_y: Path, sklearn_model: Path, seed: int, out: Path) -> dict:
    import shutil

    X, y = np.load(train_x), np.load(train_y)
    out.mkdir(parents=True, exist_ok=True)
    info = {}
    (out / "sklearn").mkdir(exist_ok=True)
    shutil.copyfile(sklearn_model, out / "sklearn" / FILES["sklearn"])
    info["sklearn"] = {"library": "scikit-learn", "estimator": "the reference artifact's model"}

    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=40, max_depth=3, learning_rate=0.3, random_state=seed, n_jobs=1)
    model.fit(X, y)
    (out / "xgboost").mkdir(exist_ok=True)
    model.save_model(out / "xgboost" / FILES["xgboost"])
    info["xgboost"] = {"library": "xgboost", "version": xgb.__version__, "estimator": "XGBClassifier(40 trees, depth 3)"}

    import lightgbm as lgb

    lmodel = lgb.LGBMClassifier(n_estimators=40, num_leaves=8, random_state=seed, n_jobs=1, verbose=-1)
    lmodel.fit(X, y)
    (out / "lightgbm").mkdir(exist_ok=True)
    lmodel.booster_.save_model(str(out / "lightgbm" / FILES["lightgbm"]))
    info["lightgbm"] = {"library": "lightgbm", "version": lgb.__version__, "estimator": "LGBMClassifier(40 trees)"}

    import joblib
    import onnx
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType

    sk = joblib.load(sklearn_model)
    onx = skl2onnx.convert_sklearn(sk, initial_types=[("input", DoubleTensorType([None, X.shape[1]]))],
                                   options={id(sk): {"zipmap": False}}, target_opset=17)
    (out / "onnx").mkdir(exist_ok=True)
    (out / "onnx" / FILES["onnx"]).write_bytes(onx.SerializeToString())
    info["onnx"] = {"library": "onnx", "version": onnx.__version__, "converter": f"skl2onnx {skl2onnx.__version__}",
                    "estimator": "the scikit-learn model converted", "input_dtype": "float64"}
    (out / "formats.json").write_text(json.dumps(info, indent=2))
    return info


def loader(fmt: str, model_dir: Path):
    """The library's own API for one format: returns predict(rows: float64 2-D) -> int labels."""
    return load_file(fmt, Path(model_dir) / fmt / FILES[fmt])


def load_file(fmt: str, path: Path):
    """loader() for one model file of format `fmt` wherever it lies (a TorchServe model directory)."""
    if fmt == "sklearn":
        import joblib

        model = joblib.load(path)
        return lambda rows: model.predict(rows).astype(np.int64)
    if fmt == "xgboost":
        import xgboost as xgb

        model = xgb.XGBClassifier()
        model.load_model(path)
        return lambda rows: model.predict(rows).astype(np.int64)
    if fmt == "lightgbm":
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(path))
        return lambda rows: np.asarray(booster.predict(rows)).argmax(axis=1).astype(np.int64)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda rows: np.asarray(session.run(None, {name: rows.astype(np.float64)})[0]).astype(np.int64)
    raise ValueError(f"unknown format {fmt!r}")


def predict_all(model_dir: Path, rows: np.ndarray, reference_for_onnx: bool = True) -> dict:
    """In-process labels per format. ONNX's reference is the original scikit-learn model: the conversion
    itself is part of what parity checks."""
    out = {}
    for fmt in FILES:
        try:
            source = "sklearn" if (fmt == "onnx" and reference_for_onnx) else fmt
            out[fmt] = loader(source, model_dir)(rows).tolist()
        except Exception as exc:  # reported per format, never fatal for the others
            out[fmt] = f"{type(exc).__name__}: {exc}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--train-x", type=Path, required=True)
    b.add_argument("--train-y", type=Path, required=True)
    b.add_argument("--sklearn", type=Path, required=True)
    b.add_argument("--seed", type=int, required=True)
    b.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("predict")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--rows", type=Path, required=True)
    opts = parser.parse_args()
    if opts.cmd == "build":
        print(json.dumps(build(opts.train_x, opts.train_y, opts.sklearn, opts.seed, opts.out)))
    else:
        print(json.dumps(predict_all(opts.dir, np.load(opts.rows))))


if __name__ == "__main__":
    sys.exit(main())
