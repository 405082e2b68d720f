"""Writes the small stored result set the report tests read (tests/data/results/). Deterministic:
re-running it gives the same files. The numbers are chosen so the expected cells are easy to check
by hand (see tests/test_report.py)."""

from pathlib import Path

from testbed.experiment import RUN_SCHEMA
from testbed.results import Result, write
from testbed.state import atomic_write_json

ROOT = Path(__file__).parent / "results"
SHA = "a" * 64
T0 = 1_790_000_000.0


def run_json(run_id, experiments, platforms, repeats, created, sha=SHA, missing=()):
    exps = {}
    for name in experiments:
        units = [f"r{r}/{p}" for r in range(repeats) for p in platforms if f"r{r}/{p}" not in missing]
        exps[name] = {"completed_units": units, "failures": {}, "state": "complete" if not missing else "running",
                      "probe": f"probes.{name}", "options": {}, "wall_s": 12.5}
    return {"schema": RUN_SCHEMA, "run_id": run_id, "created_at": created, "state": "complete" if not missing
            else "running", "backend": "local", "platforms": platforms, "repeats": repeats, "seed": 7,
            "seeds": {f"r{r}": 7 + r for r in range(repeats)}, "command": ["fixture"],
            "hardware": {"cpu": "Test CPU", "cores": 2, "memory_gb": 24.0, "machine": "x86_64", "kernel": "6.1",
                         "python": "3.11.7"},
            "artifact": {"name": "reference-classifier", "sha256": sha, "path": "/nonexistent", "versions": {}},
            "versions": {"platforms": {"kserve": {"kserve": "0.20.0"}, "seldon": {"mlserver": "1.7.1"}},
                         "prometheus": "prometheus, version 2.42.0", "orchestrator": {"python": "3.11.7"},
                         "testbed": {"commit": "0" * 40, "dirty": False}},
            "experiments": exps, "finished_at": created + 60}


def result(probe, platform, repeat, run_id, verdict, scores=None, measurements=None, mechanism=None, sha=SHA):
    return Result(probe=probe, platform=platform, backend="local", artifact_sha256=sha, verdict=verdict,
                  scores=scores or {}, measurements=measurements or {}, mechanism=mechanism, run_id=run_id,
                  repeat=repeat, started_at=T0, finished_at=T0 + 1)


def main():
    # Run A: outlier + drift + monitoring + formats + parity on kserve and seldon, 3 repeats.
    rid = "fixture-a"
    d = ROOT / rid
    atomic_write_json(d / "run.json", run_json(rid, ["outlier", "drift", "monitoring", "formats", "parity"],
                                               ["kserve", "seldon"], 3, T0))
    f1 = {"kserve": [0.8, 0.9, 1.0], "seldon": [0.5, 0.5, 0.5]}
    for p in ("kserve", "seldon"):
        for r in range(3):
            write(result("outlier", p, r, rid, "detected", {"f1": f1[p][r], "precision": 0.9, "recall": 0.6 + 0.1 * r},
                         mechanism="add-on" if p == "kserve" else "native"), d, "outlier")
            write(result("drift", p, r, rid, "detected", {"fpr": 0.05 * r, "min_mean_shift_detected": 0.5},
                         {"per_magnitude": [{"magnitude": 0.5, "delay_samples": 100 + 10 * r},
                                            {"magnitude": 1.0, "delay_samples": 50 + 5 * r},
                                            {"magnitude": 2.0, "delay_samples": 20}]}), d, "drift")
            write(result("monitoring", p, r, rid, "pass", {"coverage": 0.75},
                         {"signals": {"request_count": True, "latency_histogram": True, "errors": p == "seldon",
                                      "batch_queue": False}}), d, "monitoring")
            fm = {"sklearn": {"served": True, "mechanism": "native" if p == "seldon" else "user code", "parity": True},
                  "xgboost": {"served": p == "seldon", "mechanism": "native" if p == "seldon" else "none",
                              "parity": True if p == "seldon" else None},
                  "onnx": {"served": False, "mechanism": "none", "parity": None}}
            write(result("formats", p, r, rid, "measured", {"native_formats": 2 if p == "seldon" else 0},
                         {"formats": fm}), d, "formats")
            write(result("parity", p, r, rid, "pass", {"agreement": 1.0},
                         {"latency_ms": [1.0 + 0.1 * i + r for i in range(10)]}), d, "parity")
    # Run B: an interrupted explain run (only r0 of kserve finished).
    rid = "fixture-b"
    d = ROOT / rid
    missing = {"r0/seldon", "r1/kserve", "r1/seldon"}
    atomic_write_json(d / "run.json", run_json(rid, ["explain"], ["kserve", "seldon"], 2, T0 + 100, missing=missing))
    write(result("explain", "kserve", 0, rid, "pass", {"topk_recall": 1.0, "latency_p50_s": 0.04}), d, "explain")


if __name__ == "__main__":
    main()
