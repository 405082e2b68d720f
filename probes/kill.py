"""Kill: the platform's serving worker killed under steady load; time to first success, requests lost,
whether the platform recovers by itself, and (separately) whether the probe had to restore it.

The fault is the backend's (testbed.faults): local, SIGKILL of the process that serves the infer
route (Ray Serve: the replica actor `ray::ServeReplica...`; KServe and MLServer with
parallel_workers 0: the server process itself); kind, deletion of the serving pods with grace
period 0. Self-recovery is only what the platform does on its own (local: the runtime; kind: its
controllers recreating pods), watched for `post_s` under load plus `extra_wait_s` of polling. On
the local backend a platform still down is then restarted by the probe from its recorded command
line (reported as `restored_by_probe`, never as recovery); on kind it is reported as not recovered.

Options (ctx.options): rate (req/s, default 20), pre_s (2; kind 5), post_s (12; kind 60),
extra_wait_s (local: 10, or 1.5x the platform's time to ready at `up` when longer, unless given; kind 240),
timeout_s (2), dry_run (print the plan, inject nothing).
"""

from __future__ import annotations

import time

from probes import faults as scoring
from probes.context import ProbeContext
from probes.fault_io import engine_ns, fault_request, faults_for, infer_url, start_load, wait_ok
from testbed.errors import FaultAborted
from testbed.loadgen import LoadSpec
from testbed.results import Result

PROBE = "kill"
DEFAULTS = {"local": {"rate": 20, "pre_s": 2, "post_s": 12, "extra_wait_s": 10, "timeout_s": 2},
            # A pod is rescheduled, its image started and the model loaded again: tens of seconds.
            "kind": {"rate": 20, "pre_s": 5, "post_s": 60, "extra_wait_s": 240, "timeout_s": 2}}


WARM_UP_S = 60.0
"""How long a platform may take to answer one request before the load starts (a first request can be slow:
lazy imports, cold caches); the kill is injected into a platform known to be serving."""


def options(ctx: ProbeContext) -> dict:
    defaults = DEFAULTS.get(ctx.backend, DEFAULTS["local"])
    return {k: float(ctx.options.get(k, d)) for k, d in defaults.items()}


START_FACTOR = 1.5
"""A platform whose own supervisor restarts the killed worker may need about as long as its first start (TorchServe
reloads the handler in a new python worker: tens of seconds); the probe waits that long, times this factor."""


def recovery_wait_s(opt: dict, target, explicit: bool) -> float:
    """Seconds of polling after the load before a platform counts as not recovered by itself: the option, or at
    least START_FACTOR x the platform's recorded time to ready at `up` (local), unless the user set the option."""
    started = (target.evidence or {}).get("ready_after_s")
    if explicit or not started:
        return opt["extra_wait_s"]
    return max(opt["extra_wait_s"], round(START_FACTOR * float(started), 1))


def kill_one(faults, platform: str, endpoint, body: bytes, opt: dict, explicit_wait: bool = False) -> dict | None:
    """One kill under load (None in a dry run, after printing what it would do)."""
    if faults.dry_run:
        faults.note(f"--- {platform}")
    target = faults.kill_target(platform, endpoint)
    opt = {**opt, "extra_wait_s": recovery_wait_s(opt, target, explicit_wait)}
    duration = opt["pre_s"] + opt["post_s"]
    url = infer_url(endpoint)
    spec = LoadSpec(url=url, method="POST", body=body, rate=opt["rate"], concurrency=16,
                    duration_s=duration, max_requests=int(opt["rate"] * duration) + 1, timeout_s=opt["timeout_s"],
                    threads=1)
    if not faults.dry_run and wait_ok(url, WARM_UP_S, "POST", body) is None:
        # A platform that does not answer before the fault says nothing about the fault.
        raise FaultAborted(PROBE, platform, f"{url} did not answer 200 within {WARM_UP_S:g} s "
                                            f"before the kill; run `python -m testbed status`")
    load = start_load(faults, spec)
    if load is None:  # dry run
        faults.note(f"after {opt['pre_s']:g} s of load:")
        faults.kill(target)
        faults.note(f"score: first 2xx to a request sent after the kill; if none within {opt['post_s']:g} s of load, "
                    f"poll {url} for {opt['extra_wait_s']:g} s more")
        faults.restore(target, endpoint)
        return None
    time.sleep(opt["pre_s"])
    if load.failed():
        load.wait(PROBE, platform)  # raises FaultAborted with the cause
        raise FaultAborted(PROBE, platform, "the load ended before the kill")
    kill_unix = faults.kill(target)
    run = load.wait(PROBE, platform)
    kill_ns = engine_ns(run, kill_unix)
    scores = scoring.score_kill(run.records, kill_ns, end_ns=int(run.engine["window_ns"]))
    late = None
    if not scores["recovered"]:
        # Still down when the load ended: give the platform extra_wait_s more to come back on its own.
        if wait_ok(url, opt["extra_wait_s"], "POST", body) is not None:
            late = round((time.time_ns() - kill_unix) / 1e9, 3)  # seconds from the kill to that success
    self_recovered = scores["recovered"] or late is not None
    restored_after = None if self_recovered else faults.restore(target, endpoint)
    scores.update({"recovered_by_itself": self_recovered, "self_recovered": float(self_recovered), "recovered_after_load_s": late,
                   "restored_by_probe": restored_after is not None,
                   "restored_after_s": None if restored_after is None else round(restored_after, 2),
                   "time_to_recover_s": scores["first_success_s"] if scores["recovered"] else late})
    return {"scores": scores, "worker": {**target.evidence, "description": target.description,
                                         **faults.after_kill(target)},
            "kill_ns": kill_ns, "run": run, "extra_wait_s": opt["extra_wait_s"]}


def run(ctx: ProbeContext) -> list[Result]:
    faults = faults_for(ctx)
    opt = options(ctx)
    results = []
    for platform, endpoint in ctx.endpoints.items():
        started = time.time()
        out = kill_one(faults, platform, endpoint, fault_request(ctx, endpoint), opt,
                       explicit_wait="extra_wait_s" in ctx.options)
        if out is None:
            continue
        s = out["scores"]
        results.append(Result(
            probe=PROBE, platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict="pass" if s["recovered_by_itself"] else "fail",
            mechanism="self-recovery" if s["recovered_by_itself"] else "none",
            scores={k: v for k, v in s.items()},
            measurements={"timeline": scoring.timeline(out["run"].records, out["kill_ns"]),
                          "load": out["run"].spec.describe(), "engine": out["run"].engine},
            evidence={"worker": out["worker"], "options": {**opt, "extra_wait_s": out["extra_wait_s"]},
                      "seed": ctx.seed,
                      "versions": ctx.versions.get(platform, {}),
                      "fault": faults.kill_fault,
                      "note": "self-recovery = the platform alone (local: the runtime; kind: its controllers "
                              "recreating pods); restored_by_probe = the probe re-executed the recorded process "
                              "(local only; not recovery)"},
            run_id=ctx.run_id, repeat=ctx.repeat, started_at=started, finished_at=time.time()))
    return results
