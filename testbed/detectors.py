"""The detectors fitted beside a model artifact: config, location, fitting (in their own venv), checks.

Detectors are fitted ONCE per (artifact, config) on the artifact's reference sample and saved in
`<artifacts dir>/<artifact dir name>-detectors/`; every platform's detection path loads that same
directory. Fitting runs in the `detectors` runtime environment (alibi-detect 0.13.0), never in the
orchestrator's: alibi-detect's numpy/pydantic pins do not fit here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.artifact import Artifact, check_files, read_metadata
from testbed.backends.local.envs import EnvSpec, ensure as ensure_env, python_of
from testbed.errors import DetectorMismatch, TestbedError
from testbed.settings import REPO_ROOT

RUNTIMES_DIR = REPO_ROOT / "deployers" / "runtimes"
FORMAT_VERSION = 1

# The detector service and the fitting step. scikit-learn and numpy match every runtime that loads
# the detectors (kserve has none; mlserver and rayserve pin the same), since the outlier detector is
# a pickle.
ENV = EnvSpec("detectors", ("alibi-detect==0.13.0", "scikit-learn==1.5.2", "numpy==1.26.4",
                            "prometheus-client==0.21.1"))

CONFIG = {
    "seed": 7,
    "drift": {
        "p_val": 0.05,
        "correction": "bonferroni",
        "window_rows": 200,
        "request_rows": 20,
        # MLServer's alibi-detect runtime counts `batch_size` in requests, not rows: a window is
        # window_rows / request_rows requests of request_rows rows each.
    },
    "outlier": {"threshold_perc": 99.0, "std_clip": 3, "start_clip": 100},
}


USER_CONFIG = {**CONFIG, "outlier": {**CONFIG["outlier"], "categorical_novelty": True}}
"""A user's data: the same drift test and thresholds; the outlier detector measures distance over the numeric
features only and flags categories the reference never had (detectors_io.TabularOutlier)."""


def config_for(artifact: Artifact) -> dict:
    return USER_CONFIG if artifact.is_user else CONFIG


@dataclass(frozen=True)
class Detectors:
    path: Path
    metadata: dict

    @property
    def window_rows(self) -> int:
        return int(self.metadata["drift"]["window_rows"])

    @property
    def request_rows(self) -> int:
        return int(self.metadata["drift"]["request_rows"])

    def summary(self) -> dict:
        m = self.metadata
        return {"path": str(self.path), "model_sha256": m["model_sha256"], "n_features": m["n_features"],
                "drift": {k: m["drift"][k] for k in ("detector", "p_val", "correction", "window_rows",
                                                     "request_rows", "saved_with")},
                "outlier": {k: m["outlier"][k] for k in ("detector", "threshold_perc", "threshold", "frozen_n",
                                                         "saved_with")},
                "versions": m.get("versions", {}), "config_key": m.get("config_key")}


def config_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def dirname_for(artifact_dirname: str) -> str:
    """The detectors' directory name beside an artifact directory of this name (the kind backend
    names it on the artifacts volume before anything is fitted, e.g. in a dry run)."""
    return f"{artifact_dirname}-detectors"


def directory_for(artifact: Artifact) -> Path:
    return artifact.path.parent / dirname_for(artifact.path.name)


def verify(path: Path, artifact: Artifact) -> Detectors:
    """Open a detectors directory; DetectorMismatch if it was fitted for another model or is damaged."""
    path = Path(path)
    meta = read_metadata(path, DetectorMismatch, FORMAT_VERSION)
    if meta.get("model_sha256") != artifact.sha256:
        raise DetectorMismatch(path, f"it was fitted for model sha256 {str(meta.get('model_sha256'))[:12]}, "
                                     f"the artifact is {artifact.sha256[:12]}")
    if meta.get("n_features") != len(artifact.feature_names):
        raise DetectorMismatch(path, f"it expects {meta.get('n_features')} features, "
                                     f"the model takes {len(artifact.feature_names)}")
    check_files(path, meta.get("files", {}), DetectorMismatch)
    return Detectors(path=path, metadata=meta)


def ensure(artifact: Artifact, envs_dir: Path, say=lambda m: None, config: dict | None = None,
           refit: bool = False) -> Detectors:
    """The detectors for this artifact and config, fitting them (once) when absent or stale."""
    config = config_for(artifact) if config is None else config
    target = directory_for(artifact)
    if target.exists() and not refit:
        existing = verify(target, artifact)
        if existing.metadata.get("config_key") == config_key(config) and "features" in existing.metadata:
            return existing
        if "features" not in existing.metadata:
            # The detection paths read a request laid out as columns with the features' types and categories.
            say("  the detectors were fitted before feature types were recorded beside them: refitting")
        else:
            say(f"  detector config changed ({existing.metadata.get('config_key')} -> {config_key(config)}): refitting")
    env_dir = ensure_env(ENV, envs_dir, say)
    say(f"  fitting detectors on {artifact.metadata.get('reference_rows')} reference rows (once per artifact) ...")
    tmp = Path(tempfile.mkdtemp(prefix=".fitting-", dir=target.parent))
    try:
        out = tmp / "detectors"
        proc = subprocess.run([str(python_of(env_dir)), str(RUNTIMES_DIR / "detectors_fit.py"),
                               "--artifact", str(artifact.path), "--out", str(out), "--config", json.dumps(config)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise TestbedError(f"Fitting the detectors for {artifact.path.name} failed (exit {proc.returncode}):\n"
                               f"{tail}\nThe `detectors` environment is {env_dir}.")
        out.chmod(0o755)
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return verify(target, artifact)
