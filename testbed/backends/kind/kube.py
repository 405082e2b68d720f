"""The cluster's API through the official `kubernetes` client (imported only when a cluster exists).

`apply` is server-side apply with field validation Strict, so the API server itself rejects unknown
or duplicate fields (as `kubectl apply --validate=strict` would); its message is kept verbatim.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from testbed.backends.kind.templates import object_id
from testbed.errors import ManifestRejected, ResourceNotReady

FIELD_MANAGER = "ml-deployment-testbed"
POLL_S = 3.0


def rejection_message(body) -> tuple[str, list[str]]:
    """The API server's Status body -> (message, causes), verbatim; raw text if it is not JSON."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return (str(body).strip() or "(empty response)"), []
    causes = [f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
              for c in (status.get("details") or {}).get("causes") or []]
    return status.get("message") or str(body).strip(), causes


class Kube:
    def __init__(self, kubeconfig: Path, context: str | None = None):
        from kubernetes import config, dynamic

        self.kubeconfig = Path(kubeconfig)
        api_client = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        self.dyn = dynamic.DynamicClient(api_client)

    def resource(self, api_version: str, kind: str):
        """The API resource for (apiVersion, kind), from discovery (cached; refreshed when unknown)."""
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict) -> dict:
        from kubernetes.dynamic.exceptions import DynamicApiError

        meta = obj["metadata"]
        try:
            resource = self.resource(obj["apiVersion"], obj["kind"])
            result = self.dyn.server_side_apply(
                resource, body=obj, name=meta["name"], namespace=meta.get("namespace"),
                field_manager=FIELD_MANAGER, force_conflicts=True, query_params=[("fieldValidation", "Strict")])
        except DynamicApiError as exc:
            message, causes = rejection_message(exc.body)
            if causes and not all(c in message for c in causes):
                message += "\n" + "\n".join(f"  {c}" for c in causes)
            raise ManifestRejected(obj["kind"], meta["name"], meta.get("namespace"), exc.status, message) from None
        return result.to_dict()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict]:
        result = self.resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
        return [item.to_dict() for item in result.items]

    def delete(self, obj: dict) -> bool:
        """Delete an object if present (background propagation); True if it existed."""
        from kubernetes.dynamic.exceptions import NotFoundError

        meta = obj["metadata"]
        try:
            self.resource(obj["apiVersion"], obj["kind"]).delete(
                name=meta["name"], namespace=meta.get("namespace"), propagation_policy="Background")
            return True
        except NotFoundError:
            return False

    def delete_pod(self, name: str, namespace: str, grace_period_s: int = 0) -> bool:
        """Delete one pod; grace 0 makes the kubelet SIGKILL its containers at once. True if it existed."""
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self.resource("v1", "Pod").delete(name=name, namespace=namespace, grace_period_seconds=grace_period_s)
            return True
        except NotFoundError:
            return False

    def scale(self, name: str, namespace: str, replicas: int) -> None:
        """Set a Deployment's spec.replicas (a merge patch: only that field changes)."""
        self.resource("apps/v1", "Deployment").patch(
            name=name, namespace=namespace, body={"spec": {"replicas": int(replicas)}},
            content_type="application/merge-patch+json")

    def wait_gone(self, obj: dict, timeout_s: float) -> None:
        meta = obj["metadata"]
        wait_until(f"{object_id(obj)} to be deleted", timeout_s,
                   lambda: (self.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")) is None,
                            "still present"))


def wait_until(what: str, timeout_s: float, probe: Callable[[], tuple[bool, str]],
               state: Callable[[], str] | None = None, poll_s: float = POLL_S) -> None:
    """Poll probe() -> (done, reason) until done; ResourceNotReady with the last reason on timeout.

    A probe raises ResourceNotReady itself for a state the resource will not leave (DEPLOY_FAILED,
    InvalidSpec, image pull back-off, pip failing again and again): that stops the wait at once, with
    its cause. Any other exception is taken as transient (the API server restarts while components
    install) and polled again.
    """
    deadline = time.monotonic() + timeout_s
    reason = "not checked yet"
    while True:
        try:
            done, reason = probe()
        except ResourceNotReady:
            raise
        except Exception as exc:  # the API server may restart while components install
            done, reason = False, f"{type(exc).__name__}: {exc}"
        if done:
            return
        if time.monotonic() > deadline:
            raise ResourceNotReady(what, reason, timeout_s, state() if state else "")
        time.sleep(poll_s)


def wait_http_ok(url: str, what: str, timeout_s: float, state: Callable[[], str] | None = None,
                 poll_s: float = 1.0) -> None:
    """Poll GET url until it answers 200; ResourceNotReady with the last answer (and state()) on timeout."""
    import httpx

    with httpx.Client(timeout=3.0) as client:
        def probe():
            resp = client.get(url)
            return resp.status_code == 200, f"{url} answered HTTP {resp.status_code}"

        wait_until(what, timeout_s, probe, state, poll_s=poll_s)


def label_selector(labels: dict[str, str]) -> str:
    """{k: v} -> "k=v,..." (sorted), as the API's labelSelector and `kubectl -l` take it."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def condition(obj: dict | None, type_: str) -> dict | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None
