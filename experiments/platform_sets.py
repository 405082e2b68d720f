"""What `up` costs with the default platforms and with `--platforms all`, side by side in one run: the wall
time of `up` (runtime environments already built) and the resident memory of everything the testbed runs
once it is ready, over alternating rounds (the order swaps every round, so drift in the machine's load
hits both sets alike). The numbers the registry's `default` marks are chosen from (README: "Which
platforms `up` starts").

    .venv/bin/python experiments/platform_sets.py [--repeats 3] [--sets default,all]

Runs `python -m testbed` in its own state directory (TESTBED_STATE_DIR, a temporary one unless set);
runtime environments come from TESTBED_ENVS_DIR (default: the repository's .testbed/envs). Prints one
line per start, then per set the mean and a 95% t-interval over the rounds, and the ratio all/default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed.report.criteria import mean_ci  # noqa: E402


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, env=env, capture_output=True, text=True)


def rss_mb(status: dict) -> dict[str, float]:
    """Resident memory per part of the running testbed: each platform as `status` counts it (its processes,
    also those outside its session), and every other process the testbed runs (detection paths, Prometheus,
    the results exporter) by session."""
    from testbed.backends.local import processes

    out = {name: p.get("rss_mb") or 0.0 for name, p in status.get("platforms", {}).items()}
    others = [(p["name"], p["pid"]) for p in status.get("processes", []) if p.get("kind") != "platform" and p.get("pid")]
    if (status.get("prometheus") or {}).get("pid"):
        others.append(("prometheus", status["prometheus"]["pid"]))
    for name, pid in others:
        out.setdefault(name, round(processes.rss_bytes(processes.session_members(pid)) / 2**20, 1))
    return out


def one_start(env: dict, platform_set: str) -> dict:
    args = ["up"] + ([] if platform_set == "default" else ["--platforms", platform_set])
    started = time.monotonic()
    proc = cli(env, *args)
    wall = time.monotonic() - started
    try:
        if proc.returncode != 0:
            raise SystemExit(f"up ({platform_set}) failed:\n{proc.stderr[-3000:]}")
        status = json.loads(cli(env, "status", "--json").stdout)
        parts = rss_mb(status)  # while it runs: the processes besides the platforms are read live
    finally:
        cli(env, "down")
    return {"set": platform_set, "platforms": list(status["platforms"]), "up_s": round(wall, 1),
            "rss_total_mb": round(sum(parts.values())), "rss_mb": parts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sets", default="default,all", help="comma-separated: default, all, or a platform list "
                                                              "joined by '+' (kserve+seldon)")
    opts = parser.parse_args()
    sets = [s.replace("+", ",") for s in opts.sets.split(",")]
    env = dict(os.environ)
    env.setdefault("TESTBED_STATE_DIR", tempfile.mkdtemp(prefix="testbed-platform-sets-"))
    env.setdefault("TESTBED_ENVS_DIR", str(REPO / ".testbed" / "envs"))
    print(f"state {env['TESTBED_STATE_DIR']}, environments {env['TESTBED_ENVS_DIR']}", flush=True)
    for s in sets:  # builds what is missing (environments, artifact, detectors); not measured
        warm = cli(env, "up", *([] if s == "default" else ["--platforms", s]))
        cli(env, "down")
        if warm.returncode != 0:
            raise SystemExit(f"up ({s}) failed:\n{warm.stderr[-3000:]}")
    rows = []
    for i in range(opts.repeats):
        for s in (sets if i % 2 == 0 else sets[::-1]):
            rows.append(one_start(env, s))
            print(f"round {i + 1} {json.dumps(rows[-1])}", flush=True)
    print(f"\n{'set':<10}{'n':>3}  {'up s, mean [95% t]':<26}{'RSS MB, mean [95% t]':<28}platforms")
    means = {}
    for s in sets:
        mine = [r for r in rows if r["set"] == s]
        up = mean_ci([r["up_s"] for r in mine])
        rss = mean_ci([r["rss_total_mb"] for r in mine])
        means[s] = (up[0], rss[0])
        fmt = lambda m: f"{m[0]:.1f} [{m[1]:.1f}, {m[2]:.1f}]" if m[1] is not None else f"{m[0]:.1f}"  # noqa: E731
        print(f"{s:<10}{len(mine):>3}  {fmt(up):<26}{fmt(rss):<28}{','.join(mine[0]['platforms'])}")
    if len(sets) == 2:
        a, b = sets
        print(f"ratio {b}/{a}: up {means[b][0] / means[a][0]:.2f}, RSS {means[b][1] / means[a][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
