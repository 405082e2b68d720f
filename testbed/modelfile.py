"""What a user's model file is, from its name and its first bytes only: nothing is loaded or unpickled here.

`up --model PATH` checks this before anything else, so a file that is not what its extension says is
refused at once, naming what it does look like. Loading (and so the real check) happens later, inside a
runtime environment (testbed/usermodel.py, deployers/runtimes/model_inspect.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.errors import UserModelError

SKLEARN, XGBOOST, LIGHTGBM, ONNX = "sklearn", "xgboost", "lightgbm", "onnx"
FORMATS = (SKLEARN, XGBOOST, LIGHTGBM, ONNX)

EXTENSIONS = {
    ".joblib": (SKLEARN, "joblib"), ".pkl": (SKLEARN, "pickle"), ".pickle": (SKLEARN, "pickle"),
    ".json": (XGBOOST, "xgboost-json"), ".ubj": (XGBOOST, "xgboost-ubjson"),
    ".txt": (LIGHTGBM, "lightgbm-text"), ".lgb": (LIGHTGBM, "lightgbm-text"),
    ".onnx": (ONNX, "onnx"),
    # .bst is XGBoost's old name and MLServer's well-known name for LightGBM files: decided by content.
    ".bst": (None, None),
}
"""Extension -> (format, serialisation); the file's bytes must agree."""

SERVED_AS = {SKLEARN: "model.joblib", XGBOOST: "model.json", LIGHTGBM: "model.bst", ONNX: "model.onnx"}
"""The name each format's file gets in an artifact (the well-known names MLServer's runtimes look for;
.json / .ubj XGBoost files keep their own extension, which XGBoost reads the format from)."""

WHAT_WORKS = ("a scikit-learn estimator or Pipeline saved with joblib.dump or pickle (.joblib, .pkl), an XGBoost "
              "model saved with save_model (.json, .ubj), a LightGBM model saved with Booster.save_model (.txt), "
              "or an ONNX model (.onnx)")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    format: str
    serialization: str
    looks_like: str
    """What the first bytes say, in words (recorded in the artifact)."""

    @property
    def runs_code_when_loaded(self) -> bool:
        """joblib / pickle files execute code while they load."""
        return self.serialization in ("joblib", "pickle")

    @property
    def artifact_name(self) -> str:
        if self.format == XGBOOST and self.serialization == "xgboost-ubjson":
            return "model.ubj"
        return SERVED_AS[self.format]


_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x5d\x00\x00": "lzma",
               b"\x04\x22\x4d\x18": "lz4"}


def sniff(head: bytes) -> tuple[str | None, str | None, str]:
    """(format, serialisation, description) from a file's first bytes; format None when not a model we serve."""
    stripped = head.lstrip()
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return SKLEARN, "pickle", f"a pickle (protocol {head[1]})"
    if head[:1] == b"\x78" and len(head) > 1 and head[1] in (0x01, 0x5E, 0x9C, 0xDA):
        return SKLEARN, "joblib", "a zlib-compressed joblib pickle"
    for magic, name in _COMPRESSED.items():
        if head.startswith(magic):
            return SKLEARN, "joblib", f"a {name}-compressed file (joblib.dump with compress)"
    if stripped.startswith(b"{") and b"learner" in head[:256]:
        return (XGBOOST, "xgboost-json" if stripped[1:2] in (b'"', b" ", b"\n", b"\r", b"\t") else "xgboost-ubjson",
                "an XGBoost model")
    if head.startswith(b"binf"):
        return None, None, ("an XGBoost model in the deprecated binary format (XGBoost 3 cannot load it: load it "
                            "with the XGBoost that saved it and save_model('model.json'))")
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        return LIGHTGBM, "lightgbm-text", "a LightGBM text model"
    if head[:1] == b"\x08" and len(head) > 2 and 1 <= head[1] <= 30 and b"\x12" in head[2:8]:
        return ONNX, "onnx", "an ONNX model (protobuf ModelProto)"
    if head.startswith(b"PK\x03\x04"):
        return None, None, "a zip archive (PyTorch, Keras and MLflow models are zip files)"
    if head.startswith(b"\x89HDF"):
        return None, None, "an HDF5 file (a Keras .h5 model?)"
    if stripped.startswith(b"{") or stripped.startswith(b"["):
        return None, None, "JSON that is not an XGBoost model"
    try:
        head.decode("utf-8")
        return None, None, "text, not a model file"
    except UnicodeDecodeError:
        return None, None, "binary data of no format the testbed knows"


def identify(path) -> ModelFile:
    """The model file's format, checked against its extension; UserModelError naming the mismatch."""
    path = Path(path)
    if path.is_dir():
        raise UserModelError(path, f"it is a directory; give the model file itself: {WHAT_WORKS}")
    if not path.is_file():
        raise UserModelError(path, "no such file")
    if path.stat().st_size == 0:
        raise UserModelError(path, "it is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    fmt, serialization, looks_like = sniff(head)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        hint = f" It looks like {looks_like}." if fmt else f" It looks like {looks_like}."
        raise UserModelError(path, f"the extension {ext or '(none)'!r} names no format the testbed serves.{hint} "
                                   f"Serve {WHAT_WORKS}")
    declared, _ = EXTENSIONS[ext]
    if fmt is None:
        raise UserModelError(path, f"it is not a model file the testbed can serve: it looks like {looks_like}. "
                                   f"Serve {WHAT_WORKS}")
    if declared is not None and declared != fmt:
        right = [e for e, (f, _) in EXTENSIONS.items() if f == fmt]
        raise UserModelError(path, f"its extension {ext} says {_FORMAT_NAME[declared]}, but it looks like "
                                   f"{looks_like}. If it is that, name it with {' or '.join(right)}; otherwise it "
                                   f"is damaged or was saved in another way: {WHAT_WORKS}")
    if ext == ".json" and serialization == "xgboost-ubjson" or ext == ".ubj" and serialization == "xgboost-json":
        raise UserModelError(path, f"XGBoost reads the format from the extension: this file is "
                                   f"{'UBJSON' if serialization == 'xgboost-ubjson' else 'JSON'}; name it "
                                   f"{'.ubj' if serialization == 'xgboost-ubjson' else '.json'}")
    return ModelFile(path=path, format=fmt, serialization=serialization, looks_like=looks_like)


_FORMAT_NAME = {SKLEARN: "a scikit-learn pickle", XGBOOST: "an XGBoost model", LIGHTGBM: "a LightGBM text model",
                ONNX: "an ONNX model"}
