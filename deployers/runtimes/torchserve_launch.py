"""Archive the artifact with torch-model-archiver, write TorchServe's config.properties, then become
`torchserve --start --foreground` (exec: this pid is TorchServe's launcher, the java frontend its child).

    python torchserve_launch.py --artifact DIR --workdir DIR --tmp-dir DIR --model-name M
        --inference-port P --management-port Q --metrics-port R --grpc-inference-port S --grpc-management-port T
        [--batch-size N --max-batch-delay-ms D] [--detectors DIR --model-sha256 SHA --n-features N --sink URL]

Every address is on 127.0.0.1. TorchServe writes ./logs (the working directory: give it its own) and
its pid file and worker sockets in TEMP (-Djava.io.tmpdir; a short dir of this instance's own: unix
socket paths are limited to 107 bytes, and the default /tmp/.ts.sock.9000 is shared by every TorchServe
on the machine).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Imported by the handler from the model directory (TorchServe puts it on sys.path).
CODE_FILES = ("artifact_io.py", "model_io.py", "explainer_io.py", "detectors_io.py", "usercode_detector.py")
ARTIFACT_FILES = ("metadata.json", "reference.npy")
# TorchServe's own container defaults (docker/config.properties): a bounded heap instead of 1/4 of RAM.
VMARGS = ("-XX:-UseContainerSupport -XX:InitialRAMPercentage=8.0 -XX:MaxRAMPercentage=10.0 -XX:-UseLargePages "
          "-XX:+UseG1GC -XX:+ExitOnOutOfMemoryError")


def archive(bin_dir: Path, artifact: Path, name: str, role: dict, store: Path, staging: Path) -> str:
    """<store>/<name>.mar holding the model, its handler, the runtime modules and handler.json."""
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "handler.json").write_text(json.dumps(role, indent=2))
    extra = [str(artifact / f) for f in ARTIFACT_FILES] + [str(HERE / f) for f in CODE_FILES]
    extra.append(str(staging / "handler.json"))
    # The artifact's model file under its own name (model.joblib, or a user's model.json / model.txt / model.onnx):
    # metadata.json names it, and the handler checks its sha256 before loading it.
    model_file = json.loads((artifact / "metadata.json").read_text()).get("model_file", "model.joblib")
    subprocess.run([str(bin_dir / "torch-model-archiver"), "--model-name", name, "--version", "1.0",
                    "--serialized-file", str(artifact / model_file), "--handler", str(HERE / "torchserve_handler.py"),
                    "--extra-files", ",".join(extra), "--export-path", str(store), "--force"], check=True)
    return f"{name}.mar"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--artifact", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--tmp-dir", required=True)
    p.add_argument("--model-name", required=True)
    for port in ("inference", "management", "metrics", "grpc-inference", "grpc-management"):
        p.add_argument(f"--{port}-port", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--max-batch-delay-ms", type=int, default=100)
    p.add_argument("--detectors")
    p.add_argument("--model-sha256")
    p.add_argument("--n-features", type=int)
    p.add_argument("--sink")
    o = p.parse_args()

    bin_dir = Path(sys.executable).parent
    workdir, artifact = Path(o.workdir), Path(o.artifact)
    store = workdir / "model-store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    models = {o.model_name: archive(bin_dir, artifact, o.model_name, {"role": "model"}, store,
                                    workdir / "staging" / "model")}
    if o.detectors:
        detected = f"{o.model_name}-detected"
        role = {"role": "detected", "detectors": {"dir": o.detectors, "model_sha256": o.model_sha256,
                                                  "n_features": o.n_features, "sink": o.sink}}
        models[detected] = archive(bin_dir, artifact, detected, role, store, workdir / "staging" / "detected")

    def model_config(name: str) -> dict:
        batching = {"batchSize": o.batch_size, "maxBatchDelay": o.max_batch_delay_ms} if name == o.model_name else {}
        # startupTimeout: TorchServe's default (120 s) for a worker to load its model is short for the handler's
        # torch + alibi imports on 2 busy cores; a worker that misses it is killed and retried.
        return {"1.0": {"defaultVersion": True, "marName": models[name], "minWorkers": 1, "maxWorkers": 1,
                        "responseTimeout": 120, "startupTimeout": 600, **batching}}

    serve(bin_dir, workdir, store, Path(o.tmp_dir), o, models, {name: model_config(name) for name in models})


def serve(bin_dir: Path, workdir: Path, store: Path, tmp: Path, ports, models: dict, model_configs: dict) -> None:
    """Write config.properties (every address on 127.0.0.1) and become `torchserve --start --foreground`.
    ports: the parsed --*-port options; models: name -> .mar file in store."""
    loopback = "http://127.0.0.1:{}".format
    config = {
        "inference_address": loopback(ports.inference_port),
        "management_address": loopback(ports.management_port),
        "metrics_address": loopback(ports.metrics_port),
        "grpc_inference_address": "127.0.0.1", "grpc_inference_port": ports.grpc_inference_port,
        "grpc_management_address": "127.0.0.1", "grpc_management_port": ports.grpc_management_port,
        "metrics_mode": "prometheus",
        "model_store": str(store),
        "load_models": ",".join(models.values()),
        "models": json.dumps(model_configs),
        "default_workers_per_model": 1,
        "disable_token_authorization": "true",
        "install_py_dep_per_model": "false",
        "vmargs": VMARGS,
    }
    (workdir / "config.properties").write_text("".join(f"{k}={v}\n" for k, v in config.items()))
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.update({"TEMP": str(tmp), "TMPDIR": str(tmp)})
    os.chdir(workdir)
    os.execv(str(bin_dir / "torchserve"), [str(bin_dir / "torchserve"), "--start", "--foreground", "--ncs",
                                             "--disable-token-auth", "--model-store", str(store),
                                             "--ts-config", str(workdir / "config.properties")])


if __name__ == "__main__":
    main()
