"""Helpers of the client-side protocol adapters (testbed.platforms.WireProtocol subclasses in the platform
modules of platforms that do not speak V2: BentoML, MLflow's scoring server).

Probes build V2 requests (testbed/v2.py) and read V2 responses; an adapter converts a V2 request into the
platform's own JSON before it is sent and the answer back after it arrives, so the latency a probe times is
the platform's own route. What conversion costs on the client is measured apart (`conversion_cost`,
printed by experiments/new_platforms.py and recorded beside the performance experiment's overhead).
docs/platform-adapters.md says why.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from testbed.errors import InvalidPayload

if TYPE_CHECKING:
    from testbed.platforms import WireProtocol

V2_DTYPES = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


class AdapterError(ValueError):
    """A V2 request the adapter cannot express in the platform's protocol (rejected on the client side,
    before anything is sent: a probe must not count it as the platform's rejection)."""


def rows_of(v2_body: Any) -> np.ndarray:
    """The first input tensor of a V2 request as rows (its shape as given); AdapterError if it has none."""
    try:
        tensor = v2_body["inputs"][0]
        shape = [int(d) for d in tensor["shape"]]
        dtype = V2_DTYPES[tensor.get("datatype", "FP64")]
        data = np.asarray(tensor["data"])
        if data.size and data.dtype.kind not in "fiub":  # nulls or strings: numpy would make NaN of a null
            raise AdapterError(f"V2 tensor of datatype {tensor.get('datatype', 'FP64')} with non-numeric values")
        return data.astype(dtype).reshape(shape)
    except KeyError as exc:
        raise AdapterError(f"V2 request without {exc} (or with an unsupported datatype)") from None
    except (TypeError, IndexError, ValueError) as exc:
        raise AdapterError(f"V2 request whose first input is not a tensor: {exc}") from None


def is_columns(v2_body: Any) -> bool:
    """True for the columns layout (testbed/v2.py: one input per feature, content_type "pd"): a model that takes
    named columns."""
    try:
        return ((v2_body.get("parameters") or {}).get("content_type") == "pd") or len(v2_body.get("inputs") or []) > 1
    except AttributeError:
        return False


def columns_of(v2_body: Any) -> tuple[list[str], list[list]]:
    """(column names, rows as lists of values) of a V2 request in the columns layout, values as sent (strings stay
    strings, whole numbers ints); AdapterError when the inputs are not equally long named 1-D columns."""
    try:
        inputs = v2_body["inputs"]
        names = [str(i["name"]) for i in inputs]
        columns = [list(i["data"]) for i in inputs]
    except (KeyError, TypeError) as exc:
        raise AdapterError(f"V2 columns request without {exc}") from None
    if not columns or len({len(c) for c in columns}) != 1:
        raise AdapterError(f"V2 columns request whose inputs differ in length: "
                           f"{dict(zip(names, map(len, columns)))}")
    if len(set(names)) != len(names):
        raise AdapterError(f"V2 columns request with a duplicated input name: {names}")
    return names, [list(row) for row in zip(*columns)]


def records_of(v2_body: Any) -> list[dict]:
    """The columns layout as pandas' "records" orient: one {column: value} object per row."""
    names, rows = columns_of(v2_body)
    return [dict(zip(names, row)) for row in rows]


def v2_answer(values, model_name: str, request_id: str | None, source: str) -> dict:
    """A V2 response carrying a platform's predictions as one typed output, as the V2 platforms answer them
    (model_io.v2_output): whole numbers INT64 (class labels), other numbers FP64 (regression values), strings
    BYTES (string class labels)."""
    try:
        data = np.asarray(values)
        if data.dtype == object:  # JSON gave mixed Python objects: numbers and strings, or nulls
            raise ValueError("values of mixed types or nulls")
        data = data.ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"answer from {source}", f"not a list of predictions ({exc}): {str(values)[:200]}") \
            from None
    if data.dtype.kind in "iub":
        out = {"datatype": "INT64", "data": data.astype(np.int64).tolist()}
    elif data.dtype.kind == "f":
        out = {"datatype": "FP64", "data": data.astype(np.float64).tolist()}
    elif data.dtype.kind in "US":
        out = {"datatype": "BYTES", "data": [str(v) for v in data.tolist()]}
    else:
        raise InvalidPayload(f"answer from {source}", f"predictions of dtype {data.dtype}: {str(values)[:200]}")
    return {"model_name": model_name, "id": request_id,
            "outputs": [{"name": "predict", "shape": [len(out["data"])], **out}]}


def v2_response(labels, model_name: str, request_id: str | None, source: str) -> dict:
    """A V2 response carrying `labels` as its one INT64 output (what the V2 platforms answer)."""
    try:
        data = np.asarray(labels).astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"answer from {source}", f"not a list of labels ({exc}): {str(labels)[:200]}") from None
    return v2_answer(data, model_name, request_id, source)


def conversion_cost(protocol: "WireProtocol", v2_body: dict, answer: Any, model_name: str, n: int = 2000,
                    warmup: int = 200) -> np.ndarray:
    """Seconds per request spent converting on the client side (encode + JSON dumps of the request,
    JSON loads + decode of the answer, as a probe does them), n calls: what the adapter adds to a
    probe's view of a request, apart from the platform. With the identity protocol it is V2's own JSON
    handling, the figure to set it beside."""
    answer_text = json.dumps(answer)
    clock = time.perf_counter_ns
    out = np.empty(n)
    for i in range(warmup + n):
        t0 = clock()
        json.dumps(protocol.encode_infer(v2_body))
        protocol.decode_infer(json.loads(answer_text), v2_body, model_name)
        if i >= warmup:
            out[i - warmup] = clock() - t0
    return out / 1e9
