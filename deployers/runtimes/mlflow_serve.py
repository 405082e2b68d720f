"""MLflow model serving: MLflow's own scoring server (the FastAPI app `mlflow models serve` runs) on loopback.

`mlflow models serve -m M --env-manager local -h H -p P` is a launcher: it imports mlflow, then runs
`bash -c "exec uvicorn --host H --port P mlflow.pyfunc.scoring_server.app:app"` with the model path
in the environment and stays resident as that server's parent. mlflow.pyfunc.scoring_server.app is
`scoring_server.init(scoring_server.load_model_with_mlflow_config(path))`. This script packages the
artifact (mlflow_models.package: the model in MLflow's flavour for its format, and the user-code wrapper),
then builds that same app in its own process, after checking the packaged model's sha256 (MLflow's loaders check
nothing), and serves it with uvicorn: the server is MLflow's, without the CLI's resident parent
(measured: +250 MB RSS and ~2x the time to ready; docs/platform-adapters.md).

    python mlflow_serve.py --artifact DIR --packages DIR --port P [--usercode-port Q
        [--detectors DIR --model-sha256 SHA --n-features N --sink URL]]

With --usercode-port, a second scoring server (a child in the same session, stopped with this one:
PR_SET_PDEATHSIG) serves the pyfunc wrapper (mlflow_models.UserCodeModel): explanations, and
detection when --detectors is given.
"""

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

HOST = "127.0.0.1"


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(model_dir: Path, port: int, model_config: dict | None) -> None:
    import mlflow_models

    mlflow_models.verify(model_dir)
    import uvicorn
    from mlflow.pyfunc import scoring_server

    if model_config:
        os.environ[scoring_server.SERVING_MODEL_CONFIG] = json.dumps(model_config)
    app = scoring_server.init(scoring_server.load_model_with_mlflow_config(str(model_dir)))
    uvicorn.run(app, host=HOST, port=port, log_level="info")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--packages", required=True, help="where the MLflow models of this artifact are packaged")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--usercode-port", type=int)
    parser.add_argument("--detectors")
    parser.add_argument("--model-sha256")
    parser.add_argument("--n-features", type=int)
    parser.add_argument("--sink")
    parser.add_argument("--role", choices=["native", "usercode"], default="native", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    packages = Path(opts.packages)

    if opts.role == "usercode":
        config = None
        if opts.detectors:
            config = {"detectors": {"dir": opts.detectors, "model_sha256": opts.model_sha256,
                                    "n_features": opts.n_features, "sink": opts.sink}}
        serve(packages / "usercode", opts.usercode_port, config)
        return

    import mlflow_models

    mlflow_models.package(opts.artifact, packages)
    if opts.usercode_port:
        argv = [a for a in sys.argv[1:]]
        subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv, "--role", "usercode"],
                         preexec_fn=_die_with_parent)
    serve(packages / mlflow_models.NATIVE, opts.port, None)


if __name__ == "__main__":
    main()
