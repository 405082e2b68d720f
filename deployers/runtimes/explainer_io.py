"""The explainer every platform serves: alibi's KernelShap over the model's class probabilities (a regression
model's value),
fitted on the artifact's reference rows with one configuration, so that what differs between
platforms is the path (route, process, transport), not the method.

Runs inside runtime environments that have alibi and shap (kserve, mlserver, rayserve).
`python explainer_io.py save --artifact DIR --out DIR` fits it with the artifact's own model and
saves it with alibi.saving, for MLServer's alibi-explain runtime (which loads it and swaps in a
predictor that calls the model's V2 route).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from artifact_io import load_verified  # noqa: E402

CONFIG = {
    "library": "alibi",
    "method": "KernelShap",
    "background_rows": 20,
    "link": "identity",
    "task": "classification",
    "seed": 0,
    "output": "predict_proba",
    # With 7 features shap enumerates all 2**7 - 2 coalitions (exact Shapley values for this background).
    "nsamples": "auto",
}
"""Recorded in every explanation result; changing it changes what is measured."""


def task(metadata: dict) -> str:
    """KernelShap's task: a user's regression model is explained by its value (CONFIG's task otherwise)."""
    return metadata.get("task", CONFIG["task"])


def background(artifact_dir) -> np.ndarray:
    return np.load(Path(artifact_dir) / "reference.npy")[: CONFIG["background_rows"]]


def feature_names(metadata: dict) -> list:
    return [f["name"] for f in metadata["features"]]


def fit(model, artifact_dir, metadata):
    """A fitted alibi KernelShap over the model's outputs (model_io: class probabilities, or the regression value)."""
    from alibi.explainers import KernelShap

    explainer = KernelShap(model.outputs, link=CONFIG["link"], feature_names=feature_names(metadata),
                           task=task(metadata), seed=CONFIG["seed"])
    explainer.fit(background(artifact_dir))
    return explainer


def explain(explainer, rows) -> dict:
    """The alibi Explanation as a JSON-ready dict (the same document MLServer's runtime returns)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-D batch of rows, got shape {list(rows.shape)}")
    return json.loads(explainer.explain(rows).to_json())


def save(artifact_dir, out_dir) -> Path:
    """Fit with the artifact's model and save with alibi.saving (atomically: out_dir appears complete)."""
    import shutil
    import tempfile

    from alibi.saving import save_explainer

    model, metadata = load_verified(artifact_dir)
    explainer = fit(model, artifact_dir, metadata)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_explainer(explainer, str(tmp / "explainer"))
        (tmp / "explainer" / "testbed-config.json").write_text(json.dumps(
            {"config": CONFIG, "artifact_sha256": metadata["sha256"]}, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        (tmp / "explainer").rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["save"])
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    print(save(opts.artifact, opts.out))


if __name__ == "__main__":
    main()
