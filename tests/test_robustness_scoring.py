"""Robustness cases and scoring (no server)."""

import json

import pytest

from probes import robustness as r


def test_cases_are_malformed_in_the_stated_way():
    cases = {c.name: c for c in r.cases(7, oversized_rows=1000)}
    assert {"wrong_shape", "wrong_dtype", "nan", "empty_body", "oversized", "non_json", "unknown_model"} <= set(cases)
    assert json.loads(cases["wrong_shape"].body)["inputs"][0]["shape"] == [1, 3]
    assert b"NaN" in cases["nan"].body
    assert cases["empty_body"].body == b""
    with pytest.raises(ValueError):
        json.loads(cases["non_json"].body)
    assert cases["unknown_model"].model == "no-such-model"
    big = json.loads(cases["oversized"].body)["inputs"][0]
    assert big["shape"] == [1000, 7] and len(big["data"]) == 7000
    assert not cases["oversized"].client_error


@pytest.mark.parametrize("status,label", [(200, "accepted"), (404, "rejected"), (422, "rejected"),
                                          (500, "server error"), (None, "no answer")])
def test_classify(status, label):
    assert r.classify(status) == label


def outcome(case, status, up=True, client_error=True, next_request=200):
    return {"case": case, "status": status, "stayed_up": up, "client_error": client_error,
            "next_request": next_request}


def test_score_counts_classes_and_passes_when_the_server_stays_up():
    scored = r.score([outcome("a", 400), outcome("b", 500, next_request="ReadError"), outcome("c", 422),
                      outcome("big", 200, client_error=False)])
    assert scored["verdict"] == "pass"
    s = scored["scores"]
    assert (s["rejected_4xx"], s["server_error_5xx"], s["accepted_2xx"]) == (2, 1, 1)
    assert s["client_errors_as_4xx"] == pytest.approx(2 / 3)
    assert s["next_request_failed"] == 1


def test_score_fails_when_the_server_went_down():
    scored = r.score([outcome("a", 400), outcome("oversized", None, up=False, client_error=False)])
    assert scored["verdict"] == "fail"
    assert scored["scores"]["down_after"] == ["oversized"]


def test_score_refuses_no_outcomes():
    with pytest.raises(ValueError):
        r.score([])
