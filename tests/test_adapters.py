"""Wire protocols (PLATFORM.protocol: the identity, and the client-side adapters of BentoML and MLflow) and the
new platforms' pure helpers (fast tier: no runtime, no venv)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml

from deployers import bentoml as bentoml_platform, mlflow as mlflow_platform, torchserve as torchserve_platform
from testbed import v2
from testbed.adapters import AdapterError, conversion_cost, rows_of, v2_response
from testbed.backends.local.deployment import RUNTIMES_DIR
from testbed.endpoint import Endpoint
from testbed.errors import InvalidPayload
from testbed.platforms import WireProtocol
from testbed.settings import Batching

V2 = WireProtocol()
BENTOML, MLFLOW, TORCHSERVE = bentoml_platform.PROTOCOL, mlflow_platform.PROTOCOL, torchserve_platform.PROTOCOL

ROWS = np.array([[0.1, -2.5, 3.0, 0.0, 1e-9, 7.25, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]])
EP = Endpoint(platform="x", backend="local", base_url="http://127.0.0.1:9", model_name="m")
EP_READY = Endpoint(platform="x", backend="local", base_url="http://127.0.0.1:9", model_name="m",
                    ready_url="http://127.0.0.1:10/models/m")


def test_rows_of_keeps_the_shape_and_values_exactly():
    rows = rows_of(v2.request_body(ROWS, "r1"))
    assert rows.shape == (2, 7) and rows.dtype == np.float64
    assert np.array_equal(rows, ROWS)


@pytest.mark.parametrize("body", [{}, {"inputs": []}, {"inputs": [{"shape": [2], "datatype": "FP64"}]},
                                  {"inputs": [{"shape": [2, 7], "datatype": "BYTES", "data": []}]},
                                  {"inputs": [{"shape": [3, 7], "datatype": "FP64", "data": [1.0] * 14}]},
                                  {"inputs": [{"shape": [1, 2], "datatype": "FP64", "data": [None, None]}]},
                                  {"inputs": [{"shape": [1, 2], "datatype": "FP64", "data": ["x", "y"]}]}])
def test_requests_an_adapter_cannot_express_are_refused_on_the_client_side(body):
    with pytest.raises(AdapterError):
        BENTOML.encode_infer(body)
    with pytest.raises(AdapterError):
        MLFLOW.encode_infer(body)


def test_wrong_width_rows_go_to_the_platform_unchanged():
    """A well-formed tensor of the wrong width is the platform's to reject, not the adapter's."""
    body = v2.request_body(np.zeros((2, 3)))
    assert BENTOML.encode_infer(body) == {"rows": [[0.0] * 3] * 2}
    assert MLFLOW.encode_infer(body) == {"inputs": [[0.0] * 3] * 2}


def test_bentoml_adapter_round_trip():
    a = BENTOML
    body = v2.request_body(ROWS, "req-7")
    sent = json.loads(json.dumps(a.encode_infer(body)))
    assert np.array_equal(np.asarray(sent["rows"]), ROWS)
    answer = a.decode_infer([2, 0], body, "m")
    assert answer["id"] == "req-7" and v2.predictions(answer, "bentoml") == [2, 0]
    assert answer["outputs"][0]["shape"] == [2] and answer["outputs"][0]["datatype"] == "INT64"
    assert a.encode_detected(body) == {"rows": ROWS.tolist(), "request_id": "req-7"}
    assert a.infer_url(EP) == "http://127.0.0.1:9/predict" and a.ready_url(EP) == "http://127.0.0.1:9/readyz"
    assert a.live_url(EP) == "http://127.0.0.1:9/livez" and a.model_infer_url(EP, "other") is None
    assert json.loads(a.request_bytes(body, detected=True)) == {"rows": ROWS.tolist(), "request_id": "req-7"}
    assert a.converts and a.validation == "native"


def test_mlflow_adapter_round_trip():
    a = MLFLOW
    body = v2.request_body(ROWS, "req-8")
    assert a.encode_infer(body) == {"inputs": ROWS.tolist()}
    assert v2.predictions(a.decode_infer({"predictions": [1, 2]}, body, "m"), "mlflow") == [1, 2]
    assert a.encode_detected(body)["params"] == {"output": "predict", "request_id": "req-8"}
    explain = mlflow_platform.PLATFORM.explain
    assert explain.encode(ROWS[:1])["params"] == {"output": "explain"}
    assert explain.decode({"predictions": {"meta": {}}}) == {"meta": {}}
    assert a.infer_url(EP).endswith("/invocations") and a.ready_url(EP).endswith("/ping")
    assert a.model_infer_url(EP, "other") is None and a.converts


def test_undecodable_answers_name_the_platform():
    body = v2.request_body(ROWS)
    with pytest.raises(InvalidPayload, match="MLflow"):
        MLFLOW.decode_infer({"error_code": "BAD_REQUEST"}, body, "m")
    with pytest.raises(InvalidPayload, match="BentoML"):
        BENTOML.decode_infer({"error": "x"}, body, "m")
    with pytest.raises(InvalidPayload):
        v2_response([[1], "a"], "m", None, "somewhere")


def test_v2_platforms_need_no_conversion():
    body = v2.request_body(ROWS, "r")
    for protocol in (V2, TORCHSERVE):
        assert protocol.encode_infer(body) is body and protocol.infer_url(EP) == EP.infer_url
        assert not protocol.converts and json.loads(protocol.request_bytes(body)) == body
    assert TORCHSERVE.where == "user code" and V2.where == "native"
    assert torchserve_platform.PLATFORM.explain.request == "v2"
    # TorchServe has no V2 readiness route: its Endpoint names the management API's model route.
    assert V2.ready_url(EP) == EP.model_ready_url and TORCHSERVE.ready_url(EP_READY) == "http://127.0.0.1:10/models/m"
    assert TORCHSERVE.live_url(EP) == "http://127.0.0.1:9/ping"


def test_every_registered_protocol_round_trips_the_probe_rows():
    """What every probe relies on: encode, then decode the platform's answer back to the same labels and id."""
    from deployers import PLATFORMS

    body = v2.request_body(ROWS, "req-9")
    for name, platform in PLATFORMS.items():
        protocol = platform.protocol
        json.dumps(protocol.encode_infer(body))
        answer = protocol.decode_infer(json.loads(json.dumps(protocol.example_answer([1, 0], body, "m"))), body, "m")
        assert v2.predictions(answer, name) == [1, 0], name


def test_conversion_cost_is_measured_per_request():
    body = v2.request_body(ROWS[:1], "r")
    costs = conversion_cost(BENTOML, body, [2], "m", n=50, warmup=5)
    assert costs.shape == (50,) and (costs > 0).all() and np.median(costs) < 0.01


def test_bentoml_batching_follows_the_settings():
    assert bentoml_platform.batching_config(Batching(enabled=False)) is None
    config = bentoml_platform.batching_config(Batching(enabled=True, max_batch_size=16, max_batch_time_ms=5.0))
    # max_batch_time_ms has no BentoML counterpart; max_latency_ms is BentoML's own rejection deadline.
    assert config == {"max_batch_size": 16, "max_latency_ms": bentoml_platform.MAX_LATENCY_MS}


def test_torchserve_socket_dir_fits_a_unix_socket_path(tmp_path):
    deep = tmp_path.joinpath(*["very-long-directory-name"] * 8)
    sock = torchserve_platform.short_tmp_dir(deep) / ".ts.sock.9000"
    assert len(str(sock)) < 107
    assert torchserve_platform.short_tmp_dir(deep) != torchserve_platform.short_tmp_dir(tmp_path)


def test_mlflow_package_verification_catches_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(RUNTIMES_DIR))
    sys.modules.pop("mlflow_models", None)
    import mlflow_models

    model = tmp_path / "sklearn"
    model.mkdir()
    (model / "model.pkl").write_bytes(b"pickled model")
    (model / "MLmodel").write_text(yaml.safe_dump({"flavors": {}}))
    with pytest.raises(RuntimeError, match="records no file checksums"):
        mlflow_models.verify(model)
    mlflow_models._stamp(model, "a" * 64)
    assert mlflow_models.verify(model)["artifact_sha256"] == "a" * 64
    (model / "model.pkl").write_bytes(b"another model")
    with pytest.raises(RuntimeError, match="model.pkl"):
        mlflow_models.verify(model)


@pytest.mark.parametrize("line, major", [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8),
                                         ('openjdk version "21" 2023-09-19', 21), ("no java here", None)])
def test_java_version_is_read_from_java_version_output(line, major):
    assert torchserve_platform.java_major(line) == major


# --- a user's model: named columns in, typed answers out ---------------------------------------------------
def _columns_body(request_id="req-c"):
    from testbed.tabular import Feature

    features = (Feature.from_json({"name": "income", "kind": "numeric", "dtype": "float64"}),
                Feature.from_json({"name": "age", "kind": "numeric", "dtype": "int64"}),
                Feature.from_json({"name": "region", "kind": "categorical", "dtype": "string",
                                   "categories": ["east", "north"]}))
    rows = np.array([[51000.5, 33.0, 1.0], [48000.0, 61.0, 0.0], [1.5, 20.0, 2.0]])  # code 2: an unseen category
    return v2.request_body(rows, request_id, v2.Wire(v2.COLUMNS, features))


def test_named_columns_reach_bentoml_as_records_and_mlflow_as_a_dataframe_split_with_their_own_types():
    body = _columns_body()
    sent = json.loads(json.dumps(BENTOML.encode_infer(body)))
    assert sent == {"rows": [{"income": 51000.5, "age": 33, "region": "north"},
                             {"income": 48000.0, "age": 61, "region": "east"},
                             {"income": 1.5, "age": 20, "region": "unseen-category-2"}]}
    assert BENTOML.encode_detected(body) == {**sent, "request_id": "req-c"}
    split = json.loads(json.dumps(MLFLOW.encode_infer(body)))["dataframe_split"]
    assert split["columns"] == ["income", "age", "region"]
    assert split["data"][0] == [51000.5, 33, "north"] and isinstance(split["data"][1][1], int)
    detected = MLFLOW.encode_detected(body)
    assert detected["params"] == {"output": "predict", "request_id": "req-c"} and "dataframe_split" in detected


@pytest.mark.parametrize("body", [{"parameters": {"content_type": "pd"}, "inputs": [{"name": "a", "data": [1, 2]},
                                                                                  {"name": "b", "data": [1]}]},
                                  {"parameters": {"content_type": "pd"}, "inputs": [{"name": "a"}]},
                                  {"parameters": {"content_type": "pd"}, "inputs": [{"name": "a", "data": [1]},
                                                                                  {"name": "a", "data": [2]}]}])
def test_malformed_columns_are_refused_on_the_client_side(body):
    for protocol in (BENTOML, MLFLOW):
        with pytest.raises(AdapterError):
            protocol.encode_infer(body)


@pytest.mark.parametrize("answer, datatype, data", [([1, 0, 1], "INT64", [1, 0, 1]),
                                                    ([0.25, 1200.5], "FP64", [0.25, 1200.5]),
                                                    (["yes", "no"], "BYTES", ["yes", "no"]),
                                                    ([True, False], "INT64", [1, 0])])
def test_answers_keep_the_models_type_labels_values_or_strings(answer, datatype, data):
    body = v2.request_body(ROWS, "r")
    for protocol, raw in ((BENTOML, answer), (MLFLOW, {"predictions": answer})):
        out = protocol.decode_infer(raw, body, "m")["outputs"][0]
        assert (out["datatype"], out["data"], out["shape"]) == (datatype, data, [len(data)]), protocol.protocol


def test_an_onnx_models_named_outputs_answer_with_the_first_and_mixed_answers_are_refused():
    body = v2.request_body(ROWS, "r")
    answer = {"predictions": {"label": [1, 0], "probabilities": [[0.2, 0.8], [0.9, 0.1]]}}
    assert v2.predictions(MLFLOW.decode_infer(answer, body, "m"), "mlflow") == [1, 0]
    with pytest.raises(InvalidPayload):
        BENTOML.decode_infer([1, "x", None], body, "m")
