"""Performance experiment: serving overhead, throughput vs concurrency with batching off/on, offline
batch scoring and cost, per platform, with repeats. Writes Results under results/<run-id>/performance/.

    python experiments/performance.py [--backend local] [--platforms NAME,...]
                                      [--repeats 3] [--seed S] [--quick]

Each repeat brings the testbed up twice, batching off then on (the order alternates between
repeats, so drift in a shared machine's load does not favour one mode), and measures the
platforms in a rotating order. Batching off: serving overhead at concurrency 1 against bare
in-process predict of the same artifact (measured right before, in this process, with the same
scikit-learn), the throughput curve with CPU/memory accounting of each runtime's session, and
offline batch scoring. Batching on: the throughput curve again. Every number has a bootstrap CI
(two-level where there are repeats: repeats, then requests or time bins inside them).

Results (testbed/results.py), one per platform and probe, for the report's cells:
  overhead    scores.ratio_p50 [ratio_p50_ci], diff_p50_ms [diff_p50_ms_ci], served/inprocess p50, ratio_p99
  throughput  scores.peak_rps [peak_rps_ci] @ peak_concurrency, open_loop_p50_ms/p99_ms/sustained;
              measurements.curve {off, on}: per concurrency rate + CI, per-repeat rates
  batching    verdict supported | not available; scores.peak_gain [peak_gain_ci], per_concurrency gains;
              evidence.batching_settings and evidence.observed (applied model-settings / Ray batch sizes)
  cost        scores.cpu_s_per_1000, peak_rss_mb, cost_per_1000, cost_per_million (evidence.prices)
  offline     scores.{v2,native}_rows_per_s, inprocess_rows_per_s, *_vs_inprocess, *_agreement
  loadgen     (platform "loadgen") scores.ratio_vs_wrk, top_rps, headroom_over_fastest_platform
Plots: plots/latency_cdf.png, plots/throughput.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from deployers import get_platform, protocol_of  # noqa: E402
from probes import performance as perf  # noqa: E402
from testbed import artifact as artifact_mod  # noqa: E402
from testbed import results, v2  # noqa: E402
from testbed.endpoint import Endpoint  # noqa: E402
from testbed.errors import TestbedError  # noqa: E402
from testbed.experiment import Run, git_revision, repeat_seed, seeds_for  # noqa: E402
from testbed.platforms import BatchingRun, OfflineJob  # noqa: E402
from testbed.population import Population  # noqa: E402
from testbed.procstats import Prices  # noqa: E402
from testbed.settings import Batching, Settings  # noqa: E402

EXPERIMENT = "performance"
# Whether a platform batches requests on the local backend, how, and how it scores offline batches
# is its module's PLATFORM.batching (testbed.platforms.BatchingSupport).


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise TestbedError(f"`python -m testbed {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def testbed_up(backend: str, platforms: list[str], batching: Batching) -> dict:
    args = ["up", "--backend", backend, "--platforms", ",".join(platforms)]
    if batching.enabled:
        args += ["--batching", "on", "--max-batch-size", str(batching.max_batch_size),
                 "--max-batch-time-ms", str(batching.max_batch_time_ms)]
    started = time.monotonic()
    try:
        cli(*args)
    except TestbedError as exc:
        # A runtime that times out while a shared 2-core machine is busy (Ray's raylet does) gets one
        # more try; `up` has already stopped what it started.
        say(f"  up failed, trying once more: {str(exc).splitlines()[-3:]}")
        cli(*args)
    status = json.loads(cli("status", "--backend", backend, "--json").stdout)
    status["up_s"] = round(time.monotonic() - started, 1)
    return status


def endpoints_of(status: dict) -> dict[str, Endpoint]:
    return {n: Endpoint.from_json(p["endpoint"]) for n, p in status["platforms"].items() if p.get("endpoint")}


def trim(values: np.ndarray, n: int = 4000) -> list[float]:
    """Up to n values (evenly spaced in sorted order), in ms, for CDF plots kept in results."""
    v = np.sort(np.asarray(values))
    if v.size > n:
        v = v[np.linspace(0, v.size - 1, n).astype(int)]
    return [round(float(x) * 1e3, 4) for x in v]


def strip_private(obj):
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def measure_phase(mode: str, status: dict, opts, art, model, row: np.ndarray, X: np.ndarray, expected: np.ndarray,
                  repeat: int, store: dict, prices: Prices) -> None:
    eps = endpoints_of(status)
    names = [p for p in opts.platforms if p in eps]
    order = names[repeat % len(names):] + names[:repeat % len(names)]
    settings = Settings()
    for name in order:
        ep = eps[name]
        body = perf.one_row_body(row, ep)  # encoded as the platform takes it, before any clock starts
        sid = status["platforms"][name]["pid"]
        info = status["platforms"][name]
        deployment = get_platform(name).deployments.get(opts.backend)
        members = (lambda d=deployment, i=info: d.members(i)) if deployment is not None and \
            hasattr(deployment, "members") else None
        rec = store.setdefault(name, {"overhead": [], "curve": {"off": [], "on": []}, "offline": [],
                                      "versions": status["platforms"][name].get("versions", {})})
        batching = get_platform(name).batching
        if mode == "on" and not batching.available:
            say(f"  [{mode}] {name}: batching {batching.detail}")
            continue
        if mode == "off":
            inproc = perf.inprocess_latencies(model, row, n=opts.overhead_requests)
            served = perf.served_latencies(ep, body, n=opts.overhead_requests)
            sc = perf.overhead_scores(served["latency_s"], inproc, seed=repeat_seed(opts.seed, repeat))
            rec["overhead"].append({"repeat": repeat, "served_s": served["latency_s"], "inprocess_s": inproc,
                                    "summary": served["summary"], "scores": sc,
                                    "halves_p50_ms": halves_p50_ms(served["latency_s"]),
                                    "client_side_conversion": conversion(ep, row)})
            say(f"  [{mode}] {name}: one row p50 {sc['served_p50_ms']:.2f} ms served vs "
                f"{sc['inprocess_p50_ms']:.3f} ms in-process (x{sc['ratio_p50']:.1f}); "
                f"errors {served['summary']['errors']}")
        before = batching.snapshot(ep) if mode == "on" and batching.snapshot else None
        points = []
        for c in opts.levels:
            p = perf.throughput_point(ep, body, c, opts.duration, sid, prices, members=members)
            points.append(p)
            say(f"  [{mode}] {name}: c={c:<3} {p['throughput_rps']:8.1f} req/s  p50 "
                f"{p['latency_s'].get('p50', float('nan')) * 1e3:7.2f} ms  errors {p['errors']}"
                + (f"  cpu {p['usage']['cpu_s']:.2f}s rss {p['usage']['peak_rss_mb']:.0f} MB" if "usage" in p else ""))
        rec["curve"][mode].append(points)
        if mode == "off" and opts.open_loop_fraction > 0:
            rate = opts.open_loop_fraction * max(p["throughput_rps"] for p in points)
            o = perf.open_loop_point(ep, body, rate, opts.duration)
            rec.setdefault("open_loop", []).append({"repeat": repeat, "fraction_of_peak": opts.open_loop_fraction, **o})
            say(f"  [{mode}] {name}: open loop at {rate:.0f} req/s ({opts.open_loop_fraction:.0%} of peak): "
                f"p50 {o['latency_s'].get('p50', float('nan')) * 1e3:.2f} ms, p99 "
                f"{o['latency_s'].get('p99', float('nan')) * 1e3:.2f} ms, "
                + ("sustained" if o["sustained"] else "NOT sustained: " + "; ".join(o["not_sustained_because"])))
        if mode == "on":
            rec.setdefault("batching_evidence", []).append(
                batching_evidence(name, ep, art, settings, before, sum(p["ok"] for p in points), body))
        if mode == "off" and not opts.skip_offline:
            rec["offline"].append(offline(name, ep, art, X, expected, settings, opts))


def halves_p50_ms(latency_s) -> list[float]:
    """Median latency of the first and the second half of the requests, in the order they were sent: a runtime
    still warming up (a JIT, lazy imports) is slower in the first half."""
    v = np.asarray(latency_s, dtype=float)
    h = v.size // 2
    return [float(np.median(v[:h])) * 1e3, float(np.median(v[h:])) * 1e3] if h else []


def adapter_scores(rec_overhead: list[dict], served_p50_ms: float, inprocess_p50_ms: float) -> dict:
    """What a client of a platform with its own JSON pays on top of the served latency: the client-side adapter's
    conversion (measured apart, per one-row request), beside the V2 JSON handling a V2 client would spend anyway.
    {} where the platform is reached without conversion (its served latency already holds all of it)."""
    conv = [o["client_side_conversion"] for o in rec_overhead if o.get("client_side_conversion")]
    if not conv:
        return {}
    adapter_ms = float(np.median([c["adapter_median_us"] for c in conv])) / 1e3
    v2_ms = float(np.median([c["v2_json_median_us"] for c in conv])) / 1e3
    return {"client_adapter_p50_ms": adapter_ms, "client_v2_json_p50_ms": v2_ms,
            "served_plus_adapter_p50_ms": served_p50_ms + adapter_ms,
            "ratio_p50_with_adapter": (served_p50_ms + adapter_ms) / inprocess_p50_ms}


def conversion(ep: Endpoint, row: np.ndarray, n: int = 5000) -> dict:
    """What a client-side adapter costs per one-row request on the client (encode + JSON of the request, JSON +
    decode of the answer), beside V2's own JSON handling of the same request, in the same run: the served
    latency above excludes it (bodies are encoded before the clock starts); a V2 client would spend the V2
    figure. {} where the platform is reached without conversion."""
    from testbed.adapters import conversion_cost
    from testbed.platforms import WireProtocol

    protocol = protocol_of(ep)
    if not protocol.converts:
        return {}
    body = v2.request_body(np.asarray(row, dtype=np.float64).reshape(1, -1), request_id="cost")
    identity = WireProtocol()
    adapter_s = conversion_cost(protocol, body, protocol.example_answer([0], body, ep.model_name), ep.model_name, n=n)
    v2_s = conversion_cost(identity, body, identity.example_answer([0], body, ep.model_name), ep.model_name, n=n)
    return {"protocol": protocol.protocol, "n": n,
            "adapter_median_us": float(np.median(adapter_s)) * 1e6, "v2_json_median_us": float(np.median(v2_s)) * 1e6,
            "note": "client-side conversion per one-row request, measured apart; not in the served latency"}


def batching_evidence(name: str, ep: Endpoint, art, settings: Settings, before, requests: int,
                      body: bytes | None = None) -> dict:
    """What shows batching was on, as the platform reads it (e.g. MLServer's applied model-settings.json,
    Ray's observed batch sizes); {} when it has no way to tell."""
    hook = get_platform(name).batching.evidence
    if hook is None:
        return {}
    return hook(BatchingRun(endpoint=ep, workdir=settings.run_dir / name, model_name=art.name, before=before, body=body,
                            requests_ok=requests))


def offline(name: str, ep: Endpoint, art, X: np.ndarray, expected: np.ndarray, settings: Settings, opts) -> dict:
    out = {"v2": perf.offline_v2(ep, X, chunk=opts.offline_chunk)}
    job = get_platform(name).batching.offline_job
    if job is not None:
        out["native"] = job(OfflineJob(endpoint=ep, envs_dir=settings.envs_dir, artifact_dir=art.path, rows=X,
                                       chunk_rows=opts.offline_chunk))
    for k, v in out.items():
        v["agreement"] = perf.agreement(v.pop("labels", None), expected)
        extra = (f", {v['rows_per_s_processing']:,.0f} rows/s by its own processing time"
                 if v.get("rows_per_s_processing") else "")
        say(f"  [off] {name}: offline {k}: {v.get('rows_per_s') or 0:,.0f} rows/s{extra} ({v['path']}), "
            f"agreement with in-process {v['agreement']:.4f}" + (f"  ERROR {v['error']}" if v.get("error") else ""))
    return out


def build_results(store: dict, inproc_offline: list[dict], opts, run_id: str, art, prices: Prices,
                  batching: Batching, hw: dict) -> list[results.Result]:
    out = []
    common_ev = {"seed": opts.seed, "repeats": opts.repeats, "hardware": hw, "levels": opts.levels,
                 "duration_s_per_point": opts.duration, "loadgen": "testbed.loadgen (compiled epoll engine)"}
    for name, rec in store.items():
        ev = {**common_ev, "versions": rec["versions"]}
        # overhead
        if rec["overhead"]:
            sc = perf.overhead_scores([o["served_s"] for o in rec["overhead"]],
                                      [o["inprocess_s"] for o in rec["overhead"]], seed=opts.seed)
            served = np.concatenate([o["served_s"] for o in rec["overhead"]])
            inproc = np.concatenate([o["inprocess_s"] for o in rec["overhead"]])
            sc["per_repeat_ratio_p50"] = [o["scores"]["ratio_p50"] for o in rec["overhead"]]
            sc["per_repeat_halves_p50_ms"] = [o.get("halves_p50_ms") for o in rec["overhead"]]
            sc.update(adapter_scores(rec["overhead"], sc["served_p50_ms"], sc["inprocess_p50_ms"]))
            errors = sum(o["summary"]["errors"] for o in rec["overhead"])
            protocol = get_platform(name).protocol
            out.append(results.Result(
                probe="overhead", platform=name, backend=opts.backend, artifact_sha256=art.sha256,
                verdict="measured" if errors == 0 else "errors", scores={**sc, "errors": errors},
                measurements={"served_ms_sorted": trim(served), "inprocess_ms_sorted": trim(inproc),
                              "summaries": [strip_private(o["summary"]) for o in rec["overhead"]],
                              "client_side_conversion": [o.get("client_side_conversion") or {}
                                                         for o in rec["overhead"]]},
                evidence={**ev, "load": f"closed loop, concurrency 1, one-row requests in {protocol.protocol} "
                                        "(encoded before the clock starts)",
                          "adapter": served_includes(protocol),
                          # Who speaks V2 on the route measured: the platform, our code inside it, or an adapter.
                          "protocol": get_platform(name).protocol.describe(),
                          "inprocess": "model.predict on one 2-D row in the experiment's process (scikit-learn "
                                       "of the core venv, same as the runtimes)",
                          "inprocess_versions": inprocess_versions()},
                mechanism="native", run_id=run_id))
        # throughput curves and batching
        curves = {m: perf.curve_scores(rec["curve"][m], seed=opts.seed) for m in ("off", "on") if rec["curve"][m]}
        if "off" in curves:
            peak = max(curves["off"], key=lambda p: p["throughput_rps"])
            ol = rec.get("open_loop", [])
            out.append(results.Result(
                probe="throughput", platform=name, backend=opts.backend, artifact_sha256=art.sha256,
                verdict="measured",
                scores={"peak_rps": peak["throughput_rps"], "peak_rps_ci": peak["throughput_rps_ci"],
                        "peak_concurrency": peak["concurrency"],
                        "errors": sum(p["errors"] for p in curves["off"]),
                        "open_loop_fraction_of_peak": opts.open_loop_fraction if ol else None,
                        "open_loop_p50_ms": float(np.median([o["latency_s"]["p50"] for o in ol])) * 1e3 if ol else None,
                        "open_loop_p99_ms": float(np.median([o["latency_s"]["p99"] for o in ol])) * 1e3 if ol else None,
                        "open_loop_sustained": all(o["sustained"] for o in ol) if ol else None},
                measurements={"curve": strip_private(curves), "raw": strip_private(rec["curve"]),
                              "open_loop": strip_private(rec.get("open_loop", []))},
                evidence={**ev, "load": f"closed loop at each concurrency, one-row requests in "
                                        f"{get_platform(name).protocol.protocol}; then open loop "
                                        "at a fraction of the peak rate (latency from when each request was due)"},
                mechanism="native", run_id=run_id))
        support = get_platform(name).batching
        if support.available and "on" in curves and "off" in curves:
            gain = perf.batching_gain(curves["off"], curves["on"], seed=opts.seed)
            verdict = "supported"
            mech = support.mechanism
        else:
            note = support.detail if not support.available else "batching on was not measured in this run"
            gain, verdict, mech = {"peak_gain": None, "note": note}, "not available", "none"
        out.append(results.Result(
            probe="batching", platform=name, backend=opts.backend, artifact_sha256=art.sha256, verdict=verdict,
            scores=strip_private(gain), measurements={"curve": strip_private(curves)},
            evidence={**ev, "batching_settings": batching.describe() if verdict == "supported" else None,
                      "observed": strip_private(rec.get("batching_evidence", [])),
                      "mechanism_detail": support.detail},
            mechanism=mech, run_id=run_id))
        # cost: at the batching-off point of highest throughput, pooled over repeats
        cost_points = [p for pts in rec["curve"]["off"] for p in pts if p.get("cost", {}).get("cost_per_1000")]
        if cost_points:
            peak_c = max(curves["off"], key=lambda p: p["throughput_rps"])["concurrency"]
            at = [p for p in cost_points if p["concurrency"] == peak_c] or cost_points
            per1000 = np.array([p["cost"]["cost_per_1000"] for p in at])
            cpu = np.array([p["cost"]["cpu_s_per_1000"] for p in at])
            rss = np.array([p["cost"]["peak_rss_mb"] for p in at])
            low = [p for p in cost_points if p["concurrency"] == min(opts.levels)]
            out.append(results.Result(
                probe="cost", platform=name, backend=opts.backend, artifact_sha256=art.sha256, verdict="measured",
                scores={"cpu_s_per_1000": float(cpu.mean()), "cpu_s_per_1000_range": [float(cpu.min()), float(cpu.max())],
                        "peak_rss_mb": float(rss.max()), "cost_per_1000": float(per1000.mean()),
                        "cost_per_million": float(per1000.mean() * 1000),
                        "cost_per_1000_range": [float(per1000.min()), float(per1000.max())],
                        "cost_per_million_range": [float(per1000.min() * 1000), float(per1000.max() * 1000)],
                        "at_concurrency": peak_c, "currency": prices.currency,
                        "cost_per_1000_at_low_load": float(np.mean([p["cost"]["cost_per_1000"] for p in low]))
                        if low else None},
                measurements={"points": strip_private([{k: p[k] for k in ("concurrency", "usage", "cost", "ok")}
                                                       for p in cost_points])},
                evidence={**ev, "prices": {"vcpu_hour": prices.vcpu_hour, "gb_hour": prices.gb_hour},
                          "accounting": "/proc utime+stime of every process of the runtime's session, RSS sampled "
                                        "every 0.2 s; memory billed as peak RSS x time per 1,000 predictions"},
                mechanism=None, run_id=run_id))
        # offline batch
        if rec["offline"]:
            inproc_rps = np.array([o["rows_per_s"] for o in inproc_offline])
            scores = {"inprocess_rows_per_s": float(np.median(inproc_rps))}
            for kind in ("v2", "native"):
                vals = [o[kind] for o in rec["offline"] if kind in o]
                rps = np.array([v["rows_per_s"] or 0.0 for v in vals])
                if not vals:
                    continue
                scores[f"{kind}_rows_per_s"] = float(np.median(rps))
                scores[f"{kind}_rows_per_s_range"] = [float(rps.min()), float(rps.max())]
                scores[f"{kind}_vs_inprocess"] = float(np.median(rps) / np.median(inproc_rps))
                scores[f"{kind}_path"] = vals[0]["path"]
                scores[f"{kind}_agreement"] = float(min(v["agreement"] for v in vals))
                proc = [v["rows_per_s_processing"] for v in vals if v.get("rows_per_s_processing")]
                if proc:  # mlserver infer: its own processing time, without its seconds of start-up
                    scores[f"{kind}_rows_per_s_processing"] = float(np.median(proc))
            ok = all(not v.get("error") and v["agreement"] == 1.0 for o in rec["offline"] for v in o.values())
            out.append(results.Result(
                probe="offline", platform=name, backend=opts.backend, artifact_sha256=art.sha256,
                verdict="measured" if ok else "errors", scores=scores,
                measurements={"repeats": strip_private(rec["offline"]), "inprocess": strip_private(inproc_offline)},
                evidence={**ev, "rows": opts.offline_rows, "chunk_rows": opts.offline_chunk},
                mechanism=get_platform(name).batching.offline, run_id=run_id))
    return out


def served_includes(protocol) -> str:
    """One sentence on whose V2 handling the served latency holds (the overhead Result's evidence)."""
    if protocol.converts:
        return (f"client-side adapter: the platform speaks {protocol.protocol}; the served latency is its own route's "
                "(body pre-encoded), the adapter's conversion per request is measured apart in this run "
                "(scores client_adapter_p50_ms, served_plus_adapter_p50_ms, ratio_p50_with_adapter)")
    if protocol.where == "user code":
        return ("V2 is decoded and encoded by our code inside the platform (its extension point): that cost is "
                "in the served latency")
    return "the platform serves V2 itself: its decoding is in the served latency"


def inprocess_versions() -> dict:
    import sklearn

    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}


def plots(rs: list[results.Result], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    over = [r for r in rs if r.probe == "overhead"]
    if over:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in over:
            v = np.asarray(r.measurements["served_ms_sorted"])
            ax.plot(v, np.linspace(0, 1, v.size), label=f"{r.platform} (served)")
        v = np.asarray(over[0].measurements["inprocess_ms_sorted"])
        ax.plot(v, np.linspace(0, 1, v.size), "k--", label="in-process predict")
        ax.set_xscale("log")
        ax.set_xlabel("latency of one single-row prediction (ms, log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("Latency CDF at concurrency 1")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "latency_cdf.png", dpi=120)
        plt.close(fig)
        made.append("latency_cdf.png")
    thr = {r.platform: r for r in rs if r.probe == "batching"}
    if thr:
        fig, axes = plt.subplots(1, len(thr), figsize=(5 * len(thr), 4), squeeze=False)
        for ax, (name, r) in zip(axes[0], sorted(thr.items())):
            for mode, style in (("off", "o-"), ("on", "s--")):
                pts = r.measurements["curve"].get(mode) or []
                if not pts:
                    continue
                c = [p["concurrency"] for p in pts]
                y = np.array([p["throughput_rps"] for p in pts])
                lo = y - np.array([p["throughput_rps_ci"][0] for p in pts])
                hi = np.array([p["throughput_rps_ci"][1] for p in pts]) - y
                ax.errorbar(c, y, yerr=[lo, hi], fmt=style, capsize=3, label=f"batching {mode}")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrency (closed loop)")
            ax.set_ylabel("throughput (2xx req/s)")
            ax.set_title(name + ("" if r.verdict == "supported" else " (batching not available)"))
            ax.grid(True, alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "throughput.png", dpi=120)
        plt.close(fig)
        made.append("throughput.png")
    return made


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="local")
    p.add_argument("--platforms", default=None, help="comma-separated, or `all` (default: the default platforms)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--levels", default="1,2,4,8,16,32,64", help="closed-loop concurrencies of the curves")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per throughput point")
    p.add_argument("--overhead-requests", type=int, default=1000)
    p.add_argument("--offline-rows", type=int, default=100_000)
    p.add_argument("--offline-chunk", type=int, default=5000, help="rows per large V2 request")
    p.add_argument("--skip-offline", action="store_true")
    p.add_argument("--open-loop-fraction", type=float, default=0.8,
                   help="also an open-loop run at this fraction of the peak closed-loop rate (0: none)")
    p.add_argument("--skip-wrk", action="store_true", help="skip the loadgen-vs-wrk check in this run")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-batch-time-ms", type=float, default=5.0)
    p.add_argument("--price-vcpu-hour", type=float, default=Prices.vcpu_hour)
    p.add_argument("--price-gb-hour", type=float, default=Prices.gb_hour)
    p.add_argument("--run-id", default=None)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, 3 levels, short points, 20k rows")
    opts = p.parse_args(argv)
    from deployers import parse_platforms

    opts.platforms = list(parse_platforms(opts.platforms, opts.backend))
    opts.levels = [int(x) for x in opts.levels.split(",")]
    if opts.quick:
        opts.repeats, opts.levels, opts.duration = 1, [1, 8, 32], 2.0
        opts.overhead_requests, opts.offline_rows = 300, 20_000
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    if opts.backend != "local":
        say(f"error: the performance experiment measures process accounting and runtime sessions of the local "
            f"backend; --backend {opts.backend} is not implemented yet (container metrics would replace /proc).")
        return 2
    current = json.loads(cli("status", "--backend", opts.backend, "--json", check=False).stdout or "{}")
    if current.get("state") not in (None, "stopped"):
        say("error: a testbed is already up in this state dir; this experiment brings it up itself with batching "
            "off and on. Run `python -m testbed down` first.")
        return 2
    settings = Settings()
    art = artifact_mod.ensure(settings.artifacts_dir, settings.artifact_seed)
    model = art.load_model()
    row = art.probe_rows()[:1]
    rng = np.random.default_rng(opts.seed)
    X, _ = Population(opts.seed).sample(opts.offline_rows, rng)
    X = np.asarray(X, dtype=np.float64)
    expected = model.predict(X)
    prices = Prices(vcpu_hour=opts.price_vcpu_hour, gb_hour=opts.price_gb_hour)
    batching = Batching(enabled=True, max_batch_size=opts.max_batch_size, max_batch_time_ms=opts.max_batch_time_ms)
    run_id = opts.run_id or results.new_run_id("perf")
    run_dir = results.RESULTS_DIR / run_id
    hw = results.hardware()
    started = time.time()

    # The harness's run.json (the report reads runs by it): this experiment brings the testbed up and
    # down itself (batching off and on), so it records its units here rather than through the harness.
    run = Run.create(results.RESULTS_DIR, run_id, {
        "kind": "experiment", "artifact": {"name": art.name, "sha256": art.sha256}, "experiment": EXPERIMENT,
        "backend": opts.backend, "platforms": opts.platforms, "seed": opts.seed, "repeats": opts.repeats,
        "seeds": seeds_for(opts.seed, opts.repeats), "hardware": hw, "versions": {"testbed": git_revision()},
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "options": {k: v for k, v in vars(opts).items()}, "batching_on": batching.describe(),
        "prices": {"vcpu_hour": prices.vcpu_hour, "gb_hour": prices.gb_hour}})
    exp = run.experiment(EXPERIMENT)
    exp.update({"probe": "probes.performance", "state": "running"})
    run.save()
    say(f"run {run_id}: {', '.join(opts.platforms)}; {opts.repeats} repeats; levels {opts.levels}; "
        f"{hw['cpu']} x{hw['cores']}")
    store: dict = {}
    inproc_offline = []
    ups = []
    finished_repeats: list[int] = []
    client = None
    if not opts.skip_wrk:
        # Before any runtime is up: the client's own top rate on this machine, vs wrk, same settings.
        import importlib.util

        spec = importlib.util.spec_from_file_location("loadgen_vs_wrk", REPO / "experiments" / "loadgen_vs_wrk.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        client = bench.compare(connections=64, duration_s=3, rounds=2, post=True, out=say)
        say(f"loadgen vs wrk (POST, 64 connections): ratio {client['ratio_median']:.3f}, our top rate "
            f"{client['ours_max_rps']:,.0f} req/s")
    try:
        for repeat in range(opts.repeats):
            modes = ("off", "on") if repeat % 2 == 0 else ("on", "off")
            for mode in modes:
                if mode == "on" and not any(get_platform(p).batching.available for p in opts.platforms):
                    continue
                b = batching if mode == "on" else Batching()
                say(f"repeat {repeat}, batching {mode}: up ...")
                status = testbed_up(opts.backend, opts.platforms, b)
                ups.append({"repeat": repeat, "mode": mode, "up_s": status["up_s"],
                            "ready_s": {k.split(":", 1)[1]: v for k, v in (status.get("timings") or {}).items()
                                        if k.startswith("ready:")},
                            "rss_mb": {n: p.get("rss_mb") for n, p in status["platforms"].items()},
                            "loadavg": Path("/proc/loadavg").read_text().split()[:3]})
                try:
                    if mode == "off" and not opts.skip_offline:
                        o = perf.offline_inprocess(model, X)
                        o.pop("labels")
                        inproc_offline.append(o)
                        say(f"  [off] in-process offline: {o['rows_per_s']:,.0f} rows/s")
                    measure_phase(mode, status, opts, art, model, row, X, expected, repeat, store, prices)
                finally:
                    cli("down", "--backend", opts.backend, check=False)
            finished_repeats.append(repeat)
    finally:
        rs = build_results(store, inproc_offline, opts, run_id, art, prices, batching, hw) if store else []
        if client is not None:
            peaks = [r.scores["peak_rps"] for r in rs if r.probe == "throughput"]
            rs.append(results.Result(
                probe="loadgen", platform="loadgen", backend=opts.backend, artifact_sha256=art.sha256,
                verdict="pass" if client["ratio_median"] >= 0.9 else "fail",
                scores={"ratio_vs_wrk": client["ratio_median"], "ratios": client["ratios"],
                        "top_rps": client["ours_max_rps"], "wrk_top_rps": client["wrk_max_rps"],
                        "headroom_over_fastest_platform": client["ours_max_rps"] / max(peaks) if peaks else None},
                measurements={"rounds": client["rounds"]},
                evidence={"what": "the testbed's load generator vs wrk on a static nginx (POST one-row V2 body), "
                                  "same connections, threads and duration, alternating", "hardware": hw,
                          "connections": client["connections"], "duration_s": client["duration_s"]},
                run_id=run_id))
        for r in rs:
            r.evidence["testbed_ups"] = ups
            exp.setdefault("files", []).append(str(results.write(r, run_dir, EXPERIMENT).relative_to(run_dir)))
        exp["completed_units"] = [f"r{r}/{p}" for r in finished_repeats for p in opts.platforms]
        exp["state"] = run.data["state"] = "complete" if len(exp["completed_units"]) == opts.repeats * len(
            opts.platforms) else "incomplete"
        exp["wall_s"] = round(time.time() - started, 1)
        run.data["finished_at"] = time.time()
        run.save()
        made = plots(rs, run_dir / EXPERIMENT / "plots") if rs else []
        say(f"wrote {len(rs)} results and plots {made} under {run_dir / EXPERIMENT} "
            f"in {time.time() - started:.0f} s")
    table = summary_table(rs)
    if rs:
        (run_dir / EXPERIMENT / "summary.md").write_text(
            f"# Performance, run {run_id} ({opts.backend}; {hw['cpu']}, {hw['cores']} cores, {hw['memory_gb']} GB)\n\n"
            f"Point estimates with 95% bootstrap CIs over {opts.repeats} repeat(s).\n\n{table}\n")
    print(table)
    return 0


def summary_table(rs: list[results.Result]) -> str:
    def ci(v, c, fmt="{:.2f}"):
        return f"{fmt.format(v)} [{fmt.format(c[0])}, {fmt.format(c[1])}]" if v is not None else "-"

    lines = ["| platform | overhead p50 ratio | overhead p50 diff (ms) | + client-side adapter (ms) | peak req/s (off) | "
             "batching gain | CPU-s / 1k | cost / 1M | offline rows/s (v2 / native / in-process) |",
             "|---|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in rs:
        by.setdefault(r.platform, {})[r.probe] = r
    for name, d in sorted(by.items()):
        if name == "loadgen":
            continue
        o = d.get("overhead")
        t = d.get("throughput")
        b = d.get("batching")
        c = d.get("cost")
        f = d.get("offline")
        lines.append("| " + " | ".join([
            name,
            ci(o.scores["ratio_p50"], o.scores["ratio_p50_ci"], "{:.1f}") if o else "-",
            ci(o.scores["diff_p50_ms"], o.scores["diff_p50_ms_ci"]) if o else "-",
            (f"{o.scores['client_adapter_p50_ms']:.3f} (ratio with it "
             f"{o.scores['ratio_p50_with_adapter']:.1f})" if o and "client_adapter_p50_ms" in o.scores else "none"),
            ci(t.scores["peak_rps"], t.scores["peak_rps_ci"], "{:.0f}") + f" @c={t.scores['peak_concurrency']}" if t else "-",
            (ci(b.scores["peak_gain"], b.scores["peak_gain_ci"]) if b and b.scores.get("peak_gain") else
             (b.verdict if b else "-")),
            f"{c.scores['cpu_s_per_1000']:.2f}" if c else "-",
            f"{c.scores['cost_per_million']:.3f} {c.scores['currency']}" if c else "-",
            (f"{f.scores.get('v2_rows_per_s', 0):,.0f} / "
             + (f"{f.scores['native_rows_per_s']:,.0f}" if "native_rows_per_s" in f.scores else "none")
             + f" / {f.scores['inprocess_rows_per_s']:,.0f}") if f else "-",
        ]) + " |")
    lg = by.get("loadgen", {}).get("loadgen")
    if lg:
        lines.append(f"\nload generator vs wrk on a static nginx (same run): {lg.scores['ratio_vs_wrk']:.3f} "
                     f"(per round {', '.join(f'{r:.3f}' for r in lg.scores['ratios'])}); its top rate is "
                     f"{lg.scores['headroom_over_fastest_platform'] or 0:.0f}x the fastest platform's peak")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
