"""Kill: SIGKILL each platform's serving worker under steady load; time to first success, requests lost,
whether the runtime recovers by itself, and (separately) whether the probe had to restore it.

Local backend only. The worker is the process that serves the infer route (Ray Serve: the replica
actor `ray::ServeReplica...`; KServe and MLServer with parallel_workers 0: the server process
itself). Self-recovery is only what the runtime does on its own, watched for `post_s` under load
plus `extra_wait_s` of polling; a platform still down is then restarted by the probe from its
recorded command line (reported as `restored_by_probe`, never as recovery).

Options (ctx.options): rate (req/s, default 20), pre_s (2), post_s (12), extra_wait_s (10), timeout_s (2).
"""

from __future__ import annotations

import json
import time

from probes import faults as scoring
from probes.context import ProbeContext
from probes.fault_io import BackgroundLoad, engine_ns
from testbed import v2
from testbed.backends.local import faults
from testbed.errors import FaultAborted, TestbedError
from testbed.loadgen import LoadSpec
from testbed.results import Result
from testbed.settings import Settings

PROBE = "kill"
RESTORE_TIMEOUT_S = 180.0


def options(ctx: ProbeContext) -> dict:
    o = ctx.options
    return {"rate": float(o.get("rate", 20)), "pre_s": float(o.get("pre_s", 2)), "post_s": float(o.get("post_s", 12)),
            "extra_wait_s": float(o.get("extra_wait_s", 10)), "timeout_s": float(o.get("timeout_s", 2))}


def kill_one(settings: Settings, platform: str, endpoint, body: bytes, opt: dict) -> dict:
    info = faults.recorded(settings, platform)
    worker, how = faults.serving_worker(platform, info, endpoint.base_url)
    models = faults.served_models(endpoint.base_url)
    leader = faults.capture(info["pid"], info.get("log") or f"{settings.run_dir}/{platform}/runtime.log")
    duration = opt["pre_s"] + opt["post_s"]
    spec = LoadSpec(url=endpoint.infer_url, method="POST", body=body, rate=opt["rate"], concurrency=16,
                    duration_s=duration, max_requests=int(opt["rate"] * duration) + 1, timeout_s=opt["timeout_s"],
                    threads=1)
    load = BackgroundLoad(spec).start()
    time.sleep(opt["pre_s"])
    if load.failed():
        load.wait(PROBE, platform)  # raises FaultAborted with the cause
        raise FaultAborted(PROBE, platform, "the load ended before the kill")
    kill_unix = faults.kill(worker, how, platform)
    run = load.wait(PROBE, platform)
    kill_ns = engine_ns(run, kill_unix)
    scores = scoring.score_kill(run.records, kill_ns, end_ns=int(run.engine["window_ns"]))
    late = None
    if not scores["recovered"]:
        # Still down when the load ended: give the runtime extra_wait_s more to come back on its own.
        if faults.wait_ok(endpoint.infer_url, opt["extra_wait_s"], "POST", body) is not None:
            late = round((time.time_ns() - kill_unix) / 1e9, 3)  # seconds from the kill to that success
    self_recovered = scores["recovered"] or late is not None
    restored_after = None
    if not self_recovered:
        restored_after = faults.restart(settings, ("platforms", platform), leader, endpoint.model_ready_url,
                                        RESTORE_TIMEOUT_S, endpoint.base_url, models)
    scores.update({"recovered_by_itself": self_recovered, "self_recovered": float(self_recovered), "recovered_after_load_s": late,
                   "restored_by_probe": restored_after is not None,
                   "restored_after_s": None if restored_after is None else round(restored_after, 2),
                   "time_to_recover_s": scores["first_success_s"] if scores["recovered"] else late})
    return {"scores": scores, "worker": {"pid": worker, "found_by": how, "leader_pid": info["pid"],
                                         "was_leader": worker == info["pid"]},
            "kill_ns": kill_ns, "run": run}


def run(ctx: ProbeContext) -> list[Result]:
    if ctx.backend != "local":
        raise TestbedError(f"The kill probe runs on the local backend only (this testbed is {ctx.backend}); "
                           f"on kind the fault is a pod deletion, not implemented by this probe.")
    settings = Settings()
    opt = options(ctx)
    body = json.dumps(v2.request_body(ctx.artifact.probe_rows()[:1], request_id="fault-probe")).encode()
    results = []
    for platform, endpoint in ctx.endpoints.items():
        started = time.time()
        out = kill_one(settings, platform, endpoint, body, opt)
        s = out["scores"]
        results.append(Result(
            probe=PROBE, platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict="pass" if s["recovered_by_itself"] else "fail",
            mechanism="self-recovery" if s["recovered_by_itself"] else "none",
            scores={k: v for k, v in s.items()},
            measurements={"timeline": scoring.timeline(out["run"].records, out["kill_ns"]),
                          "load": out["run"].spec.describe(), "engine": out["run"].engine},
            evidence={"worker": out["worker"], "options": opt, "seed": ctx.seed,
                      "versions": ctx.versions.get(platform, {}),
                      "note": "self-recovery = the runtime alone; restored_by_probe = the probe re-executed the "
                              "recorded process (not recovery)"},
            run_id=ctx.run_id, repeat=ctx.repeat, started_at=started, finished_at=time.time()))
    return results
