"""The cluster's API through the official `kubernetes` client (imported only when a cluster exists).

`apply` is server-side apply with field validation Strict, so the API server itself rejects unknown
or duplicate fields (as `kubectl apply --validate=strict` would); its message is kept verbatim.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable, TypeVar

from testbed.backends.kind.templates import object_id
from testbed.errors import ManifestRejected, ResourceNotReady

FIELD_MANAGER = "ml-deployment-testbed"
POLL_S = 3.0
WEBHOOK_TLS_RETRY_S = 180.0
"""How long an apply is retried while the API server cannot verify an admission webhook's certificate."""

WEBHOOK_TLS_POLL_S = 5.0
T = TypeVar("T")


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


def webhook_certificate_error(message: str) -> tuple[str, str] | None:
    """(webhook name, TLS error) when the API server could not verify an admission webhook's serving
    certificate, else None. The API server words it (k8s.io/apiserver webhook dispatchers, util/webhook
    ErrCallingWebhook) as: failed calling webhook "<name>": failed to call webhook: Post "https://...":
    tls: failed to verify certificate: x509: certificate signed by unknown authority."""
    match = re.search(r'failed calling webhook "([^"]+)": failed to call webhook: .*?((?:tls: [^:]*: )?x509: .*)$',
                      message, flags=re.S)
    return (match.group(1), match.group(2).strip()) if match else None


def retry_webhook_tls(apply_once: Callable[[], T], what: str, timeout_s: float = WEBHOOK_TLS_RETRY_S,
                      poll_s: float = WEBHOOK_TLS_POLL_S, say: Callable[[str], None] = lambda _: None) -> T:
    """apply_once(), retried for at most timeout_s while it is rejected because an admission webhook's
    certificate cannot be verified; each retry says so through say(). Other rejections are raised at once.

    Seldon Core v1's chart generates a new webhook certificate (genCA) on every `helm upgrade`: the
    webhook configuration gets the new CA at once, while the operator pod serves the old certificate
    until the kubelet has synced the new Secret into it (a minute or two). A re-run of `up` meets that
    window; anything else keeps its first error.
    """
    deadline, attempt = None, 0
    while True:
        try:
            return apply_once()
        except ManifestRejected as exc:
            cause = webhook_certificate_error(exc.message)
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + timeout_s
            if cause is None:
                raise
            hook, tls_error = cause
            if now >= deadline:
                raise ManifestRejected(
                    exc.kind, exc.name, exc.namespace, exc.status,
                    f"{exc.message}\n(Retried for {timeout_s:.0f}s: the certificate webhook {hook!r} serves is still "
                    f"not signed by the CA in its webhook configuration. Restart the Deployment behind the webhook's "
                    f"Service, e.g. `kubectl -n seldon-system rollout restart deployment seldon-controller-manager`, "
                    f"then run `up` again.)") from None
            attempt += 1
            say(f"  {what}: the API server cannot verify webhook {hook!r}'s certificate yet ({tls_error}). A "
                f"certificate just regenerated (Seldon's chart does so on every helm upgrade) reaches the webhook's "
                f"pod with the kubelet's next Secret sync: retry {attempt} in {poll_s:.0f}s, "
                f"{max(0.0, deadline - now):.0f}s left")
            time.sleep(poll_s)


class Kube:
    def __init__(self, kubeconfig: Path, context: str | None = None, progress: Callable[[str], None] | None = None):
        from kubernetes import config, dynamic

        self.kubeconfig = Path(kubeconfig)
        api_client = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        self.dyn = dynamic.DynamicClient(api_client)
        self.progress = progress or (lambda _: None)
        """Where apply reports its retries (the Plan's progress view in `up`)."""

        self.webhook_tls_retry_s = WEBHOOK_TLS_RETRY_S

    def resource(self, api_version: str, kind: str):
        """The API resource for (apiVersion, kind), from discovery (cached; refreshed when unknown)."""
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict) -> dict:
        """Server-side apply (field validation Strict); retried while a webhook's certificate cannot be verified."""
        return retry_webhook_tls(lambda: self._apply_once(obj), f"apply {object_id(obj)}", self.webhook_tls_retry_s,
                                 say=self.progress)

    def _apply_once(self, obj: dict) -> dict:
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
