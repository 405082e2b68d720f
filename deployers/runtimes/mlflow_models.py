"""The artifact as MLflow models: the scikit-learn flavour (what the scoring server serves) and a pyfunc
wrapper (user code: explanations and detection, since MLflow's scoring server has neither).

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


def _signature(model, rows: np.ndarray, params: dict | None):
    from mlflow.models import infer_signature

    return infer_signature(rows, model.predict(rows), params=params)


def pip_requirements(*names: str) -> list:
    """Exact pins of this environment's distributions for the MLmodel's requirements. Given explicitly:
    MLflow's inference imports the model in a subprocess (~25 s on 2 cores) to guess them."""
    from importlib.metadata import version

    return [f"{n}=={version(n)}" for n in names]


def package(artifact_dir, out_dir) -> Path:
    """out_dir/{sklearn,usercode} for this artifact (reused while the artifact and the code are unchanged)."""
    import mlflow.pyfunc
    import mlflow.sklearn

    model, metadata = load_verified(artifact_dir)
    estimator = model.model  # the scikit-learn object itself: what MLflow's sklearn flavour stores
    out_dir = Path(out_dir)
    if (out_dir / "sklearn" / "MLmodel").is_file() and (out_dir / "usercode" / "MLmodel").is_file():
        try:
            ok = all(verify(out_dir / m)["artifact_sha256"] == metadata["sha256"] and
                     verify(out_dir / m)["code"] == code_digest() for m in ("sklearn", "usercode"))
        except RuntimeError:
            ok = False
        if ok:
            return out_dir
    rows = np.load(Path(artifact_dir) / "reference.npy")[:5]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        # serialization_format="pickle": the scikit-learn model as MLflow's own flavour stores it.
        mlflow.sklearn.save_model(estimator, str(tmp / "sklearn"), serialization_format="pickle",
                                  signature=_signature(estimator, rows, None),
                                  pip_requirements=pip_requirements("mlflow", "scikit-learn", "numpy"))
        mlflow.pyfunc.save_model(str(tmp / "usercode"), python_model=UserCodeModel(),
                                 artifacts={"artifact_dir": str(artifact_dir)},
                                 code_paths=[str(HERE / f) for f in CODE_FILES],
                                 signature=_signature(estimator, rows, PARAMS),
                                 # Declared here or MLflow ignores the serving-time config ("the model's pyfunc
                                 # flavor doesn't accept model configuration"): the detectors and their sink
                                 # are a deployment's, not the package's.
                                 model_config={"detectors": None},
                                 pip_requirements=pip_requirements("mlflow", "scikit-learn", "numpy", "joblib",
                                                                   "alibi", "shap", "alibi-detect"))
        for m in ("sklearn", "usercode"):
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
        params = {**PARAMS, **(params or {})}
        rows = np.asarray(model_input, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected rows of shape [n, {self.n_features}], got {list(rows.shape)}")
        if params["output"] == "explain":
            return self.explainer_io.explain(self.explainer, rows)
        if params["output"] != "predict":
            raise ValueError(f"params.output must be 'predict' or 'explain', not {params['output']!r}")
        if self.detector is not None:
            self.detector.detect(rows, params["request_id"] or None)
        return self.model.predict(rows).astype(np.int64)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="package the artifact as MLflow models")
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    print(json.dumps({m: verify(package(opts.artifact, opts.out) / m) for m in ("sklearn", "usercode")}, indent=2))


if __name__ == "__main__":
    main()
