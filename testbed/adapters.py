"""Protocol adapters: how a probe that speaks the Open Inference Protocol (V2) reaches a platform.

Probes build V2 requests (testbed/v2.py) and read V2 responses. A platform that serves V2 itself
(KServe, MLServer; Ray Serve and TorchServe through user code) needs no conversion: `V2`. A platform
with its own JSON (BentoML, MLflow's scoring server) gets a client-side adapter in its platform
module: the probe's V2 request is converted *before* it is sent and the platform's answer converted
back *after* it arrives, so the latency a probe times is the platform's own route, and the
conversion's cost is measured apart (`conversion_cost`, experiments/adapter_cost.py).
docs/platform-adapters.md says why.

An adapter converts bodies and names URLs; it never talks to the network except in `infer`,
a convenience for probes that send one request at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from testbed.endpoint import Endpoint
from testbed.errors import InvalidPayload

V2_DTYPES = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


class AdapterError(ValueError):
    """A V2 request the adapter cannot express in the platform's protocol (rejected on the client side,
    before anything is sent: a probe must not count it as the platform's rejection)."""


def rows_of(v2_body: dict) -> np.ndarray:
    """The first input tensor of a V2 request as rows (its shape as given); AdapterError if it has none."""
    try:
        tensor = v2_body["inputs"][0]
        shape = [int(d) for d in tensor["shape"]]
        dtype = V2_DTYPES[tensor.get("datatype", "FP64")]
        return np.asarray(tensor["data"], dtype=dtype).reshape(shape)
    except KeyError as exc:
        raise AdapterError(f"V2 request without {exc} (or with an unsupported datatype)") from None
    except (TypeError, IndexError, ValueError) as exc:
        raise AdapterError(f"V2 request whose first input is not a tensor: {exc}") from None


def v2_response(labels, model_name: str, request_id: str | None, source: str) -> dict:
    """A V2 response carrying `labels` as its one INT64 output (what the V2 platforms answer)."""
    try:
        data = np.asarray(labels).astype(np.int64).ravel().tolist()
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"answer from {source}", f"not a list of labels ({exc}): {str(labels)[:200]}") from None
    return {"model_name": model_name, "id": request_id,
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [len(data)], "data": data}]}


@dataclass(frozen=True)
class ProtocolAdapter:
    """The identity adapter: the platform serves V2 at the Endpoint's own routes."""

    protocol: str = "v2"
    """Name of the wire protocol, recorded in results."""

    where: str = "native"
    """Where V2 is spoken: "native" (the platform), "user code" (our code inside the platform), or
    "client-side adapter" (converted by this object before sending)."""

    def infer_url(self, endpoint: Endpoint) -> str:
        return endpoint.infer_url

    def ready_url(self, endpoint: Endpoint) -> str:
        """GET answers 200 once the model serves (the platform's own readiness route)."""
        return endpoint.model_ready_url

    def encode_infer(self, v2_body: dict) -> Any:
        """The request body to POST to infer_url (JSON-serialisable)."""
        return v2_body

    def decode_infer(self, answer: Any, v2_body: dict, model_name: str) -> dict:
        """The platform's JSON answer as a V2 response."""
        return answer

    def encode_detected(self, v2_body: dict) -> Any:
        """The body for the platform's detection path (Endpoint.detection[...]["url"]); it must carry the
        request id, which names the request in the verdict log."""
        return self.encode_infer(v2_body)

    def infer(self, client: httpx.Client, endpoint: Endpoint, v2_body: dict, url: str | None = None,
              detected: bool = False) -> dict:
        """POST one V2 request the platform's way and return its V2 response; InvalidPayload on HTTP errors."""
        url = url or self.infer_url(endpoint)
        body = self.encode_detected(v2_body) if detected else self.encode_infer(v2_body)
        resp = client.post(url, json=body)
        if resp.status_code != 200:
            raise InvalidPayload(f"{endpoint.platform} at {url}", f"HTTP {resp.status_code}: {resp.text[:300]}")
        return self.decode_infer(resp.json(), v2_body, endpoint.model_name)


V2 = ProtocolAdapter()


def conversion_cost(adapter: ProtocolAdapter, v2_body: dict, answer: Any, model_name: str, n: int = 2000,
                    warmup: int = 200) -> np.ndarray:
    """Seconds per request spent converting on the client side (encode + JSON dumps of the request,
    JSON loads + decode of the answer, as a probe does them), n calls: what the adapter adds to a
    probe's view of a request, apart from the platform."""
    import json

    answer_text = json.dumps(answer)
    clock = time.perf_counter_ns
    out = np.empty(n)
    for i in range(warmup + n):
        t0 = clock()
        json.dumps(adapter.encode_infer(v2_body))
        adapter.decode_infer(json.loads(answer_text), v2_body, model_name)
        if i >= warmup:
            out[i - warmup] = clock() - t0
    return out / 1e9
