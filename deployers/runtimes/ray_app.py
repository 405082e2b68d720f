"""Ray Serve: the artifact behind Open Inference Protocol (V2) routes written as user code, plus an
explain route composed with an Explainer deployment (alibi KernelShap, explainer_io.py).

Ray Serve has no V2 protocol of its own; every route below is ours. The same module is the
RayService application on kind (`import_path: ray_app:build_app`, args {artifact_dir: ...}).
Run locally with the rayserve environment's python:
    python ray_app.py --artifact DIR --http-port P --metrics-port M --temp-dir D
"""

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from fastapi import FastAPI, HTTPException, Request  # noqa: E402
from ray import serve  # noqa: E402

import model_io  # noqa: E402
from artifact_io import load_verified  # noqa: E402

api = FastAPI()
V2_TO_NUMPY = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def decode_v2(body, n_features: int, features=None) -> np.ndarray:
    """A V2 request's rows as a 2-D float array; ValueError when malformed. The columns layout (content_type "pd",
    one input per feature: a user's model that takes named columns) is decoded with the artifact's features;
    string categories become codes (model_io.to_input turns them back into the model's DataFrame)."""
    import detectors_io

    if features and detectors_io.columns_layout(body):
        return detectors_io.rows_of_columns(body, features)
    try:
        tensor = body["inputs"][0]
        shape = [int(d) for d in tensor["shape"]]
        dtype = V2_TO_NUMPY[tensor["datatype"]]
        rows = np.asarray(tensor["data"], dtype=dtype).reshape(shape)
    except KeyError as exc:
        raise ValueError(f"missing or unsupported field {exc}") from None
    except (TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"cannot decode input tensor: {exc}") from None
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ValueError(f"expected shape [n, {n_features}], got {list(rows.shape)}")
    return rows


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class Explainer:
    """alibi KernelShap over the artifact's probabilities or regression values (explainer_io.py), in a replica of its own so
    the model's replica never imports alibi. Ray Serve has no explainer concept: this is user code."""

    def __init__(self, artifact_dir: str):
        import explainer_io

        self.model, self.metadata = load_verified(artifact_dir)
        self.explainer = explainer_io.fit(self.model, artifact_dir, self.metadata)

    def explain(self, rows: np.ndarray) -> dict:
        import explainer_io

        return explainer_io.explain(self.explainer, rows)


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
@serve.ingress(api)
class V2Model:
    def __init__(self, artifact_dir: str, model_name: str, explainer=None, batching: dict | None = None):
        self.model, self.metadata = load_verified(artifact_dir)
        self.model_name = model_name
        self.explainer = explainer
        """DeploymentHandle of the Explainer deployment, or None (no explain route)."""
        self.batching = batching or {}
        if self.batching:
            self.predict_batched.set_max_batch_size(int(self.batching["max_batch_size"]))
            self.predict_batched.set_batch_wait_timeout_s(float(self.batching["batch_wait_ms"]) / 1000.0)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def predict_batched(self, batches: list) -> list:
        """Ray Serve request batching: concurrent requests' rows in one predict call, split back."""
        sizes = [len(rows) for rows in batches]
        labels = self.model.predict(np.vstack(batches))
        return np.split(labels, np.cumsum(sizes)[:-1])

    def _check_name(self, name: str) -> None:
        if name != self.model_name:
            raise HTTPException(status_code=404, detail=f"model {name!r} not found")

    @api.get("/v2/health/live")
    def live(self):
        return {"live": True}

    @api.get("/v2/health/ready")
    def ready(self):
        return {"ready": True}

    @api.get("/v2/models/{name}/ready")
    def model_ready(self, name: str):
        self._check_name(name)
        return {"name": name, "ready": True}

    @api.get("/v2/models/{name}")
    def metadata_route(self, name: str):
        self._check_name(name)
        n = len(self.metadata["features"])
        return {"name": name, "versions": [self.metadata["sha256"][:12]], "platform": "ray-serve",
                "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, n]}],
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}]}

    async def _rows(self, request: Request) -> tuple[dict, np.ndarray]:
        """The request's JSON body and its first tensor as rows; HTTP 400 when either is malformed."""
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(status_code=400, detail="request body is not JSON") from None
        try:
            return body, decode_v2(body, len(self.metadata["features"]), self.metadata["features"])
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request):
        self._check_name(name)
        body, rows = await self._rows(request)
        if self.batching:
            labels = await self.predict_batched(rows)
        else:
            labels = self.model.predict(rows)
        return {"model_name": name, "id": body.get("id"), "outputs": [model_io.v2_output(labels)]}

    @api.post("/v2/models/{name}/explain")
    async def explain(self, name: str, request: Request):
        """A V2 request in, alibi's Explanation document out (composed: ingress -> Explainer deployment)."""
        self._check_name(name)
        if self.explainer is None:
            raise HTTPException(status_code=404, detail="this application was built without an explainer")
        _, rows = await self._rows(request)
        return await self.explainer.explain.remote(rows)


# --- detection: Ray Serve has none built in; this composition (model + detector) is user code ---------
detected_api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=1000)
class Detector:
    """The saved detectors in one replica (drift windows are state), reporting verdicts to the sink."""

    def __init__(self, detectors_dir: str, model_sha256: str, n_features: int, sink: str, platform: str):
        import os
        import queue

        import detectors_io

        # Load at low priority (alibi-detect's import is 10-15 s of CPU next to the model's start on
        # 2 cores), then back to normal where permitted.
        os.nice(10)

        self.io = detectors_io
        self.meta, self.outlier, drift = detectors_io.load(detectors_dir, model_sha256, n_features)
        self.windows = detectors_io.DriftWindows(drift, self.meta["drift"]["window_rows"], self.meta["feature_names"])
        self.sink = sink
        self.reports = queue.Queue(maxsize=10000)
        self.dropped = 0
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except PermissionError:
            pass

    def detect(self, rows: np.ndarray, request_id) -> dict:
        verdicts = [self.io.outlier_verdict(self.outlier, rows, request_id)]
        verdicts += self.windows.add(rows, request_id)
        report = {"request_id": request_id, "n_rows": int(rows.shape[0]), "verdicts": verdicts,
                  "computed_by": "Ray Serve deployment (user code, alibi-detect)"}
        try:
            self.reports.put_nowait(report)
        except Exception:  # queue.Full: the sink is slower than traffic; counted as lost events
            self.dropped += 1
        return {"flags": verdicts[0]["flags"], "drift_windows": len(verdicts) - 1}

    def _drain(self) -> None:
        import json
        import urllib.request

        while True:
            report = self.reports.get()
            req = urllib.request.Request(self.sink, data=json.dumps(report).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except OSError as exc:
                print(f"detector sink unreachable: {exc}", flush=True)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(detected_api)
class DetectedModel:
    """V2 inference through the model and the detector deployment at once (Ray's composition pattern;
    the model is loaded here rather than in a third deployment: one actor less to start on 2 cores)."""

    def __init__(self, artifact_dir: str, detector, model_name: str, n_features: int):
        self.model, self.metadata = load_verified(artifact_dir)
        self.detector = detector
        self.model_name = model_name
        self.n_features = n_features

    @detected_api.get("/v2/health/ready")
    def ready(self):
        return {"ready": True}

    @detected_api.get("/v2/models/{name}/ready")
    def model_ready(self, name: str):
        if name != self.model_name:
            raise HTTPException(status_code=404, detail=f"model {name!r} not found")
        return {"name": name, "ready": True}

    @detected_api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request):
        if name != self.model_name:
            raise HTTPException(status_code=404, detail=f"model {name!r} not found")
        try:
            body = await request.json()
            rows = decode_v2(body, self.n_features, self.metadata["features"])
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        verdict = self.detector.detect.remote(rows, body.get("id"))
        labels = self.model.predict(rows)  # while the detector works
        await verdict
        return {"model_name": name, "id": body.get("id"), "outputs": [model_io.v2_output(labels)]}


def build_detected_app(args: dict):
    """args = {artifact_dir, detectors_dir, model_sha256, n_features, sink, model_name}: an ingress
    holding the model, composed with the Detector deployment; deployed beside the plain application."""
    model_name = args.get("model_name", "reference-classifier")
    detector = Detector.bind(args["detectors_dir"], args["model_sha256"], int(args["n_features"]), args["sink"],
                             args.get("platform", "rayserve"))
    return DetectedModel.bind(args["artifact_dir"], detector, model_name, int(args["n_features"]))


def build_app(args: dict):
    """Application builder for `serve run`/RayService: args = {artifact_dir, model_name, explainer (bool)
    [, batching]}.

    batching = {max_batch_size, batch_wait_ms} turns on @serve.batch; a replica then takes up to
    2 * max_batch_size requests at once (Serve's default of 5 ongoing requests would cap batches at 5).
    """
    explainer = Explainer.bind(args["artifact_dir"]) if args.get("explainer") else None
    batching = args.get("batching") or None
    deployment = V2Model
    if batching:
        deployment = V2Model.options(max_ongoing_requests=2 * int(batching["max_batch_size"]))
    return deployment.bind(args["artifact_dir"], args.get("model_name", "reference-classifier"), explainer, batching)


RAY_INIT_ATTEMPTS = 3


def init_ray(init) -> None:
    """init() (ray.init), again when Ray's own start-up wait runs out. Ray 2.60 waits a fixed 30 s for the
    raylet to register with the GCS (ray/_private/node.py: raylet_start_wait_time_s, no setting), which a
    2-core machine under load exceeds ("The current node timed out during startup"). What the failed
    attempt started (GCS, raylet, agents: this process's children) is killed before the next."""
    for attempt in range(1, RAY_INIT_ATTEMPTS + 1):
        try:
            init()
            return
        except Exception as exc:  # Ray raises a bare Exception here
            if "timed out during startup" not in str(exc) or attempt == RAY_INIT_ATTEMPTS:
                raise
            print(f"ray.init attempt {attempt}/{RAY_INIT_ATTEMPTS}: {exc}; stopping what it started, trying again",
                  flush=True)
            _kill_descendants()


def _kill_descendants() -> None:
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, found = [os.getpid()], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in found:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not our own child: init reaps it
            pass


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--model-name", default="reference-classifier")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--no-explainer", action="store_true", help="serve predictions only (no alibi import)")
    parser.add_argument("--detectors", help="detectors directory: also serve the detected application")
    parser.add_argument("--detector-sink", help="detector service /verdicts URL (with ?platform=...)")
    parser.add_argument("--model-sha256")
    parser.add_argument("--n-features", type=int)
    parser.add_argument("--max-batch-size", type=int, default=0, help="> 0 turns on @serve.batch")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    opts = parser.parse_args()
    batching = ({"max_batch_size": opts.max_batch_size, "batch_wait_ms": opts.batch_wait_ms}
                if opts.max_batch_size > 0 else None)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    init_ray(lambda: ray.init(num_cpus=opts.num_cpus, include_dashboard=False, _metrics_export_port=opts.metrics_port,
                              _temp_dir=opts.temp_dir, configure_logging=False))
    # Ray's servers bind loopback only when the node address is loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    # in the environment, deployers/rayserve.py): say which it got, for the log a reader of `status` opens.
    node_ip = ray.util.get_node_ip_address()
    print(f"ray node address: {node_ip}" + ("" if node_ip.startswith("127.") or node_ip == "::1" else
          " (not loopback: Ray's servers listen beyond loopback; is RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 set?)"),
          flush=True)
    serve.start(http_options={"host": "127.0.0.1", "port": opts.http_port})
    reference = build_app({"artifact_dir": opts.artifact, "model_name": opts.model_name,
                           "explainer": not opts.no_explainer, "batching": batching})
    if opts.detectors:
        # Both applications deploy at once: the detector replica's alibi-detect import (10-15 s)
        # overlaps the model's start instead of following it.
        detected = build_detected_app({"artifact_dir": opts.artifact, "detectors_dir": opts.detectors,
                                       "model_sha256": opts.model_sha256, "n_features": opts.n_features,
                                       "sink": opts.detector_sink, "model_name": opts.model_name})
        serve.run_many([serve.api.RunTarget(reference, name="reference", route_prefix="/"),
                        serve.api.RunTarget(detected, name="detected", route_prefix="/detected")])
        print("ray serve applications running: reference, detected", flush=True)
    else:
        serve.run(reference, name="reference", route_prefix="/", blocking=False)
        print("ray serve application running", flush=True)
    while not stop.is_set():
        time.sleep(0.5)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
