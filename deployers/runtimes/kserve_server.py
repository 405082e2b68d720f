"""KServe: a kserve.Model that serves the artifact through kserve.ModelServer (V1 and V2 routes),
and explains it behind KServe's V1 explain route with alibi KernelShap (explainer_io.py).

Run with the kserve environment's python:
    python kserve_server.py --artifact DIR --http-port PORT
"""

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kserve  # noqa: E402
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402

from artifact_io import load_verified  # noqa: E402
from kserve_loopback import LoopbackModelServer  # noqa: E402


class ArtifactModel(kserve.Model):
    def __init__(self, name: str, artifact_dir: str, with_explainer: bool = True):
        super().__init__(name)
        self.artifact_dir = artifact_dir
        self.model = None
        self.with_explainer = with_explainer
        self.explainer = None

    def load(self) -> bool:
        self.model, self.metadata = load_verified(self.artifact_dir)
        if self.with_explainer:
            import explainer_io

            self.explainer = explainer_io.fit(self.model, self.artifact_dir, self.metadata)
        self.ready = True
        return self.ready

    async def explain(self, payload, headers=None):
        """POST /v1/models/<m>:explain with {"instances": [[...], ...]}: alibi KernelShap in this process.

        The route is KServe's; the explainer is ours (KServe 0.20 ships no tabular explainer). It runs
        in a worker thread so the server keeps answering predictions meanwhile.
        """
        import explainer_io
        import numpy as np

        if self.explainer is None:
            raise kserve.errors.InvalidInput("this server was started without an explainer (--no-explainer)")
        try:
            rows = np.asarray(payload["instances"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise kserve.errors.InvalidInput(f'expected {{"instances": [[...], ...]}} of numbers: {exc}') from None
        if rows.ndim != 2 or rows.shape[1] != len(self.metadata["features"]):
            raise kserve.errors.InvalidInput(
                f"expected instances of shape [n, {len(self.metadata['features'])}], got {list(rows.shape)}")
        return await asyncio.get_running_loop().run_in_executor(None, explainer_io.explain, self.explainer, rows)

    def predict(self, payload, headers=None):
        rows = get_predict_input(payload)
        if rows.ndim != 2 or rows.shape[1] != len(self.metadata["features"]):
            raise kserve.errors.InvalidInput(
                f"expected a 2-D input of shape [n, {len(self.metadata['features'])}], got {list(rows.shape)}"
            )
        return get_predict_response(payload, self.model.predict(rows), self.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--model-name", default="reference-classifier")
    parser.add_argument("--no-explainer", action="store_true", help="serve predictions only (no alibi import)")
    opts, _ = parser.parse_known_args()
    model = ArtifactModel(opts.model_name, opts.artifact, with_explainer=not opts.no_explainer)
    model.load()
    # gRPC is off: the testbed speaks REST V2, and KServe's gRPC server binds [::] by default.
    LoopbackModelServer(http_port=opts.http_port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
