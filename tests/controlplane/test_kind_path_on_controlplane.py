"""What `up --backend kind` deploys, checked by a real kube-apiserver, the real operators and a real
Prometheus (testbed/backends/controlplane/verify.py names each check). Each test asserts one finding
of the module's `up --backend controlplane` and prints what was found, so a pass shows its evidence.
"""

from __future__ import annotations

import pytest

from testbed.kubernetes_path import kind_platforms


def _show(finding: dict) -> str:
    return f"{finding['state']}: {finding['text']}"


def test_every_object_accepted_strict_and_matching_webhooks_called(controlplane):
    status, _ = controlplane
    admission = status["findings"]["admission"]
    print(_show(admission))
    assert admission["state"] == "pass", _show(admission)
    assert admission["applied"], "nothing was applied"
    assert any(w["calls"] for w in admission["webhooks"]), f"no admission webhook was called: {admission['webhooks']}"


@pytest.mark.parametrize("platform", kind_platforms())
def test_operator_reconciles_the_custom_resource_into_owned_objects(controlplane, platform):
    """A platform whose operator cannot be built here (Seldon) is accepted by the API server and listed as
    not verifiable with the reason; every other one must be reconciled into pods by its real operator."""
    status, _ = controlplane
    owned = status["findings"]["owned"][platform]
    print(_show(owned))
    for obj in owned["objects"]:
        print(f"{obj['kind']} {obj['name']} labels {obj['labels']}")
    if platform in status["unverifiable"]:
        assert owned["state"] == "not verifiable" and "is not run here" in owned["text"], _show(owned)
        assert "accepted by the API server" in owned["text"]
    else:
        assert owned["state"] == "pass", _show(owned)


def test_every_service_selects_ready_pods(controlplane):
    status, _ = controlplane
    endpoints = status["findings"]["endpoints"]
    for svc in endpoints["services"]:
        print(f"{svc['service']}: {svc['state']} {svc['text']}")
    assert endpoints["state"] == "pass", _show(endpoints)
    nodeports = [s for s in endpoints["services"] if s.get("type") == "NodePort"]
    assert nodeports, "no NodePort Service was created"


def test_every_podmonitor_endpoint_selects_a_declared_port(controlplane):
    status, _ = controlplane
    ports = status["findings"]["ports"]
    for ep in ports["endpoints"]:
        print(ep["text"])
    assert ports["state"] == "pass", _show(ports)


def test_prometheus_discovers_a_target_for_every_podmonitor_endpoint_and_announced_metrics_port(controlplane):
    status, _ = controlplane
    scrape = status["findings"]["scrape"]
    for pool in scrape["pools"]:
        print(pool["text"])
    for a in scrape["announced"]:
        print(f"{a['pod']}/{a['container']} {a['address']} ({a['announced_by']}): {a['state']}")
    assert scrape["state"] == "pass", _show(scrape)


@pytest.mark.parametrize("platform", kind_platforms())
def test_platform_readiness_reached_or_listed_as_not_verifiable(controlplane, platform):
    from deployers import get_platform

    status, _ = controlplane
    readiness = status["findings"]["readiness"][platform]
    print(_show(readiness))
    dep = get_platform(platform).deployment_for("kind")
    if platform in status["unverifiable"]:
        assert readiness["state"] == "not verifiable", _show(readiness)
        assert status["unverifiable"][platform]["why"] in readiness["text"]
    elif dep.readiness_needs_pod:
        assert readiness["state"] == "not verifiable", _show(readiness)
        assert dep.readiness_needs_pod in readiness["text"]
    else:
        assert readiness["state"] == "pass", _show(readiness)


def test_what_needs_a_real_node_is_listed_as_not_verifiable_never_passed(controlplane):
    status, up_output = controlplane
    listed = {n["what"] for n in status["findings"]["not_verifiable"]}
    assert {"image pulls and image architecture", "model loading and prediction parity"} <= listed
    assert "NOT VERIFIABLE" in up_output and "image pulls" in up_output
    for name, platform in status["platforms"].items():
        assert platform["v2_base_url"] is None, f"{name}: an endpoint is claimed where no pod serves"


@pytest.mark.parametrize("platform", kind_platforms())
def test_the_kind_paths_model_of_generated_pods_matches_what_the_operator_made(controlplane, platform):
    """deployment.generated_pods (written from operator source, used offline to predict scrape targets)
    against the real operator's pods: same containers, same declared ports."""
    status, _ = controlplane
    model = status["findings"]["pod_model"][platform]
    print(_show(model))
    if platform in status["unverifiable"]:
        assert model["state"] == "not verifiable", _show(model)
    else:
        assert model["state"] == "pass", _show(model)


def test_the_run_records_each_platforms_kubernetes_path_level(controlplane):
    status, _ = controlplane
    levels = status["kubernetes_path"]
    if status.get("kind_path_at"):  # objects of another checkout: not the kind path this one ships
        assert all(entry["controlplane"] is None for entry in levels.values()), levels
        return
    for name, entry in levels.items():
        print(f"{name}: {entry['level']} ({(entry.get('controlplane') or {}).get('why')})")
        record = entry["controlplane"]
        assert record is not None, f"{name}: `up --backend controlplane` recorded no level"
        assert record["versions"]["kubernetes"] == "v1.33.1" and record["at"]
        if name in status["unverifiable"]:
            assert not record["reached"] and record["partial"], record
            assert entry["level"] == "control-plane partially verified (API server only)", entry
        elif record["reached"]:
            assert entry["level"].startswith(("control-plane verified", "run on a real kind cluster")), entry
        else:
            assert entry["level"] in ("schema-valid", "none"), entry
        skew = status["skew"].get((record.get("skew") or {}).get("component"))
        if skew:  # an operator at another version than the kind path's: named wherever the level is
            assert "VERSION SKEW" in entry["level"] and skew["kind_pin"] in entry["level"], entry


def test_operators_run_at_the_pinned_versions_or_the_skew_is_declared(controlplane):
    from testbed.backends.controlplane import build

    status, up_output = controlplane
    assert set(status["unverifiable"]) == {p for p in status["platforms"] if p == "seldon"}
    for name, skew in status["skew"].items():
        print(f"{name}: {skew}")
        assert f"VERSION SKEW {name}" in up_output
    components = {c.name: c for c in build.load()[1]}
    for name, info in status["operators"].items():
        assert info["version"] == components[name].version
        for d in info.get("deviations") or []:
            print(f"{name} deviation: {d['what']}: {d['why']}")


def test_operator_listeners_beyond_loopback_each_have_a_cause(controlplane):
    status, _ = controlplane
    for x in status["exposure"]["non_loopback_sockets"]:
        print(f"{x['owner']} {x['address']}:{x['port']} ({x['port_name']}): {x['cause']}")
    assert status["exposure"]["unexplained"] == 0, status["exposure"]


def test_vendored_crds_are_what_the_charts_install(controlplane):
    status, _ = controlplane
    crds = status["findings"]["crds"]
    for item in crds["crds"]:
        print(item["text"])
    assert crds["state"] == "pass", _show(crds)
