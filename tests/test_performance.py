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
