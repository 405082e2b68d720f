"""A stand-in for one Seldon Core v2 Pipeline on the local backend: model -> outlier and drift detectors.

On a cluster, Seldon Core v2 routes a pipeline's request through Kafka to each step: the model, an
outlier detector and a drift detector (batched), all served by MLServer (the detectors by its
alibi-detect runtime). The v2 scheduler, pipeline gateway and dataflow engine (Kafka) do not exist
locally, so this process does their routing for one fixed pipeline, and nothing else:

    steps: [model, outlier-detector, drift-detector (batch: window_rows / request_rows requests)]
    output: model

It answers the V2 inference route with the model's response (synchronously), and sends each request
to the two detector models (on a second MLServer, as v2 may schedule them on another Server) asynchronously, in order, as the dataflow engine would. The
detectors' answers are reported to the detector service (/verdicts) for export to Prometheus; MLServer
itself exports `seldon_model_drift` for the drift model. Run with the mlserver environment's python:

    python seldon_pipeline.py --port P --mlserver URL --detector-server URL --model M --outlier-model O --drift-model D \
        --sink URL [--queue 10000]
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

KEEPALIVE_S = 2.0
"""Seconds an idle connection to MLServer is kept for reuse: below uvicorn's timeout_keep_alive (5 s)."""


def first_output(response: dict, name: str):
    for out in response.get("outputs", []):
        if out["name"] == name:
            return out["data"]
    raise KeyError(f"no output {name!r} in detector response: {str(response)[:200]}")


class Pipeline:
    def __init__(self, opts):
        self.opts = opts
        self.base = opts.mlserver.rstrip("/")
        self.detectors = opts.detector_server.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        self.queue: asyncio.Queue | None = None
        self.dropped = 0
        self.failed = 0
        self.resent = 0
        self.window = 0
        self.members: list = []  # requests sent to the drift model since its last full batch
        self.features = None
        if opts.encode_columns:
            import json

            self.features = json.loads(Path(opts.encode_columns).read_text())["features"]

    async def start(self):
        # MLServer's uvicorn closes an idle keep-alive connection after 5 s, aiohttp keeps one for 15 s by default:
        # a request written to a connection the server just closed fails ("Can not write request body"; seen
        # losing one event under load). Idle connections are dropped before the server's limit.
        connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
        self.queue = asyncio.Queue(maxsize=self.opts.queue)
        asyncio.get_running_loop().create_task(self._drain())

    async def stop(self):
        if self.session:
            await self.session.close()

    async def infer(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name != self.opts.model:
            return JSONResponse({"error": f"pipeline has no model {name!r}"}, status_code=404)
        raw = await request.body()
        async with self.session.post(f"{self.base}/v2/models/{name}/infer", data=raw,
                                     headers={"content-type": "application/json"}) as resp:
            answer = await resp.read()
            status = resp.status
        if status == 200:
            try:
                self.queue.put_nowait(raw)
            except asyncio.QueueFull:
                self.dropped += 1
        return Response(answer, status_code=status, media_type="application/json")

    async def _post_json(self, url: str, raw: bytes) -> dict:
        for attempt in (1, 2):
            try:
                async with self.session.post(url, data=raw, headers={"content-type": "application/json"}) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: HTTP {resp.status}: {str(body)[:200]}")
                    return body
            except aiohttp.ClientOSError as exc:
                # Only a request that was never written is sent again (the server saw none of it; a drift
                # detector must not see rows twice). Seldon Core v2's Kafka dataflow delivers at least once.
                if attempt == 2 or "write request body" not in str(exc):
                    raise
                self.resent += 1
                print(f"detector routing: sent again on a fresh connection after {exc}", flush=True)

    def _encoded(self, body: dict) -> bytes:
        """A columns request (one input per feature) as one FP64 tensor of category codes, for the detectors."""
        import json

        import detectors_io

        rows = detectors_io.rows_of_columns(body, self.features)
        return json.dumps({"id": body.get("id"), "inputs": [{"name": "input-0", "shape": list(rows.shape),
                                                              "datatype": "FP64", "data": rows.ravel().tolist()}]}
                          ).encode()

    async def _drain(self):
        """Feed the detectors event by event: the drift model in arrival order (its batches are
        windows), the outlier model and the report to the detector service concurrently (bounded)."""
        import json

        slots = asyncio.Semaphore(16)
        while True:
            raw = await self.queue.get()
            try:
                body = json.loads(raw)
                if self.features:
                    raw = self._encoded(body)
                request_id = body.get("id")
                n_rows = int(body["inputs"][0]["shape"][0])
                drift = await self._post_json(f"{self.detectors}/v2/models/{self.opts.drift_model}/infer", raw)
                self.members.append([request_id, 0, n_rows])
                drift_verdict = None
                if drift.get("outputs"):  # the runtime answers with outputs once per full batch
                    drift_verdict = {"kind": "drift", "window": self.window, "members": self.members,
                                     "rows": sum(m[2] for m in self.members),
                                     "is_drift": int(first_output(drift, "is_drift")[0]),
                                     "p_vals": [float(p) for p in first_output(drift, "p_val")],
                                     "threshold": float(first_output(drift, "threshold")[0]),
                                     "features": self.opts.features.split(","), "time": time.time()}
                    self.window += 1
                    self.members = []
                await slots.acquire()
                asyncio.get_running_loop().create_task(
                    self._outlier_and_report(raw, request_id, n_rows, drift_verdict, slots))
            except Exception as exc:  # one bad event must not stop the dataflow
                self.failed += 1
                print(f"detector routing failed: {type(exc).__name__}: {exc}", flush=True)
            finally:
                self.queue.task_done()

    async def _outlier_and_report(self, raw: bytes, request_id, n_rows: int, drift_verdict, slots) -> None:
        try:
            out = await self._post_json(f"{self.detectors}/v2/models/{self.opts.outlier_model}/infer", raw)
            verdicts = [{"kind": "outlier", "request_id": request_id, "n_rows": n_rows,
                         "scores": [float(s) for s in first_output(out, "instance_score")],
                         "flags": [int(f) for f in first_output(out, "is_outlier")],
                         "threshold": self.opts.outlier_threshold, "time": time.time()}]
            if drift_verdict is not None:
                verdicts.append(drift_verdict)
            report = {"request_id": request_id, "n_rows": n_rows, "verdicts": verdicts,
                      "computed_by": "MLServer alibi-detect runtime"}
            async with self.session.post(self.opts.sink, json=report) as resp:
                if resp.status >= 300:
                    self.failed += 1
        except Exception as exc:
            self.failed += 1
            print(f"detector routing failed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            slots.release()

    async def ready(self, request: Request) -> Response:
        try:
            for base, model in ((self.base, self.opts.model), (self.detectors, self.opts.outlier_model),
                                (self.detectors, self.opts.drift_model)):
                async with self.session.get(f"{base}/v2/models/{model}/ready") as resp:
                    if resp.status != 200:
                        return JSONResponse({"ready": False, "waiting_for": model}, status_code=503)
        except aiohttp.ClientError as exc:
            return JSONResponse({"ready": False, "error": str(exc)}, status_code=503)
        return JSONResponse({"ready": True})

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"queued": self.queue.qsize(), "dropped": self.dropped, "failed": self.failed,
                             "resent": self.resent,
                             "windows": self.window, "pending_requests": len(self.members)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mlserver", required=True, help="the MLServer serving the model")
    parser.add_argument("--detector-server", required=True, help="the MLServer serving the detector models")
    parser.add_argument("--model", required=True)
    parser.add_argument("--outlier-model", required=True)
    parser.add_argument("--drift-model", required=True)
    parser.add_argument("--outlier-threshold", type=float, required=True)
    parser.add_argument("--features", required=True, help="comma-separated feature names")
    parser.add_argument("--sink", required=True, help="detector service /verdicts URL, with ?platform=...")
    parser.add_argument("--queue", type=int, default=10000)
    parser.add_argument("--encode-columns", help="artifact metadata.json: encode columns requests (one input per "
                        "feature, string categories) into one tensor of codes before the detector steps")
    opts = parser.parse_args()
    pipeline = Pipeline(opts)
    app = Starlette(routes=[
        Route("/v2/models/{name}/infer", pipeline.infer, methods=["POST"]),
        Route("/v2/models/{name}/ready", pipeline.ready),
        Route("/v2/health/ready", pipeline.ready),
        Route("/v2/health/live", lambda r: JSONResponse({"live": True})),
        Route("/stats", pipeline.stats),
    ], on_startup=[pipeline.start], on_shutdown=[pipeline.stop])
    uvicorn.run(app, host="127.0.0.1", port=opts.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
