"""Model formats: which formats each platform serves out of the box, each checked for prediction
parity with the in-process model. run(ctx) -> one Result per platform in ctx.endpoints.

The format models (deployers/runtimes/format_models.py) are trained once per artifact on the
artifact's own training data; ONNX is the artifact's scikit-learn model converted with skl2onnx.
The in-process reference is each library's own Python API on the saved file (for ONNX: the original
scikit-learn model). Format servers (deployers/formats.py) start on first use and stay up for the
other repeats of the same process; they stop at exit.
"""

from __future__ import annotations

import atexit
import json
import subprocess

import httpx
import numpy as np

from deployers import formats as fmt_servers
from deployers import get_platform
from testbed import v2
from testbed.artifact import N_TRAIN
from testbed.backends.local import envs
from testbed.population import Population
from testbed.results import Result
from testbed.settings import Settings

FRESH_ROWS = 200
_servers: dict[str, fmt_servers.FormatServer] = {}
_expected: dict[tuple, dict] = {}
"""In-process labels per (model dir, seed): computed once per repeat, shared by the platforms."""


def labels_from(response: dict) -> list[int]:
    """Labels from a V2 response: class labels as they are, or the argmax of a probability matrix."""
    out = response["outputs"][0]
    data = np.asarray(out["data"], dtype=np.float64)
    shape = [int(s) for s in out.get("shape", [len(data)])]
    if len(shape) == 2 and shape[1] > 1:
        return data.reshape(shape).argmax(axis=1).astype(int).tolist()
    return data.ravel().astype(int).tolist()


def compare(expected: list[int], got: list[int] | str) -> dict:
    """Pure parity of one format on one platform."""
    if isinstance(got, str):
        return {"parity": False, "error": got, "mismatches": None}
    mismatches = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
    if len(got) != len(expected):
        return {"parity": False, "error": f"{len(got)} labels for {len(expected)} rows", "mismatches": mismatches[:10]}
    return {"parity": not mismatches, "error": None, "mismatches": mismatches[:10], "n_mismatches": len(mismatches),
            "agreement": round(1 - len(mismatches) / len(expected), 6)}


def _train_env(settings: Settings):
    return envs.ensure(fmt_servers.REFERENCE_ENV, settings.envs_dir)


def ensure_models(ctx, settings: Settings):
    """Format models for this artifact (built once, reused), and the directory they live in."""
    out = settings.state_dir / "formats" / ctx.artifact.sha256[:12]
    if (out / "formats.json").is_file():
        return out
    seed = ctx.artifact.metadata["recipe"]["seed"]
    X, y = Population(seed).sample(N_TRAIN, np.random.default_rng(seed + 1))  # the artifact's own training draw
    tmp = out.parent / f".{out.name}.building"
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "X.npy", X)
    np.save(tmp / "y.npy", y)
    py = envs.python_of(_train_env(settings))
    proc = subprocess.run([str(py), str(fmt_servers.RUNTIMES_DIR / "format_models.py"), "build", "--train-x",
                           str(tmp / "X.npy"), "--train-y", str(tmp / "y.npy"), "--sklearn", str(ctx.artifact.model_path),
                           "--seed", str(seed), "--out", str(tmp / "models")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the format models failed:\n{proc.stderr[-2000:]}")
    (tmp / "models").rename(out)
    return out


def in_process(model_dir, rows: np.ndarray, settings: Settings, scratch) -> dict:
    np.save(scratch / "rows.npy", rows)
    py = envs.python_of(_train_env(settings))
    proc = subprocess.run([str(py), str(fmt_servers.RUNTIMES_DIR / "format_models.py"), "predict", "--dir",
                           str(model_dir), "--rows", str(scratch / "rows.npy")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"in-process predictions failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _server(platform: str, settings: Settings, model_dir, n_features: int) -> fmt_servers.FormatServer:
    from testbed.backends.local import processes

    root = settings.state_dir / "formats-run"
    if platform in _servers and not processes.alive(_servers[platform].pid):
        dead = _servers.pop(platform)
        log = dead.workdir / "runtime.log"
        raise RuntimeError(f"the {platform} format server (pid {dead.pid}) died between repeats; its log {log}:\n"
                           f"{processes.log_tail(log)}")
    if platform not in _servers:
        if not _servers:
            fmt_servers.stop_leftovers(root)  # whatever a killed earlier run left (none of ours runs yet)
        server = fmt_servers.server_for(platform)
        server.start(settings.envs_dir, root / platform, model_dir, n_features, settings.ready_timeout_s)
        _servers[platform] = server
    return _servers[platform]


@atexit.register
def stop_servers() -> None:
    for server in _servers.values():
        server.stop()
    _servers.clear()


def run(ctx) -> list[Result]:
    # A user's model has one format: `up --model` reports which platforms serve it (testbed/serving.py).
    ctx.artifact.require_own("The formats experiment (one model trained in every format)")
    settings = Settings(backend=ctx.backend)
    if ctx.backend != "local":
        raise RuntimeError("the formats experiment starts its own format servers on the local backend only")
    model_dir = ensure_models(ctx, settings)
    built = json.loads((model_dir / "formats.json").read_text())
    rng = np.random.default_rng(ctx.seed)
    seed = ctx.artifact.metadata["recipe"]["seed"]
    fresh, _ = Population(seed).sample(FRESH_ROWS, rng)
    rows = np.vstack([ctx.artifact.probe_rows(), fresh])
    scratch = settings.state_dir / "formats-run"
    scratch.mkdir(parents=True, exist_ok=True)
    key = (str(model_dir), ctx.seed)
    if key not in _expected:
        _expected[key] = in_process(model_dir, rows, settings, scratch)
    expected = _expected[key]
    body = v2.request_body(rows, request_id="formats")
    out = []
    for platform in ctx.endpoints:
        started = __import__("time").time()
        if get_platform(platform).formats is None:
            out.append(Result(probe="formats", platform=platform, backend=ctx.backend,
                              artifact_sha256=ctx.artifact.sha256, verdict="unsupported", mechanism="none",
                              evidence={"reason": "the platform's module declares no format server "
                                                  "(PLATFORM.formats is None)"}, started_at=started))
            continue
        server = _server(platform, settings, model_dir, rows.shape[1])
        per_format = {}
        with httpx.Client(timeout=30.0) as client:
            for fmt in fmt_servers.FORMATS:
                mech = server.mechanism[fmt]
                if isinstance(expected.get(fmt), str):
                    per_format[fmt] = {"served": False, "mechanism": mech, "parity": None,
                                       "error": f"in-process reference failed: {expected[fmt]}"}
                    continue
                if fmt in server.load_errors or mech == "none":
                    per_format[fmt] = {"served": False, "mechanism": "none", "parity": None,
                                       "error": server.load_errors.get(fmt, "no mechanism")}
                    continue
                try:
                    resp = client.post(server.infer_url(fmt), json=server.encode(body))
                    got = labels_from(server.decode(resp.json())) if resp.status_code == 200 else \
                        f"HTTP {resp.status_code}: {resp.text[:300]}"
                except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
                    got = f"{type(exc).__name__}: {exc}"
                per_format[fmt] = {"served": not isinstance(got, str), "mechanism": mech, **compare(expected[fmt], got)}
        native = sorted(f for f, m in per_format.items() if m["served"] and m["parity"] and m["mechanism"] == "native")
        working = sorted(f for f, m in per_format.items() if m["served"] and m["parity"])
        out.append(Result(
            probe="formats", platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict="pass" if len(working) == len(fmt_servers.FORMATS) else "partial",
            scores={"native_formats": len(native), "working_formats": len(working),
                    "parity_failures": sum(1 for m in per_format.values() if m["served"] and not m["parity"])},
            measurements={"formats": per_format},
            evidence={"rows": len(rows), "seed": ctx.seed, "models": built, "server_versions": server.versions,
                      "server_env": list(server.env.requirements), "base_url": server.base_url,
                      "reference": "each library's own Python API on the saved file; ONNX: the original "
                                   "scikit-learn model"},
            mechanism=",".join(sorted({m["mechanism"] for m in per_format.values() if m["served"]})) or "none",
            started_at=started))
    return out
