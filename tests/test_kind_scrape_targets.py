"""What Prometheus will scrape on kind: each PodMonitor against the pods the operators generate.

Data only (rendered manifests, KServe's vendored chart data, the pinned operators' behaviour as
written into each deployment's `generated_pods`); the control-plane tests run the same manifests
through the real operators and prometheus-operator.
"""

from __future__ import annotations

import hashlib
import re

import pytest
import yaml

from deployers import PLATFORMS, offered_on, kserve
from deployers.kserve import KServeKind
from deployers.seldon import SeldonKind
from probes import monitoring
from testbed.backends.kind import detection
from testbed.backends.kind.context import runtime_code_dirname
from testbed.backends.kind.deployment import Target
from testbed.backends.kind.pins import CLUSTER_DIR, pins

PINS = pins()


def _model():
    """The scrape-target model (imported per test, so the data tests above it also run on code without it)."""
    from testbed.backends.kind import scrape_targets

    return scrape_targets


def target_for(platform: str, namespace: str = "testbed") -> Target:
    return Target(namespace=namespace, node_port=PINS.node_port(platform), model_name="reference-classifier",
                  artifact_subpath="reference-classifier-0123456789ab", code_dir=runtime_code_dirname(),
                  serving=PINS.serving[platform], model_sha256="0123456789ab" + "0" * 52, n_features=7,
                  detectors_subpath="reference-classifier-0123456789ab-detectors",
                  detector_service=detection.service_url(namespace))


def scraped(deployment, target: Target) -> list[list[tuple]]:
    """Per PodMonitor endpoint: (container, port, path, job, endpoint label) of each target."""
    monitor = deployment.render_podmonitor(target)
    pods = deployment.generated_pods(target)
    return [[(t.container, t.port, t.path, t.labels.get("job"), t.labels.get("endpoint"))
             for t in _model().endpoint_targets(monitor, i, pods)]
            for i in range(len(monitor["spec"]["podMetricsEndpoints"]))]


# --- 1. KServe -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", KServeKind.variants(), ids=str)
def test_kserve_predictor_declares_the_model_servers_port(variant):
    """The sklearnserver runtime declares no port: without one on the predictor the pod declares none."""
    model = KServeKind(**variant).render_resource(target_for("kserve"))["spec"]["predictor"]["model"]
    assert [(p["name"], p["containerPort"]) for p in model.get("ports") or []] == [("http1", 8080)]


@pytest.mark.parametrize("variant", KServeKind.variants(), ids=str)
def test_kserve_podmonitor_scrapes_the_model_server_not_the_agent(variant):
    dep = KServeKind(**variant)
    t = target_for("kserve")
    Port = _model().Port
    assert scraped(dep, t) == [[("kserve-container", 8080, "/metrics", "kserve", "http1")]]
    containers = dep.generated_pods(t)[0].containers
    assert containers["kserve-container"] == (Port("http1", 8080),)
    assert ("agent" in containers) == (dep.service_port(t) == KServeKind.AGENT_PORT)
    if "agent" in containers:
        assert containers["agent"] == (Port("agent-port", 9081),)


def test_upstream_sklearnserver_runtime_declares_no_port():
    """What generated_pods relies on, read from KServe's own chart data (cluster/upstream/kserve-<version>)."""
    version = PINS.serving["kserve"]["version"]
    assert {c.version for c in PINS.charts if c.release.startswith("kserve")} == {version}
    assert kserve.runtime_ports(version, "kserve-sklearnserver") == ()
    # The chart deep-merges its patch onto the base: the runtime's patch block adds no ports either.
    patch = kserve.upstream_file(version, "kserve-runtime-configs.clusterservingruntimes-patch.yaml").read_text()
    block = next(doc for doc in patch.split("\n---") if re.search(r"^\s*name: kserve-sklearnserver\s*$", doc, re.M))
    assert "--http_port=8080" in block and not re.search(r"^\s*(ports|containerPort):", block, re.M)


def test_vendored_chart_files_match_sources():
    upstream = CLUSTER_DIR / "upstream"
    listed = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", (upstream / "SOURCES.md").read_text(), re.M))
    present = {str(p.relative_to(upstream)) for p in upstream.rglob("*") if p.is_file() and p.name != "SOURCES.md"}
    assert set(listed) == present
    for name, sha in listed.items():
        assert hashlib.sha256((upstream / name).read_bytes()).hexdigest() == sha, name


def test_a_port_number_rule_drops_a_container_that_declares_no_port():
    """The defect of 84c4db3, in the model's terms: KServe's old PodMonitor on the pod KServe generated."""
    from testbed.errors import NoScrapeTarget

    m = _model()
    GeneratedPod, Port, endpoint_targets = m.GeneratedPod, m.Port, m.endpoint_targets
    pod = GeneratedPod("predictor", "testbed", {"app": "isvc.m-predictor"},
                       {"kserve-container": (), "agent": (Port("agent-port", 9081),)})
    old = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
           "metadata": {"name": "testbed-kserve", "namespace": "testbed"},
           "spec": {"selector": {"matchLabels": {"app": "isvc.m-predictor"}},
                    "podMetricsEndpoints": [{"portNumber": 8080, "path": "/metrics"}]}}
    assert endpoint_targets(old, 0, [pod]) == []
    with pytest.raises(NoScrapeTarget, match=r"kserve-container \[no ports\], agent \[agent-port:9081\]"):
        m.check(old, [pod])
    # Without any port rule the port-less container is still no target (Prometheus would scrape port 80).
    old["spec"]["podMetricsEndpoints"][0].pop("portNumber")
    assert [t.container for t in endpoint_targets(old, 0, [pod])] == ["agent"]


# --- 2. Seldon -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", SeldonKind.variants(), ids=str)
def test_seldon_podmonitor_points_an_endpoint_at_mlservers_metrics_port(variant):
    """MLServer serves on MLSERVER_METRICS_PORT=6000 / MLSERVER_METRICS_ENDPOINT=/prometheus, which the operator
    sets on the model container but never declares: an endpoint must keep that container and rewrite the address."""
    t = target_for("seldon")
    endpoints = SeldonKind(**variant).render_podmonitor(t)["spec"]["podMetricsEndpoints"]
    assert [(e.get("port"), e["path"]) for e in endpoints] == [("metrics", "/prometheus"), ("http", "/prometheus")]
    rules = endpoints[1]["relabelings"]
    assert {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_container_name"],
            "regex": t.model_name} in rules
    address = [r for r in rules if r.get("targetLabel") == "__address__"]
    assert address == [{"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)",
                        "targetLabel": "__address__", "replacement": "${1}:6000"}]
    for endpoint in endpoints:
        assert {"action": "replace", "targetLabel": "job", "replacement": "seldon"} in endpoint["relabelings"]


@pytest.mark.parametrize("variant", SeldonKind.variants(), ids=str)
def test_seldon_podmonitor_scrapes_the_executor_and_mlserver(variant):
    dep = SeldonKind(**variant)
    t = target_for("seldon")
    assert scraped(dep, t) == [
        [("seldon-container-engine", 8000, "/prometheus", "seldon", "metrics")],
        [("reference-classifier", 6000, "/prometheus", "seldon", SeldonKind.MLSERVER_ENDPOINT)],
    ]
    # 6000 is scraped although no container declares it: MLServer's port is set by env, not declared.
    declared = {p.number for ports in dep.generated_pods(t)[0].containers.values() for p in ports}
    assert SeldonKind.MLSERVER_METRICS_PORT not in declared and {8000, 9000} <= declared


def test_monitoring_catalogue_says_which_seldon_series_come_from_which_container():
    cat = monitoring.catalogue_of("seldon")
    on_kind = monitoring.series_sources(cat, "kind")
    assert set(on_kind) == {n for n, s in cat.signals.items() if s.query is not None}
    monitor = SeldonKind().render_podmonitor(target_for("seldon"))
    endpoint_labels = [next(r["replacement"] for r in ep["relabelings"] if r.get("targetLabel") == "endpoint")
                       if any(r.get("targetLabel") == "endpoint" for r in ep["relabelings"]) else ep["port"]
                       for ep in monitor["spec"]["podMetricsEndpoints"]]
    assert endpoint_labels == ["metrics", SeldonKind.MLSERVER_ENDPOINT]
    for signal, sources in on_kind.items():
        assert len(sources) == 1, signal  # every signal reads one source: MLServer's
        assert f'endpoint="{SeldonKind.MLSERVER_ENDPOINT}"' in sources[0] and ":6000/prometheus" in sources[0]
    executor = cat.sources["kind"]["seldon_api_executor_"]
    assert 'endpoint="metrics"' in executor and SeldonKind.EXECUTOR_CONTAINER in executor
    assert all(len(v) == 1 and "MLServer" in v[0] for v in monitoring.series_sources(cat, "local").values())


# --- every platform ------------------------------------------------------------------------------
def test_every_podmonitor_endpoint_of_every_variant_scrapes_something():
    scrape_targets = _model()
    for name in offered_on("kind"):
        cls = PLATFORMS[name].deployments["kind"]
        for variant in cls.variants():
            dep, t = cls(**variant), target_for(name)
            lines = dep.scrape_plan(t)  # raises NoScrapeTarget otherwise
            assert all(endpoints for endpoints in scraped(dep, t)), (name, variant)
            assert lines[-1].startswith("  the pods it selects will declare: ")
    objs = detection.objects("testbed", PINS, code_dir="runtimes-x", detectors_subpath="d", model_sha256="0" * 64,
                             n_features=7)
    pods = scrape_targets.deployment_pods(objs[0])
    assert [str(t) for t in scrape_targets.endpoint_targets(objs[2], 0, pods)] == \
        [f"detector-service <pod IP>:{detection.PORT}/metrics"]


def test_ray_workers_are_scraped_on_the_metrics_port_kuberay_adds():
    dep = PLATFORMS["rayserve"].deployments["kind"](workers=2)
    t = target_for("rayserve")
    assert sorted(c for c, *_ in scraped(dep, t)[0]) == ["ray-head", "ray-worker", "ray-worker"]
    assert dep.expected_targets(t) == 3


def test_relabel_rules_follow_prometheus():
    scrape_targets = _model()
    labels = {"__meta_kubernetes_pod_ip": "10.244.0.7", "__address__": "10.244.0.7:9000", "a": "x"}
    assert scrape_targets._relabel(labels, {"sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)",
                                            "targetLabel": "__address__", "replacement": "${1}:6000"}
                                   )["__address__"] == "10.244.0.7:6000"
    assert scrape_targets._relabel(labels, {"action": "keep", "sourceLabels": ["a"], "regex": "x"}) == labels
    assert scrape_targets._relabel(labels, {"action": "keep", "sourceLabels": ["a"], "regex": "x.+"}) is None
    assert scrape_targets._relabel(labels, {"action": "drop", "sourceLabels": ["a"], "regex": "x"}) is None
    # A replace whose regex does not match leaves the target unchanged; an empty result deletes the label.
    assert scrape_targets._relabel(labels, {"sourceLabels": ["a"], "regex": "y", "targetLabel": "a",
                                            "replacement": "z"}) == labels
    assert "a" not in scrape_targets._relabel(labels, {"sourceLabels": ["missing"], "targetLabel": "a"})
    with pytest.raises(ValueError, match="hashmod"):
        scrape_targets._relabel(labels, {"action": "hashmod", "sourceLabels": ["a"], "targetLabel": "b"})


def test_unmodelled_podmonitor_fields_are_refused_not_ignored():
    endpoint_targets = _model().endpoint_targets
    monitor = KServeKind().render_podmonitor(target_for("kserve"))
    monitor["spec"]["podMetricsEndpoints"][0]["metricRelabelings"] = []
    with pytest.raises(ValueError, match="metricRelabelings"):
        endpoint_targets(monitor, 0, KServeKind().generated_pods(target_for("kserve")))
    monitor = KServeKind().render_podmonitor(target_for("kserve"))
    monitor["spec"]["selector"] = {"matchExpressions": []}
    with pytest.raises(ValueError, match="matchExpressions"):
        endpoint_targets(monitor, 0, KServeKind().generated_pods(target_for("kserve")))


def test_rendered_podmonitors_parse_as_yaml_round_trip():
    for name in offered_on("kind"):
        monitor = PLATFORMS[name].deployments["kind"]().render_podmonitor(target_for(name))
        assert yaml.safe_load(yaml.safe_dump(monitor)) == monitor
