"""KServe ModelServer serving one model per format (sklearn, xgboost, lightgbm, onnx) as kserve.Model
subclasses. KServe's own format servers (sklearnserver, xgbserver, lgbserver) ship as container
images, not as PyPI packages, so on the local backend every format is user code on the KServe SDK.

    python formats_kserve.py --dir DIR --http-port PORT --status STATUS.json
A model whose library fails to load is left out and named in STATUS.json (the others still serve).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kserve  # noqa: E402
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402

from format_models import FILES, loader  # noqa: E402
from kserve_loopback import LoopbackModelServer  # noqa: E402


class FormatModel(kserve.Model):
    def __init__(self, fmt: str, model_dir: str):
        super().__init__(fmt)
        self.fmt, self.model_dir, self._predict = fmt, model_dir, None

    def load(self) -> bool:
        self._predict = loader(self.fmt, Path(self.model_dir))
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        rows = get_predict_input(payload)
        return get_predict_response(payload, self._predict(rows.astype("float64")), self.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--status", required=True)
    opts = parser.parse_args()
    models, errors = [], {}
    for fmt in FILES:
        model = FormatModel(fmt, opts.dir)
        try:
            model.load()
            models.append(model)
        except Exception as exc:
            errors[fmt] = f"{type(exc).__name__}: {exc}"
    Path(opts.status).write_text(json.dumps({"loaded": [m.name for m in models], "errors": errors}))
    LoopbackModelServer(http_port=opts.http_port, enable_grpc=False, workers=1).start(models)


if __name__ == "__main__":
    main()
