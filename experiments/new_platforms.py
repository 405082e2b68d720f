"""Platforms side by side, each alone: environment build time and size, time to ready, time until the first
explanation answers, memory, and what the client-side protocol adapters cost.

    .venv/bin/python experiments/new_platforms.py --platforms bentoml,mlflow,torchserve [--repeats 3]
        [--cold] [--envs DIR] [--json OUT]

- Environment: each platform's venv built with the testbed's own builder (uv) into --envs (a fresh
  temporary directory by default, removed at the end); --cold also gives uv an empty cache (every
  wheel downloaded: TorchServe's torch pulls ~2.6 GB). One build per platform: n=1, no interval.
- Ready: the platform's local Deployment started `--repeats` times (detection off: the platform alone)
  in a state directory of this run's own; seconds from start to the platform's readiness, and to its first
  explanation (explainers load alibi, on some platforms after the model serves); mean with a t interval
  over the repeats. RSS of all its processes (LocalProcess.members) once ready and after 200 single-row
  requests.
- Adapter: client-side conversion per request (V2 -> platform JSON -> V2), n=20000 calls, median with
  its distribution-free (order statistic) 95% interval, beside the V2 identity's cost in the same run
  (platforms reached without conversion show V2's own figure).
Each number prints with n. Leaves nothing running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deployers import get_platform, parse_platforms  # noqa: E402
from probes import explain as explain_probe  # noqa: E402
from testbed import artifact as artifact_mod, v2  # noqa: E402
from testbed.adapters import conversion_cost  # noqa: E402
from testbed.backends.local import envs, processes  # noqa: E402
from testbed.loadgen.stats import percentile_ci  # noqa: E402
from testbed.platforms import WireProtocol  # noqa: E402
from testbed.settings import Settings  # noqa: E402
from testbed.steps import UpContext  # noqa: E402

ADAPTER_N = 20000


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def t_interval(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def local_class(name: str):
    return get_platform(name).deployment_for("local").__class__


def build_env(name: str, envs_dir: Path, cold: bool) -> dict:
    spec = local_class(name).env
    saved = os.environ.get("UV_CACHE_DIR")
    cache = Path(tempfile.mkdtemp(prefix="uv-cold-")) if cold else None
    if cache:
        os.environ["UV_CACHE_DIR"] = str(cache)
    try:
        started = time.monotonic()
        env_dir = envs.ensure(spec, envs_dir, print)
        seconds = time.monotonic() - started
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
            if saved is None:
                os.environ.pop("UV_CACHE_DIR", None)
            else:
                os.environ["UV_CACHE_DIR"] = saved
    return {"build_s": round(seconds, 1), "size_mb": round(du_bytes(env_dir) / 2**20), "cold_cache": cold}


def member_pids(dep) -> list[int]:
    return dep.members(dep.to_state())


def first_explanation(platform: str, endpoint, rows: np.ndarray, timeout_s: float) -> float:
    """time.monotonic() when the platform's explain path first answered (the explain probe's own request)."""
    path = get_platform(platform).explain
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=120.0) as client:
        while time.monotonic() < deadline:
            try:
                explain_probe.explain_once(client, endpoint, path, rows)
                return time.monotonic()
            except (httpx.HTTPError, ValueError):
                time.sleep(0.5)
    raise SystemExit(f"{platform}: no explanation within {timeout_s:.0f} s")


def start_once(name: str, settings: Settings) -> dict:
    ctx = UpContext(settings=settings)
    ctx.artifact = artifact_mod.ensure(settings.artifacts_dir, settings.artifact_seed)
    dep = local_class(name)()
    protocol = get_platform(name).protocol
    dep.deploy(ctx)
    try:
        endpoint = dep.wait_ready(ctx, 600)
        rss_ready = processes.rss_bytes(member_pids(dep))
        extra = {}
        if get_platform(name).explain is not None and endpoint.explain_url:
            extra["explain_ready_s"] = first_explanation(name, endpoint, ctx.artifact.probe_rows()[:1], 600) \
                - dep.started_at
            extra["rss_explain_ready_mb"] = processes.rss_bytes(member_pids(dep)) / 2**20
        body = v2.request_body(ctx.artifact.probe_rows()[:1])
        with httpx.Client(timeout=30) as client:
            for _ in range(200):
                protocol.infer(client, endpoint, body)
        return {"ready_s": dep.ready_after_s, "rss_ready_mb": rss_ready / 2**20,
                "rss_after_traffic_mb": processes.rss_bytes(member_pids(dep)) / 2**20,
                "processes": len(member_pids(dep)), **extra}
    finally:
        dep.teardown(ctx)


def adapter_costs(names: list[str]) -> dict:
    body = v2.request_body(np.linspace(-1, 1, 7).reshape(1, 7), request_id="cost")
    identity = WireProtocol()
    base = conversion_cost(identity, body, identity.example_answer([2], body, "m"), "m", n=ADAPTER_N)
    out = {}
    for name in ["v2 (identity)", *names]:
        protocol = identity if name.startswith("v2") else get_platform(name).protocol
        costs = base if name.startswith("v2") else conversion_cost(
            protocol, body, protocol.example_answer([2], body, "m"), "m", n=ADAPTER_N)
        lo, hi = percentile_ci(costs, 50)
        out[name] = {"n": ADAPTER_N, "median_us": float(np.median(costs) * 1e6), "ci95_us": (lo * 1e6, hi * 1e6),
                     "vs_v2_median": float(np.median(costs) / np.median(base))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--platforms", default="all", help="comma-separated, or all (default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="build each venv with an empty uv cache")
    parser.add_argument("--envs", help="build/reuse venvs here (default: a fresh temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    opts = parser.parse_args()
    names = list(parse_platforms(opts.platforms, "local"))
    for name in names:
        local_class(name).check_prerequisites()

    work = Path(tempfile.mkdtemp(prefix="new-platforms-"))
    envs_dir = Path(opts.envs) if opts.envs else work / "envs"
    figures: dict = {"platforms": {}, "repeats": opts.repeats, "machine_cores": os.cpu_count()}
    try:
        for name in names:
            fig = figures["platforms"][name] = build_env(name, envs_dir, opts.cold)
            print(f"{name}: env built in {fig['build_s']} s, {fig['size_mb']} MB", flush=True)
            settings = Settings(state_dir=work / f"state-{name}", detection=False)
            runs = []
            for i in range(opts.repeats):
                # The envs dir is shared; the state (run dir, artifacts) is this experiment's own.
                settings.state_dir.mkdir(parents=True, exist_ok=True)
                link = settings.state_dir / "envs"
                if not link.exists():
                    link.symlink_to(envs_dir)
                runs.append(start_once(name, settings))
                print(f"  start {i + 1}: {json.dumps({k: round(v, 1) for k, v in runs[-1].items()})}", flush=True)
            fig["starts"] = runs
        figures["adapter_cost"] = adapter_costs([n for n in names if get_platform(n).protocol.converts])
    finally:
        shutil.rmtree(work, ignore_errors=True)  # --envs lives outside it and is kept

    print(f"\n{'':28}" + "".join(f"{n:>22}" for n in names))
    rows = [("env build (n=1)", lambda f: f"{f['build_s']:.0f} s" + (" cold" if f["cold_cache"] else " warm")),
            ("env size (n=1)", lambda f: f"{f['size_mb']} MB")]
    for key, label, unit in (("ready_s", "ready", "s"), ("rss_ready_mb", "RSS at ready", "MB"),
                             ("rss_after_traffic_mb", "RSS after 200 requests", "MB")):
        def cell(f, key=key, unit=unit):
            mean, lo, hi = t_interval([r[key] for r in f["starts"]])
            return f"{mean:.0f} [{lo:.0f}, {hi:.0f}] {unit}"
        rows.append((f"{label} (n={opts.repeats}, t 95%)", cell))
    rows.append(("processes", lambda f: str(f["starts"][-1]["processes"])))
    for key, label, unit in (("explain_ready_s", "first explanation", "s"),
                             ("rss_explain_ready_mb", "RSS, explainer loaded", "MB")):
        def cell(f, key=key, unit=unit):
            values = [r[key] for r in f["starts"] if key in r]
            if not values:
                return "-"
            mean, lo, hi = t_interval(values)
            return f"{mean:.0f} [{lo:.0f}, {hi:.0f}] {unit}"
        rows.append((f"{label} (n={opts.repeats}, t 95%)", cell))
    for label, fn in rows:
        print(f"{label:28}" + "".join(f"{fn(figures['platforms'][n]):>22}" for n in names))
    print(f"\nclient-side conversion per request (n={ADAPTER_N}, median [order-statistic 95%])")
    for name, c in figures["adapter_cost"].items():
        print(f"  {name:16} {c['median_us']:7.1f} us [{c['ci95_us'][0]:.1f}, {c['ci95_us'][1]:.1f}]"
              f"   x{c['vs_v2_median']:.2f} of V2's own JSON handling")
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
