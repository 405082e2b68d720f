"""TorchServe custom handler: the artifact's model (the testbed's, or a user's scikit-learn, XGBoost, LightGBM or
ONNX file) behind V2 requests, explanations and (for the `-detected` model) the detectors, all user code, the way
TorchServe users extend it (handler code: TorchServe's own handlers serve PyTorch models).

Packed into a .mar with the artifact's files (its model file, metadata.json, reference.npy) and the
testbed's runtime modules; TorchServe puts the model directory on sys.path before importing this file.
`initialize` verifies the model file's sha256 (artifact_io.load_verified) before loading it with its
library (model_io.py). Requests come in either V2 layout (testbed/v2.py): one numeric tensor, or one input
per named column (a model that takes a DataFrame; string categories as BYTES). Answers are typed as the
model's: INT64 or BYTES class labels, FP64 regression values (model_io.v2_output).

TorchServe passes each request's body to the handler as it came (decoded from JSON), whatever the
route: /predictions/<m>, /v2/models/<m>/infer, /explanations/<m>, /v2/models/<m>/explain. This
handler speaks V2 on all of them: a V2 request in; a V2 response out, or the alibi Explanation
document when TorchServe flags the request as an explanation (request header "explain" = "True").
With server-side batching (batchSize > 1) `handle` gets several requests: one predict call, split back.

handler.json in the model directory: {"role": "model" | "detected"[, "detectors": {...}]}.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DATATYPES = ("FP64", "FP32", "INT64", "INT32")


def decode_v2(body, n_features: int, features=None) -> np.ndarray:
    """A V2 request's rows as float64 (string categories as their codes, model_io turns them back into the model's
    DataFrame); ValueError when it is neither one numeric [n, n_features] tensor nor, for a model that takes
    named columns (`features`), one input per feature."""
    from detectors_io import columns_layout, rows_of_columns, rows_of_v2

    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body)
        except ValueError:
            raise ValueError("request body is not JSON") from None
    try:
        datatype = body["inputs"][0]["datatype"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"missing or unsupported field {exc}") from None
    if features and columns_layout(body):
        return rows_of_columns(body, features)
    if datatype not in DATATYPES:
        raise ValueError(f"datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    return rows_of_v2(body, n_features)


class ReferenceHandler:
    def __init__(self):
        self.initialized = False

    def initialize(self, context) -> None:
        from artifact_io import load_verified

        model_dir = context.system_properties["model_dir"]
        self.model_name = context.manifest["model"]["modelName"]
        with open(os.path.join(model_dir, "handler.json")) as fh:
            config = json.load(fh)
        self.model, self.metadata = load_verified(model_dir)
        self.n_features = len(self.metadata["features"])
        # A model that takes named columns is sent them (the columns layout); the testbed's own model a tensor.
        self.columns = self.metadata["features"] if self.metadata.get("input") == "frame" else None
        self.explainer = self.detector = None
        if config["role"] == "detected":
            from usercode_detector import UserCodeDetector

            d = config["detectors"]
            self.detector = UserCodeDetector(d["dir"], d["model_sha256"], int(d["n_features"]), d["sink"],
                                             "TorchServe handler (user code, alibi-detect)")
        else:
            import explainer_io

            self.explainer_io = explainer_io
            self.explainer = explainer_io.fit(self.model, model_dir, self.metadata)
        self.initialized = True

    def handle(self, data, context) -> list:
        out: list = [None] * len(data)
        rows, ids, good = [], [], []
        for i, request in enumerate(data):
            body = request.get("body") if request.get("body") is not None else request.get("data")
            try:
                x = decode_v2(body, self.n_features, self.columns)
            except ValueError as exc:
                context.set_response_status(400, str(exc), idx=i)
                out[i] = {"error": str(exc)}
                continue
            request_id = body.get("id") if isinstance(body, dict) else None
            if context.get_request_header(i, "explain") == "True":
                if self.explainer is None:
                    context.set_response_status(404, "this model has no explainer", idx=i)
                    out[i] = {"error": f"model {self.model_name} has no explainer"}
                else:
                    out[i] = self.explainer_io.explain(self.explainer, x)
                continue
            if self.detector is not None:
                self.detector.detect(x, request_id)
            rows.append(x)
            ids.append(request_id)
            good.append(i)
        if rows:
            from model_io import v2_output

            predictions = np.asarray(self.model.predict(np.vstack(rows)))
            for i, request_id, part in zip(good, ids, np.split(predictions, np.cumsum([len(r) for r in rows])[:-1])):
                # parameters.batch_requests: how many requests TorchServe's batching gave this call (evidence
                # that server-side batching happened; TorchServe exports no batch-size metric).
                out[i] = {"model_name": self.model_name, "id": request_id, "parameters": {"batch_requests": len(rows)},
                          "outputs": [v2_output(part)]}
        return out


_service = ReferenceHandler()


def handle(data, context):
    """TorchServe's entry point for a module handler: initialise once, then serve each batch."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
