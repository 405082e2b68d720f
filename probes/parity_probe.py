"""Parity as a repeatable probe: the fixed probe rows and fresh rows like the training data (the population, or a
user's held-out rows) give the same predictions on the platform as the model itself (in-process, or a user's model
in its runtime environment), plus a small sequential single-row latency sample.

`up` already checks parity once; this probe makes it a measurement with repeats and seeds (and the
pipeline's verification step). run(ctx) -> one Result per platform.
"""

from __future__ import annotations

import time

import httpx
import numpy as np

from deployers import get_platform, protocol_of
from probes import parity
from testbed import v2
from testbed.results import Result

FRESH_ROWS = 200
LATENCY_REQUESTS = 50


def score(comparison: dict, platform: str) -> tuple[str, dict]:
    """Pure: the verdict and scores of one platform from parity.compare's output."""
    p = comparison["platforms"][platform]
    rows = comparison["rows"]
    if p["error"]:
        return "error", {"agreement": 0.0, "rows": rows}
    return ("pass" if p["ok"] else "fail"), {"agreement": round(1 - p["n_mismatches"] / rows, 6), "rows": rows}


def run(ctx) -> list[Result]:
    from testbed import usermodel
    from testbed.settings import Settings

    rng = np.random.default_rng(ctx.seed)
    fresh, _ = ctx.artifact.data_source().sample(FRESH_ROWS, rng)
    rows = np.vstack([ctx.artifact.probe_rows(), fresh])
    expected = usermodel.answers(ctx.artifact, rows, Settings(backend=ctx.backend).envs_dir)
    out = []
    for name, ep in ctx.endpoints.items():
        started = time.time()
        wire = v2.wire_for(ctx.artifact)
        comparison = parity.run(rows, expected, [ep], task=ctx.artifact.task, wire=wire)
        verdict, scores = score(comparison, name)
        latencies, errors = [], 0
        protocol = protocol_of(ep)
        url = protocol.infer_url(ep)
        with httpx.Client(timeout=10.0) as client:
            for i in range(LATENCY_REQUESTS):
                # Encoded before the clock starts: a client-side adapter's conversion is not the platform's time.
                body = protocol.request_bytes(v2.request_body(fresh[i % FRESH_ROWS: i % FRESH_ROWS + 1], wire=wire))
                t0 = time.perf_counter()
                try:
                    ok = client.post(url, content=body, headers={"content-type": "application/json"}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(round((time.perf_counter() - t0) * 1000, 4))
                errors += not ok
        scores["latency_p50_ms"] = round(float(np.percentile(latencies, 50)), 3)
        scores["request_errors"] = errors
        out.append(Result(probe="parity", platform=name, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
                          verdict=verdict, scores=scores,
                          measurements={"comparison": comparison["platforms"][name], "latency_ms": latencies},
                          evidence={"rows": len(rows), "fixed_probe_rows": len(rows) - FRESH_ROWS,
                                    "fresh_rows": FRESH_ROWS, "seed": ctx.seed, "infer_url": url,
                                    "protocol": protocol.describe(),
                                    "latency": f"{LATENCY_REQUESTS} sequential single-row requests"
                                               + (f" in {protocol.protocol} (converted from V2 before the clock "
                                                  "starts)" if protocol.converts else " (V2)")},
                          mechanism=get_platform(name).protocol.mechanism,
                          started_at=started))
    return out


def verify(ctx) -> list[Result]:
    """The pipeline's verification step: parity as above, reported as the CI/CD criterion's
    `verified` score (1.0 when the deployed model answers exactly like the in-process one)."""
    out = []
    for r in run(ctx):
        r.probe = "pipeline-verify"
        r.scores["verified"] = 1.0 if r.verdict == "pass" else 0.0
        r.evidence["pipeline"] = "prepare-artifact -> deploy -> probe -> report (kfp v2)"
        out.append(r)
    return out
