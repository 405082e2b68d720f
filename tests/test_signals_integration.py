"""Monitoring, explanation and robustness probes against the real local testbed (all platforms)."""

import json
import os

import pytest

from deployers import protocol_of
from probes import explain, monitoring, registry, robustness
from testbed_cli import run_testbed as run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ctx(testbed_up):
    return registry.context_from_status(testbed_up, None, seed=7, run_id="pytest-signals",
                                        options={"scrape_interval_s": 2.0})


def by_platform(results):
    return {r.platform: r for r in results}


# Count signals each platform's own metrics answer (read off their /metrics pages; docs/new-platforms.md):
# TorchServe counts every request per model, and failures only host-wide; MLflow's scoring server has no metrics.
COUNT_SIGNALS = {"kserve": 4, "seldon": 4, "rayserve": 4, "bentoml": 4, "torchserve": 3, "mlflow": 0}


def test_prometheus_counts_match_the_traffic_sent(ctx):
    results = by_platform(monitoring.run(ctx))
    assert set(results) == set(ctx.endpoints)
    for platform, r in results.items():
        signals = r.measurements["signals"]
        counted = {n: (s["expected"], s["observed"]) for n, s in signals.items() if "exact" in s}
        # Every request got an answer or is accounted for; the traffic was the plan's.
        traffic = r.measurements["traffic"]
        assert traffic["good_sent"] == 20 and traffic["bad_sent"] == 5
        assert traffic["answered_ok"] + traffic["answered_failed"] + traffic["no_answer"] == 25
        if not COUNT_SIGNALS[platform]:  # a measured finding: nothing to scrape, every signal absent
            assert ctx.endpoints[platform].metrics_url is None and r.mechanism == "none"
            assert r.scores["signals_found"] == 0 and r.verdict == "fail", (platform, signals)
            continue
        assert r.scores["count_signals"] >= COUNT_SIGNALS[platform], (platform, signals)
        assert r.verdict == "pass" and r.scores["count_accuracy"] == 1.0, (platform, counted)
        assert signals["requests_failed"]["observed"] == traffic["answered_failed"]


def test_explanations_recover_the_planted_features(ctx):
    results = by_platform(explain.run(ctx))
    for platform, r in results.items():
        assert r.verdict == "pass", (platform, r.evidence.get("error"), r.measurements.get("ranking"))
        assert r.scores["topk_recall"] >= explain.MIN_TOPK_RECALL
        assert r.measurements["ranking"][:3] == sorted(r.measurements["ranking"][:3], key=["x0", "x1", "x2"].index)
        assert r.scores["rows_explained"] == 20 and r.scores["latency_p50_s"] > 0
        assert r.evidence["method"] == "KernelShap"


def test_every_platform_stays_up_after_malformed_payloads(ctx):
    results = by_platform(robustness.run(ctx))
    for platform, r in results.items():
        cases = {c["case"]: c for c in r.measurements["cases"]}
        assert r.verdict == "pass", (platform, r.scores["down_after"])
        assert all(c["stayed_up"] for c in cases.values())
        # A protocol whose routes name no model (BentoML's API methods, MLflow's one /invocations) has no such case.
        assert cases["unknown_model"]["status"] == 404 or (
            cases["unknown_model"]["class"] == robustness.NOT_APPLICABLE
            and protocol_of(ctx.endpoints[platform]).model_infer_url(ctx.endpoints[platform], "x") is None), \
            (platform, cases["unknown_model"])
        assert 400 <= cases["wrong_shape"]["status"] < 600


def test_probe_cli_writes_results(testbed_up, tmp_path):
    env_before = os.environ.get("TESTBED_RESULTS_DIR")
    os.environ["TESTBED_RESULTS_DIR"] = str(tmp_path)
    try:
        proc = run_cli("probe", "robustness", "--platforms", "kserve", "--json")
    finally:
        if env_before is None:
            os.environ.pop("TESTBED_RESULTS_DIR")
        else:
            os.environ["TESTBED_RESULTS_DIR"] = env_before
    printed = json.loads(proc.stdout)
    assert [r["platform"] for r in printed] == ["kserve"]
    files = list(tmp_path.glob("probe-*/robustness/robustness-kserve-r0.json"))  # the experiments' layout
    assert len(files) == 1 and json.loads(files[0].read_text())["verdict"] == printed[0]["verdict"]
    meta = json.loads(next(tmp_path.glob("probe-*/run.json")).read_text())
    assert meta["kind"] == "probe" and meta["repeats"] == 1 and meta["state"] == "complete"
    assert meta["experiments"]["robustness"]["completed_units"] == ["r0/kserve"]
