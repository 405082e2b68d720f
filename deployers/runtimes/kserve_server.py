"""KServe: a kserve.Model that serves the artifact through kserve.ModelServer (V1 and V2 routes).

Run with the kserve environment's python:
    python kserve_server.py --artifact DIR --http-port PORT
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kserve  # noqa: E402
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402

from artifact_io import load_verified  # noqa: E402


class ArtifactModel(kserve.Model):
    def __init__(self, name: str, artifact_dir: str):
        super().__init__(name)
        self.artifact_dir = artifact_dir
        self.model = None

    def load(self) -> bool:
        self.model, self.metadata = load_verified(self.artifact_dir)
        self.ready = True
        return self.ready

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
    opts, _ = parser.parse_known_args()
    model = ArtifactModel(opts.model_name, opts.artifact)
    model.load()
    # gRPC is off: the testbed speaks REST V2, and KServe's gRPC server binds [::] by default.
    kserve.ModelServer(http_port=opts.http_port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
