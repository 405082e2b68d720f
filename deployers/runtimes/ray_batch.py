"""Ray's offline batch path: score a .npy file with a pool of Ray actors (Ray Core tasks).

Runs inside the rayserve environment on a Ray instance of its own. Ray Data would be the
idiomatic API but needs pyarrow, which the serving environment does not carry; an actor pool over
file chunks is the same execution model (one model copy per worker, chunks streamed to them).
    python ray_batch.py --artifact DIR --input X.npy --output Y.npy --temp-dir D [--actors 2] [--chunk 10000]
Prints one JSON line: rows, seconds (file read + scoring, after Ray and the actors are up), startup_s.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray.util import ActorPool  # noqa: E402

from artifact_io import load_verified  # noqa: E402


@ray.remote(num_cpus=1)
class Scorer:
    def __init__(self, artifact_dir: str):
        self.model, _ = load_verified(artifact_dir)

    def ready(self) -> bool:
        return True

    def predict(self, rows):
        return self.model.predict(rows).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=10000)
    opts = parser.parse_args()
    t0 = time.perf_counter()
    ray.init(num_cpus=opts.actors, include_dashboard=False, _temp_dir=opts.temp_dir, configure_logging=False)
    actors = [Scorer.remote(opts.artifact) for _ in range(opts.actors)]
    ray.get([a.ready.remote() for a in actors])
    startup = time.perf_counter() - t0
    started = time.perf_counter()
    rows = np.load(opts.input)
    chunks = [rows[i:i + opts.chunk] for i in range(0, len(rows), opts.chunk)]
    labels = np.concatenate(list(ActorPool(actors).map(lambda a, c: a.predict.remote(c), chunks)))
    seconds = time.perf_counter() - started
    np.save(opts.output, labels)
    print(json.dumps({"rows": int(len(labels)), "seconds": seconds, "startup_s": startup, "actors": opts.actors,
                      "chunk": opts.chunk, "ray": ray.__version__}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
