"""The cluster's resource budget: what everything the testbed installs requests, summed.

Counted: the long-running containers the Helm values size (paths below), the platforms' custom
resources (every `resources.requests` in them), the containers an operator injects beside what the
resource sizes (each kind deployment's `injected_requests`: KServe's agent sidecar), and the kind
node's own control plane. This is what the scheduler must fit; the preflight's minimum and the
README's 8 CPU / 16 GB come from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from testbed.backends.kind.pins import Pins

# kind v1.33 node: kube-apiserver 250m, controller-manager 200m, scheduler 100m, etcd 100m/100Mi,
# 2 x coredns 100m/70Mi, kindnet 100m/50Mi (their manifests' requests), rounded up.
CONTROL_PLANE_CPU, CONTROL_PLANE_MEMORY = 0.95, 1.0 * 2**30

# Per release: dotted paths in its values file that size long-running containers. Either a
# `resources` block (requests.cpu / requests.memory) or a (cpu, memory) pair of request fields.
VALUE_PATHS = {
    "cert-manager": ["resources", "webhook.resources", "cainjector.resources"],
    "kube-prometheus-stack": ["prometheusOperator.resources", "prometheusOperator.prometheusConfigReloader.resources",
                              "prometheus.prometheusSpec.resources"],
    "kserve-resources": ["kserve.controller.resources", "kserve.controller.rbacProxy.resources"],
    "seldon-core": [("manager.cpuRequest", "manager.memoryRequest")],
    "kuberay-operator": ["resources"],
}

_MEMORY = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


@dataclass(frozen=True)
class Item:
    what: str
    cpu: float
    """Cores."""

    memory: float
    """Bytes."""


def cpu(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(quantity) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity))
    if not match or match.group(2) not in _MEMORY:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return float(match.group(1)) * _MEMORY[match.group(2)]


def _get(data: dict, dotted: str):
    for part in dotted.split("."):
        data = (data or {}).get(part)
    return data


def chart_items(pins: Pins, releases: list[str] | None = None) -> list[Item]:
    """What the charts' long-running containers request; `releases`: only these (default: every chart)."""
    items = []
    for release, paths in VALUE_PATHS.items():
        if releases is not None and release not in releases:
            continue
        values = yaml.safe_load(pins.chart(release).values.read_text()) or {}
        for path in paths:
            if isinstance(path, tuple):
                c, m = _get(values, path[0]), _get(values, path[1])
                label = path[0].rsplit(".", 1)[0]
            else:
                requests = (_get(values, path) or {}).get("requests") or {}
                c, m, label = requests.get("cpu"), requests.get("memory"), path
            if c is None or m is None:
                raise ValueError(f"{pins.chart(release).values}: {path} sets no cpu/memory request")
            items.append(Item(f"{release}: {label}", cpu(c), memory(m)))
    return items


def manifest_items(obj: dict) -> list[Item]:
    """Every resources.requests in a rendered object (containers, sidecars, worker groups x replicas)."""
    found = []

    def walk(node, path, factor):
        if isinstance(node, dict):
            if "replicas" in node and "template" in node:  # a Ray worker group: its template runs `replicas` times
                factor = factor * int(node.get("replicas") or 0)
            requests = (node.get("resources") or {}).get("requests") if isinstance(node.get("resources"), dict) else None
            if requests and ("cpu" in requests or "memory" in requests):
                found.append(Item(f"{obj['kind']} {obj['metadata']['name']}: {path or '(root)'}",
                                  factor * cpu(requests.get("cpu", 0)), factor * memory(requests.get("memory", 0))))
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key, factor)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]", factor)

    walk(obj.get("spec"), "spec", 1)
    return found


def cluster_items(pins: Pins, platform_objects: list[dict], injected: list[Item] = (),
                  releases: list[str] | None = None) -> list[Item]:
    """Everything: control plane, chart-installed controllers (of `releases`, default all), the platforms'
    objects, and the containers operators inject into their pods (`injected`)."""
    items = [Item("kind control plane (estimate)", CONTROL_PLANE_CPU, CONTROL_PLANE_MEMORY), *chart_items(pins, releases)]
    for obj in platform_objects:
        items += manifest_items(obj)
    return items + list(injected)


def total(items: list[Item]) -> tuple[float, float]:
    """(cores, GiB)."""
    return sum(i.cpu for i in items), sum(i.memory for i in items) / 2**30


def summary(items: list[Item]) -> str:
    cores, gib = total(items)
    return f"{cores:.2f} CPU, {gib:.1f} GiB requested"
