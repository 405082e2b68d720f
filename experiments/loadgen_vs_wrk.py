"""Is the testbed's load generator fast enough? Its top rate vs wrk's on a static nginx, side by side.

Starts its own nginx on loopback (config in a temp dir), then runs wrk and the testbed's
loadgen against it in turn (alternating, --rounds times), with the same connection count,
threads and duration. Prints each round, then the ratio (ours / wrk, median over rounds) as
the LAST line, alone. Goal: >= 0.9.

    python experiments/loadgen_vs_wrk.py [--connections 64] [--duration 5] [--rounds 3] [--post]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from testbed.loadgen import LoadSpec, run_load, summarize  # noqa: E402
from testbed.loadgen.nginx import run_wrk, static_nginx  # noqa: E402
from testbed.results import hardware  # noqa: E402

# A one-row V2 request, as the platforms get in experiments/performance.py.
V2_BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 6], "datatype": "FP64",
                                  "data": [0.1, -0.2, 0.3, 0.4, -0.5, 1.0]}]}).encode()


def wrk_post_script(directory: Path, body_bytes: bytes = V2_BODY) -> Path:
    script = directory / "post.lua"
    body = body_bytes.decode().replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(f'wrk.method = "POST"\nwrk.body = "{body}"\n'
                      f'wrk.headers["Content-Type"] = "application/json"\n')
    return script


def compare(connections: int = 64, duration_s: float = 5.0, threads: int = 2, rounds: int = 4,
            nginx_workers: int = 1, post: bool = False, out=lambda m: print(m, flush=True),
            target: str | None = None, body: bytes | None = None) -> dict:
    """Both tools against one static nginx (or `target`, e.g. a platform's infer URL with `body`),
    alternating; per-round rates and the median ratio ours/wrk."""
    args = argparse.Namespace(connections=connections, threads=threads, rounds=rounds, nginx_workers=nginx_workers,
                              post=post)
    duration = float(max(1, round(duration_s)))
    ours, theirs, rows = [], [], []
    from contextlib import nullcontext

    body = body if body is not None else V2_BODY
    endpoint = nullcontext(None) if target else static_nginx(workers=args.nginx_workers)
    with endpoint as base, tempfile.TemporaryDirectory() as tmp:
        url = target or base + ("/v2/models/static/infer" if args.post else "/")
        extra = ["-s", str(wrk_post_script(Path(tmp), body))] if args.post else []
        spec = LoadSpec(url=url, method="POST" if args.post else "GET", body=body if args.post else None,
                        concurrency=args.connections, duration_s=duration, threads=args.threads,
                        max_requests=100_000_000)
        out(f"target {url}: {'nginx workers ' + str(args.nginx_workers) if not target else 'given endpoint'}; {args.connections} connections, "
            f"{args.threads} threads, {duration:.0f} s per run")
        for i in range(args.rounds):
            # Alternate who goes first, so a drift in the machine's load does not favour one tool.
            if i % 2 == 0:
                w = run_wrk(url, args.connections, duration, args.threads, extra_args=extra)
                s = summarize(run_load(spec))
            else:
                s = summarize(run_load(spec))
                w = run_wrk(url, args.connections, duration, args.threads, extra_args=extra)
            theirs.append(w["rate"])
            ours.append(s["throughput_rps"])
            rows.append({"round": i, "wrk_rps": w["rate"], "wrk_errors": w["socket_errors"] + w["non_2xx"],
                         "ours_rps": s["throughput_rps"], "ours_requests": s["requests"], "ours_errors": s["errors"],
                         "ours_p50_ms": s["latency_s"]["p50"] * 1e3, "ours_p99_ms": s["latency_s"]["p99"] * 1e3,
                         "ours_client_cpu_fraction": s["client_cpu_fraction"]})
            out(f"round {i}: wrk {w['rate']:9.0f} req/s ({w['socket_errors'] + w['non_2xx']} errors)   "
                f"ours {s['throughput_rps']:9.0f} req/s ({s['errors']} errors of {s['requests']} recorded, "
                f"p50 {s['latency_s']['p50'] * 1e3:.2f} ms)   ratio {s['throughput_rps'] / w['rate']:.3f}")
    ratios = np.array(ours) / np.array(theirs)
    from testbed.loadgen import stats

    return {"rounds": rows, "ratios": ratios.tolist(), "ratio_median": float(np.median(ratios)),
            "ratio_median_ci": list(stats.bootstrap(ratios, np.median)),
            "ours_max_rps": float(max(ours)), "wrk_max_rps": float(max(theirs)), "hardware": hardware(),
            "connections": connections, "threads": threads, "duration_s": duration, "post": post}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (whole seconds for wrk)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--post", action="store_true", help="POST a one-row V2 JSON body instead of GET /")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--target", help="a loopback URL instead of the static nginx (e.g. a platform's infer URL)")
    parser.add_argument("--body-file", help="with --target: the POST body (implies --post)")
    args = parser.parse_args(argv)
    body = Path(args.body_file).read_bytes() if args.body_file else None
    res = compare(args.connections, args.duration, args.threads, args.rounds, args.nginx_workers,
                  args.post or body is not None, target=args.target, body=body)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    hw = res["hardware"]
    print(f"hardware: {hw['cpu']}, {hw['cores']} cores; per-round ratios "
          f"{', '.join(f'{r:.3f}' for r in res['ratios'])}; median ours/wrk (95% bootstrap CI over rounds "
          f"{res['ratio_median_ci'][0]:.3f}-{res['ratio_median_ci'][1]:.3f}):")
    print(f"{res['ratio_median']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
