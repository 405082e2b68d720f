"""The artifact as MLflow models: the model in MLflow's own flavour for its format (what the scoring server
serves: mlflow.sklearn, mlflow.xgboost, mlflow.lightgbm or mlflow.onnx, saved as an MLflow user logs such a
model) and a pyfunc wrapper (user code: explanations and detection, since MLflow's scoring server has neither).

A model that takes named columns gets a column signature inferred from the reference's DataFrame (requests
are dataframe_split documents); whole-number columns are declared double, as MLflow's own signature hint
advises (an integer column cannot take a non-integral value at inference, and drifted or planted rows have
them). Other models get a tensor signature. The wrapper declares only its params: it takes what the native
model takes (a DataFrame of named columns, or a tensor) and the explainer's float rows (categories as codes).

Packaging verifies the artifact's sha256 first (artifact_io.load_verified) and records the sha256 of
every file it writes in the MLmodel's metadata; `verify` checks them again before the server loads
the model (MLflow's loaders check nothing).

The wrapper's `predict(model_input, params)`:
    params {"output": "predict", "request_id": "x"}  -> labels; the rows also go to the detectors
                                                         (when the model_config names them)
    params {"output": "explain"}                     -> the alibi Explanation document (KernelShap)
"""

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from artifact_io import load_verified, sha256_file  # noqa: E402

# Shipped inside the wrapper model (MLflow `code_paths`): what its load_context imports.
CODE_FILES = ("mlflow_models.py", "artifact_io.py", "model_io.py", "explainer_io.py", "detectors_io.py",
              "usercode_detector.py")
PARAMS = {"output": "predict", "request_id": ""}
NATIVE, USERCODE = "native", "usercode"
"""The two MLflow models packaged from an artifact (directories under the packages dir)."""
FLAVOURS = {"sklearn": "mlflow.sklearn", "xgboost": "mlflow.xgboost", "lightgbm": "mlflow.lightgbm",
            "onnx": "mlflow.onnx"}
LIBRARIES = {"sklearn": ("scikit-learn",), "xgboost": ("xgboost",), "lightgbm": ("lightgbm",),
             "onnx": ("onnx", "onnxruntime")}


def code_digest() -> str:
    """Changes when the code shipped in the wrapper (or this packaging) changes: the package is rebuilt."""
    digest = hashlib.sha256()
    for name in CODE_FILES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:12]


def _record_files(model_dir: Path) -> dict:
    return {str(p.relative_to(model_dir)): sha256_file(p) for p in sorted(model_dir.rglob("*"))
            if p.is_file() and p.name != "MLmodel"}


def _stamp(model_dir: Path, artifact_sha256: str) -> None:
    """Write the sha256 of every file into the MLmodel's metadata (MLmodel itself excluded)."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    doc = yaml.safe_load(mlmodel.read_text())
    doc.setdefault("metadata", {})["testbed"] = {"artifact_sha256": artifact_sha256, "code": code_digest(),
                                                 "files": _record_files(model_dir)}
    mlmodel.write_text(yaml.safe_dump(doc, sort_keys=False))


def verify(model_dir) -> dict:
    """The MLmodel's testbed metadata after checking every recorded file; RuntimeError naming the first bad one."""
    import yaml

    model_dir = Path(model_dir)
    meta = (yaml.safe_load((model_dir / "MLmodel").read_text()).get("metadata") or {}).get("testbed")
    if not meta or not meta.get("files"):
        raise RuntimeError(f"{model_dir}: the MLmodel records no file checksums (not packaged by the testbed)")
    for rel, expected in meta["files"].items():
        f = model_dir / rel
        if not f.is_file() or sha256_file(f) != expected:
            raise RuntimeError(f"{model_dir}: {rel} is missing or does not match its recorded sha256")
    return meta


def example_input(model, metadata, rows: np.ndarray):
    """What the native model is sent: a DataFrame of the reference's columns (whole-number columns as double, see
    the module's docstring) for a model that takes named columns, otherwise the float rows."""
    if metadata.get("input") != "frame":
        return rows
    import model_io

    frame = model_io.to_frame(rows, metadata["features"])
    for name in frame.columns:
        if frame[name].dtype.kind in "iu":
            frame[name] = frame[name].astype(np.float64)
    return frame


def _signature(example, outputs, params: dict | None):
    from mlflow.models import infer_signature

    return infer_signature(example, outputs, params=params)


def save_native(model, metadata, model_file: Path, rows: np.ndarray, out: Path) -> None:
    """The model saved with MLflow's flavour for its format, as an MLflow user logs it."""
    fmt = metadata.get("format", "sklearn")
    example = example_input(model, metadata, rows)
    # Output schemas where the flavour answers labels or values; an ONNX model answers every graph output by name
    # and a LightGBM Booster its raw predict, so theirs are left out.
    outputs = model.predict(rows) if fmt in ("sklearn", "xgboost") else None
    signature = _signature(example, outputs, None)
    reqs = pip_requirements("mlflow", "numpy", "pandas", *LIBRARIES[fmt])
    if fmt == "sklearn":
        import mlflow.sklearn

        # serialization_format="pickle": the scikit-learn model as MLflow's own flavour stores it.
        mlflow.sklearn.save_model(model.model, str(out), serialization_format="pickle", signature=signature,
                                  pip_requirements=reqs)
    elif fmt == "xgboost":
        import mlflow.xgboost

        mlflow.xgboost.save_model(model.model, str(out), model_format="json", signature=signature,
                                  pip_requirements=reqs)
    elif fmt == "lightgbm":
        import mlflow.lightgbm

        mlflow.lightgbm.save_model(model.model, str(out), signature=signature, pip_requirements=reqs)
    elif fmt == "onnx":
        import mlflow.onnx
        import onnx

        mlflow.onnx.save_model(onnx.load(str(model_file)), str(out), signature=signature, pip_requirements=reqs)
    else:
        raise ValueError(f"no MLflow flavour for format {fmt!r} (known: {', '.join(FLAVOURS)})")


def pip_requirements(*names: str) -> list:
    """Exact pins of this environment's distributions for the MLmodel's requirements. Given explicitly:
    MLflow's inference imports the model in a subprocess (~25 s on 2 cores) to guess them."""
    from importlib.metadata import version

    return [f"{n}=={version(n)}" for n in names]


def package(artifact_dir, out_dir) -> Path:
    """out_dir/{native,usercode} for this artifact (reused while the artifact and the code are unchanged)."""
    import mlflow.pyfunc
    from artifact_io import verified_model_file

    model, metadata = load_verified(artifact_dir)
    model_file, _ = verified_model_file(artifact_dir)
    out_dir = Path(out_dir)
    if (out_dir / NATIVE / "MLmodel").is_file() and (out_dir / USERCODE / "MLmodel").is_file():
        try:
            ok = all(verify(out_dir / m)["artifact_sha256"] == metadata["sha256"] and
                     verify(out_dir / m)["code"] == code_digest() for m in (NATIVE, USERCODE))
        except RuntimeError:
            ok = False
        if ok:
            return out_dir
    rows = np.load(Path(artifact_dir) / "reference.npy")[:5]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_native(model, metadata, model_file, rows, tmp / NATIVE)
        # The wrapper takes a tensor for a model that does (its explainer's float rows too), and anything the
        # native model takes for one that takes named columns (no input schema, only the params').
        wrapper_input = rows if metadata.get("input") != "frame" else None
        mlflow.pyfunc.save_model(str(tmp / USERCODE), python_model=UserCodeModel(),
                                 artifacts={"artifact_dir": str(artifact_dir)},
                                 code_paths=[str(HERE / f) for f in CODE_FILES],
                                 signature=_signature(wrapper_input, None if wrapper_input is None else
                                                      model.predict(rows), PARAMS),
                                 # Declared here or MLflow ignores the serving-time config ("the model's pyfunc
                                 # flavor doesn't accept model configuration"): the detectors and their sink
                                 # are a deployment's, not the package's.
                                 model_config={"detectors": None},
                                 pip_requirements=pip_requirements("mlflow", "scikit-learn", "numpy", "joblib",
                                                                   "alibi", "shap", "alibi-detect",
                                                                   *(LIBRARIES[metadata["format"]] if
                                                                     metadata.get("format", "sklearn") != "sklearn"
                                                                     else ())))
        for m in (NATIVE, USERCODE):
            _stamp(tmp / m, metadata["sha256"])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


try:
    import mlflow.pyfunc as _pyfunc

    _Base = _pyfunc.PythonModel
except ImportError:  # imported for its functions only, outside the mlflow environment
    _Base = object


class UserCodeModel(_Base):
    """The model, its explainer and (optionally) the detectors, behind one pyfunc predict."""

    def load_context(self, context) -> None:
        artifact_dir = context.artifacts["artifact_dir"]
        self.model, self.metadata = load_verified(artifact_dir)
        self.n_features = len(self.metadata["features"])
        import explainer_io

        self.explainer_io = explainer_io
        self.explainer = explainer_io.fit(self.model, artifact_dir, self.metadata)
        config = dict(context.model_config or {})
        self.detector = None
        if config.get("detectors"):
            from usercode_detector import UserCodeDetector

            d = config["detectors"]
            self.detector = UserCodeDetector(d["dir"], d["model_sha256"], int(d["n_features"]), d["sink"],
                                             "MLflow pyfunc wrapper (user code, alibi-detect)")

    def predict(self, context, model_input, params=None):
        import model_io

        params = {**PARAMS, **(params or {})}
        if hasattr(model_input, "columns") and params["output"] == "predict":
            # named columns, as the native model takes them: the model gets the DataFrame, the detectors codes
            frame = model_input
            rows = model_io.codes_from_frame(frame, self.metadata["features"])
        else:
            frame = None
            rows = np.asarray(model_input, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected rows of shape [n, {self.n_features}], got {list(rows.shape)}")
        if params["output"] == "explain":
            return self.explainer_io.explain(self.explainer, rows)
        if params["output"] != "predict":
            raise ValueError(f"params.output must be 'predict' or 'explain', not {params['output']!r}")
        if self.detector is not None:
            self.detector.detect(rows, params["request_id"] or None)
        out = np.asarray(self.model.predict(frame if frame is not None else rows)).ravel()
        return out.astype(str) if out.dtype.kind in "OSU" else out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="package the artifact as MLflow models")
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    print(json.dumps({m: verify(package(opts.artifact, opts.out) / m) for m in (NATIVE, USERCODE)}, indent=2))


if __name__ == "__main__":
    main()
