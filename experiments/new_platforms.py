"""BentoML, MLflow and TorchServe side by side: environment build time and size, time to ready, memory,
and what the client-side protocol adapters cost.

    .venv/bin/python experiments/new_platforms.py [--platforms bentoml,mlflow,torchserve] [--repeats 3]
        [--cold] [--envs DIR] [--json OUT]

- Environment: each platform's venv built with the testbed's own builder (uv) into --envs (a fresh
  temporary directory by default, removed at the end); --cold also gives uv an empty cache (every
  wheel downloaded: TorchServe's torch pulls ~2.6 GB). One build per platform: n=1, no interval.
- Ready: the platform's local Deployment started `--repeats` times (detection off: the platform alone)
  in a state directory of this run's own; seconds from start to the platform's readiness; mean with a
  t interval over the repeats. RSS of all its processes once ready and after 200 single-row requests.
- Adapter: client-side conversion per request (V2 -> platform JSON -> V2), n=20000 calls, median with
  its distribution-free (order statistic) 95% interval, beside the V2 identity's cost in the same run.
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

from deployers import bentoml as bentoml_platform, mlflow as mlflow_platform, torchserve as torchserve_platform  # noqa: E402
from testbed import artifact as artifact_mod, v2  # noqa: E402
from testbed.adapters import V2, conversion_cost  # noqa: E402
from testbed.backends.local import envs, processes  # noqa: E402
from testbed.loadgen.stats import percentile_ci  # noqa: E402
from testbed.settings import Settings  # noqa: E402
from testbed.steps import UpContext  # noqa: E402

PLATFORMS = {"bentoml": (bentoml_platform, bentoml_platform.BentoMLLocal),
             "mlflow": (mlflow_platform, mlflow_platform.MLflowLocal),
             "torchserve": (torchserve_platform, torchserve_platform.TorchServeLocal)}
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


def build_env(name: str, envs_dir: Path, cold: bool) -> dict:
    spec = PLATFORMS[name][1].env
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


def wait_ok(url: str, timeout_s: float) -> float:
    """time.monotonic() when url first answered 200."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise SystemExit(f"{url} did not answer 200 within {timeout_s:.0f} s")


def member_pids(dep) -> list[int]:
    return dep.member_pids() if hasattr(dep, "member_pids") else processes.session_members(dep.pid)


def start_once(name: str, settings: Settings) -> dict:
    module, cls = PLATFORMS[name]
    ctx = UpContext(settings=settings)
    ctx.artifact = artifact_mod.ensure(settings.artifacts_dir, settings.artifact_seed)
    dep = cls()
    dep.deploy(ctx)
    try:
        endpoint = dep.wait_ready(ctx, 600)
        rss_ready = processes.rss_bytes(member_pids(dep))
        extra = {}
        if hasattr(dep, "usercode_base"):
            # MLflow's second scoring server (the pyfunc wrapper: explanations) loads alibi after the model serves.
            extra["usercode_ready_s"] = wait_ok(f"{dep.usercode_base()}/ping", 600) - dep.started_at
            extra["rss_usercode_ready_mb"] = processes.rss_bytes(member_pids(dep)) / 2**20
        body = v2.request_body(ctx.artifact.probe_rows()[:1])
        with httpx.Client(timeout=30) as client:
            for _ in range(200):
                module.ADAPTER.infer(client, endpoint, body)
        return {"ready_s": dep.ready_after_s, "rss_ready_mb": rss_ready / 2**20,
                "rss_after_traffic_mb": processes.rss_bytes(member_pids(dep)) / 2**20,
                "processes": len(member_pids(dep)), **extra}
    finally:
        dep.teardown(ctx)


def adapter_costs(names: list[str]) -> dict:
    body = v2.request_body(np.linspace(-1, 1, 7).reshape(1, 7), request_id="cost")
    answers = {"bentoml": [2], "mlflow": {"predictions": [2]}, "torchserve": V2.decode_infer(
        {"model_name": "m", "id": "cost", "outputs": [{"name": "predict", "datatype": "INT64", "shape": [1],
                                                        "data": [2]}]}, body, "m")}
    out = {}
    base = conversion_cost(V2, body, answers["torchserve"], "m", n=ADAPTER_N)
    for name in ["v2 (identity)", *names]:
        costs = base if name.startswith("v2") else conversion_cost(PLATFORMS[name][0].ADAPTER, body, answers[name],
                                                                    "m", n=ADAPTER_N)
        lo, hi = percentile_ci(costs, 50)
        out[name] = {"n": ADAPTER_N, "median_us": float(np.median(costs) * 1e6), "ci95_us": (lo * 1e6, hi * 1e6),
                     "vs_v2_median": float(np.median(costs) / np.median(base))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--platforms", default="bentoml,mlflow,torchserve")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="build each venv with an empty uv cache")
    parser.add_argument("--envs", help="build/reuse venvs here (default: a fresh temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    opts = parser.parse_args()
    names = [n.strip() for n in opts.platforms.split(",") if n.strip()]
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown:
        raise SystemExit(f"unknown platform(s) {unknown}; choose from {sorted(PLATFORMS)}")
    if "torchserve" in names:
        torchserve_platform.ensure_java()

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
        figures["adapter_cost"] = adapter_costs([n for n in names if n != "torchserve"])
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
    for key, label, unit in (("usercode_ready_s", "user-code server ready", "s"),
                             ("rss_usercode_ready_mb", "RSS, user code ready too", "MB")):
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
