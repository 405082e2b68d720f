"""Ray Serve: the artifact behind Open Inference Protocol (V2) routes written as user code.

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

from artifact_io import load_verified  # noqa: E402

api = FastAPI()
V2_TO_NUMPY = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def decode_v2(body, n_features: int) -> np.ndarray:
    """The first input tensor of a V2 request as a 2-D float array; ValueError when malformed."""
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
@serve.ingress(api)
class V2Model:
    def __init__(self, artifact_dir: str, model_name: str, batching: dict | None = None):
        self.model, self.metadata = load_verified(artifact_dir)
        self.model_name = model_name
        self.batching = batching or {}
        if self.batching:
            self.predict_batched.set_max_batch_size(int(self.batching["max_batch_size"]))
            self.predict_batched.set_batch_wait_timeout_s(float(self.batching["batch_wait_ms"]) / 1000.0)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def predict_batched(self, batches: list) -> list:
        """Ray Serve request batching: concurrent requests' rows in one predict call, split back."""
        sizes = [len(rows) for rows in batches]
        labels = self.model.predict(np.vstack(batches)).astype(np.int64)
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

    @api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request):
        self._check_name(name)
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(status_code=400, detail="request body is not JSON") from None
        try:
            rows = decode_v2(body, len(self.metadata["features"]))
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        if self.batching:
            labels = await self.predict_batched(rows)
        else:
            labels = self.model.predict(rows).astype(np.int64)
        return {"model_name": name, "id": body.get("id"),
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [len(labels)],
                             "data": labels.tolist()}]}


def build_app(args: dict):
    """Application builder for `serve run`/RayService: args = {artifact_dir, model_name[, batching]}.

    batching = {max_batch_size, batch_wait_ms} turns on @serve.batch; a replica then takes up to
    2 * max_batch_size requests at once (Serve's default of 5 ongoing requests would cap batches at 5).
    """
    batching = args.get("batching") or None
    deployment = V2Model
    if batching:
        deployment = V2Model.options(max_ongoing_requests=2 * int(batching["max_batch_size"]))
    return deployment.bind(args["artifact_dir"], args.get("model_name", "reference-classifier"), batching)


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--model-name", default="reference-classifier")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=0, help="> 0 turns on @serve.batch")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    opts = parser.parse_args()
    batching = ({"max_batch_size": opts.max_batch_size, "batch_wait_ms": opts.batch_wait_ms}
                if opts.max_batch_size > 0 else None)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ray.init(num_cpus=opts.num_cpus, include_dashboard=False, _metrics_export_port=opts.metrics_port,
             _temp_dir=opts.temp_dir, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": opts.http_port})
    serve.run(build_app({"artifact_dir": opts.artifact, "model_name": opts.model_name, "batching": batching}),
              name="reference", route_prefix="/", blocking=False)
    print("ray serve application running", flush=True)
    while not stop.is_set():
        time.sleep(0.5)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
