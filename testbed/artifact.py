"""The model artifact: one trained model on disk, immutable, named by its sha256.

Layout of an artifact directory:
    model.joblib        the fitted scikit-learn estimator (a user's model: its file, in its format's name)
    metadata.json       sha256 of every file, features and dtypes, classes, versions, seed
    reference.npy       training reference sample (for drift/outlier detectors)
    probe_rows.npy      fixed held-out rows used for the parity check
A user's model (`up --model M --reference REF.csv`, testbed/usermodel.py) adds:
    holdout.npy             the reference CSV's held-out rows (scenarios draw from them)
    probe_predictions.json  the model's own answers on probe_rows, computed in a runtime environment
Runtimes read only the model file and `metadata.json` (deployers/runtimes/artifact_io.py).
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testbed.errors import ArtifactError
from testbed.population import CATEGORICAL, FEATURES, INFORMATIVE, N_CLASSES, Population

FORMAT_VERSION = 1
MODEL_NAME = "reference-classifier"
MODEL_FILE = "model.joblib"
N_TRAIN = 6000
N_REFERENCE = 2000
N_PROBE_ROWS = 32


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Artifact:
    path: Path
    metadata: dict

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def sha256(self) -> str:
        return self.metadata["sha256"]

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.metadata["features"]]

    @property
    def model_path(self) -> Path:
        return self.path / self.metadata.get("model_file", MODEL_FILE)

    @property
    def is_user(self) -> bool:
        """A model the user brought (`up --model`), not the testbed's own reference classifier."""
        return self.metadata.get("origin") == "user"

    @property
    def task(self) -> str:
        return self.metadata.get("task", "classification")

    @property
    def format(self) -> str:
        return self.metadata.get("format", "sklearn")

    @property
    def features(self) -> list:
        """Typed features (testbed/tabular.py Feature): dtype, kind, categories."""
        from testbed.tabular import Feature

        return [Feature.from_json(f) for f in self.metadata["features"]]

    def reference(self) -> np.ndarray:
        return np.load(self.path / "reference.npy")

    def probe_rows(self) -> np.ndarray:
        return np.load(self.path / "probe_rows.npy")

    def holdout(self) -> np.ndarray:
        """Reference rows kept out of the detectors' and explainer's fit (a user's artifact only)."""
        if not self.is_user:
            raise ArtifactError(self.path, "the testbed's own artifact has no held-out file: its scenarios draw "
                                           "fresh rows from testbed.population")
        return np.load(self.path / "holdout.npy")

    def data_source(self):
        """Rows "like the training data": the known process for the testbed's model, the held-out reference rows
        (resampled) for a user's. Both answer .sample(n, rng) -> (rows, labels or None)."""
        if self.is_user:
            from testbed.heldout import HeldOut

            return HeldOut(self.holdout(), self.features)
        return Population(self.metadata["recipe"]["seed"])

    def expected_predictions(self, rows: np.ndarray | None = None) -> list:
        """The model's own answers on probe_rows (or on `rows`, for the testbed's model): what every platform must
        return. A user's model is never loaded in this process: its answers were computed in a runtime environment
        when the artifact was built."""
        if self.is_user:
            if rows is not None:
                raise ArtifactError(self.path, "a user's model is evaluated in a runtime environment, not here: use "
                                               "testbed.usermodel.predict(artifact, rows, envs_dir)")
            return json.loads((self.path / "probe_predictions.json").read_text())["predictions"]
        return self.load_model().predict(self.probe_rows() if rows is None else rows).tolist()

    def load_model(self):
        """The testbed's own model, in this process. A user's model is refused: loading a pickle runs code, and the
        testbed loads users' models only inside runtime environments."""
        if self.is_user:
            raise ArtifactError(self.path, "it holds a user's model, which the testbed loads only inside runtime "
                                           "environments (a pickle runs code when loaded); ask "
                                           "testbed.usermodel.predict for its answers")
        import joblib

        return joblib.load(self.model_path)

    def require_own(self, what: str) -> None:
        """For measurements made only on the testbed's own model (they draw from its known population)."""
        if self.is_user:
            raise ArtifactError(self.path, f"{what} measures the testbed's own model (it draws rows from the process "
                                           f"that model was trained on); the running testbed serves your model "
                                           f"{self.name}. Run it on a testbed brought up without --model")

    def summary(self) -> dict:
        out = {"name": self.name, "sha256": self.sha256, "features": self.feature_names, "path": str(self.path)}
        if self.is_user:
            out.update(origin="user", format=self.format, task=self.task)
        return out


def recipe(seed: int) -> dict:
    """Everything that determines the artifact's bytes; equal recipes are reused, not rebuilt."""
    import sklearn

    return {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "estimator": "LogisticRegression(max_iter=1000)",
        "n_train": N_TRAIN,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
    }


def _recipe_key(r: dict) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


def build(out_root: Path, seed: int) -> Artifact:
    """Train the reference model and write it atomically as a new artifact directory under out_root."""
    import joblib
    import sklearn
    from sklearn.linear_model import LogisticRegression

    r = recipe(seed)
    population = Population(seed)
    rng = np.random.default_rng(seed + 1)
    X, y = population.sample(N_TRAIN, rng)
    X_hold, y_hold = population.sample(1000, rng)
    model = LogisticRegression(max_iter=1000).fit(X, y)

    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=out_root))
    tmp.chmod(0o755)  # runtimes (and kind nodes, through a mount) read it as other users
    try:
        joblib.dump(model, tmp / MODEL_FILE)
        np.save(tmp / "reference.npy", X[:N_REFERENCE])
        np.save(tmp / "probe_rows.npy", X_hold[:N_PROBE_ROWS])
        sha = sha256_file(tmp / MODEL_FILE)
        metadata = {
            "format_version": FORMAT_VERSION,
            "name": MODEL_NAME,
            "model_file": MODEL_FILE,
            "sha256": sha,
            "files": {f: sha256_file(tmp / f) for f in ("reference.npy", "probe_rows.npy")},
            "framework": "scikit-learn",
            "estimator": type(model).__name__,
            "features": [
                {
                    "name": name,
                    "dtype": "int64" if name in CATEGORICAL else "float64",
                    "kind": "categorical" if name in CATEGORICAL else "numeric",
                    **({"categories": list(CATEGORICAL[name])} if name in CATEGORICAL else {}),
                }
                for name in FEATURES
            ],
            "wire_dtype": "FP64",
            "classes": [int(c) for c in model.classes_],
            "class_names": [f"class_{c}" for c in range(N_CLASSES)],
            "informative_features": list(INFORMATIVE),
            "holdout_accuracy": float(model.score(X_hold, y_hold)),
            "reference_rows": N_REFERENCE,
            "versions": {
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
                "joblib": joblib.__version__,
                "python": _platform.python_version(),
            },
            "recipe": r,
            "recipe_key": _recipe_key(r),
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        final = out_root / f"{MODEL_NAME}-{sha[:12]}"
        if final.exists():
            shutil.rmtree(tmp)
        else:
            tmp.rename(final)
        return load(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_metadata(path: Path, error, format_version: int) -> dict:
    """metadata.json of a directory written by the testbed (artifact, detectors), checked for its
    format version; `error(path, problem)` is the named exception to raise."""
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise error(path, "metadata.json is missing")
    try:
        metadata = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise error(path, f"metadata.json is not valid JSON ({exc})") from None
    if metadata.get("format_version") != format_version:
        raise error(path, f"format_version {metadata.get('format_version')!r}, expected {format_version}")
    return metadata


def check_files(path: Path, files: dict[str, str], error) -> None:
    """Every file named in `files` (relative path -> sha256) exists under path with that sha256."""
    for name, expected in files.items():
        f = path / name
        if not f.is_file() or sha256_file(f) != expected:
            raise error(path, f"{name} is missing or does not match its recorded sha256")


def load(path: Path) -> Artifact:
    """Open an artifact directory and verify every file against the sha256 recorded in it."""
    path = Path(path)
    metadata = read_metadata(path, ArtifactError, FORMAT_VERSION)
    model_file = path / metadata.get("model_file", MODEL_FILE)
    if not model_file.is_file():
        raise ArtifactError(path, f"{model_file.name} is missing")
    actual = sha256_file(model_file)
    if actual != metadata["sha256"]:
        raise ArtifactError(path, f"{model_file.name} has sha256 {actual[:12]}…, metadata says {metadata['sha256'][:12]}…")
    check_files(path, metadata.get("files", {}), ArtifactError)
    return Artifact(path=path, metadata=metadata)


def ensure(out_root: Path, seed: int, rebuild: bool = False) -> Artifact:
    """Return the artifact for this seed and library versions, building it only when none exists."""
    key = _recipe_key(recipe(seed))
    if not rebuild and out_root.is_dir():
        for candidate in sorted(out_root.glob(f"{MODEL_NAME}-*")):
            meta = candidate / "metadata.json"
            if meta.is_file():
                try:
                    if json.loads(meta.read_text()).get("recipe_key") == key:
                        return load(candidate)
                except json.JSONDecodeError:
                    continue
    return build(out_root, seed)
