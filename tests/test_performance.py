"""Performance scoring on known data, the batching setting's path to the runtimes, and one short
measurement against the shared local testbed (integration)."""

import os
from pathlib import Path

import numpy as np
import pytest

from deployers import get_platform
from deployers.rayserve import ray_batching_args
from deployers.seldon import model_settings
from probes import performance as perf
from testbed.procstats import Prices, SessionMeter, Usage, cost_per_1000
from testbed.settings import Batching


def test_overhead_scores_on_known_data():
    rng = np.random.default_rng(0)
    inproc = rng.normal(0.0003, 0.00001, 2000)
    served = inproc * 10 + 0.001
    sc = perf.overhead_scores(served, inproc)
    assert sc["ratio_p50_ci"][0] <= sc["ratio_p50"] <= sc["ratio_p50_ci"][1]
    assert sc["ratio_p50"] == pytest.approx((10 * 0.0003 + 0.001) / 0.0003, rel=0.02)
    assert sc["diff_p50_ms"] == pytest.approx(9 * 0.3 + 1.0, rel=0.02)


def test_batching_gain_from_curves():
    def curve(rates):
        return [{"concurrency": c, "throughput_rps": r, "_groups": [np.full(20, float(r)) + np.arange(20) % 3]}
                for c, r in rates.items()]

    g = perf.batching_gain(curve({1: 100, 8: 200}), curve({1: 90, 8: 400}))
    assert g["peak_off_concurrency"] == 8 and g["peak_on_concurrency"] == 8
    assert g["peak_gain"] == pytest.approx(401 / 201, rel=0.01)
    assert g["peak_gain_ci"][0] <= g["peak_gain"] <= g["peak_gain_ci"][1]
    assert [p["concurrency"] for p in g["per_concurrency"]] == [1, 8]


def _experiment():
    import importlib.util

    spec = importlib.util.spec_from_file_location("performance_experiment",
                                                  Path(__file__).parent.parent / "experiments" / "performance.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_overhead_result_carries_a_client_side_adapters_cost_and_says_what_the_latency_holds():
    """BentoML and MLflow are reached through a client-side adapter whose conversion is not in the served latency:
    the overhead Result adds it (measured apart) and says so; TorchServe's V2 decoding is our handler's, inside the
    served latency; KServe's is its own."""
    exp = _experiment()
    rng = np.random.default_rng(1)
    inproc = rng.normal(30e-6, 1e-6, 400)
    served = np.concatenate([np.full(200, 2e-3), np.full(200, 1e-3)])  # slower first half: warming up
    conv = {"protocol": "bentoml-json", "n": 10, "adapter_median_us": 40.0, "v2_json_median_us": 25.0}
    summary = {"errors": 0}
    opts = type("O", (), {"seed": 3, "repeats": 1, "levels": [1], "duration": 1.0, "backend": "local",
                          "open_loop_fraction": 0.0})()
    art = type("A", (), {"sha256": "b" * 64})()
    store = {name: {"overhead": [{"repeat": 0, "served_s": served, "inprocess_s": inproc, "summary": summary,
                                  "scores": {"ratio_p50": 1.0}, "halves_p50_ms": exp.halves_p50_ms(served),
                                  "client_side_conversion": conv if name == "bentoml" else {}}],
                    "curve": {"off": [], "on": []}, "offline": [], "versions": {}}
             for name in ("bentoml", "torchserve", "kserve")}
    rs = {r.platform: r for r in exp.build_results(store, [], opts, "perf-test", art, Prices(), Batching(), {})
          if r.probe == "overhead"}
    b = rs["bentoml"].scores
    assert b["client_adapter_p50_ms"] == pytest.approx(0.040)
    assert b["served_plus_adapter_p50_ms"] == pytest.approx(b["served_p50_ms"] + 0.040)
    assert b["ratio_p50_with_adapter"] > b["ratio_p50"]
    assert b["per_repeat_halves_p50_ms"] == [[pytest.approx(2.0), pytest.approx(1.0)]]
    assert "client-side adapter" in rs["bentoml"].evidence["adapter"]
    assert "bentoml-json" in rs["bentoml"].evidence["load"]
    assert "client_adapter_p50_ms" not in rs["torchserve"].scores
    assert "in the served latency" in rs["torchserve"].evidence["adapter"]
    assert "serves V2 itself" in rs["kserve"].evidence["adapter"]


def test_cost_per_1000_predictions():
    usage = Usage(cpu_s=2.0, wall_s=10.0, peak_rss_bytes=2**30, mean_rss_bytes=2**30, samples=50)
    c = cost_per_1000(usage, 2000, Prices(vcpu_hour=3.6, gb_hour=0.36))
    assert c["cpu_s_per_1000"] == pytest.approx(1.0)
    assert c["gb_s_per_1000"] == pytest.approx(5.0)
    assert c["cost_per_1000"] == pytest.approx(1.0 / 3600 * 3.6 + 5.0 / 3600 * 0.36)
    assert cost_per_1000(usage, 0, Prices())["cost_per_1000"] is None


def test_batching_setting_reaches_the_runtimes():
    off, on = Batching(), Batching(enabled=True, max_batch_size=16, max_batch_time_ms=4.0)
    assert "max_batch_size" not in model_settings(Path("/a"), "m", "v", off)
    ms = model_settings(Path("/a"), "m", "v", on)
    assert ms["max_batch_size"] == 16 and ms["max_batch_time"] == pytest.approx(0.004)
    assert ray_batching_args(off) == []
    assert ray_batching_args(on) == ["--max-batch-size", "16", "--batch-wait-ms", "4.0"]


def test_session_meter_counts_this_process_session():
    with SessionMeter(os.getsid(0), interval_s=0.05) as m:
        sum(i * i for i in range(2_000_000))
    assert m.usage.cpu_s > 0 and m.usage.peak_rss_bytes > 0


@pytest.mark.integration
def test_short_measurement_on_every_platform(testbed_up):
    from testbed import artifact
    from testbed.endpoint import Endpoint

    art = artifact.load(Path(testbed_up["model"]["path"]))
    for name, p in testbed_up["platforms"].items():
        ep = Endpoint.from_json(p["endpoint"])
        body = perf.one_row_body(art.probe_rows()[0], ep)  # as the platform takes it (its protocol)
        served = perf.served_latencies(ep, body, n=30, warmup=5)
        assert served["summary"]["requests"] == 30 and served["summary"]["errors"] == 0, name
        # The runtime's CPU and memory over every process it runs (BentoML's workers are outside its session),
        # as experiments/performance.py accounts them.
        deployment = get_platform(name).deployments["local"]
        point = perf.throughput_point(ep, body, 4, 1.0, p["pid"], Prices(),
                                      members=lambda d=deployment, i=p: d.members(i))
        assert point["ok"] + point["errors"] == point["requests"] and point["ok"] > 0, name
        assert point["usage"]["cpu_s"] > 0 and point["cost"]["cost_per_1000"] > 0, name
