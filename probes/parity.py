"""Parity: the same fixed rows give the same predictions on every platform and in-process."""

from __future__ import annotations

import httpx
import numpy as np

from testbed import v2
from testbed.endpoint import Endpoint
from testbed.errors import InvalidPayload


def compare(expected: list, answers: dict[str, list | str]) -> dict:
    """Pure scoring: answers maps platform -> predictions, or an error string."""
    per_platform = {}
    for platform, got in answers.items():
        if isinstance(got, str):
            per_platform[platform] = {"ok": False, "error": got, "mismatches": None}
            continue
        mismatches = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
        if len(got) != len(expected):
            mismatches.append(f"length {len(got)} != {len(expected)}")
        per_platform[platform] = {"ok": not mismatches, "error": None, "mismatches": mismatches[:10],
                                  "n_mismatches": len(mismatches)}
    return {"rows": len(expected), "ok": all(p["ok"] for p in per_platform.values()), "platforms": per_platform}


def run(rows: np.ndarray, expected: list, endpoints: list[Endpoint], timeout_s: float = 10.0) -> dict:
    """Each endpoint's predictions of `rows`, sent through its platform's protocol (deployers.protocol_of)."""
    from deployers import protocol_of

    answers: dict[str, list | str] = {}
    body = v2.request_body(rows, request_id="parity")
    with httpx.Client(timeout=timeout_s) as client:
        for ep in endpoints:
            protocol = protocol_of(ep)
            try:
                resp = protocol.post(client, protocol.infer_url(ep), body)
                if resp.status_code != 200:
                    answers[ep.platform] = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    continue
                answer = protocol.decode_infer(resp.json(), body, ep.model_name)
                answers[ep.platform] = [int(x) for x in v2.predictions(answer, ep.platform)]
            except (httpx.HTTPError, ValueError, InvalidPayload) as exc:
                answers[ep.platform] = f"{type(exc).__name__}: {exc}"
    return compare([int(x) for x in expected], answers)


def describe_failures(result: dict) -> str:
    lines = []
    for platform, r in result["platforms"].items():
        if not r["ok"]:
            lines.append(f"  {platform}: " + (r["error"] or f"{r['n_mismatches']} of {result['rows']} rows differ "
                                              f"(first: {r['mismatches']})"))
    return "\n".join(lines)
