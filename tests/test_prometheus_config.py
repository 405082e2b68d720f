import pytest
import yaml

from testbed.prometheus import ScrapeTarget, format_table, render_config, scrape_config


def test_one_job_per_target_with_labels_and_path():
    cfg = scrape_config([ScrapeTarget("kserve", "http://127.0.0.1:8085/metrics", (("platform", "kserve"),)),
                         ScrapeTarget("rayserve", "http://127.0.0.1:9100/", ())], interval_s=2)
    assert cfg["global"]["scrape_interval"] == "2000ms"
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["kserve"]["static_configs"] == [{"targets": ["127.0.0.1:8085"], "labels": {"platform": "kserve"}}]
    assert jobs["kserve"]["metrics_path"] == "/metrics"
    assert jobs["rayserve"]["metrics_path"] == "/"


def test_rendered_yaml_round_trips():
    text = render_config([ScrapeTarget("seldon", "http://127.0.0.1:8082/metrics")], 0.5)
    assert yaml.safe_load(text)["scrape_configs"][0]["job_name"] == "seldon"


@pytest.mark.parametrize("url", ["127.0.0.1:8080/metrics", "http://127.0.0.1/metrics", "ftp://h:1/x"])
def test_bad_target_urls_are_rejected_by_name(url):
    with pytest.raises(ValueError, match="kserve"):
        scrape_config([ScrapeTarget("kserve", url)], 1)


def test_duplicate_jobs_are_rejected():
    t = ScrapeTarget("a", "http://127.0.0.1:1/metrics")
    with pytest.raises(ValueError, match="duplicate"):
        scrape_config([t, t], 1)


def test_table_has_a_column_per_label():
    text = format_table([{"metric": {"job": "kserve"}, "value": 1.0}, {"metric": {"job": "seldon", "x": "y"}, "value": 0.5}])
    lines = text.splitlines()
    assert lines[0].split() == ["job", "x", "value"]
    assert lines[2].split() == ["seldon", "y", "0.5"]
    assert format_table([]) == "(no data)"
