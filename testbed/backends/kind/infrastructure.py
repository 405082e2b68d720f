"""Readiness of what the Helm charts installed: CRDs established, webhooks served, controllers available.

Each check is a probe for kube.wait_until: () -> (done, what is still missing).
"""

from __future__ import annotations

from testbed.backends.kind.kube import Kube, condition


def crds_established(kube: Kube, names: tuple[str, ...]):
    def probe():
        missing = []
        for name in names:
            crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            cond = condition(crd, "Established")
            if crd is None or not cond or cond.get("status") != "True":
                missing.append(name if crd is not None else f"{name} (absent)")
        return not missing, "not established: " + ", ".join(missing)
    return probe


def webhooks_served(kube: Kube, namespaces: tuple[str, ...]):
    """Every admission webhook backed by a Service in our namespaces has a CA bundle and a ready endpoint.

    A webhook whose Service has no ready endpoint makes every create of its kind fail, which is
    the usual cause of "failed calling webhook" right after an install.
    """
    def probe():
        problems = []
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for config in kube.list("admissionregistration.k8s.io/v1", kind):
                for hook in config.get("webhooks") or []:
                    client = hook.get("clientConfig") or {}
                    svc = client.get("service")
                    if not svc or svc.get("namespace") not in namespaces:
                        continue
                    name = f"{config['metadata']['name']}/{hook['name']}"
                    if not client.get("caBundle"):
                        problems.append(f"{name}: no caBundle yet")
                    elif not _service_ready(kube, svc["namespace"], svc["name"]):
                        problems.append(f"{name}: Service {svc['namespace']}/{svc['name']} has no ready endpoint")
        return not problems, "; ".join(problems)
    return probe


def _service_ready(kube: Kube, namespace: str, name: str) -> bool:
    slices = kube.list("discovery.k8s.io/v1", "EndpointSlice", namespace,
                       label_selector=f"kubernetes.io/service-name={name}")
    return any((ep.get("conditions") or {}).get("ready") for s in slices for ep in s.get("endpoints") or [])


def deployments_available(kube: Kube, namespaces: tuple[str, ...]):
    def probe():
        waiting, seen = [], 0
        for ns in namespaces:
            for dep in kube.list("apps/v1", "Deployment", ns):
                seen += 1
                want = (dep.get("spec") or {}).get("replicas", 1)
                have = (dep.get("status") or {}).get("availableReplicas") or 0
                if have < want:
                    waiting.append(f"{ns}/{dep['metadata']['name']} {have}/{want} available")
        if not seen:
            return False, f"no Deployments found in {', '.join(namespaces)}"
        return not waiting, "; ".join(waiting)
    return probe
