"""MLflow's own flavours for each format model: each saved as an MLflow model with its flavour
(mlflow.sklearn, mlflow.xgboost, mlflow.lightgbm, mlflow.onnx), loaded back with mlflow.pyfunc and
served by MLflow's scoring server app (what `mlflow models serve` runs), one app per model.

    python formats_mlflow.py --dir DIR --workdir W --http-port PORT
Routes: POST /<format>/invocations {"inputs": rows} -> {"predictions": ...}; GET /status (every model
loaded, with the errors of those that failed). `mlflow models serve` serves one model per process; the
four scoring-server apps are mounted in one uvicorn process here so the experiment starts one server
(each app is MLflow's, unchanged). A model whose flavour fails to save or load is left out and named in
/status (the others still serve).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from format_models import FILES  # noqa: E402


def save(fmt: str, model_dir: Path, out: Path) -> None:
    """The format model saved with MLflow's flavour for its library (the way an MLflow user logs it)."""
    path = model_dir / fmt / FILES[fmt]
    if fmt == "sklearn":
        import joblib
        import mlflow.sklearn

        mlflow.sklearn.save_model(joblib.load(path), out)
    elif fmt == "xgboost":
        import mlflow.xgboost
        import xgboost as xgb

        model = xgb.XGBClassifier()
        model.load_model(path)
        mlflow.xgboost.save_model(model, out)
    elif fmt == "lightgbm":
        import lightgbm as lgb
        import mlflow.lightgbm

        mlflow.lightgbm.save_model(lgb.Booster(model_file=str(path)), out)
    elif fmt == "onnx":
        import mlflow.onnx
        import onnx

        mlflow.onnx.save_model(onnx.load(str(path)), out)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    opts = parser.parse_args()
    import shutil

    import mlflow.pyfunc
    import uvicorn
    from mlflow.pyfunc import scoring_server
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    models_dir = Path(opts.workdir) / "mlflow-models"
    shutil.rmtree(models_dir, ignore_errors=True)
    mounts, errors = [], {}
    for fmt in FILES:
        try:
            save(fmt, Path(opts.dir), models_dir / fmt)
            mounts.append(Mount(f"/{fmt}", app=scoring_server.init(mlflow.pyfunc.load_model(str(models_dir / fmt)))))
        except Exception as exc:  # reported per format, never fatal for the others
            errors[fmt] = f"{type(exc).__name__}: {exc}"
    loaded = [m.path.strip("/") for m in mounts]

    async def status(request):
        return JSONResponse({"loaded": loaded, "errors": errors})

    app = Starlette(routes=[Route("/status", status), *mounts])
    uvicorn.run(app, host="127.0.0.1", port=opts.http_port, log_level="warning")


if __name__ == "__main__":
    main()
