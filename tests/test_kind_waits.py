"""Waits and applies on the kind path that must end early or retry with reason.

- kube.wait_until stops at once when a probe raises ResourceNotReady (a state the resource will not
  leave), with that cause, instead of waiting out its timeout (issue 11, item 3).
- An apply rejected because the API server cannot verify an admission webhook's certificate (Seldon's
  chart regenerates it on every `helm upgrade`) is retried for a bounded time, saying so (item 5).

The rejections below are the API server's own Status bodies (k8s.io/apiserver's webhook dispatcher
wording), parsed by the same code as a real rejection; no API server runs in this tier.
"""

from __future__ import annotations

import json
import time

import pytest

from deployers.kserve import KServeKind
from deployers.rayserve import RayServeKind
from testbed.backends.kind.kube import rejection_message, wait_until
from testbed.errors import ManifestRejected, ResourceNotReady

# What kube-apiserver answers (HTTP 500, reason InternalError) when a validating webhook's TLS handshake fails.
X509_STATUS = json.dumps({
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
    "message": 'Internal error occurred: failed calling webhook "v1.vseldondeployment.kb.io": failed to call webhook: '
               'Post "https://seldon-webhook-service.seldon-system.svc:443/validate-machinelearning-seldon-io-v1-'
               'seldondeployment?timeout=10s": tls: failed to verify certificate: x509: certificate signed by unknown '
               'authority (possibly because of "crypto/rsa: verification error" while trying to verify candidate '
               'authority certificate "custom-metrics-ca")',
    "details": {"causes": [{"message": 'failed calling webhook "v1.vseldondeployment.kb.io": failed to call '
                                       'webhook: Post "https://seldon-webhook-service.seldon-system.svc:443/...": '
                                       'tls: failed to verify certificate: x509: certificate signed by unknown '
                                       'authority'}]}})
REFUSED_STATUS = json.dumps({
    "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500,
    "message": 'Internal error occurred: failed calling webhook "v1.vseldondeployment.kb.io": failed to call webhook: '
               'Post "https://seldon-webhook-service.seldon-system.svc:443/validate": dial tcp 10.96.12.7:443: '
               'connect: connection refused'})
DENIED_STATUS = json.dumps({
    "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "BadRequest", "code": 400,
    "message": 'admission webhook "v1.vseldondeployment.kb.io" denied the request: Predictor default: graph is empty'})


def rejected(body: str) -> ManifestRejected:
    message, _ = rejection_message(body)
    return ManifestRejected("SeldonDeployment", "reference-classifier", "testbed", json.loads(body)["code"], message)


# --- item 3: wait_until ---------------------------------------------------------------------------
def test_wait_until_stops_at_once_on_resource_not_ready_with_its_cause():
    calls = []

    def probe():
        calls.append(1)
        raise ResourceNotReady("RayService testbed/m", "Serve application 'reference' DEPLOY_FAILED: ImportError",
                               None, "kubectl describe ...")

    started = time.monotonic()
    with pytest.raises(ResourceNotReady) as info:
        wait_until("RayService testbed/m", 5.0, probe, poll_s=0.05)
    assert time.monotonic() - started < 1.0 and len(calls) == 1
    assert "did not become ready and failed: Serve application 'reference' DEPLOY_FAILED" in str(info.value)
    assert "within" not in str(info.value) and "kubectl describe" in str(info.value)


def test_wait_until_still_polls_through_transient_errors():
    answers = iter([ConnectionError("API server restarting"), ConnectionError("again"), (True, "Ready")])

    def probe():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    wait_until("controllers", 5.0, probe, poll_s=0.01)


def test_a_platform_state_it_will_not_leave_is_failed_readiness():
    """The readiness that the deployments' probes turn into ResourceNotReady (deployment._wait_resource)."""
    isvc = {"status": {"modelStatus": {"transitionStatus": "InvalidSpec",
                                       "lastFailureInfo": {"message": "runtime not found"}}}}
    assert KServeKind().readiness(isvc).failed
    rsvc = {"status": {"activeServiceStatus": {"applicationStatuses": {"reference": {"status": "DEPLOY_FAILED",
                                                                                      "message": "boom"}}}}}
    assert RayServeKind().readiness(rsvc).failed


# --- item 5: webhook certificate ------------------------------------------------------------------
def test_webhook_certificate_errors_are_recognised_from_the_api_servers_words():
    from testbed.backends.kind.kube import webhook_certificate_error

    hook, cause = webhook_certificate_error(rejected(X509_STATUS).message)
    assert hook == "v1.vseldondeployment.kb.io"
    assert cause.startswith("tls: failed to verify certificate: x509: certificate signed by unknown authority")
    # Go before 1.20 wrote the x509 error bare.
    assert webhook_certificate_error('failed calling webhook "w": failed to call webhook: Post "https://s/v": x509: '
                                     'certificate has expired or is not yet valid') == \
        ("w", "x509: certificate has expired or is not yet valid")
    assert webhook_certificate_error(rejected(REFUSED_STATUS).message) is None
    assert webhook_certificate_error(rejected(DENIED_STATUS).message) is None


def test_apply_is_retried_while_the_webhook_certificate_cannot_be_verified_and_says_so():
    from testbed.backends.kind.kube import retry_webhook_tls

    answers = [rejected(X509_STATUS), rejected(X509_STATUS), {"kind": "SeldonDeployment"}]
    said = []

    def apply_once():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = retry_webhook_tls(apply_once, "apply SeldonDeployment testbed/m", timeout_s=10, poll_s=0.01,
                               say=said.append)
    assert result == {"kind": "SeldonDeployment"} and not answers
    assert len(said) == 2
    assert "apply SeldonDeployment testbed/m" in said[0] and "'v1.vseldondeployment.kb.io'" in said[0]
    assert "x509: certificate signed by unknown authority" in said[0]
    assert "retry 1 in" in said[0] and "retry 2 in" in said[1] and "s left" in said[1]


def test_the_retry_is_bounded_and_names_the_fix():
    from testbed.backends.kind.kube import retry_webhook_tls

    said = []
    started = time.monotonic()
    with pytest.raises(ManifestRejected) as info:
        retry_webhook_tls(lambda: (_ for _ in ()).throw(rejected(X509_STATUS)), "apply x", timeout_s=0.3,
                          poll_s=0.05, say=said.append)
    assert time.monotonic() - started < 2.0 and 3 <= len(said) <= 8
    message = str(info.value)
    assert "x509: certificate signed by unknown authority" in message and "Retried for 0s" in message
    assert "rollout restart deployment seldon-controller-manager" in message
    assert info.value.status == 500 and info.value.kind == "SeldonDeployment"


@pytest.mark.parametrize("body", [REFUSED_STATUS, DENIED_STATUS])
def test_other_rejections_are_not_retried(body):
    from testbed.backends.kind.kube import retry_webhook_tls

    calls = []

    def apply_once():
        calls.append(1)
        raise rejected(body)

    with pytest.raises(ManifestRejected):
        retry_webhook_tls(apply_once, "apply x", timeout_s=10, poll_s=0.01)
    assert len(calls) == 1

