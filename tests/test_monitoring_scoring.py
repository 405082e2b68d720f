"""Monitoring scoring on recorded query values: known inputs -> known scores (no server)."""

import pytest

from deployers import PLATFORMS
from probes import monitoring as m
from testbed import errors
from testbed.population import Population

EXPECTED = m.expected_counts(answered_ok=20, answered_failed=5)


def test_expected_counts_follow_answers():
    assert EXPECTED == {m.ALL: 25, m.OK: 20, m.FAILED: 5}


def test_exact_counts_pass_and_absent_signals_are_not_exposed():
    before = {"requests_total": 9.0, "requests_ok": 6.0, "requests_failed": 3.0, "latency_histogram": 9.0}
    after = {"requests_total": 34.0, "requests_ok": 26.0, "requests_failed": 8.0, "latency_histogram": 34.0,
             "model_label": 1.0}
    scored = m.score(m.catalogue_of("kserve"), before, after, EXPECTED)
    assert scored["verdict"] == "pass"
    assert scored["scores"]["count_accuracy"] == 1.0
    assert scored["scores"]["count_signals"] == 4
    # model_label: the catalogue's series exists, but nothing showed it moving: not counted on its word.
    assert scored["scores"]["signals_exposed"] == 4 and scored["scores"]["signals_found"] == 5
    assert scored["signals"]["model_label"]["found"] and not scored["signals"]["model_label"]["exposed"]
    assert "did not move" in scored["signals"]["model_label"]["note"]
    assert scored["scores"]["coverage"] == pytest.approx(4 / 7)
    assert not scored["signals"]["status_codes"]["exposed"] and not scored["signals"]["status_codes"]["found"]


def _snap(**series):
    return {k: ({"__name__": k.split("{")[0], **labels}, v) for k, (labels, v) in series.items()}


def test_discovery_finds_what_the_catalogue_left_out_and_requires_movement():
    before = _snap(**{'http_requests_total{code="500"}': ({"code": "500"}, 1.0),
                      'http_requests_total{code="200"}': ({"code": "200"}, 10.0),
                      'work_queue_depth{}': ({}, 0.0),
                      'req_seconds_bucket{model="m"}': ({"model": "m", "le": "+Inf"}, 10.0)})
    after = _snap(**{'http_requests_total{code="500"}': ({"code": "500"}, 6.0),
                     'http_requests_total{code="200"}': ({"code": "200"}, 30.0),
                     'work_queue_depth{}': ({}, 0.0),
                     'req_seconds_bucket{model="m"}': ({"model": "m", "le": "+Inf"}, 35.0)})
    found = m.discover(before, after, model="m", bad_sent=5)
    assert found["status_codes"]["moved"] == ['http_requests_total{code="500"}']
    assert found["queue_or_batch"]["found"] == ["work_queue_depth{}"] and not found["queue_or_batch"]["moved"]
    assert found["model_label"]["moved"] and found["latency_histogram"]["moved"]
    assert sorted(found["requests_total"]["moved"]) == ['http_requests_total{code="200"}', 'http_requests_total{code="500"}']
    # KServe's catalogue has no status-code query: discovery alone makes it exposed; the queue stays unexposed.
    scored = m.score(m.catalogue_of("kserve"), {}, {"model_label": 1.0}, EXPECTED, found)
    assert scored["signals"]["status_codes"]["exposed"] and scored["signals"]["model_label"]["exposed"]
    assert scored["signals"]["queue_or_batch"]["found"] and not scored["signals"]["queue_or_batch"]["exposed"]


def test_a_miscount_fails_and_reports_the_error():
    before = {"requests_total": 0.0, "requests_ok": 0.0, "requests_failed": 0.0, "latency_histogram": 0.0,
              "status_codes": 0.0}
    after = {"requests_total": 24.0, "requests_ok": 20.0, "requests_failed": 5.0, "latency_histogram": 25.0,
             "status_codes": 5.0}
    scored = m.score(m.catalogue_of("seldon"), before, after, EXPECTED)
    assert scored["verdict"] == "fail"
    assert scored["signals"]["requests_total"]["exact"] is False
    assert scored["scores"]["count_accuracy"] == pytest.approx(4 / 5)
    assert scored["scores"]["max_count_error"] == 1.0


def test_a_counter_born_during_the_traffic_counts_from_zero():
    # MLServer creates its failure series on the first failure: absent before, 5 after.
    before = {"requests_total": 10.0, "requests_ok": 10.0, "requests_failed": None, "latency_histogram": 10.0,
              "status_codes": None}
    after = {"requests_total": 35.0, "requests_ok": 30.0, "requests_failed": 5.0, "latency_histogram": 35.0,
             "status_codes": 5.0}
    assert m.score(m.catalogue_of("seldon"), before, after, EXPECTED)["verdict"] == "pass"


def test_nothing_counted_is_a_fail_not_a_vacuous_pass():
    scored = m.score(m.catalogue_of("rayserve"), {}, {}, EXPECTED)
    assert scored["verdict"] == "fail"
    assert scored["scores"]["count_accuracy"] is None
    assert scored["scores"]["coverage"] == 0.0


def test_counts_reached_waits_for_every_count_signal():
    cat = m.catalogue_of("rayserve")
    before = {n: 0.0 for n in cat.signals}
    partial = {"requests_total": 25.0, "requests_ok": 20.0, "requests_failed": 5.0, "latency_histogram": 25.0,
               "status_codes": None}
    assert not m.counts_reached(cat, before, partial, EXPECTED)
    assert m.counts_reached(cat, before, {**partial, "status_codes": 5.0}, EXPECTED)


def test_catalogue_covers_every_signal_and_renders_plain_promql():
    for platform in PLATFORMS:
        cat = m.catalogue_of(platform)
        assert set(cat.signals) == set(m.SIGNALS), platform
        for name, signal in cat.signals.items():
            q = m.render(signal, platform, "reference-classifier")
            if q is not None:
                assert "$" not in q and f'platform="{platform}"' in q, (platform, name, q)
                assert q.count("{") == q.count("}")


def test_traffic_plan_is_seeded_and_rejects_zero_requests():
    pop = Population(1)
    a = m.TrafficPlan(good=4, bad=2, seed=3).requests(pop, 7)
    b = m.TrafficPlan(good=4, bad=2, seed=3).requests(pop, 7)
    assert a == b
    assert [k for k, _ in a].count("bad") == 2
    assert all(body["inputs"][0]["shape"] == [1, 3] for k, body in a if k == "bad")
    assert all(body["inputs"][0]["shape"] == [1, 7] for k, body in a if k == "good")
    with pytest.raises(errors.TestbedError, match="at least one good and one bad"):
        m.TrafficPlan(good=0, bad=5).validate()


def test_a_series_that_moves_while_idle_is_no_evidence():
    quiet = _snap(**{'ray_operation_queue_time_ms_bucket{}': ({"le": "+Inf"}, 100.0)})
    before = _snap(**{'ray_operation_queue_time_ms_bucket{}': ({"le": "+Inf"}, 140.0)})
    after = _snap(**{'ray_operation_queue_time_ms_bucket{}': ({"le": "+Inf"}, 190.0)})
    found = m.discover(before, after, model="m", bad_sent=5, quiet=quiet)
    assert found["queue_or_batch"]["found"] and not found["queue_or_batch"]["moved"]
    assert not m.discover(before, after, "m", 5)["queue_or_batch"]["moved"] == []  # without the idle snapshot it would count
