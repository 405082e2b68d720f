"""Overload: a rate well above each platform's measured capacity for a bounded time.

1. capacity: closed loop, `capacity_concurrency` connections for `capacity_s` (2xx per second);
   baseline latency: open loop at a quarter of that capacity for `baseline_s`.
2. overload: open loop at `factor` x capacity for `overload_s`, up to `connections` connections
   (so the server, not the client, holds the queue), each request timing out after `timeout_s`.
3. back to baseline: one request at a time after the overload, until 3 in a row answer within
   2x the baseline p50 (bounded by `recovery_wait_s`).
Scored by probes.faults.score_overload (errors, latency growth, sheds vs queues, recovery time).

Options (ctx.options): factor (3), capacity_s (2), baseline_s (2), overload_s (4), connections (64),
timeout_s (5), recovery_wait_s (20).
"""

from __future__ import annotations

import time

import httpx

from probes import faults as scoring
from probes.context import ProbeContext
from probes.fault_io import fault_request, faults_for, infer_url
from testbed.loadgen import LoadSpec, run_load
from testbed.results import Result

PROBE = "overload"


def options(ctx: ProbeContext) -> dict:
    o = ctx.options
    return {k: float(o.get(k, d)) for k, d in (("factor", 3), ("capacity_s", 2), ("baseline_s", 2), ("overload_s", 4),
                                               ("connections", 64), ("timeout_s", 5), ("recovery_wait_s", 20),
                                               ("capacity_concurrency", 4))}


def recovery_samples(url: str, body: bytes, wait_s: float, baseline_p50: float | None,
                     count: int | None = None) -> list[tuple[float, float | None]]:
    """(seconds after the overload, latency or None) of sequential requests until back to baseline
    (or `count` of them, with baseline_p50 None: the same client's baseline before the overload)."""
    samples = []
    started = time.monotonic()
    with httpx.Client(timeout=5.0, headers={"content-type": "application/json"}) as client:
        while time.monotonic() - started < wait_s:
            t0 = time.monotonic()
            try:
                ok = client.post(url, content=body).status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append((round(t0 - started, 4), (time.monotonic() - t0) if ok else None))
            if count is not None and len(samples) >= count:
                break
            if baseline_p50 is not None and scoring.back_to_baseline(samples, baseline_p50) is not None:
                break
            time.sleep(0.05)
    return samples


def overload_one(endpoint, body: bytes, opt: dict) -> dict:
    url = infer_url(endpoint)
    cap = run_load(LoadSpec(url=url, method="POST", body=body, concurrency=int(opt["capacity_concurrency"]),
                            duration_s=opt["capacity_s"], timeout_s=opt["timeout_s"], threads=1))
    ok = cap.ok & (cap.records["done_ns"] <= cap.engine["window_ns"])
    capacity = float(ok.sum()) / cap.window_s
    if capacity <= 0:
        raise scoring_error(endpoint.platform, cap)
    base_rate = max(capacity / 4, 1.0)
    base = run_load(LoadSpec(url=url, method="POST", body=body, rate=base_rate, concurrency=4,
                             duration_s=opt["baseline_s"], timeout_s=opt["timeout_s"], threads=1))
    # Recovery is judged with the same sequential client as here (its own overhead is in both).
    before = [lat for _, lat in recovery_samples(url, body, 10.0, None, count=15) if lat is not None]
    seq_p50 = float(sorted(before)[len(before) // 2]) if before else None
    rate = opt["factor"] * capacity
    over = run_load(LoadSpec(url=url, method="POST", body=body, rate=rate, concurrency=int(opt["connections"]),
                             duration_s=opt["overload_s"], max_requests=int(rate * opt["overload_s"]) + 1,
                             timeout_s=opt["timeout_s"], threads=1))
    if seq_p50 is None:
        raise scoring_error(endpoint.platform, cap)
    samples = recovery_samples(url, body, opt["recovery_wait_s"], seq_p50)
    recovery = scoring.back_to_baseline(samples, seq_p50)
    scores = scoring.score_overload(base.records, over.records, capacity, rate, over.window_s, recovery)
    scores["sequential_baseline_p50_s"] = seq_p50
    return {"scores": scores, "capacity_run": cap, "baseline_run": base, "overload_run": over, "samples": samples}


def scoring_error(platform: str, cap):
    from testbed.errors import FaultAborted

    kinds = scoring.account(cap.records)
    return FaultAborted(PROBE, platform, f"no successful request while measuring capacity ({kinds})")


def plan(faults, endpoint, opt: dict) -> None:
    """What overload_one does, as a dry run prints it: the fault is the load itself, on any backend."""
    url = infer_url(endpoint)
    faults.note(f"{endpoint.platform}: capacity: closed loop, {opt['capacity_concurrency']:g} connections for "
                f"{opt['capacity_s']:g} s on POST {url}")
    faults.note(f"baseline: open loop at capacity/4 for {opt['baseline_s']:g} s; 15 sequential requests")
    faults.note(f"overload: open loop at {opt['factor']:g} x capacity for {opt['overload_s']:g} s, up to "
                f"{opt['connections']:g} connections, timeout {opt['timeout_s']:g} s (loopback only)")
    faults.note(f"back to baseline: sequential requests until 3 in a row within 2 x the baseline p50 "
                f"(at most {opt['recovery_wait_s']:g} s)")


def run(ctx: ProbeContext) -> list[Result]:
    opt = options(ctx)
    if ctx.options.get("dry_run"):
        faults = faults_for(ctx)
        for endpoint in ctx.endpoints.values():
            plan(faults, endpoint, opt)
        return []
    results = []
    for platform, endpoint in ctx.endpoints.items():
        started = time.time()
        out = overload_one(endpoint, fault_request(ctx, endpoint), opt)
        s = out["scores"]
        results.append(Result(
            probe=PROBE, platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict="pass" if s["recovered"] else "fail", mechanism=s["behaviour"], scores=s,
            measurements={"timeline": scoring.timeline(out["overload_run"].records),
                          "baseline_timeline": scoring.timeline(out["baseline_run"].records),
                          "capacity": scoring.account(out["capacity_run"].records),
                          "recovery_samples": out["samples"],
                          "load": {k: out[k].spec.describe() for k in ("capacity_run", "baseline_run", "overload_run")}},
            evidence={"options": opt, "seed": ctx.seed, "versions": ctx.versions.get(platform, {}),
                      "note": "latency from when each request was due (open loop): queueing in the server counts"},
            run_id=ctx.run_id, repeat=ctx.repeat, started_at=started, finished_at=time.time()))
    return results
