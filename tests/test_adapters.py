"""Protocol adapters and the new platforms' pure helpers (fast tier: no runtime, no venv)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml

from deployers import bentoml as bentoml_platform, mlflow as mlflow_platform, torchserve as torchserve_platform
from testbed import v2
from testbed.adapters import V2, AdapterError, conversion_cost, rows_of, v2_response
from testbed.backends.local.deployment import RUNTIMES_DIR
from testbed.endpoint import Endpoint
from testbed.errors import InvalidPayload
from testbed.settings import Batching

ROWS = np.array([[0.1, -2.5, 3.0, 0.0, 1e-9, 7.25, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]])
EP = Endpoint(platform="x", backend="local", base_url="http://127.0.0.1:9", model_name="m")


def test_rows_of_keeps_the_shape_and_values_exactly():
    rows = rows_of(v2.request_body(ROWS, "r1"))
    assert rows.shape == (2, 7) and rows.dtype == np.float64
    assert np.array_equal(rows, ROWS)


@pytest.mark.parametrize("body", [{}, {"inputs": []}, {"inputs": [{"shape": [2], "datatype": "FP64"}]},
                                  {"inputs": [{"shape": [2, 7], "datatype": "BYTES", "data": []}]},
                                  {"inputs": [{"shape": [3, 7], "datatype": "FP64", "data": [1.0] * 14}]}])
def test_requests_an_adapter_cannot_express_are_refused_on_the_client_side(body):
    with pytest.raises(AdapterError):
        bentoml_platform.ADAPTER.encode_infer(body)
    with pytest.raises(AdapterError):
        mlflow_platform.ADAPTER.encode_infer(body)


def test_wrong_width_rows_go_to_the_platform_unchanged():
    """A well-formed tensor of the wrong width is the platform's to reject, not the adapter's."""
    body = v2.request_body(np.zeros((2, 3)))
    assert bentoml_platform.ADAPTER.encode_infer(body) == {"rows": [[0.0] * 3] * 2}
    assert mlflow_platform.ADAPTER.encode_infer(body) == {"inputs": [[0.0] * 3] * 2}


def test_bentoml_adapter_round_trip():
    a = bentoml_platform.ADAPTER
    body = v2.request_body(ROWS, "req-7")
    sent = json.loads(json.dumps(a.encode_infer(body)))
    assert np.array_equal(np.asarray(sent["rows"]), ROWS)
    answer = a.decode_infer([2, 0], body, "m")
    assert answer["id"] == "req-7" and v2.predictions(answer, "bentoml") == [2, 0]
    assert answer["outputs"][0]["shape"] == [2] and answer["outputs"][0]["datatype"] == "INT64"
    assert a.encode_detected(body) == {"rows": ROWS.tolist(), "request_id": "req-7"}
    assert a.infer_url(EP) == "http://127.0.0.1:9/predict" and a.ready_url(EP) == "http://127.0.0.1:9/readyz"


def test_mlflow_adapter_round_trip():
    a = mlflow_platform.ADAPTER
    body = v2.request_body(ROWS, "req-8")
    assert a.encode_infer(body) == {"inputs": ROWS.tolist()}
    assert v2.predictions(a.decode_infer({"predictions": [1, 2]}, body, "m"), "mlflow") == [1, 2]
    assert a.encode_detected(body)["params"] == {"output": "predict", "request_id": "req-8"}
    assert a.encode_explain(ROWS[:1])["params"] == {"output": "explain"}
    assert a.decode_explain({"predictions": {"meta": {}}}) == {"meta": {}}
    assert a.infer_url(EP).endswith("/invocations") and a.ready_url(EP).endswith("/ping")


def test_undecodable_answers_name_the_platform():
    body = v2.request_body(ROWS)
    with pytest.raises(InvalidPayload, match="MLflow"):
        mlflow_platform.ADAPTER.decode_infer({"error_code": "BAD_REQUEST"}, body, "m")
    with pytest.raises(InvalidPayload, match="BentoML"):
        bentoml_platform.ADAPTER.decode_infer({"error": "x"}, body, "m")
    with pytest.raises(InvalidPayload):
        v2_response([[1], "a"], "m", None, "somewhere")


def test_v2_platforms_need_no_conversion():
    body = v2.request_body(ROWS, "r")
    for adapter in (V2, torchserve_platform.ADAPTER):
        assert adapter.encode_infer(body) is body and adapter.infer_url(EP) == EP.infer_url
    assert torchserve_platform.ADAPTER.where == "user code" and V2.where == "native"
    assert torchserve_platform.ADAPTER.explain_url(EP) == "http://127.0.0.1:9/v2/models/m/explain"


def test_conversion_cost_is_measured_per_request():
    body = v2.request_body(ROWS[:1], "r")
    costs = conversion_cost(bentoml_platform.ADAPTER, body, [2], "m", n=50, warmup=5)
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
