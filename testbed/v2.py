"""The Open Inference Protocol (V2) as the testbed speaks it: JSON tensors over HTTP.

Two request layouts, chosen by the model (its artifact's `input`):
- tensor: one FP64 input of shape [n, features] (the testbed's model, and a user's model that takes an array);
- columns: one input per feature, named after it, with request parameter content_type "pd" (the layout KServe's
  and MLServer's pandas codecs decode into a DataFrame): a user's model that selects its columns by name, string
  categories sent as BYTES (tabular.decode_column), whole numbers as INT64, other numbers as FP64.
Rows inside the testbed are float64 arrays either way (string categories as codes, testbed/tabular.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.errors import InvalidPayload

TENSOR, COLUMNS = "tensor", "columns"


@dataclass(frozen=True)
class Wire:
    layout: str = TENSOR
    features: tuple = ()
    """testbed.tabular.Feature per column (the columns layout)."""

    def body(self, rows: np.ndarray, request_id: str | None = None) -> dict:
        return request_body(rows, request_id, self)

    def describe(self) -> dict:
        return {"layout": self.layout, "content_type": "pd" if self.layout == COLUMNS else None}


def wire_for(artifact) -> Wire:
    """How requests for this artifact's model are laid out."""
    if artifact.metadata.get("input") == "frame":
        return Wire(COLUMNS, tuple(artifact.features))
    return Wire()


def request_body(rows: np.ndarray, request_id: str | None = None, wire: Wire | None = None) -> dict:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"rows must be 2-D, got shape {rows.shape}")
    if wire is not None and wire.layout == COLUMNS:
        from testbed.tabular import decode_column

        if rows.shape[1] != len(wire.features):
            raise ValueError(f"rows have {rows.shape[1]} columns, the model takes {len(wire.features)} features")
        inputs = []
        for j, f in enumerate(wire.features):
            data = decode_column(f, rows[:, j])
            datatype = "BYTES" if f.coded else ("INT64" if all(isinstance(v, int) for v in data) else "FP64")
            inputs.append({"name": f.name, "shape": [rows.shape[0]], "datatype": datatype, "data": data})
        body = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    else:
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
