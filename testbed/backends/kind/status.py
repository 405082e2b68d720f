"""`status` of the kind backend: the recorded state, checked against the cluster and Prometheus."""

from __future__ import annotations

import httpx

from testbed import state as state_io
from testbed.backends.kind import detection
from testbed.backends.kind.cluster import ClusterFiles
from testbed.backends.kind.pins import Pins
from testbed.endpoint import Endpoint
from testbed.errors import PrometheusError

SCHEMA = "testbed.status/v1"


def cluster_status(cf: ClusterFiles, pins: Pins) -> dict:
    doc = {"schema": SCHEMA, "backend": "kind", "cluster": cf.name, "state": "stopped", "model": None,
           "prometheus": None, "platforms": {}}
    recorded = state_io.load(cf.dir)
    if recorded is None:
        return doc
    doc.update(model=recorded.get("model"), namespace=recorded.get("namespace"), kubeconfig=recorded.get("kubeconfig"),
               timings=recorded.get("timings", {}), state="degraded")
    kube, error = _kube(cf)
    if error:
        doc["error"] = error
    with httpx.Client(timeout=3.0) as client:
        for name, info in (recorded.get("platforms") or {}).items():
            doc["platforms"][name] = _platform_status(name, info, kube, client)
        doc["detection"] = detection.status(recorded.get("detection"), kube, client)
    doc["prometheus"] = _prometheus_status((recorded.get("prometheus") or {}).get("url")
                                           or f"http://127.0.0.1:{pins.prometheus_port}")
    healthy = (recorded.get("complete") and doc["platforms"]
               and all(p["state"] == "ready" for p in doc["platforms"].values())
               and doc["prometheus"]["state"] == "ready"
               and (doc.get("detection") is None or doc["detection"]["state"] == "ready"))
    doc["state"] = "running" if healthy else "degraded"
    from testbed import kubernetes_path

    # How far this path was checked before this cluster (schema, control plane, an earlier kind run).
    doc["kubernetes_path"] = kubernetes_path.levels(list(doc["platforms"]))
    doc["summary_lines"] = kubernetes_path.lines(doc["kubernetes_path"])
    return doc


def _kube(cf: ClusterFiles):
    if not cf.kubeconfig.is_file():
        return None, f"no kubeconfig at {cf.kubeconfig}"
    try:
        from testbed.backends.kind.kube import Kube

        return Kube(cf.kubeconfig), None
    except Exception as exc:  # a deleted cluster leaves a kubeconfig pointing nowhere
        return None, f"{type(exc).__name__}: {exc}"


def resource_state(name: str, res: dict, kube) -> str:
    """What the API server says of a platform's recorded custom resource: Ready, the platform's own reason
    it is not, absent, or the error that kept us from asking ("unknown" without a client or a resource).
    Shared by every backend that deploys through the kind path's steps."""
    from deployers import get_platform

    if kube is None or not res:
        return "unknown"
    try:
        obj = kube.get(res["apiVersion"], res["kind"], res["name"], res.get("namespace"))
        if obj is None:
            return "absent"
        readiness = get_platform(name).deployment_for("kind").readiness(obj)
        return "Ready" if readiness.ready else readiness.reason
    except Exception as exc:  # noqa: BLE001 - status reports whatever went wrong instead of failing
        return f"{type(exc).__name__}: {exc}"


def _platform_status(name: str, info: dict, kube, client: httpx.Client) -> dict:
    ep = Endpoint.from_json(info["endpoint"]) if info.get("endpoint") else None
    res = info.get("resource") or {}
    state = "not ready"
    try:
        if ep and client.get(ep.model_ready_url).status_code == 200:
            state = "ready"
    except httpx.HTTPError:
        state = "unreachable"
    return {
        "state": state,
        "resource": res,
        "resource_state": resource_state(name, res, kube),
        "v2_base_url": ep.base_url if ep else None,
        "infer_url": ep.infer_url if ep else None,
        "model_name": ep.model_name if ep else None,
        "metrics_url": ep.metrics_url if ep else None,
        "node_port": info.get("node_port"),
        "ready_after_s": info.get("ready_after_s"),
        "versions": info.get("versions", {}),
        "endpoint": info.get("endpoint"),
    }


def _prometheus_status(url: str) -> dict:
    from testbed.prometheus import PrometheusClient

    client = PrometheusClient(url, timeout_s=3.0)
    doc = {"url": url, "state": "ready" if client.ready() else "unreachable", "targets": []}
    if doc["state"] == "ready":
        try:
            doc["targets"] = client.targets()
        except PrometheusError as exc:
            doc["error"] = str(exc)
    return doc
