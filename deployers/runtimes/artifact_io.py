"""Load the model artifact inside a runtime: verify the model file's sha256, then load it with its format's
library (model_io.py). A joblib/pickle file runs code as it loads: this happens only in runtime environments."""

import hashlib
import json
from pathlib import Path


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_model_file(artifact_dir):
    """(model file, metadata) after checking the file against the sha256 the artifact recorded."""
    artifact_dir = Path(artifact_dir)
    metadata = json.loads((artifact_dir / "metadata.json").read_text())
    model_file = artifact_dir / metadata["model_file"]
    digest = sha256_file(model_file)
    if digest != metadata["sha256"]:
        raise RuntimeError(f"{model_file}: sha256 {digest} does not match metadata {metadata['sha256']}")
    return model_file, metadata


def load_verified(artifact_dir):
    """(model, metadata): the model behind model_io's interface (predict, predict_proba, outputs, task; the
    format library's own object as `model.model`)."""
    import model_io

    return model_io.load_artifact(artifact_dir)
