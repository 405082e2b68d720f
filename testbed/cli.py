"""Command line: python -m testbed <verb>. Parsing here; work in backends, probes and reports."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from testbed.errors import TestbedError
from testbed.settings import Settings


def user_model_flags(parser) -> None:
    mine = parser.add_argument_group("your own model (instead of the testbed's reference classifier)")
    mine.add_argument("--model", metavar="PATH", help="a scikit-learn estimator or Pipeline (.joblib/.pkl: loading a "
                      "pickle runs code; the testbed loads it only inside runtime environments), an XGBoost (.json, "
                      ".ubj), LightGBM (.txt) or ONNX (.onnx) model")
    mine.add_argument("--reference", metavar="REF.csv", help="with --model: rows like the training data, header = "
                      "column names (the detectors are fitted on half of them, scenarios drawn from the rest)")
    mine.add_argument("--name", help="with --model: the model's name in URLs and results (default: the file's name)")
    mine.add_argument("--target", metavar="COLUMN", help="with --model: the label column of REF.csv (left out of the "
                      "features; used for the held-out score)")
    mine.add_argument("--categorical", metavar="A,B", help="with --model: columns to treat as categorical (strings "
                      "always are; whole numbers with <= 10 values are unless --numeric)")
    mine.add_argument("--numeric", metavar="C,D", help="with --model: whole-number columns to treat as quantities")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def backend_opt(p):
        p.add_argument("--backend", default="local", help="local (default), kind, or controlplane (kind's deploy checked by a real "
                                                  "API server and operators; `make controlplane` first)")

    up = sub.add_parser("up", help="bring the testbed up: runtimes, model, Prometheus")
    backend_opt(up)
    up.add_argument("--platforms", help="comma-separated subset, or `all` (default: the default platforms the "
                                        "backend offers)")
    up.add_argument("--timeout", type=float, default=None,
                    help="seconds to wait for each runtime (default 180, env TESTBED_READY_TIMEOUT_S)")
    up.add_argument("--dry-run", action="store_true", help="print the plan without touching anything (kind)")
    up.add_argument("--out", help="with --dry-run: also write every manifest under this directory")
    up.add_argument("--retain", action="store_true", help="keep a failed cluster for inspection (kind)")
    up.add_argument("--prometheus-port", type=int, help="fixed loopback port for Prometheus (default: a free one)")
    up.add_argument("--batching", choices=("on", "off"), default="off",
                    help="server-side request batching where the platform has it (default off)")
    up.add_argument("--max-batch-size", type=int, default=None, help="with --batching on (default 32)")
    up.add_argument("--max-batch-time-ms", type=float, default=None, help="with --batching on (default 5)")
    user_model_flags(up)

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

    art = sub.add_parser("artifact", help="build (if needed) and describe the model artifact: the testbed's own, or "
                         "yours with --model/--reference (inspected in a runtime environment; nothing is started)")
    art.add_argument("--rebuild", action="store_true")
    user_model_flags(art)

    rep = sub.add_parser("report", help="render the comparison report (Markdown + self-contained HTML)")
    rep.add_argument("run_ids", nargs="*", metavar="RUN-ID", help="runs to report (default: the latest run per "
                     "experiment and platform; documented rows alone when there is none)")
    rep.add_argument("--out", help="output directory (default: <results dir>/report)")
    rep.add_argument("--results-dir", help="where runs are read (default: results/, env TESTBED_RESULTS_DIR)")
    rep.add_argument("--by-artifact", action="store_true",
                     help="show runs of different model artifacts as separate matrices instead of refusing")

    pipe = sub.add_parser("pipeline", help="the experiment as a Kubeflow pipeline (kfp v2)")
    pipe_sub = pipe.add_subparsers(dest="pipeline_verb", required=True, metavar="ACTION")
    comp = pipe_sub.add_parser("compile", help="compile the pipeline to IR YAML that Kubeflow Pipelines accepts")
    comp.add_argument("--out", default="testbed-pipeline.yaml", help="output file (default testbed-pipeline.yaml)")
    prun = pipe_sub.add_parser("run-local", help="run it here with kfp.local's SubprocessRunner (local backend)")
    prun.add_argument("--platforms", help="comma-separated subset, or `all` (default: the default platforms)")
    prun.add_argument("--repeats", type=int, default=1)
    prun.add_argument("--seed", type=int, default=20261125)
    prun.add_argument("--results-dir", help="where the pipeline's run is written (default results/)")
    prun.add_argument("--pipeline-root", help="kfp.local pipeline root (default <state dir>/kfp-local)")

    exporter = sub.add_parser("results-exporter", help="serve probe verdicts and scores as Prometheus metrics")
    exporter.add_argument("--port", type=int, required=True)
    exporter.add_argument("--results-dir", help="runs to export (default results/)")
    images = sub.add_parser("images", help="every container image the kind backend runs (to pre-pull and `kind load`)")
    images.add_argument("--with-node-image", action="store_true", help="also print the kind node image first")
    images.add_argument("--json", action="store_true", help="grouped by component, with the node image")
    images.add_argument("--arch", help="the kind node's CPU architecture: amd64 or arm64 (default: this machine's); "
                        "arm64 gets the arm tags, and an error names the images that have none")
    images.add_argument("--platforms", help="comma-separated subset: only the images those platforms need")
    probe = sub.add_parser("probe", help="measure the running testbed: outlier, drift, monitoring, explain, "
                           "robustness (or all)")
    backend_opt(probe)
    probe.add_argument("probe", help="outlier | drift | monitoring | explain | robustness | all (faults, by name only: "
                       "kill | overload | detector-outage)")
    probe.add_argument("--platforms", help="comma-separated subset of the running platforms (default, or `all`: "
                                           "all of them)")
    probe.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    probe.add_argument("--reference", metavar="REF.csv", help=argparse.SUPPRESS)  # refused with guidance: see below
    probe.add_argument("--data", metavar="CUR.csv", help="drift/outlier: your rows to test against the reference the "
                       "testbed came up with (header = the model's feature names)")
    probe.add_argument("--truth", metavar="TRUTH.csv", help="outlier: one 0/1 column per data row (1 = outlier)")
    probe.add_argument("--seed", type=int, default=0, help="seed of generated scenarios and traffic (default 0)")
    probe.add_argument("--dry-run", action="store_true",
                       help="fault probes only: print what the fault would do on this backend, inject nothing "
                            "(kind: planned against `up --dry-run` when no cluster is running)")
    kpath = sub.add_parser("kubernetes-path", help="the level each platform's Kubernetes path reached: schema-valid, "
                           "control-plane verified, run on a real kind cluster")
    kpath.add_argument("--json", action="store_true")
    kpath.add_argument("--record-kind", action="store_true",
                       help="record that the kind e2e tests passed for --platforms (the e2e workflow, after them)")
    kpath.add_argument("--platforms", help="comma-separated (default: all)")
    return parser


def model_request(args):
    """The user's model of `up --model ...` (None without --model); UserModelError for flags without it."""
    from pathlib import Path

    from testbed.errors import UserModelError
    from testbed.usermodel import Request

    given = [f"--{f}" for f in ("reference", "name", "target", "categorical", "numeric") if getattr(args, f, None)]
    if not getattr(args, "model", None):
        if given:
            raise UserModelError("(none)", f"{', '.join(given)} describe(s) your own model: give --model PATH too")
        return None
    if not args.reference:
        raise UserModelError(args.model, "--reference REF.csv is missing: the testbed needs rows like the training "
                                         "data to check the model's features, fit the detectors and make scenarios")
    if getattr(args, "backend", "local") != "local":
        raise UserModelError(args.model, f"the {args.backend} backend serves the testbed's own model only; bring "
                                         f"your model up on the local backend (leave out --backend)")

    def names(text):
        return tuple(n.strip() for n in (text or "").split(",") if n.strip())

    return Request(model=Path(args.model), reference=Path(args.reference), name=args.name, target=args.target,
                   categorical=names(args.categorical), numeric=names(args.numeric))


def running_subset(text: str | None) -> tuple[str, ...] | None:
    """--platforms of a verb that acts on the running testbed: None (or `all`) means every running platform."""
    from deployers import ALL, parse_platforms

    return None if not text or text.strip() == ALL else parse_platforms(text)


def settings_from(args) -> Settings:
    from deployers import parse_platforms

    settings = Settings(backend=getattr(args, "backend", "local"))
    if getattr(args, "model", None) is not None or getattr(args, "reference", None) is not None:
        settings = replace(settings, model=model_request(args))
    if getattr(args, "platforms", None):
        settings = replace(settings, platforms=parse_platforms(args.platforms, settings.backend))
    if getattr(args, "timeout", None):
        settings = replace(settings, ready_timeout_s=args.timeout)
    if getattr(args, "prometheus_port", None):
        settings = replace(settings, prometheus_port=args.prometheus_port)
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
    from testbed import lifecycle

    settings = settings_from(args)
    if not args.platforms:
        from deployers import default_platforms

        left_out = [n for n in default_platforms() if n not in settings.platforms]
        if left_out:
            from testbed.platforms import DEPLOYS

            print(f"The {settings.backend} backend does not offer {', '.join(left_out)} (no "
                  f"{DEPLOYS.get(settings.backend, settings.backend)} "
                  f"deployment in its module): starting {', '.join(settings.platforms)}.", file=sys.stderr)
    _interrupt_on_hangup()
    outcome = lifecycle.up(settings, dry_run=args.dry_run, out_dir=args.out, retain=args.retain)
    if outcome.status:
        print(render_status(outcome.status))
    return 0


def _interrupt_on_hangup() -> None:
    """A closed terminal (SIGHUP) or a plain `kill` (SIGTERM) stops `up` like Ctrl-C does: the
    step runner's rollback then stops what this attempt started instead of orphaning it."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, interrupt)


def cmd_status(args) -> int:
    from testbed import lifecycle

    status = lifecycle.status(Settings(backend=args.backend))
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0 if status["state"] in ("running", "stopped") else 1


def cmd_down(args) -> int:
    from testbed import lifecycle

    lines = lifecycle.down(Settings(backend=args.backend))
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
    request = model_request(args)
    if request is None:
        art = artifact.ensure(settings.artifacts_dir, settings.artifact_seed, rebuild=args.rebuild)
        print(json.dumps(art.metadata, indent=2))
        return 0
    from deployers import PLATFORMS
    from testbed import usermodel

    art = usermodel.ensure(request, settings.artifacts_dir, settings.envs_dir,
                           lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({**art.metadata, "served_by": usermodel.serving_plan(art, list(PLATFORMS))}, indent=2))
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
    for problem in status.get("problems") or []:
        lines.append(f"  {status['state']}: {problem}")
    if status.get("problems") and status["state"] == "degraded":
        lines.append("  (`python -m testbed up` restarts what died; `down` stops everything)")
    model = status.get("model")
    if model:
        lines.append(f"model: {model['name']}  sha256 {model['sha256'][:12]}  features {', '.join(model['features'])}"
                     + (f"  ({model['format']} {model['task']}, yours)" if model.get("origin") == "user" else ""))
    width = max([9, *map(len, status.get("platforms", {})), *map(len, status.get("skipped_platforms") or {})])
    for name, reason in (status.get("skipped_platforms") or {}).items():
        lines.append(f"  {name:<{width}} skipped: {reason}")
    for name, p in status.get("platforms", {}).items():
        lines.append(f"  {name:<{width}} {p['state']:<10} {p.get('v2_base_url') or '-':<24} metrics {p.get('metrics_url') or '-'}"
                     + (f"  rss {p['rss_mb']:.0f} MB" if p.get("rss_mb") else ""))
    exposed = (status.get("exposure") or {}).get("non_loopback_sockets", [])
    if exposed:
        unexplained = sum(1 for x in exposed if not x.get("cause"))
        lines.append(f"exposure: {len(exposed)} listening sockets NOT bound to loopback"
                     + (f", {unexplained} unexplained" if unexplained else "") + ":")
        causes: list[str] = []
        for x in exposed:
            cause = x.get("cause")
            if cause and cause not in causes:
                causes.append(cause)
            why = f"  [{causes.index(cause) + 1}]" if cause else "  UNEXPLAINED"
            lines.append(f"  {x.get('owner') or x['platform']:<9} {x['address']}:{x['port']}  "
                         f"({x['process']}, pid {x['pid']}){why}")
        lines += [f"  [{i}] {c}" for i, c in enumerate(causes, 1)]
    for name, notes in ((status.get("exposure") or {}).get("loopback_by_testbed") or {}).items():
        lines += [f"kept on loopback by the testbed ({name}): {note}" for note in notes]
    detection = status.get("detection") or {}
    if detection.get("state"):  # the kind backend's detector service (testbed/backends/kind/detection.py)
        lines.append(f"detection: {detection.get('service_url')}  {detection['state']}"
                     + (f"  (Deployment {detection['resource_state']})" if detection.get("resource_state") else ""))
    lines += status.get("summary_lines", [])  # backend-specific lines (controlplane: processes, checks)
    prom = status.get("prometheus")
    if prom:
        lines.append(f"prometheus: {prom['url']}  {prom['state']}")
        for t in prom.get("targets", []):
            err = f"  ({t['last_error']})" if t.get("last_error") else ""
            lines.append(f"  scrape {t['job']:<9} {t['health']:<7} {t['url']}{err}")
    return "\n".join(lines)


def cmd_report(args) -> int:
    from pathlib import Path

    from testbed import report, results

    root = Path(args.results_dir) if args.results_dir else results.RESULTS_DIR
    out = Path(args.out) if args.out else root / "report"
    built = report.build(root, args.run_ids, out, by_artifact=args.by_artifact)
    for rid, why in built["skipped"]:
        print(f"note: run {rid} not used: {why}", file=sys.stderr)
    print(f"runs: {', '.join(built['runs']) or 'none (documented rows only)'}")
    print(built["markdown"])
    print(built["html"])
    return 0


def cmd_pipeline(args) -> int:
    from testbed import pipeline

    if args.pipeline_verb == "compile":
        print(pipeline.compile_pipeline(args.out))
        return 0
    return pipeline.run_local(args)


def cmd_results_exporter(args) -> int:
    from pathlib import Path

    from testbed import exporter, results

    exporter.serve(args.port, Path(args.results_dir) if args.results_dir else results.RESULTS_DIR)
    return 0


def cmd_images(args) -> int:
    from deployers import parse_platforms
    from testbed.backends.kind import architecture
    from testbed.backends.kind.pins import pins

    p = pins()
    arch = architecture.normalize(args.arch) if args.arch else architecture.host_arch()
    platforms = parse_platforms(args.platforms) if args.platforms else None
    listed = p.images(arch, platforms)  # ArchitectureUnsupported names what has no build for arch
    if args.json:
        print(json.dumps({"node_image": p.node_image, "arch": arch,
                          "images": {k: [p.image_for(i, arch) for i in p.images_by_source[k]]
                                     for k in p.image_groups(platforms)}}, indent=2))
    else:
        print("\n".join(([p.node_image] if args.with_node_image else []) + listed))
    return 0


def cmd_probe(args) -> int:
    """One repeat of the experiment harness on the running testbed (never brings it up): results/<run-id>/
    in the experiments' own layout and run.json, so `report` shows the cells (n=1) and plots."""
    import argparse

    from probes import registry, userdata
    from testbed import experiment, lifecycle, results
    from testbed.errors import UserDataError

    names = registry.expand(args.probe)
    settings = Settings(backend=args.backend)
    if getattr(args, "dry_run", False):
        return _probe_dry_run(args, names, settings)
    options = {"scrape_interval_s": settings.scrape_interval_s}
    if args.reference:
        raise UserDataError(args.reference, "the detectors are fitted on a reference when the testbed comes up, so "
                            "a reference given to a probe would be judged against another one. Bring it to `up`: "
                            "python -m testbed down; python -m testbed up --model MODEL --reference REF.csv "
                            "[--target COLUMN]; then python -m testbed probe drift --data CUR.csv")
    for flag, key in (("data", "data_csv"), ("truth", "truth_csv")):
        if getattr(args, flag):
            options[key] = str(Path(getattr(args, flag)).resolve())
    _check_user_flags(names, options)
    # --platforms all (or none): every running platform, not every registered one.
    subset = running_subset(args.platforms)
    ctx = registry.context_from_status(lifecycle.status(settings), subset)
    _check_user_data(options, ctx.artifact.features, userdata)
    specs = [experiment.ExperimentSpec(name, registry.PROBES[name], options=registry.options_for(name, options))
             for name in names]
    harness_args = argparse.Namespace(backend=args.backend, platforms=",".join(subset) if subset else None,
                                      repeats=1, seed=args.seed,
                                      resume=None, run_id=results.new_run_id("probe"), results_dir=None,
                                      keep_up=True)
    outcome = experiment.execute(specs, harness_args, say=lambda m: print(m, file=sys.stderr, flush=True),
                                 extra_header={"kind": "probe", "probes": names}, bring_up=False)
    if args.json:
        print(json.dumps([r.to_json() for r in outcome.results], indent=2))
    else:
        print(render_probe_table(outcome.results, outcome.failures))
        print(f"results: {outcome.run.dir}")
    return 2 if outcome.failures else 0


def _probe_dry_run(args, names, settings) -> int:
    """Print each fault's plan on this backend; nothing is injected and no result is written."""
    from probes import registry
    from testbed.backends import get_backend

    not_faults = [n for n in names if n not in registry.FAULTS]
    if not_faults:
        raise TestbedError(f"--dry-run plans fault probes ({', '.join(registry.FAULTS)}); "
                           f"{', '.join(not_faults)} only reads the testbed: run it without --dry-run")
    backend = get_backend(args.backend)
    status = backend.status(settings)
    if status.get("state") != "running" and hasattr(backend, "planned_status"):
        print(f"# no running {args.backend} testbed: planned against `up --backend {args.backend} --dry-run`",
              flush=True)
        status = backend.planned_status(settings)
    ctx = registry.context_from_status(status, running_subset(args.platforms),
                                       seed=args.seed, run_id="dry-run",
                                       options={"dry_run": True, "plan_out": sys.stdout})
    for name in names:
        print(f"\n## probe {name} on the {ctx.backend} backend (dry run: nothing is injected)", flush=True)
        registry.load(name).run(registry.for_probe(ctx, name))
    return 0


def _check_user_flags(names, options) -> None:
    """Refuse data flags that no chosen probe reads, and incomplete pairs, before touching the testbed."""
    from probes.registry import USER_DATA
    from testbed.errors import UserDataError

    used = {key for n in names for key in USER_DATA.get(n, ())}
    flag = {"data_csv": "--data", "truth_csv": "--truth"}
    for key in ("data_csv", "truth_csv"):
        if key in options and key not in used:
            readers = [n for n, keys in USER_DATA.items() if key in keys]
            raise UserDataError(options[key], f"{flag[key]} is read only by the {' and '.join(readers)} probe(s), "
                                f"not by {', '.join(names)}")
    if "truth_csv" in options and "data_csv" not in options:
        raise UserDataError(options["truth_csv"], "--truth labels the rows of --data; give --data too")


def _check_user_data(options, features, userdata) -> None:
    """Validate user CSVs up front: header = the model's features, values of their types, truth = one 0/1 per row."""
    rows = {}
    if "data_csv" in options:
        rows["data_csv"] = userdata.read_rows(options["data_csv"], features)
    if "truth_csv" in options:
        userdata.read_truth(options["truth_csv"], len(rows["data_csv"]))


def render_probe_table(rows, failures=()) -> str:
    """One line per result: probe, platform, verdict, mechanism and its headline scores."""
    table = [("probe", "platform", "verdict", "mechanism", "scores")]
    for r in rows:
        scores = "  ".join(f"{k}={_fmt_score(v)}" for k, v in r.scores.items() if not isinstance(v, (dict, list)))
        table.append((r.probe, r.platform, r.verdict, r.mechanism or "-", scores))
    for name, message in failures:
        table.append((name, "-", "error", "-", message.splitlines()[0][:120]))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in table).rstrip()


def _fmt_score(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def cmd_kubernetes_path(args) -> int:
    from testbed import kubernetes_path
    from testbed.errors import UnknownPlatform

    known = kubernetes_path.kind_platforms()
    names = [n.strip() for n in args.platforms.split(",") if n.strip()] if args.platforms else known
    unknown = [n for n in names if n not in known]
    if unknown:  # a platform without a kind deployment has no Kubernetes path to check
        raise UnknownPlatform(", ".join(unknown), known)
    if args.record_kind:
        from testbed.backends.kind.pins import pins

        p = pins()
        path = kubernetes_path.record("kind", {n: {"reached": True, "why": "tests/e2e passed on a kind cluster"}
                                               for n in names},
                                      {"kind_node": p.node_image, "charts": {c.release: c.version for c in p.charts}},
                                      detail="pytest tests/e2e --e2e")
        print(f"recorded {path}")
    doc = kubernetes_path.levels(names)
    print(json.dumps(doc, indent=2) if args.json else "\n".join(kubernetes_path.lines(doc)))
    return 0


VERBS = {"kubernetes-path": cmd_kubernetes_path, "up": cmd_up, "status": cmd_status, "down": cmd_down, "metrics": cmd_metrics, "artifact": cmd_artifact,
         "probe": cmd_probe, "report": cmd_report, "pipeline": cmd_pipeline, "results-exporter": cmd_results_exporter,
         "images": cmd_images, "load": cmd_load}
