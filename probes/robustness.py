"""Robustness: malformed payloads sent to each platform's infer route, and what it answered.

The cases are V2 requests. A platform with its own protocol gets each through its client-side adapter
(its PLATFORM.protocol): a case the adapter cannot express is recorded as refused by the adapter, never as
the platform's answer, and bytes that are not JSON go to the platform as they are. For each case: the
status code, the start of the message, the time taken, and whether the server still answered its
liveness and model-readiness routes afterwards. The testbed never
trusts an answer to be well-formed: a timeout, a reset connection or a non-JSON error body is a
measurement, not a crash. Cases are built by a pure function; `classify`/`score` are pure too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx
import numpy as np

from deployers import get_platform, protocol_of
from probes.context import ProbeContext
from testbed import v2
from testbed.adapters import AdapterError
from testbed.endpoint import Endpoint
from testbed.results import Result

PROBE = "robustness"
OVERSIZED_ROWS = 100_000
"""Rows in the oversized request: 700k values, ~13 MB of JSON; large, bounded, loopback only."""


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    body: bytes
    content_type: str = "application/json"
    model: str | None = None
    """Model name in the URL; None = the served model."""

    client_error: bool = True
    """True when a correct server should answer 4xx (the request is the client's fault)."""


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _tensor(shape, datatype, data) -> dict:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}


def cases(n_features: int, oversized_rows: int = OVERSIZED_ROWS, seed: int = 0) -> list[Case]:
    """The malformed payloads, in the order they are sent (the oversized one last)."""
    rng = np.random.default_rng(seed)
    row = rng.normal(size=n_features).round(6).tolist()
    nan_body = json.dumps(_tensor([1, n_features], "FP64", [float("nan")] * n_features)).encode()  # emits NaN tokens
    big = rng.normal(size=(oversized_rows, n_features)).round(6)
    return [
        Case("wrong_shape", f"well-formed V2, shape [1, {n_features - 4}] instead of [n, {n_features}]",
             _json(_tensor([1, n_features - 4], "FP64", row[: n_features - 4]))),
        Case("shape_data_mismatch", f"shape [2, {n_features}] but {n_features} values",
             _json(_tensor([2, n_features], "FP64", row))),
        Case("wrong_dtype", "datatype BYTES with strings for a numeric model",
             _json(_tensor([1, n_features], "BYTES", ["a"] * n_features))),
        Case("strings_as_fp64", "datatype FP64 but the values are strings",
             _json(_tensor([1, n_features], "FP64", ["x"] * n_features))),
        Case("nan", "FP64 NaN values (non-standard JSON NaN tokens)", nan_body),
        Case("null_values", "JSON null values in an FP64 tensor", _json(_tensor([1, n_features], "FP64", [None] * n_features))),
        Case("empty_body", "zero-byte request body", b""),
        Case("empty_inputs", 'V2 body with "inputs": []', _json({"inputs": []})),
        Case("zero_rows", f"shape [0, {n_features}], no data", _json(_tensor([0, n_features], "FP64", []))),
        Case("missing_inputs", 'JSON object without "inputs"', _json({"instances": [row]})),
        Case("non_json", "plain text body", b"this is not json", content_type="text/plain"),
        Case("unknown_model", "valid body for a model that is not served",
             _json(_tensor([1, n_features], "FP64", row)), model="no-such-model"),
        Case("oversized", f"{oversized_rows} rows x {n_features} FP64 in one request (~{big.size * 9 // 2**20} MB JSON)",
             _json(_tensor([oversized_rows, n_features], "FP64", big.ravel().tolist())), client_error=False),
    ]


REFUSED_BY_ADAPTER, NOT_APPLICABLE = "refused by adapter", "not applicable"
"""Outcomes of cases the platform never saw: a client-side adapter could not express the V2 request in the
platform's protocol (nothing sent), or the protocol has no such route (one model per server, no model name)."""


def classify(status: int | None, outcome: str | None = None) -> str:
    if outcome in (REFUSED_BY_ADAPTER, NOT_APPLICABLE):
        return outcome
    if status is None:
        return "no answer"
    if 200 <= status < 300:
        return "accepted"
    if 400 <= status < 500:
        return "rejected"
    if status >= 500:
        return "server error"
    return "other"


def score(outcomes: list[dict]) -> dict:
    """Pure: outcomes are {case, client_error, status, stayed_up} dicts."""
    if not outcomes:
        raise ValueError("no robustness outcomes to score")
    classes = [o.get("class") if o.get("class") in (REFUSED_BY_ADAPTER, NOT_APPLICABLE) else classify(o["status"])
               for o in outcomes]
    # Only what the platform answered says how it tells users it was them.
    client = [(o, c) for o, c in zip(outcomes, classes)
              if o["client_error"] and c not in (REFUSED_BY_ADAPTER, NOT_APPLICABLE)]
    stayed_up = all(o["stayed_up"] for o in outcomes)
    scores = {
        "cases": len(outcomes),
        "stayed_up": stayed_up,
        "down_after": [o["case"] for o in outcomes if not o["stayed_up"]],
        "rejected_4xx": classes.count("rejected"),
        "server_error_5xx": classes.count("server error"),
        "accepted_2xx": classes.count("accepted"),
        "next_request_failed": sum(1 for o in outcomes if o.get("next_request", 200) not in (200, None)),
        "no_answer": classes.count("no answer"),
        "refused_by_adapter": classes.count(REFUSED_BY_ADAPTER),
        "not_applicable": classes.count(NOT_APPLICABLE),
        "platform_answered": sum(c not in (REFUSED_BY_ADAPTER, NOT_APPLICABLE) for c in classes),
        # The share of client mistakes answered as such (4xx): how well the platform tells users it was them.
        "client_errors_as_4xx": sum(c == "rejected" for _, c in client) / len(client) if client else None,
    }
    return {"scores": scores, "verdict": "pass" if stayed_up else "fail"}


def exposure_scores(listeners: list[dict] | None) -> dict:
    """Pure: the serving processes' listening sockets beyond loopback (status --json, with `cause` where the
    platform has no option that closes one); nothing when the backend audits no sockets."""
    if listeners is None:
        return {}
    return {"listeners_beyond_loopback": len(listeners),
            "unexplained_listeners": sum(1 for x in listeners if not x.get("cause"))}


def _healthy(client: httpx.Client, endpoint: Endpoint, wait_s: float) -> dict:
    """Liveness and model readiness (the platform's own routes), retried for up to wait_s (a busy server may
    answer late)."""
    protocol = protocol_of(endpoint)
    deadline = time.monotonic() + wait_s
    last = {}
    while True:
        try:
            last["live"] = client.get(protocol.live_url(endpoint), timeout=2.0).status_code
        except httpx.HTTPError as exc:
            last["live"] = f"{type(exc).__name__}"
        try:
            last["model_ready"] = 200 if protocol.is_ready(client, endpoint) else "not ready"
        except httpx.HTTPError as exc:
            last["model_ready"] = f"{type(exc).__name__}"
        if all(v == 200 for v in last.values()) or time.monotonic() > deadline:
            return {**last, "ok": all(v == 200 for v in last.values())}
        time.sleep(0.25)


def wire_body(protocol, case: Case) -> bytes | None:
    """The case's body as the platform's protocol carries it: as given where the platform speaks V2; through a
    client-side adapter otherwise (bytes that are not JSON go as they are: the platform's parser meets them).
    None when the adapter cannot express the request (AdapterError): nothing is sent."""
    if not protocol.converts:
        return case.body
    try:
        request = json.loads(case.body)
    except ValueError:
        return case.body
    try:
        return json.dumps(protocol.encode_infer(request)).encode()
    except AdapterError:
        return None


def probe_one(endpoint: Endpoint, all_cases: list[Case], good_body: dict, timeout_s: float = 60.0,
              health_wait_s: float = 10.0) -> list[dict]:
    protocol = protocol_of(endpoint)
    good = protocol.request_bytes(good_body)
    infer_url = protocol.infer_url(endpoint)
    outcomes = []
    with httpx.Client(timeout=timeout_s) as client:
        for case in all_cases:
            url = infer_url if case.model is None else protocol.model_infer_url(endpoint, case.model)
            body = wire_body(protocol, case)
            base = {"case": case.name, "description": case.description, "client_error": case.client_error,
                    "request_bytes": len(case.body)}
            if url is None or body is None:
                why = (f"{protocol.protocol} names no model in its route" if url is None else
                       f"the client-side adapter cannot express this V2 request in {protocol.protocol}")
                health = _healthy(client, endpoint, health_wait_s)
                outcomes.append({**base, "status": None, "class": NOT_APPLICABLE if url is None else REFUSED_BY_ADAPTER,
                                 "message": why, "transport_error": None, "seconds": 0.0, "next_request": None,
                                 "health_after": health, "stayed_up": health["ok"], "sent": False})
                continue
            started = time.monotonic()
            status, message, error = None, "", None
            try:
                resp = client.post(url, content=body, headers={"content-type": case.content_type})
                status, message = resp.status_code, resp.text[:300]
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            elapsed = time.monotonic() - started
            # A valid request right after, on the same keep-alive connection: some servers drop the
            # connection after an unhandled error, and a client reusing it sees a reset (a race).
            try:
                next_status = client.post(infer_url, content=good,
                                          headers={"content-type": "application/json"}).status_code
            except httpx.HTTPError as exc:
                next_status = f"{type(exc).__name__}: {exc}"[:120]
            health = _healthy(client, endpoint, health_wait_s)
            outcomes.append({**base, "status": status, "class": classify(status), "message": message,
                             "transport_error": error, "seconds": round(elapsed, 4), "next_request": next_status,
                             "health_after": health, "stayed_up": health["ok"], "sent": True,
                             **({"wire_bytes": len(body)} if body is not case.body else {})})
    return outcomes


def validation_of(platform: str) -> tuple[str, str]:
    """(label, where) of who decodes and validates payloads on the platform (its PLATFORM.protocol): the
    answers measured are the platform's own only where it parses V2 itself."""
    protocol = get_platform(platform).protocol
    return protocol.validation, protocol.validation_note


def run(ctx: ProbeContext) -> list[Result]:
    rows = int(ctx.options.get("oversized_rows", OVERSIZED_ROWS))
    all_cases = cases(len(ctx.artifact.feature_names), oversized_rows=rows, seed=ctx.seed)
    good_body = v2.request_body(ctx.artifact.probe_rows()[:1], request_id="robustness-follow-up",
                                wire=v2.wire_for(ctx.artifact))
    results = []
    for platform, endpoint in ctx.endpoints.items():
        validated_by, where = validation_of(platform)
        outcomes = probe_one(endpoint, all_cases, good_body)
        scored = score(outcomes)
        exposure = None if ctx.exposure is None else ctx.exposure.get(platform) or {}
        listeners = None if exposure is None else exposure.get("listeners") or []
        measurements = {"cases": outcomes}
        if exposure is not None:
            measurements["listeners_beyond_loopback"] = listeners
        results.append(Result(
            probe=PROBE, platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict=scored["verdict"], mechanism=validated_by,
            scores={**scored["scores"], **exposure_scores(listeners)}, measurements=measurements,
            evidence={"infer_url": protocol_of(endpoint).infer_url(endpoint), "validation": where,
                      "protocol": protocol_of(endpoint).describe(), "oversized_rows": rows, "seed": ctx.seed,
                      "versions": ctx.versions.get(platform, {}),
                      **({"loopback_by_testbed": exposure.get("loopback_by_testbed") or []} if exposure else {})},
            run_id=ctx.run_id, repeat=ctx.repeat))
    return results
