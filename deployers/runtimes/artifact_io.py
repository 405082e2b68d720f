"""Load the model artifact inside a runtime: verify the model file's sha256, then unpickle it."""

import hashlib
import json
from pathlib import Path


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_verified(artifact_dir):
    artifact_dir = Path(artifact_dir)
    metadata = json.loads((artifact_dir / "metadata.json").read_text())
    model_file = artifact_dir / metadata["model_file"]
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    if digest != metadata["sha256"]:
        raise RuntimeError(f"{model_file}: sha256 {digest} does not match metadata {metadata['sha256']}")
    import joblib

    return joblib.load(model_file), metadata
