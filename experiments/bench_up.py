"""Benchmark: time from `up` to all-ready on the local backend, per platform and total, and
resident memory per runtime, over several cold starts (runtime environments already built).

    .venv/bin/python experiments/bench_up.py [--repeats 3] [--platforms kserve,seldon,rayserve]

Prints one row per start, then min/median/max, and on its last line the median total over the
60 s target as a ratio (< 1.0 meets it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 60.0


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, capture_output=True, text=True)


def one_start(platforms: str) -> dict:
    cli("down")
    started = time.monotonic()
    proc = cli("up", "--platforms", platforms)
    total = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"up failed:\n{proc.stderr[-2000:]}")
    status = json.loads(cli("status", "--json").stdout)
    row = {"total_s": round(total, 1),
           "ready_s": {n: p["ready_after_s"] for n, p in status["platforms"].items()},
           "rss_mb": {n: p["rss_mb"] for n, p in status["platforms"].items()},
           "processes": {n: p["processes"] for n, p in status["platforms"].items()},
           "steps_s": {k: v for k, v in status["timings"].items() if ":" not in k}}
    cli("down")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--platforms", default="kserve,seldon,rayserve")
    args = parser.parse_args()
    warm = cli("up", "--platforms", args.platforms)  # builds envs/artifact if needed; not measured
    if warm.returncode != 0:
        raise SystemExit(f"up failed:\n{warm.stderr[-2000:]}")
    rows = [one_start(args.platforms) for _ in range(args.repeats)]
    names = list(rows[0]["ready_s"])
    print(f"{'start':<6}{'total s':>9}" + "".join(f"{n + ' ready s':>17}{n + ' MB':>14}" for n in names))
    for i, r in enumerate(rows, 1):
        print(f"{i:<6}{r['total_s']:>9.1f}" + "".join(f"{r['ready_s'][n]:>17.1f}{r['rss_mb'][n]:>14.0f}" for n in names))
    for label, fn in (("min", min), ("median", statistics.median), ("max", max)):
        print(f"{label:<6}{fn(r['total_s'] for r in rows):>9.1f}"
              + "".join(f"{fn(r['ready_s'][n] for r in rows):>17.1f}{fn(r['rss_mb'][n] for r in rows):>14.0f}"
                        for n in names))
    print("steps (median s): " + ", ".join(f"{k} {statistics.median(r['steps_s'][k] for r in rows):.1f}"
                                          for k in rows[0]["steps_s"]))
    median_total = statistics.median(r["total_s"] for r in rows)
    print(f"up to all-ready: median {median_total:.1f}s over {len(rows)} starts; "
          f"ratio to the {TARGET_S:.0f}s target: {median_total / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
