"""Command line: python -m testbed <verb>. Parsing here; work in backends, probes and reports."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from testbed.errors import TestbedError
from testbed.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def backend_opt(p):
        p.add_argument("--backend", default="local", help="local (default) or kind")

    up = sub.add_parser("up", help="bring the testbed up: runtimes, model, Prometheus")
    backend_opt(up)
    up.add_argument("--platforms", help="comma-separated subset (default: all registered platforms)")
    up.add_argument("--timeout", type=float, default=None, help="seconds to wait for each runtime (default 180)")
    up.add_argument("--dry-run", action="store_true", help="print the plan without touching anything (kind)")
    up.add_argument("--out", help="with --dry-run: also write every manifest under this directory")
    up.add_argument("--retain", action="store_true", help="keep a failed cluster for inspection (kind)")
    up.add_argument("--batching", choices=("on", "off"), default="off",
                    help="server-side request batching where the platform has it (default off)")
    up.add_argument("--max-batch-size", type=int, default=None, help="with --batching on (default 32)")
    up.add_argument("--max-batch-time-ms", type=float, default=None, help="with --batching on (default 5)")

    status = sub.add_parser("status", help="what runs, where, and whether Prometheus scrapes it")
    backend_opt(status)
    status.add_argument("--json", action="store_true", help="the stable machine-readable document")

    down = sub.add_parser("down", help="stop everything `up` started")
    backend_opt(down)

    metrics = sub.add_parser("metrics", help="run a PromQL query against the testbed's Prometheus")
    backend_opt(metrics)
    metrics.add_argument("promql", nargs="?", default="up", help="PromQL expression (default: up)")
    metrics.add_argument("--json", action="store_true")

    load = sub.add_parser("load", help="send bounded load to a loopback URL; every request recorded (testbed.loadgen)")
    load.add_argument("url", help="e.g. the infer_url from `status --json`")
    load.add_argument("--concurrency", type=int, default=1, help="closed loop: connections (open loop: at most)")
    load.add_argument("--rate", type=float, default=None, help="requests/s: open loop instead of closed loop")
    load.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    load.add_argument("--requests", type=int, default=1_000_000, help="at most this many requests")
    load.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    load.add_argument("--body-file", help="POST this file's bytes (JSON content type)")
    load.add_argument("--allow-non-loopback", action="store_true", help="permit a target outside 127.0.0.0/8 and ::1")
    load.add_argument("--json", action="store_true", help="the full summary as JSON")

    art = sub.add_parser("artifact", help="build (if needed) and describe the reference model artifact")
    art.add_argument("--rebuild", action="store_true")
    return parser


def settings_from(args) -> Settings:
    from deployers import parse_platforms

    settings = Settings(backend=getattr(args, "backend", "local"))
    if getattr(args, "platforms", None):
        settings = replace(settings, platforms=parse_platforms(args.platforms))
    if getattr(args, "timeout", None):
        settings = replace(settings, ready_timeout_s=args.timeout)
    if getattr(args, "batching", None) == "on":
        batching = replace(settings.batching, enabled=True)
        if args.max_batch_size:
            batching = replace(batching, max_batch_size=args.max_batch_size)
        if args.max_batch_time_ms:
            batching = replace(batching, max_batch_time_ms=args.max_batch_time_ms)
        settings = replace(settings, batching=batching)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb](args)
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_up(args) -> int:
    from testbed import state
    from testbed.backends import get_backend
    from testbed.steps import UpContext, run_steps

    settings = settings_from(args)
    backend = get_backend(settings.backend)
    ctx = UpContext(settings=settings, dry_run=args.dry_run, extra={"out_dir": args.out, "retain": args.retain})
    if args.dry_run:
        run_steps(backend.up_steps(ctx), ctx)
        return 0
    with state.exclusive(settings.run_dir, "up"):
        running = backend.already_up(settings)
        if running is not None:
            print("The testbed is already up; nothing to do.", file=sys.stderr)
            print(render_status(running))
            return 0
        run_steps(backend.up_steps(ctx), ctx, on_failure=backend.rollback)
    print(render_status(backend.status(settings)))
    return 0


def cmd_status(args) -> int:
    from testbed.backends import get_backend

    status = get_backend(args.backend).status(Settings(backend=args.backend))
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0 if status["state"] in ("running", "stopped") else 1


def cmd_down(args) -> int:
    from testbed import state
    from testbed.backends import get_backend

    settings = Settings(backend=args.backend)
    with state.exclusive(settings.run_dir, "down"):
        lines = get_backend(args.backend).down(settings)
    print("\n".join(lines) if lines else "Nothing was running.")
    return 0


def cmd_metrics(args) -> int:
    from testbed.backends import get_backend
    from testbed.errors import NotRunning
    from testbed.prometheus import PrometheusClient, format_table

    status = get_backend(args.backend).status(Settings(backend=args.backend))
    if not status.get("prometheus") or status["prometheus"]["state"] != "ready":
        raise NotRunning("The testbed's Prometheus")
    rows = PrometheusClient(status["prometheus"]["url"]).query(args.promql)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_artifact(args) -> int:
    from testbed import artifact

    settings = Settings()
    art = artifact.ensure(settings.artifacts_dir, settings.artifact_seed, rebuild=args.rebuild)
    print(json.dumps(art.metadata, indent=2))
    return 0


def cmd_load(args) -> int:
    from pathlib import Path

    from testbed.loadgen import LoadSpec, run_load, summarize

    body = Path(args.body_file).read_bytes() if args.body_file else None
    spec = LoadSpec(url=args.url, method="POST" if body is not None else "GET", body=body,
                    concurrency=args.concurrency, rate=args.rate, duration_s=args.duration,
                    max_requests=args.requests, timeout_s=args.timeout, allow_non_loopback=args.allow_non_loopback)
    s = summarize(run_load(spec))
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    lat = s["latency_s"]
    ci = lambda key: f"[{lat[key + '_ci'][0] * 1e3:.2f}, {lat[key + '_ci'][1] * 1e3:.2f}]"  # noqa: E731
    print(f"{s['requests']} requests, {s['ok']} 2xx, {s['errors']} errors {s['error_kinds'] or ''} "
          f"{s['status_counts']}")
    print(f"throughput {s['throughput_rps']:.1f} req/s [{s['throughput_rps_ci'][0]:.1f}, {s['throughput_rps_ci'][1]:.1f}]")
    if lat.get("n"):
        print("latency ms: " + "  ".join(f"{k} {lat[k] * 1e3:.2f} {ci(k)}" for k in ("p50", "p90", "p99"))
              + f"  max {lat['max'] * 1e3:.2f}")
    if "sustained" in s:
        print(f"target {s['target_rps']:.1f} req/s: " + ("sustained" if s["sustained"] else
                                                          "NOT sustained: " + "; ".join(s["not_sustained_because"])))
    return 0 if s["errors"] == 0 and s.get("sustained", True) else 1


def render_status(status: dict) -> str:
    lines = [f"backend: {status['backend']}    state: {status['state']}"]
    model = status.get("model")
    if model:
        lines.append(f"model: {model['name']}  sha256 {model['sha256'][:12]}  features {', '.join(model['features'])}")
    for name, p in status.get("platforms", {}).items():
        lines.append(f"  {name:<9} {p['state']:<10} {p.get('v2_base_url') or '-':<24} metrics {p.get('metrics_url') or '-'}"
                     + (f"  rss {p['rss_mb']:.0f} MB" if p.get("rss_mb") else ""))
    prom = status.get("prometheus")
    if prom:
        lines.append(f"prometheus: {prom['url']}  {prom['state']}")
        for t in prom.get("targets", []):
            err = f"  ({t['last_error']})" if t.get("last_error") else ""
            lines.append(f"  scrape {t['job']:<9} {t['health']:<7} {t['url']}{err}")
    return "\n".join(lines)


VERBS = {"up": cmd_up, "status": cmd_status, "down": cmd_down, "metrics": cmd_metrics, "artifact": cmd_artifact}
VERBS["load"] = cmd_load
