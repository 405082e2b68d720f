"""How much the detection paths add to `up`: alternate `up`/`down` with and without detection.

    .venv/bin/python experiments/up_time.py [--repeats 2] [--platforms kserve,seldon,rayserve]

Each round runs `python -m testbed up` with TESTBED_DETECTION=1, then with 0 (order swapped every
round), and reads the readiness timings from `status --json`. Prints per-platform model readiness,
detection readiness (after the models) and wall time of `up`, side by side, with ratios. Needs a
testbed that is down; leaves it down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(*args, detection: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESTBED_DETECTION": "1" if detection else "0"}
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, env=env, capture_output=True, text=True)


def one(detection: bool, platforms: str | None) -> dict:
    args = ["up"] + (["--platforms", platforms] if platforms else [])
    started = time.monotonic()
    proc = cli(*args, detection=detection)
    wall = time.monotonic() - started
    try:
        if proc.returncode != 0:
            raise SystemExit(f"up failed (detection={detection}):\n{proc.stderr[-3000:]}")
        timings = json.loads(cli("status", "--json", detection=detection).stdout)["timings"]
    finally:
        cli("down", detection=detection)
    return {"wall_s": wall, **{k: v for k, v in timings.items() if k.startswith(("ready:", "load:"))}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--platforms")
    opts = parser.parse_args()
    runs = {True: [], False: []}
    for i in range(opts.repeats):
        for detection in ((True, False) if i % 2 == 0 else (False, True)):
            runs[detection].append(one(detection, opts.platforms))
            print(f"round {i + 1} detection={'on ' if detection else 'off'} {json.dumps(runs[detection][-1])}",
                  flush=True)
    keys = sorted({k for r in runs[True] + runs[False] for k in r})
    print(f"\n{'median of ' + str(opts.repeats):24} {'with':>8} {'without':>8} {'ratio':>6}")
    for k in keys:
        w = [r[k] for r in runs[True] if k in r]
        wo = [r[k] for r in runs[False] if k in r]
        mw = statistics.median(w) if w else None
        mwo = statistics.median(wo) if wo else None
        ratio = f"{mw / mwo:6.2f}" if mw and mwo else "     -"
        print(f"{k:24} {mw if mw is not None else '-':>8.1f} " if mw is not None else f"{k:24} {'-':>8} ", end="")
        print(f"{mwo:>8.1f} {ratio}" if mwo is not None else f"{'-':>8} {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
