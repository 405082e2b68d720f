"""The Open Inference Protocol (V2) as the testbed speaks it: JSON tensors over HTTP."""

from __future__ import annotations

import numpy as np

from testbed.errors import InvalidPayload


def request_body(rows: np.ndarray, request_id: str | None = None) -> dict:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"rows must be 2-D, got shape {rows.shape}")
    body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}
    if request_id is not None:
        body["id"] = request_id
    return body


def predictions(response: dict, source: str) -> list:
    """The first output tensor's data, flattened; InvalidPayload naming the source if it is missing."""
    try:
        return list(np.asarray(response["outputs"][0]["data"]).ravel().tolist())
    except (KeyError, IndexError, TypeError) as exc:
        raise InvalidPayload(f"V2 response from {source}", f"no outputs[0].data ({exc!r}): {str(response)[:200]}")
