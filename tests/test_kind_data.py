"""The kind backend's data agrees with itself: pins, ports, images, scikit-learn, resource budget."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sklearn
import yaml

from deployers import PLATFORMS, kserve, offered_on, rayserve, seldon
from testbed.backends.kind import budget, detection
from testbed.backends.kind.context import runtime_code_dirname
from testbed.backends.kind.deployment import Target
from testbed.backends.kind.pins import CLUSTER_DIR, pins

REPO = Path(__file__).resolve().parent.parent
PINS = pins()


def rendered_objects(all_variants: bool = True) -> list[dict]:
    """What the kind deployments apply: every option variant, or only what `up` deploys (defaults)."""
    objects = []
    for name in offered_on("kind"):
        cls = PLATFORMS[name].deployments["kind"]
        # As `up` renders them: with the detector service in the namespace (detection on by default).
        target = Target(namespace="testbed", node_port=PINS.node_port(name), model_name="reference-classifier",
                        artifact_subpath="reference-classifier-0123456789ab", code_dir=runtime_code_dirname(),
                        serving=PINS.serving[name], model_sha256="0123456789ab" + "0" * 52, n_features=7,
                        detectors_subpath="reference-classifier-0123456789ab-detectors",
                        detector_service=detection.service_url("testbed"))
        for variant in cls.variants() if all_variants else [{}]:
            objects += cls(**variant).manifests(target)
    return objects + detection.objects("testbed", PINS, code_dir=runtime_code_dirname(),
                                       detectors_subpath="reference-classifier-0123456789ab-detectors",
                                       model_sha256="0123456789ab" + "0" * 52, n_features=7)


def test_versions_are_the_targets_of_issue_3():
    assert re.fullmatch(r"kindest/node:v1\.33\.\d+@sha256:[0-9a-f]{64}", PINS.node_image)
    assert PINS.node_image.startswith(f"kindest/node:{PINS.kubernetes}@")
    versions = {c.release: c.version for c in PINS.charts}
    assert all(re.fullmatch(r"v0\.20\.\d+", versions[r]) for r in ("kserve-crd", "kserve-resources", "kserve-runtime-configs"))
    assert re.fullmatch(r"1\.1[89]\.\d+", versions["seldon-core"])
    assert re.fullmatch(r"1\.7\.\d+", versions["kuberay-operator"])
    assert {"cert-manager", "kube-prometheus-stack"} <= set(versions)
    resources = yaml.safe_load(PINS.chart("kserve-resources").values.read_text())
    assert resources["kserve"]["controller"]["deploymentMode"] == "Standard"


def test_every_chart_is_fully_pinned():
    for chart in PINS.charts:
        assert chart.version and not chart.version.startswith(("^", "~", ">")), chart.release
        assert chart.values.is_file() and isinstance(yaml.safe_load(chart.values.read_text()), dict), chart.values
        assert chart.repo or chart.chart.startswith("oci://"), chart.release
        assert chart.licence, chart.release
    assert PINS.chart("seldon-core").licence.startswith("BSL-1.1")
    # KServe's runtime configs need the controller's webhook: installed after kserve-resources.
    order = [c.release for c in PINS.charts]
    assert order.index("kserve-crd") < order.index("kserve-resources") < order.index("kserve-runtime-configs")
    assert order.index("cert-manager") < order.index("kserve-resources")
    assert order.index("kube-prometheus-stack") == 1  # PodMonitor CRD before any platform


def test_every_port_is_mapped_on_loopback_only():
    config = yaml.safe_load((CLUSTER_DIR / "kind-config.yaml").read_text())
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert {m["listenAddress"] for m in mappings} == {"127.0.0.1"}
    assert all(m["hostPort"] == m["containerPort"] for m in mappings)
    wanted = PINS.host_ports()
    assert PINS.detection_port in wanted and len(set(wanted)) == len(wanted)
    assert sorted(m["containerPort"] for m in mappings) == wanted
    assert all(30000 <= p <= 32767 for p in wanted)  # the NodePort range
    assert set(PINS.ports["platforms"]) == set(offered_on("kind"))  # a node port per platform kind offers
    prometheus = yaml.safe_load(PINS.chart("kube-prometheus-stack").values.read_text())["prometheus"]["service"]
    assert (prometheus["type"], prometheus["nodePort"]) == ("NodePort", PINS.prometheus_port)


def test_serving_images_load_the_artifacts_scikit_learn():
    """The artifact is pickled with the orchestrator's scikit-learn; every serving image must load it."""
    version = sklearn.__version__
    for platform, serving in PINS.serving.items():
        assert str(serving["scikit_learn"]) == version, platform
    assert f"scikit-learn=={version}" in PINS.serving["rayserve"]["pip"]
    for env in (kserve.ENV, seldon.ENV, rayserve.ENV):  # the local backend's runtimes agree too
        assert f"scikit-learn=={version}" in env.requirements


def test_every_image_deployed_is_listed_once_and_pinned():
    images = PINS.images()
    assert len(images) == len(set(images))
    assert all(re.search(r":[\w.-]+$", i) and not i.endswith(":latest") for i in images)
    in_objects = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("image"), str):
                in_objects.add(node["image"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for obj in rendered_objects():
        walk(obj)
    assert in_objects and in_objects <= set(images)
    for platform, serving in PINS.serving.items():
        assert serving["image"] in images, platform
    seldon_tag = PINS.chart("seldon-core").set["predictor_servers.SKLEARN_SERVER.protocols.v2.defaultImageVersion"]
    assert f"seldonio/mlserver:{seldon_tag}" == PINS.serving["seldon"]["image"]
    assert f"kserve/sklearnserver:{PINS.chart('kserve-resources').version}" == PINS.serving["kserve"]["image"]


def test_images_verb_lists_them(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "testbed", "images", "--arch", "amd64"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == PINS.images()
    proc = subprocess.run([sys.executable, "-m", "testbed", "images", "--with-node-image", "--arch", "amd64"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == [PINS.node_image, *PINS.images()]


def injected_items() -> list[budget.Item]:
    """What the operators inject into the pods of what `up` deploys (defaults, detection on)."""
    items = []
    for name in offered_on("kind"):  # a platform without a kind deployment injects nothing there
        platform = PLATFORMS[name]
        target = Target(namespace="testbed", node_port=PINS.node_port(name), model_name="reference-classifier",
                        artifact_subpath="reference-classifier-0123456789ab", code_dir=runtime_code_dirname(),
                        serving=PINS.serving[name], detector_service=detection.service_url("testbed"))
        items += platform.deployments["kind"]().injected_requests(target)
    return items


def test_budget_counts_kserves_agent_sidecar_from_kserves_own_config():
    """The agent KServe injects for the payload logger (detection) requests what inferenceservice-config's
    `agent` entry says (agent_injector.go sizes it from agentConfig); the CR itself does not size it."""
    configmap = yaml.safe_load((CLUSTER_DIR / "upstream" / f"kserve-{PINS.serving['kserve']['version']}" /
                                "kserve-resources.configmap-patch.yaml").read_text())
    agent = json.loads(configmap["data"]["agent"])
    injected = injected_items()
    assert [(i.cpu, i.memory) for i in injected if "agent sidecar" in i.what] == \
        [(budget.cpu(agent["cpuRequest"]), budget.memory(agent["memoryRequest"]))] == [(0.1, 100 * 2**20)]
    # The `logger` entry names the same 100m / 100Mi in v0.20.0, but it is not what sizes the container.
    logger = json.loads(configmap["data"]["logger"])
    assert (logger["cpuRequest"], logger["memoryRequest"]) == (agent["cpuRequest"], agent["memoryRequest"])
    items = budget.cluster_items(PINS, rendered_objects(all_variants=False), injected)
    assert any("agent sidecar" in i.what for i in items)
    # No logger, no batcher: no agent.
    target = Target(namespace="testbed", node_port=PINS.node_port("kserve"), model_name="m", artifact_subpath="a",
                    code_dir="c", serving=PINS.serving["kserve"])
    assert kserve.KServeKind(detection=False).injected_requests(target) == []
    assert len(kserve.KServeKind(batcher={"maxBatchSize": 4, "maxLatency": 5}).injected_requests(target)) == 1


def test_kubelet_monitor_only_if_something_reads_container_metrics():
    """Either the cost criterion reads cAdvisor's container_* on kind, or the kubelet monitor is off."""
    values = yaml.safe_load(PINS.chart("kube-prometheus-stack").values.read_text())
    readers = [p for d in ("probes", "experiments", "testbed", "deployers") for p in (REPO / d).rglob("*.py")
               if re.search(r"\bcontainer_(cpu|memory)_\w+", p.read_text())]
    assert bool(values["kubelet"]["enabled"]) == bool(readers), readers
    assert values["prometheusOperator"]["kubeletService"]["enabled"] == values["kubelet"]["enabled"]


def test_resource_requests_fit_the_cluster():
    """All three platforms plus everything the charts run fit the preflight's minimum, and 8 CPU / 16 GB."""
    items = budget.cluster_items(PINS, rendered_objects(all_variants=False), injected_items())
    cores, gib = budget.total(items)
    assert any(i.what.startswith("RayService") for i in items) and any(i.what.startswith("SeldonDeployment") for i in items)
    assert any(i.what.startswith("Deployment detector-service") for i in items)
    assert cores <= 0.75 * PINS.minimum_cpus and gib <= 0.75 * PINS.minimum_memory_gib, budget.summary(items)
    assert PINS.minimum_cpus <= 8 and PINS.minimum_memory_gib <= 16
    # KServe's 1 CPU / 2 GiB default is overridden, in the chart and on the InferenceService itself.
    chart_default = yaml.safe_load(PINS.chart("kserve-resources").values.read_text())["kserve"]["inferenceservice"]
    assert budget.cpu(chart_default["resources"]["requests"]["cpu"]) < 1
    isvc = next(i for i in items if i.what.startswith("InferenceService"))
    assert isvc.cpu < 1 and isvc.memory < 2 * 2**30


@pytest.mark.parametrize("quantity,cores", [("500m", 0.5), ("2", 2.0), ("0.25", 0.25), (1, 1.0)])
def test_cpu_quantities(quantity, cores):
    assert budget.cpu(quantity) == cores


@pytest.mark.parametrize("quantity,size", [("512Mi", 512 * 2**20), ("2Gi", 2 * 2**30), ("1G", 1e9), ("100", 100)])
def test_memory_quantities(quantity, size):
    assert budget.memory(quantity) == size
