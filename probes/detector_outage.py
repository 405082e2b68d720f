"""Detector outage: the detector service taken down while traffic flows through each platform's
detection path.

The fault is the backend's (testbed.faults): local, SIGKILL of the detector service's recorded
process session; kind, the Deployment `detector-service` scaled to 0 with its pods deleted.
Measured: whether inference keeps answering 2xx; how many payloads the detection path drops
(successful requests during the outage that the restarted service never received); whether the
platform (or its detection sidecar) reports the failure in its own metrics: any error-like series
(error/fail/drop/exception/timeout in its name) that grew, read before and after (local: each
/metrics page; kind: the testbed's Prometheus). The probe brings the service back afterwards and
checks the path delivers again.

Options (ctx.options): rate (req/s, 10), pre_s (2), outage_s (6), settle_s (3), timeout_s (5),
dry_run (print the plan, inject nothing).
"""

from __future__ import annotations

import re
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from probes import faults as scoring
from probes.context import ProbeContext
from probes.fault_io import engine_ns, fault_request, faults_for, start_load
from testbed.errors import DetectionPathDown, FaultAborted
from testbed.loadgen import LoadSpec
from testbed.results import Result

PROBE = "detector-outage"
ERROR_LIKE = re.compile(r"error|fail|drop|exception|timeout", re.I)
RESTART_TIMEOUT_S = {"local": 120.0, "kind": 900.0}
"""kind: the restarted pod pip-installs the detectors' pins in its initContainer first."""

NOT_ABOUT_DETECTION = {"ray_gcs_task_manager_task_events_dropped"}
"""Error-like series that grow with any traffic (Ray's internal task-event buffer): not a report of the outage.
(Runs faults-r2 flagged Ray on this series alone: a false positive, excluded since.)"""


def options(ctx: ProbeContext) -> dict:
    o = ctx.options
    return {k: float(o.get(k, d)) for k, d in (("rate", 10), ("pre_s", 2), ("outage_s", 6), ("settle_s", 3),
                                               ("timeout_s", 5))}


def error_increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Pure: error-like series that grew (a series appearing with a positive value grew too)."""
    return {name: after[name] - before.get(name, 0.0) for name in sorted(after)
            if ERROR_LIKE.search(name) and name not in NOT_ABOUT_DETECTION and after[name] - before.get(name, 0.0) > 0}


def events_for(service_url: str, platform: str) -> int | None:
    """testbed_detector_events for this platform on the (restarted) detector service."""
    try:
        text = httpx.get(f"{service_url}/metrics", timeout=3.0).text
    except httpx.HTTPError:
        return None
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "testbed_detector_events":
            total += sum(s.value for s in family.samples
                         if s.name.endswith("_total") and s.labels.get("platform") == platform)
    return int(total)


def outage_one(faults, platform: str, endpoint, body: bytes, opt: dict) -> dict | None:
    """One outage under load (None in a dry run, after printing what it would do)."""
    if faults.dry_run:
        faults.note(f"--- {platform}")
    path = (endpoint.detection or {}).get("outlier")
    if not path:
        raise DetectionPathDown(platform, "outlier", "no detection path in its endpoint")
    target = faults.detector_target(platform, endpoint)
    before = faults.metric_snapshot(platform, endpoint)
    duration = opt["pre_s"] + opt["outage_s"]
    spec = LoadSpec(url=path["url"], method="POST", body=body, rate=opt["rate"], concurrency=16, duration_s=duration,
                    max_requests=int(opt["rate"] * duration) + 1, timeout_s=opt["timeout_s"], threads=1)
    load = start_load(faults, spec)
    restart_timeout = RESTART_TIMEOUT_S.get(faults.backend, 120.0)
    if load is None:  # dry run
        faults.note(f"after {opt['pre_s']:g} s of load:")
        faults.stop_detector(target)
        faults.note(f"outage until the load ends ({opt['outage_s']:g} s); then read the metrics again:")
        faults.metric_snapshot(platform, endpoint)
        faults.start_detector(target, restart_timeout)
        faults.note(f"after {opt['settle_s']:g} s: payloads delivered late = testbed_detector_events_total"
                    f"{{platform=\"{platform}\"}} at {target.service_url}/metrics; then 5 requests must reach it")
        return None
    time.sleep(opt["pre_s"])
    if load.failed():
        load.wait(PROBE, platform)
        raise FaultAborted(PROBE, platform, "the load ended before the outage")
    start_unix = faults.stop_detector(target)
    run = load.wait(PROBE, platform)
    end_unix = time.time_ns()
    after = faults.metric_snapshot(platform, endpoint)
    restart_s = faults.start_detector(target, restart_timeout)
    time.sleep(opt["settle_s"])  # a path that buffers and retries delivers now
    late = events_for(target.service_url, platform)
    # The path after the restart: a few requests must reach the service again.
    with httpx.Client(timeout=opt["timeout_s"], headers={"content-type": "application/json"}) as client:
        post_ok = sum(client.post(path["url"], content=body).status_code == 200 for _ in range(5))
    delivered_after = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = events_for(target.service_url, platform)
        if now is not None and late is not None and now - late >= post_ok:
            delivered_after = now - late
            break
        time.sleep(0.5)
    increases = {k: error_increase(before.get(k, {}), after.get(k, {})) for k in set(before) | set(after)}
    increases = {k: v for k, v in increases.items() if v}
    scores = scoring.score_outage(run.records, engine_ns(run, start_unix), engine_ns(run, end_unix), late,
                                  increases)
    scores.update({"service_restart_s": round(restart_s, 2), "path_restored": delivered_after is not None,
                   "delivered_after_restart": delivered_after})
    return {"scores": scores, "run": run, "origin_ns": engine_ns(run, start_unix), "path": path,
            "metric_sources": sorted(set(before) | set(after)), "detector": target.description}


def run(ctx: ProbeContext) -> list[Result]:
    faults = faults_for(ctx)
    opt = options(ctx)
    results = []
    for platform, endpoint in ctx.endpoints.items():
        started = time.time()
        if not (endpoint.detection or {}).get("outlier"):
            if faults.dry_run:
                faults.note(f"{platform}: no detection path published; recorded as 'no detection path'")
                continue
            # Nothing to take down on this platform's path: recorded as such, not skipped silently.
            results.append(Result(
                probe=PROBE, platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
                verdict="no detection path", mechanism="none", scores={},
                evidence={"reason": "the running testbed publishes no detection path for this platform "
                                    "(`status --json` -> detection.paths)", "options": opt},
                run_id=ctx.run_id, repeat=ctx.repeat, started_at=started, finished_at=time.time()))
            continue
        out = outage_one(faults, platform, endpoint, fault_request(ctx, endpoint, detected=True), opt)
        if out is None:
            continue
        s = out["scores"]
        keeps = s["inference_ok_fraction"] is not None and s["inference_ok_fraction"] >= 0.99
        results.append(Result(
            probe=PROBE, platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict="pass" if keeps and s["path_restored"] else "fail", mechanism=out["path"].get("label"), scores=s,
            measurements={"timeline": scoring.timeline(out["run"].records, out["origin_ns"]),
                          "load": out["run"].spec.describe(), "engine": out["run"].engine},
            evidence={"detection_url": out["path"]["url"], "metric_sources": out["metric_sources"],
                      "detector": out["detector"], "options": opt,
                      "versions": ctx.versions.get(platform, {}),
                      "note": "timeline origin = the detector service going down; payloads_dropped = 2xx requests "
                              "during the outage minus events the restarted service received for them"},
            run_id=ctx.run_id, repeat=ctx.repeat, started_at=started, finished_at=time.time()))
    return results
