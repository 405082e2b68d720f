"""Fit the drift and outlier detectors ONCE on a model artifact's reference sample, and save them.

Run with the `detectors` environment's python (alibi-detect 0.13.0; no TensorFlow, no PyTorch):
    python detectors_fit.py --artifact DIR --out DIR --config JSON

Choices, measured on this artifact (see the probes' results for the numbers per platform):
- drift: TabularDrift (two-sample KS per numeric feature, chi-square for `segment`, Bonferroni),
  saved with alibi_detect.saving.save_detector, so MLServer's alibi-detect runtime loads it as is.
- outlier (a user's data, config outlier.categorical_novelty): detectors_io.TabularOutlier, the same frozen
  Mahalanobis detector over the numeric features that vary in the reference, plus every categorical value the
  reference never had flagged (a distance over category codes would measure nothing).
- outlier (the testbed's model): the legacy Mahalanobis detector over all 7 features (IForest recalled 16% of the planted
  outliers at the same 1% threshold, Mahalanobis 81%). Two facts shape how it is kept:
  * it is an online detector: each predict() moves its mean/covariance toward the traffic, so its
    verdicts would depend on what was sent before (the drift probe's shifted streams). It is frozen
    after warming on the reference sample by setting its sample count `n` to 1e12: later updates get
    weight <= batch/1e12, and scores are the Mahalanobis distance under the reference's mean and
    covariance. Its threshold is then inferred again on the reference, with the frozen state.
  * save_detector cannot save it without TensorFlow (alibi-detect saves legacy outlier detectors
    with its TensorFlow saver; IForest likewise), so it is pickled with joblib, next to its sha256.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from detectors_io import FORMAT_VERSION, TabularOutlier, _sha256  # noqa: E402

FROZEN_N = 1e12


def fit(artifact_dir: Path, out: Path, config: dict) -> dict:
    import alibi_detect
    import joblib
    import sklearn
    from alibi_detect.cd import TabularDrift
    from alibi_detect.od import Mahalanobis
    from alibi_detect.saving import save_detector

    meta = json.loads((artifact_dir / "metadata.json").read_text())
    reference = np.load(artifact_dir / "reference.npy")
    features = meta["features"]
    if reference.ndim != 2 or reference.shape[1] != len(features):
        raise SystemExit(f"{artifact_dir}/reference.npy has shape {reference.shape}, "
                         f"expected [n, {len(features)}]")
    categorical = {i: None for i, f in enumerate(features) if f.get("kind") == "categorical"}

    drift_cfg = config["drift"]
    drift = TabularDrift(reference, p_val=drift_cfg["p_val"], categories_per_feature=categorical,
                         correction=drift_cfg["correction"])
    save_detector(drift, str(out / "drift"))

    out_cfg = config["outlier"]
    np.random.seed(config["seed"])
    outlier_meta = {"detector": "Mahalanobis", "n_components": len(features)}
    if out_cfg.get("categorical_novelty"):
        numeric = [i for i, f in enumerate(features) if f.get("kind") != "categorical"
                   and float(np.std(reference[:, i])) > 0.0]
        constant = [features[i]["name"] for i, f in enumerate(features) if f.get("kind") != "categorical"
                    and i not in numeric]
        maha = frozen_mahalanobis(reference[:, numeric], out_cfg, Mahalanobis) if numeric else None
        cats = {i: sorted(set(reference[:, i].tolist())) for i in categorical}
        outlier = TabularOutlier(maha, numeric, cats)
        outlier_meta = {"detector": "TabularOutlier (frozen Mahalanobis on numeric features + unseen categories)",
                        "n_components": len(numeric), "mahalanobis_features": [features[i]["name"] for i in numeric],
                        "constant_features_left_out": constant,
                        "novelty_features": [features[i]["name"] for i in categorical]}
    else:
        outlier = frozen_mahalanobis(reference, out_cfg, Mahalanobis)
    (out / "outlier").mkdir(parents=True, exist_ok=True)
    joblib.dump(outlier, out / "outlier" / "detector.joblib")

    files = {}
    for f in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "metadata.json"):
        files[str(f.relative_to(out))] = _sha256(f)
    metadata = {
        "format_version": FORMAT_VERSION,
        "model_artifact": artifact_dir.name,
        "model_sha256": meta["sha256"],
        "n_features": len(features),
        "feature_names": [f["name"] for f in features],
        "features": features,
        "reference_rows": int(reference.shape[0]),
        "reference_sha256": _sha256(artifact_dir / "reference.npy"),
        "seed": config["seed"],
        "drift": {**drift_cfg, "detector": "TabularDrift", "path": "drift",
                  "categories_per_feature": {str(k): v for k, v in categorical.items()},
                  "saved_with": "alibi_detect.saving.save_detector"},
        "outlier": {**out_cfg, **outlier_meta, "path": "outlier/detector.joblib",
                    "threshold": float(outlier.threshold), "frozen_n": FROZEN_N,
                    "saved_with": "joblib (save_detector needs TensorFlow for legacy outlier detectors)"},
        "files": files,
        "config_key": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16],
        "versions": {"alibi-detect": alibi_detect.__version__, "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__, "joblib": joblib.__version__},
        "fitted_at": time.time(),
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def frozen_mahalanobis(reference: np.ndarray, out_cfg: dict, Mahalanobis):
    """The legacy Mahalanobis detector warmed on the reference, then frozen (module docstring)."""
    outlier = Mahalanobis(n_components=reference.shape[1], std_clip=out_cfg["std_clip"],
                          start_clip=out_cfg["start_clip"])
    outlier.infer_threshold(reference, threshold_perc=out_cfg["threshold_perc"])  # warms mean/covariance
    outlier.n = FROZEN_N
    outlier.infer_threshold(reference, threshold_perc=out_cfg["threshold_perc"])  # threshold of the frozen state
    return outlier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", required=True, help="JSON: {seed, drift: {...}, outlier: {...}}")
    opts = parser.parse_args()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=False)
    metadata = fit(Path(opts.artifact), out, json.loads(opts.config))
    print(json.dumps({"outlier_threshold": metadata["outlier"]["threshold"], "files": len(metadata["files"])}))


if __name__ == "__main__":
    main()
