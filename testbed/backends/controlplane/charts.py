"""The operators' configuration as the kind backend installs it: each chart of cluster/versions.yaml
rendered by `helm template` (the pinned helm, built from source) with the same values file and `set:`
pins, then split into what this backend applies and what it does itself.

What is applied as rendered: CRDs, namespaces' ConfigMaps, ServiceAccounts and RBAC, the operator's
own custom resources (ClusterServingRuntimes). What stands in for a pod is taken from the operator's
Deployment (its container's args, env and ConfigMap mounts: operators.py). Admission webhook
configurations are applied with each `clientConfig.service` replaced by `url: https://127.0.0.1:PORT`
and the control plane's CA. Not applied, and listed in `status`: the Deployment itself, the Services
in front of the operator pod (there is no pod), cert-manager Certificates/Issuers and the chart's
generated webhook Secret (this backend's PKI serves the webhooks instead), ServiceMonitors.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.backends.kind.pins import Chart
from testbed.errors import TestbedError

try:
    from yaml import CSafeLoader as _Base
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Base


class _Loader(_Base):
    """PyYAML resolves a bare `=` (an enum value in a CRD) to its obsolete !!value tag: read it as a string."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Base.construct_yaml_str)

API_VERSIONS = ("cert-manager.io/v1", "monitoring.coreos.com/v1")
"""Present on the kind cluster when these charts install (cert-manager and kube-prometheus-stack come
first): templates that check .Capabilities.APIVersions render as they do there."""

RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
WEBHOOK_KINDS = {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
NOT_APPLIED = {
    "Deployment": "runs as a process on loopback instead",
    "Service": "fronts the operator pod, which does not exist here",
    "Certificate": "cert-manager's job (webhook serving certificate) is done by this backend's PKI",
    "Issuer": "cert-manager's job (webhook serving certificate) is done by this backend's PKI",
    "ServiceMonitor": "scrapes the operator pod, which does not exist here",
}


class RenderFailed(TestbedError):
    def __init__(self, chart: Chart, command: str, tail: str):
        super().__init__(f"`helm template` of {chart.release} ({chart.chart} {chart.version}) failed:\n{tail}\n"
                         f"Command: {command}")


@dataclass
class Rendered:
    release: str
    crds: list[dict] = field(default_factory=list)
    config: list[dict] = field(default_factory=list)
    """ConfigMaps and Secrets the operator reads (webhook certificate Secrets excluded)."""

    rbac: list[dict] = field(default_factory=list)
    webhooks: list[dict] = field(default_factory=list)
    deployments: list[dict] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)
    """Other objects, applied once the operator serves (its own custom resources)."""

    not_applied: list[tuple[str, str]] = field(default_factory=list)
    """(object id, why) for what this backend does instead."""


def render(helm: Path, chart: Chart, chart_dir: Path, kube_version: str, namespace: str | None = None) -> Rendered:
    argv = [str(helm), "template", chart.release, str(chart_dir), "--namespace", namespace or chart.namespace,
            "--include-crds", "--kube-version", kube_version, "--values", str(chart.values)]
    for api in API_VERSIONS:
        argv += ["--api-versions", api]
    for key, value in chart.set.items():
        argv += ["--set", f"{key}={value}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RenderFailed(chart, " ".join(argv), (proc.stderr or proc.stdout)[-3000:])
    return split(chart.release, [d for d in yaml.load_all(proc.stdout, Loader=_Loader) if d],
                 namespace or chart.namespace)


def split(release: str, docs: list[dict], namespace: str) -> Rendered:
    out = Rendered(release)
    for obj in docs:
        kind = obj.get("kind", "")
        meta = obj.setdefault("metadata", {})
        if kind not in ("CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding", *WEBHOOK_KINDS) \
                and not kind.startswith("Cluster"):
            meta.setdefault("namespace", namespace)  # `helm install -n` puts namespaced objects there
        ident = object_id(obj)
        if kind == "CustomResourceDefinition":
            out.crds.append(obj)
        elif kind in RBAC_KINDS:
            out.rbac.append(obj)
        elif kind in WEBHOOK_KINDS:
            out.webhooks.append(obj)
        elif kind == "Deployment":
            out.deployments.append(obj)
            out.not_applied.append((ident, NOT_APPLIED[kind]))
        elif kind == "Secret" and _is_webhook_secret(obj):
            out.not_applied.append((ident, "the chart's generated webhook certificate; this backend's PKI serves "
                                           "the webhooks instead"))
        elif kind in ("ConfigMap", "Secret"):
            out.config.append(obj)
        elif kind in NOT_APPLIED:
            out.not_applied.append((ident, NOT_APPLIED[kind]))
        else:
            out.resources.append(obj)
    return out


def _is_webhook_secret(obj: dict) -> bool:
    data = obj.get("data") or {}
    return obj.get("type") == "kubernetes.io/tls" or ("tls.crt" in data and "tls.key" in data)


def webhooks_to_loopback(config: dict, port: int, ca_bundle_b64: str) -> dict:
    """A webhook configuration whose every hook calls https://127.0.0.1:port<service path> with our CA."""
    import copy

    config = copy.deepcopy(config)
    config["metadata"].pop("annotations", None)  # cert-manager's inject-ca-from: nothing injects here
    config["metadata"].pop("namespace", None)
    for hook in config.get("webhooks") or []:
        client = hook.setdefault("clientConfig", {})
        service = client.pop("service", None) or {}
        client["url"] = f"https://127.0.0.1:{port}{service.get('path') or '/'}"
        client["caBundle"] = ca_bundle_b64
    return config


def object_id(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else meta.get("name", "?")
    return f"{obj.get('kind', '?')} {where}"
