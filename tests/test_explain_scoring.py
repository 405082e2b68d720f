"""Explanation scoring: top-k recall of planted features from attributions (no server)."""

import json

import numpy as np
import pytest

from deployers import PLATFORMS
from probes import explain as e

FEATURES = ["x0", "x1", "x2", "x3", "x4", "x5", "segment"]
PLANTED = ["x0", "x1", "x2"]


def shap_doc(values) -> dict:
    return {"meta": {"name": "KernelShap"}, "data": {"shap_values": values}}


def test_attributions_average_absolute_values_over_classes():
    doc = shap_doc([[[1, -2, 0, 0, 0, 0, 0]], [[-3, 2, 0, 0, 0, 0, 1]]])
    np.testing.assert_allclose(e.attributions(doc, 7), [[2, 2, 0, 0, 0, 0, 0.5]])


def test_attributions_reject_wrong_width_and_missing_values():
    with pytest.raises(ValueError, match="expected"):
        e.attributions(shap_doc([[[1, 2, 3]]]), 7)
    with pytest.raises(ValueError, match="shap_values"):
        e.attributions({"data": {"anchor": ["x0 > 1"]}}, 7)


def test_ranking_and_recall():
    ranked = e.ranking(np.array([0.1, 0.9, 0.5, 0.0, 0.7, 0.0, 0.0]), FEATURES)
    assert ranked[:3] == ["x1", "x4", "x2"]
    assert e.topk_recall(ranked, PLANTED) == pytest.approx(2 / 3)
    assert e.topk_recall(ranked, PLANTED, k=7) == 1.0
    assert e.ranking(np.zeros(7), FEATURES) == FEATURES  # ties keep the model's order
    with pytest.raises(ValueError):
        e.topk_recall(ranked, [])


def test_score_passes_when_planted_features_dominate():
    rng = np.random.default_rng(0)
    rows = np.abs(rng.normal(0, 0.01, size=(10, 7)))
    rows[:, :3] += [0.3, 0.2, 0.05]
    scored = e.score(rows, FEATURES, PLANTED, [0.2, 0.4, 0.3], rows_per_request=5)
    assert scored["verdict"] == "pass"
    assert scored["scores"]["topk_recall"] == 1.0
    assert scored["scores"]["row_topk_recall_min"] == 1.0
    assert scored["scores"]["latency_p50_s"] == pytest.approx(0.3)
    assert scored["scores"]["latency_per_row_ms"] == pytest.approx(60.0)
    assert scored["ranking"][:3] == PLANTED


def test_score_fails_when_a_noise_feature_outranks_a_planted_one():
    rows = np.tile([0.3, 0.2, 0.01, 0.0, 0.05, 0.0, 0.0], (4, 1))  # x4 (noise) above x2
    scored = e.score(rows, FEATURES, PLANTED, [0.1], rows_per_request=4)
    assert scored["verdict"] == "fail"
    assert scored["scores"]["topk_recall"] == pytest.approx(2 / 3)


def test_score_refuses_zero_rows():
    with pytest.raises(ValueError, match="no explained rows"):
        e.score(np.zeros((0, 7)), FEATURES, PLANTED, [], rows_per_request=1)


def test_request_and_response_shapes_per_path():
    rows = np.ones((2, 7))
    assert e.request_body(e.path_of("kserve"), rows) == {"instances": rows.tolist()}
    assert e.request_body(e.path_of("seldon"), rows)["inputs"][0]["shape"] == [2, 7]
    doc = shap_doc([[[0.0] * 7]])
    wrapped = {"outputs": [{"name": "explanation", "datatype": "BYTES", "shape": [1], "data": [json.dumps(doc)]}]}
    assert e.parse_response(e.path_of("seldon"), wrapped) == doc
    assert e.parse_response(e.path_of("rayserve"), doc) == doc
    with pytest.raises(ValueError, match="outputs"):
        e.parse_response(e.path_of("seldon"), {"error": "boom"})


def test_every_platform_path_records_a_mechanism_label():
    from testbed.endpoint import DETECTION_LABELS

    for platform in PLATFORMS:
        path = e.path_of(platform)
        if path is None:  # a platform that serves no explanations
            continue
        assert path.mechanism in DETECTION_LABELS, platform
        assert path.methods_offered, platform


def test_the_reported_prediction_is_rows_by_outputs_for_classifiers_and_regressors():
    """alibi reports a classifier's probabilities as rows x classes and a regressor's values as one flat list; both
    become (rows, outputs), so batches stack row-wise (seen: a regressor's 2 batches of 4 stacked as 2 x 4)."""
    doc = lambda raw: {"data": {"raw": {"raw_prediction": raw}}}  # noqa: E731
    assert e.reported_prediction(doc([[0.2, 0.8], [0.6, 0.4]]), 2).shape == (2, 2)
    batches = [e.reported_prediction(doc([1.0, 2.0, 3.0, 4.0]), 4) for _ in range(2)]
    assert np.vstack(batches).shape == (8, 1)
    assert e.reported_prediction({"data": {}}, 4) is None
    with pytest.raises(ValueError, match="3 predictions for 2 rows"):
        e.reported_prediction(doc([1.0, 2.0, 3.0]), 2)


def test_the_report_reads_the_scores_the_explain_probe_writes():
    """The explainability cell's score keys are ones `score` produces (the cell once asked for a key no probe
    wrote, and showed no latency)."""
    from testbed.report.criteria import CRITERIA

    written = e.score(np.ones((2, 7)), FEATURES, PLANTED, [0.1, 0.2], 5)["scores"]
    (criterion,) = [c for c in CRITERIA if c.key == "explainability"]
    assert {k for k, _ in criterion.scores} <= set(written)
