"""KServe's detection path on the local backend: a transformer in front of the predictor.

A `kserve.Model` with `predictor_host` (KServe's transformer mechanism) whose `preprocess` hands the
V2 request to a payload logger, then lets KServe forward it to the predictor unchanged. The logger
mimics KServe's InferenceService `logger` (what the kind backend would use): asynchronous, a bounded
queue drained in order by one worker, one CloudEvent (binary mode) per request to the detector
service. A full queue drops the event, as the agent's logger does; the probe counts what is lost.

    python kserve_transformer.py --http-port P --predictor-host 127.0.0.1:Q --model-name M \
        --sink URL [--queue 10000]
"""

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import kserve  # noqa: E402
from kserve.predictor_config import PredictorConfig  # noqa: E402
from kserve_loopback import LoopbackModelServer  # noqa: E402


class PayloadLogger:
    def __init__(self, sink_url: str, model_name: str, maxsize: int):
        self.sink_url = sink_url
        self.model_name = model_name
        self.queue: asyncio.Queue | None = None
        self.maxsize = maxsize
        self.dropped = 0
        self.failed = 0
        self._worker = None

    def submit(self, body: dict, request_id) -> None:
        if self.queue is None:  # created on the server's event loop, at the first request
            self.queue = asyncio.Queue(maxsize=self.maxsize)
            self._worker = asyncio.get_running_loop().create_task(self._drain())
        try:
            self.queue.put_nowait((body, request_id))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _drain(self) -> None:
        async with httpx.AsyncClient(timeout=10.0) as client:
            while True:
                body, request_id = await self.queue.get()
                headers = {"ce-specversion": "1.0", "ce-id": str(request_id),
                           "ce-type": "org.kubeflow.serving.inference.request",
                           "ce-source": f"http://localhost/{self.model_name}", "content-type": "application/json"}
                try:
                    resp = await client.post(self.sink_url, content=json.dumps(body), headers=headers)
                    if resp.status_code >= 300:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                finally:
                    self.queue.task_done()


class DetectingTransformer(kserve.Model):
    def __init__(self, name: str, logger: PayloadLogger):
        super().__init__(name)
        self.logger = logger
        self.ready = True

    async def preprocess(self, payload, headers=None):
        if isinstance(payload, kserve.InferRequest):
            body, _ = payload.to_rest()  # (dict, json length) for JSON tensors
            request_id = payload.id
        else:
            body, request_id = payload, payload.get("id") if isinstance(payload, dict) else None
        self.logger.submit(body, request_id)
        return payload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--predictor-host", required=True)
    parser.add_argument("--model-name", default="reference-classifier")
    parser.add_argument("--sink", required=True, help="detector service /events URL, with ?platform=...")
    parser.add_argument("--queue", type=int, default=10000)
    opts, _ = parser.parse_known_args()
    logger = PayloadLogger(opts.sink, opts.model_name, opts.queue)
    model = DetectingTransformer(opts.model_name, logger)
    config = PredictorConfig(predictor_host=opts.predictor_host, predictor_protocol="v2")
    LoopbackModelServer(http_port=opts.http_port, enable_grpc=False, workers=1,
                        predictor_config=config).start([model])


if __name__ == "__main__":
    main()
