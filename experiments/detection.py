"""Run the outlier and drift probes against the running local testbed and print one row per platform.

    .venv/bin/python experiments/detection.py [--platforms kserve,seldon] [--quick] [--seed 11]

Brings nothing up: start the testbed first (`python -m testbed up`). Writes every Result under
results/<run-id>/detection/ and prints P/R/F1, events lost, drift FPR, delay per kind, the smallest
magnitude detected and the latency ratio of inference with / without the detection path (measured
side by side, alternating requests).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probes import drift, outlier  # noqa: E402
from probes.context import ProbeContext  # noqa: E402
from testbed import artifact as artifact_mod  # noqa: E402
from testbed import results  # noqa: E402
from testbed.backends import get_backend  # noqa: E402
from testbed.endpoint import Endpoint  # noqa: E402
from testbed.errors import NotRunning  # noqa: E402
from testbed.prometheus import PrometheusClient  # noqa: E402
from testbed.settings import Settings  # noqa: E402

QUICK = {"control_n": 2000, "drift_n": 1200, "onset": 500, "kinds": ["mean_shift"], "magnitudes": {"mean_shift": [1.5]}}


def context_from_status(status: dict, platforms: list[str] | None, seed: int, run_id: str, options: dict) -> ProbeContext:
    if status.get("state") != "running" or not status.get("model"):
        raise NotRunning("The local testbed")
    art = artifact_mod.load(status["model"]["path"])
    endpoints = {name: Endpoint.from_json(p["endpoint"]) for name, p in status["platforms"].items()
                 if p.get("endpoint") and (not platforms or name in platforms)}
    versions = {name: p.get("versions", {}) for name, p in status["platforms"].items()}
    return ProbeContext(endpoints=endpoints, prometheus=PrometheusClient(status["prometheus"]["url"]), artifact=art,
                        backend=status["backend"], seed=seed, run_id=run_id, versions=versions, options=options)


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--platforms")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="one large shift and a shorter control stream")
    parser.add_argument("--probes", default="outlier,drift")
    opts = parser.parse_args()
    status = get_backend("local").status(Settings())
    run_id = results.new_run_id("detection")
    run_dir = results.RESULTS_DIR / run_id
    platforms = opts.platforms.split(",") if opts.platforms else None
    out = {}
    for probe_name in opts.probes.split(","):
        module = {"outlier": outlier, "drift": drift}[probe_name]
        options = dict(QUICK) if (opts.quick and probe_name == "drift") else {}
        ctx = context_from_status(status, platforms, opts.seed, run_id, options)
        for r in module.run(ctx):
            results.write(r, run_dir, "detection")
            out[(probe_name, r.platform)] = r
    print(f"results: {run_dir}")
    for (probe_name, platform), r in out.items():
        s = r.scores
        if r.verdict == "error":
            print(f"{probe_name:8} {platform:9} {r.mechanism:10} ERROR {r.evidence.get('error')}")
        elif probe_name == "outlier":
            lat = s.get("latency", {})
            print(f"{probe_name:8} {platform:9} {r.mechanism:10} {r.verdict:9} P {fmt(s.get('precision'))} "
                  f"R {fmt(s.get('recall'))} F1 {fmt(s.get('f1'))}  sent {s['rows_sent']} counted "
                  f"{s['rows_counted_prometheus']:.0f} lost {s['events_lost']:.0f}  latency p50 "
                  f"{fmt(lat.get('with_detection', {}).get('p50_ms'), '.2f')} / "
                  f"{fmt(lat.get('without_detection', {}).get('p50_ms'), '.2f')} ms = x{fmt(lat.get('ratio_p50'), '.2f')}"
                  f" (p99 x{fmt(lat.get('ratio_p99'), '.2f')})")
            print(f"{'':30}recall by kind: " + json.dumps({k: round(v['recall'], 2) for k, v in s['recall_by_kind_severity'].items()}))
        else:
            print(f"{probe_name:8} {platform:9} {r.mechanism:10} {r.verdict:9} FPR {fmt(s['fpr'])} "
                  f"({s['false_alarms']}/{s['control_windows']} windows, allowed {s['allowed_false_alarms']})  "
                  f"sent {s['rows_sent']} counted {s['rows_counted_prometheus']:.0f} lost {s['events_lost']:.0f}  "
                  f"smallest detected {s['smallest_magnitude_detected']}")
            for name, d in s["streams"].items():
                print(f"{'':30}{name:18} " + (f"delay {d['delay_samples']} rows, {fmt(d['delay_seconds'], '.2f')} s"
                                             if d["detected"] else "not detected"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
