"""Ray Serve serving one model per format behind V2 routes, all user code (Ray Serve has no format
servers and no V2 protocol).

    python formats_ray.py --dir DIR --http-port P --temp-dir D --status STATUS.json
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

from format_models import FILES, loader  # noqa: E402
from ray_app import decode_v2  # noqa: E402

api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Formats:
    def __init__(self, model_dir: str, n_features: int):
        self.n_features = n_features
        self.models, self.errors = {}, {}
        for fmt in FILES:
            try:
                self.models[fmt] = loader(fmt, Path(model_dir))
            except Exception as exc:
                self.errors[fmt] = f"{type(exc).__name__}: {exc}"

    @api.get("/status")
    def status(self):
        return {"loaded": sorted(self.models), "errors": self.errors}

    @api.get("/v2/models/{name}/ready")
    def ready(self, name: str):
        if name not in self.models:
            raise HTTPException(status_code=404, detail=self.errors.get(name, "unknown model"))
        return {"name": name, "ready": True}

    @api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request):
        if name not in self.models:
            raise HTTPException(status_code=404, detail=self.errors.get(name, "unknown model"))
        try:
            rows = decode_v2(await request.json(), self.n_features)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        labels = self.models[name](rows.astype(np.float64))
        return {"model_name": name, "outputs": [{"name": "predict", "datatype": "INT64", "shape": [len(labels)],
                                                 "data": labels.tolist()}]}


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--n-features", type=int, required=True)
    opts = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=opts.temp_dir, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": opts.http_port})
    serve.run(Formats.bind(opts.dir, opts.n_features), name="formats", route_prefix="/", blocking=False)
    print("ray serve formats application running", flush=True)
    while not stop.is_set():
        time.sleep(0.5)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
