"""Which scrape targets a PodMonitor yields on the pods an operator will generate, before any cluster exists.

A CRD schema accepts a PodMonitor that selects nothing; Prometheus then has no target and `up`
times out at its scrape step. This module answers "what will Prometheus scrape?" from data:
- the pods a platform's operator creates from our custom resource, with the ports each container
  declares (each deployment's `generated_pods`, written from the operator's source at the pinned tag);
- the PodMonitor as rendered.
It follows what prometheus-operator v0.90.1 generates (pkg/prometheus/promcfg.go,
generatePodMonitorConfig) and what Prometheus' kubernetes_sd `role: pod` discovers:
- one target per declared container port (labels __meta_kubernetes_pod_container_port_{name,number},
  __address__ = <pod IP>:<port>), and one target *without a port* per container that declares none;
- `port: <name>` keeps targets whose port name matches, `portNumber: <n>` whose port number matches
  (a port-less target has neither, so both drop it);
- then the endpoint's own `relabelings` (replace, keep, drop; anchored RE2-style regexes);
- a target whose __address__ still has no port is scraped on the scheme's default port (Prometheus 3
  no longer adds one; the HTTP default is 80): nothing of ours listens there, so it counts as no target.
Only the PodMonitor fields the testbed uses are modelled; anything else raises, so a template that
grows a new field cannot be checked wrongly in silence. The control-plane tests (issue 12) check the
same question against the real prometheus-operator and operators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from testbed.errors import NoScrapeTarget

POD_IP = "<pod IP>"
"""Stands for the pod's IP in addresses (the model needs none: relabelings copy it as text)."""

_ENDPOINT_FIELDS = {"port", "portNumber", "path", "interval", "relabelings", "scheme"}
_RELABEL_FIELDS = {"action", "sourceLabels", "separator", "regex", "targetLabel", "replacement"}


@dataclass(frozen=True)
class Port:
    name: str | None
    number: int

    def __str__(self) -> str:
        return f"{self.name}:{self.number}" if self.name else str(self.number)


@dataclass(frozen=True)
class GeneratedPod:
    """A pod the operator creates from a custom resource, as far as scraping is concerned."""

    what: str
    """Which pod, in words ("InferenceService predictor pod")."""

    namespace: str
    labels: dict[str, str]
    containers: dict[str, tuple[Port, ...]]
    """Container name -> the ports it declares, in order (empty: it declares none)."""

    source: str = ""
    """Where in the operator's source the ports come from."""

    def describe(self) -> str:
        listed = ", ".join(f"{name} [{', '.join(map(str, ports)) or 'no ports'}]"
                           for name, ports in self.containers.items())
        return f"{self.what}: {listed}"


@dataclass(frozen=True)
class Target:
    pod: str
    container: str
    address: str
    path: str
    labels: dict[str, str] = field(default_factory=dict)
    """Target labels after relabelling (job, platform, ...)."""

    @property
    def port(self) -> int | None:
        host, sep, port = self.address.rpartition(":")
        return int(port) if sep and port.isdigit() else None

    def __str__(self) -> str:
        return f"{self.container} {self.address}{self.path}"


def _matches(selector: dict, labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise ValueError(f"PodMonitor selector fields {sorted(set(selector) - {'matchLabels'})} are not modelled")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _go_replacement(template: str, match: re.Match) -> str:
    """Prometheus' `$1` / `${1}` / `${name}` expansion (Go regexp.Expand) with Python's groups."""
    def sub(m):
        key = m.group(1) or m.group(2)
        try:
            return match.group(int(key) if key.isdigit() else key) or ""
        except IndexError:  # no such group: Go expands it to ""
            return ""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, template)


def _relabel(labels: dict[str, str], rule: dict) -> dict[str, str] | None:
    """One Prometheus relabel_config; None when the target is dropped."""
    unknown = set(rule) - _RELABEL_FIELDS
    if unknown:
        raise ValueError(f"relabeling fields {sorted(unknown)} are not modelled")
    action = rule.get("action", "replace")
    value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("sourceLabels") or [])
    match = re.fullmatch(rule.get("regex", "(.*)"), value)
    if action == "keep":
        return labels if match else None
    if action == "drop":
        return None if match else labels
    if action == "replace":
        if match is None:
            return labels
        result = _go_replacement(rule.get("replacement", "$1"), match)
        out = dict(labels)
        if result:
            out[rule["targetLabel"]] = result
        else:
            out.pop(rule["targetLabel"], None)
        return out
    raise ValueError(f"relabeling action {action!r} is not modelled")


def _discovered(pod: GeneratedPod) -> list[dict[str, str]]:
    """kubernetes_sd role pod: a target per declared port, and a port-less one per container without ports."""
    found = []
    for container, ports in pod.containers.items():
        base = {"__meta_kubernetes_namespace": pod.namespace, "__meta_kubernetes_pod_ip": POD_IP,
                "__meta_kubernetes_pod_name": pod.what, "__meta_kubernetes_pod_container_name": container,
                **{f"__meta_kubernetes_pod_label_{_sanitize(k)}": v for k, v in pod.labels.items()}}
        if not ports:
            found.append({**base, "__address__": POD_IP})
        for port in ports:
            found.append({**base, "__address__": f"{POD_IP}:{port.number}",
                          "__meta_kubernetes_pod_container_port_name": port.name or "",
                          "__meta_kubernetes_pod_container_port_number": str(port.number)})
    return found


def _sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def endpoint_targets(monitor: dict, index: int, pods: list[GeneratedPod]) -> list[Target]:
    """The targets endpoint `index` of `monitor` yields on `pods` (port-less ones left out)."""
    meta, spec = monitor["metadata"], monitor["spec"]
    endpoint = spec["podMetricsEndpoints"][index]
    unknown = set(endpoint) - _ENDPOINT_FIELDS
    if unknown:
        raise ValueError(f"PodMonitor {meta['name']} endpoint {index}: fields {sorted(unknown)} are not modelled")
    namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [meta["namespace"]]
    path = endpoint.get("path") or "/metrics"
    targets = []
    for pod in pods:
        if pod.namespace not in namespaces or not _matches(spec.get("selector") or {}, pod.labels):
            continue
        for labels in _discovered(pod):
            if endpoint.get("port") and not re.fullmatch(
                    endpoint["port"], labels.get("__meta_kubernetes_pod_container_port_name", "")):
                continue
            if endpoint.get("portNumber") and not re.fullmatch(
                    str(endpoint["portNumber"]), labels.get("__meta_kubernetes_pod_container_port_number", "")):
                continue
            labels = {**labels, "job": f"{meta['namespace']}/{meta['name']}",
                      "container": labels["__meta_kubernetes_pod_container_name"]}
            if endpoint.get("port"):
                labels["endpoint"] = endpoint["port"]
            for rule in endpoint.get("relabelings") or []:
                labels = _relabel(labels, rule)
                if labels is None:
                    break
            if labels is None:
                continue
            target = Target(pod=pod.what, container=labels["__meta_kubernetes_pod_container_name"],
                            address=labels["__address__"], path=path,
                            labels={k: v for k, v in labels.items() if not k.startswith("__")})
            if target.port is not None:
                targets.append(target)
    return targets


def check(monitor: dict, pods: list[GeneratedPod]) -> list[str]:
    """Plan lines: per endpoint, what it scrapes, next to what the generated pods declare.
    NoScrapeTarget when an endpoint would scrape nothing (`up` would time out waiting for its series)."""
    meta = monitor["metadata"]
    lines, empty = [], []
    declared = "; ".join(p.describe() for p in pods) or "no pods"
    for i, endpoint in enumerate(monitor["spec"]["podMetricsEndpoints"]):
        chosen = (f"port {endpoint['port']}" if endpoint.get("port") else
                  f"portNumber {endpoint['portNumber']}" if endpoint.get("portNumber") else "every container")
        targets = endpoint_targets(monitor, i, pods)
        scraped = ", ".join(sorted({str(t) for t in targets})) or "NOTHING"
        lines.append(f"PodMonitor {meta['namespace']}/{meta['name']} endpoint {i} ({chosen}): scrapes {scraped}")
        if not targets:
            empty.append(f"endpoint {i} ({chosen}, path {endpoint.get('path') or '/metrics'})")
    lines.append(f"  the pods it selects will declare: {declared}")
    if empty:
        raise NoScrapeTarget(f"PodMonitor {meta['namespace']}/{meta['name']}", empty, declared)
    return lines


def deployment_pods(deployment: dict) -> list[GeneratedPod]:
    """The pods of a plain apps/v1 Deployment we render ourselves: its template, `replicas` times."""
    meta, template = deployment["metadata"], deployment["spec"]["template"]
    containers = {c["name"]: tuple(Port(p.get("name"), int(p["containerPort"])) for p in c.get("ports") or [])
                  for c in template["spec"]["containers"]}
    replicas = int(deployment["spec"].get("replicas", 1))
    return [GeneratedPod(f"Deployment {meta['name']} pod" + (f" #{k + 1}" if replicas > 1 else ""), meta["namespace"],
                         dict(template["metadata"].get("labels") or {}), containers, source="the Deployment's template")
            for k in range(replicas)]
