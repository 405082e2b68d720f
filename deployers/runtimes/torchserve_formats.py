"""TorchServe serving one model per format (scikit-learn, XGBoost, LightGBM, ONNX): each format model
archived with torch-model-archiver as its own .mar (the model file as --serialized-file) with this
file as its handler, which loads the file with its library's own API (format_models.load_file) and
speaks V2 at /v2/models/<format>/infer (user code: TorchServe's built-in handlers are for torch models).

    python torchserve_formats.py launch --dir DIR --workdir W --tmp-dir T --inference-port P
        --management-port Q --metrics-port R --grpc-inference-port S --grpc-management-port U
archives the four models, writes config.properties and becomes `torchserve --foreground`
(torchserve_launch.serve). handler.json in each model directory: {"format": ...}.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CODE_FILES = ("format_models.py", "detectors_io.py", "torchserve_handler.py")


class FormatHandler:
    def __init__(self):
        self.initialized = False

    def initialize(self, context) -> None:
        from pathlib import Path

        from format_models import FILES, load_file

        model_dir = Path(context.system_properties["model_dir"])
        self.format = json.loads((model_dir / "handler.json").read_text())["format"]
        self.model_name = context.manifest["model"]["modelName"]
        self.predict = load_file(self.format, model_dir / FILES[self.format])
        self.initialized = True

    def handle(self, data, context) -> list:
        from torchserve_handler import decode_v2

        out = []
        for i, request in enumerate(data):
            body = request.get("body") if request.get("body") is not None else request.get("data")
            try:
                body = json.loads(body) if isinstance(body, (bytes, bytearray)) else body
                shape = body["inputs"][0]["shape"]
                rows = decode_v2(body, int(shape[1]))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                context.set_response_status(400, str(exc), idx=i)
                out.append({"error": str(exc)})
                continue
            labels = self.predict(rows)
            out.append({"model_name": self.model_name, "id": body.get("id"),
                        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [len(labels)],
                                     "data": [int(v) for v in labels]}]})
        return out


_service = FormatHandler()


def handle(data, context):
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)


def launch() -> None:
    import argparse
    import shutil
    import subprocess
    from pathlib import Path

    from format_models import FILES
    from torchserve_launch import serve

    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["launch"])
    p.add_argument("--dir", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--tmp-dir", required=True)
    for port in ("inference", "management", "metrics", "grpc-inference", "grpc-management"):
        p.add_argument(f"--{port}-port", type=int, required=True)
    o = p.parse_args()
    bin_dir, workdir, model_dir = Path(sys.executable).parent, Path(o.workdir), Path(o.dir)
    store = workdir / "model-store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    models, errors = {}, {}
    for fmt, name in FILES.items():
        staging = workdir / "staging" / fmt
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "handler.json").write_text(json.dumps({"format": fmt}))
        extra = [str(here / f) for f in CODE_FILES] + [str(staging / "handler.json")]
        proc = subprocess.run([str(bin_dir / "torch-model-archiver"), "--model-name", fmt, "--version", "1.0",
                               "--serialized-file", str(model_dir / fmt / name), "--handler", str(Path(__file__).resolve()),
                               "--extra-files", ",".join(extra), "--export-path", str(store), "--force"],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            models[fmt] = f"{fmt}.mar"
        else:
            errors[fmt] = f"torch-model-archiver exit {proc.returncode}: {proc.stderr[-300:]}"
    (workdir / "status.json").write_text(json.dumps({"archived": sorted(models), "errors": errors}))
    configs = {fmt: {"1.0": {"defaultVersion": True, "marName": mar, "minWorkers": 1, "maxWorkers": 1,
                             "responseTimeout": 120, "startupTimeout": 600}} for fmt, mar in models.items()}
    serve(bin_dir, workdir, store, Path(o.tmp_dir), o, models, configs)


if __name__ == "__main__":
    launch()
