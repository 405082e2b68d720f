"""The kind form of the fault probes, checked without a cluster: `probe <fault> --backend kind --dry-run`
prints what each fault would do, and what it acts on is what `up --backend kind` deploys (the same pod
selectors, the same detector Deployment). Running them for real is tests/e2e/test_kind_e2e_faults.py.
"""

from __future__ import annotations

import io
import re

import pytest

from probes import registry
from testbed.backends.kind.backend import KindBackend
from testbed.backends.kind.faults import KindFaults
from testbed.backends.kind.kube import label_selector
from testbed.errors import NotRunning
from testbed.settings import Settings
from testbed.steps import UpContext, run_steps
from testbed_cli import run_testbed


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kind-faults-state")


@pytest.fixture(scope="module")
def up_plan(state_dir, monkeypatch_module):
    """The manifests `up --backend kind --dry-run` applies (same state dir as the fault dry runs)."""
    monkeypatch_module.setenv("TESTBED_STATE_DIR", str(state_dir))
    ctx = UpContext(settings=Settings(backend="kind"), dry_run=True, out=io.StringIO(),
                    extra={"plan_out": io.StringIO()})
    run_steps(KindBackend().up_steps(ctx), ctx)
    return ctx.extra["kind"].plan.manifests()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


PLANNED = Settings(backend="kind").platforms
"""What `up --backend kind` deploys without --platforms (the default platforms the kind backend offers)."""


def dry_run(state_dir, probe: str, *extra: str):
    return run_testbed("probe", probe, "--backend", "kind", "--dry-run", *extra, state_dir=state_dir, check=False)


def test_kill_deletes_exactly_the_pods_each_platform_serves_from(state_dir, up_plan):
    proc = dry_run(state_dir, "kill")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "no running kind testbed: planned against `up --backend kind --dry-run`" in out
    pairs = re.findall(r"^> kubectl delete pod -n (\S+) <every Running pod of -l (\S+)> --grace-period=0", out, re.M)
    assert len(pairs) == len(PLANNED), out
    deleted = {selector: namespace for namespace, selector in pairs}
    # The selector the fault deletes by is the one the platform's NodePort Service routes to.
    services = {obj["metadata"]["name"]: obj for obj in up_plan if obj["kind"] == "Service"}
    for name in PLANNED:
        service = services[f"testbed-{name}-nodeport"]
        assert deleted[label_selector(service["spec"]["selector"])] == service["metadata"]["namespace"], name
    # The load is bounded and on loopback, and the kind defaults leave time for a pod to come back.
    assert len(re.findall(r"^# load: POST http://127\.0\.0\.1:\d+/v2/models/\S+/infer at 20\.0 req/s for 65\.0 s "
                          r"\(at most 1301 requests", out, re.M)) == len(PLANNED)
    assert out.count("no restore by the testbed") == len(PLANNED)


def test_overload_plan_is_the_load_alone(state_dir):
    proc = dry_run(state_dir, "overload", "--platforms", "seldon")
    assert proc.returncode == 0, proc.stderr
    assert "open loop at 3 x capacity for 4 s, up to 64 connections" in proc.stdout
    assert "kubectl" not in proc.stdout


def test_dry_run_is_only_for_faults(state_dir):
    proc = dry_run(state_dir, "drift")
    assert proc.returncode != 0
    assert "--dry-run plans fault probes (kill, overload, detector-outage); drift only reads" in proc.stderr


def test_a_real_fault_needs_a_running_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path))
    with pytest.raises(NotRunning, match="no kubeconfig at"):
        KindFaults(Settings(backend="kind"))


def test_every_fault_has_a_kind_form():
    faults = KindBackend().faults(Settings(backend="kind"), dry_run=True, out=io.StringIO())
    for method in ("kill_target", "kill", "restore", "after_kill", "detector_target", "stop_detector",
                   "start_detector", "metric_snapshot", "note"):
        assert callable(getattr(faults, method)), method
    assert set(registry.FAULTS) == {"kill", "overload", "detector-outage"}


def test_detector_outage_scales_the_deployment_up_deploys(state_dir, up_plan):
    from testbed.backends.kind import detection

    proc = dry_run(state_dir, "detector-outage")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    [deployment] = [o for o in up_plan if o["kind"] == "Deployment" and o["metadata"]["name"] == "detector-service"]
    namespace = deployment["metadata"]["namespace"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    downs = re.findall(r"^> kubectl scale deployment/(\S+) -n (\S+) --replicas=0 && kubectl delete pod -n \S+ "
                       r"-l (\S+) --grace-period=0", out, re.M)
    assert len(downs) == len(PLANNED), out  # every platform publishes a path on kind
    for name, ns, selector in downs:
        assert (name, ns) == ("detector-service", namespace)
        for pair in selector.split(","):
            key, value = pair.split("=")
            assert pod_labels[key] == value  # the pods deleted are the Deployment's own
    assert out.count(f"> kubectl scale deployment/detector-service -n {namespace} "
                     f"--replicas={deployment['spec'].get('replicas', 1)}") == len(PLANNED)
    # The platform's own series, read from Prometheus, exclude the detector service's (it labels by platform too).
    assert f'job!="{detection.PODMONITOR_JOB}"' in out
    [monitor] = [o for o in up_plan if o["kind"] == "PodMonitor" and o["metadata"]["name"] == "detector-service"]
    jobs = [r["replacement"] for e in monitor["spec"]["podMetricsEndpoints"] for r in e.get("relabelings", [])
            if r.get("targetLabel") == "job"]
    assert jobs == [detection.PODMONITOR_JOB]
