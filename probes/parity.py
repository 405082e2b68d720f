"""Parity: the same fixed rows give the same predictions on every platform and in-process.

Class labels must be identical (an integer-valued float such as 1.0 is the label 1; string labels compare as
strings); regression values must agree within REL_TOL (each platform runs the same library version on the same
float64 rows, so only a float32 path could differ), and the largest difference is reported.
"""

from __future__ import annotations

import math

import httpx
import numpy as np

from testbed import v2
from testbed.endpoint import Endpoint
from testbed.errors import InvalidPayload

REL_TOL = 1e-6
"""Regression values agree when |a - b| <= REL_TOL * max(1, |b|)."""


def label(value):
    """A class label as compared: integral numbers as int, other numbers as float, anything else as str."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def same(a, b, task: str) -> bool:
    if task == "regression":
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            return False
        return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= REL_TOL * max(1.0, abs(b))
    return label(a) == label(b)


def compare(expected: list, answers: dict[str, list | str], task: str = "classification") -> dict:
    """Pure scoring: answers maps platform -> predictions, or an error string."""
    per_platform = {}
    for platform, got in answers.items():
        if isinstance(got, str):
            per_platform[platform] = {"ok": False, "error": got, "mismatches": None}
            continue
        mismatches = [i for i, (a, b) in enumerate(zip(got, expected)) if not same(a, b, task)]
        if len(got) != len(expected):
            mismatches.append(f"length {len(got)} != {len(expected)}")
        entry = {"ok": not mismatches, "error": None, "mismatches": mismatches[:10], "n_mismatches": len(mismatches)}
        if task == "regression":
            diffs = [abs(float(a) - float(b)) for a, b in zip(got, expected) if _number(a) and _number(b)]
            entry["max_abs_difference"] = max(diffs) if diffs else None
        per_platform[platform] = entry
    out = {"rows": len(expected), "task": task, "ok": all(p["ok"] for p in per_platform.values()),
           "platforms": per_platform}
    if task == "regression":
        out["rel_tol"] = REL_TOL
    return out


def _number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def run(rows: np.ndarray, expected: list, endpoints: list[Endpoint], timeout_s: float = 10.0,
        task: str = "classification", wire: v2.Wire | None = None) -> dict:
    """Each endpoint's predictions of `rows` (in the model's layout, `wire`), sent through its platform's protocol
    (deployers.protocol_of)."""
    from deployers import protocol_of

    answers: dict[str, list | str] = {}
    body = v2.request_body(rows, request_id="parity", wire=wire)
    with httpx.Client(timeout=timeout_s) as client:
        for ep in endpoints:
            protocol = protocol_of(ep)
            try:
                resp = protocol.post(client, protocol.infer_url(ep), body)
                if resp.status_code != 200:
                    answers[ep.platform] = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    continue
                answer = protocol.decode_infer(resp.json(), body, ep.model_name)
                answers[ep.platform] = v2.predictions(answer, ep.platform)
            except (httpx.HTTPError, ValueError, InvalidPayload) as exc:
                answers[ep.platform] = f"{type(exc).__name__}: {exc}"
    return compare(list(expected), answers, task)


def describe_failures(result: dict) -> str:
    lines = []
    for platform, r in result["platforms"].items():
        if not r["ok"]:
            lines.append(f"  {platform}: " + (r["error"] or f"{r['n_mismatches']} of {result['rows']} rows differ "
                                              f"(first: {r['mismatches']})"))
    return "\n".join(lines)
