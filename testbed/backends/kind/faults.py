"""Faults on the kind backend (KindFaults, testbed.faults.Faults): pod deletion and a scaled-down detector.

kill: every Running pod the platform's NodePort Service selects (deployment.pod_selector) is deleted
with grace period 0, so the kubelet SIGKILLs its containers at once, as the local kill does. What
brings the platform back is the platform on Kubernetes: the ReplicaSet (KServe, Seldon) or the
KubeRay operator (Ray) creating new pods. That is its self-recovery; the testbed never restores a
platform on kind (a platform still down is reported, with the command to repair the testbed).

detector outage: the Deployment `detector-service` scaled to 0 and its pods deleted with grace 0,
then scaled back to 1 after the outage. Its metrics and the platforms' are read from the testbed's
Prometheus (the way a kind testbed is observed), after two scrape intervals.

Every action goes through a Plan: `--dry-run` prints it (kubectl equivalents) and changes nothing.
"""

from __future__ import annotations

import sys
import time

from testbed import state as state_io
from testbed.backends.kind import cluster, detection
from testbed.backends.kind.context import DEFAULT_NAMESPACE, KindRun
from testbed.backends.kind.deployment import Target
from testbed.backends.kind.kube import label_selector, wait_http_ok, wait_until
from testbed.backends.kind.pins import pins as load_pins
from testbed.backends.kind.plan import Plan
from testbed.errors import FaultTargetMissing, NotRunning, PlatformNotUp
from testbed.faults import DetectorTarget, KillTarget
from testbed.settings import Settings

SCRAPE_INTERVAL_S = 5.0
"""The PodMonitors' interval (manifests/*/podmonitor.yaml)."""

GONE_TIMEOUT_S = 60.0

def pod_summary(pod: dict) -> dict:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
    return {"name": meta.get("name"), "uid": meta.get("uid"), "node": (pod.get("spec") or {}).get("nodeName"),
            "phase": status.get("phase"), "started": status.get("startTime"), "restarts": restarts}


def serving(pod: dict) -> bool:
    """Running and not already being deleted."""
    return (pod.get("status") or {}).get("phase") == "Running" and not (pod.get("metadata") or {}).get(
        "deletionTimestamp")


class KindFaults:
    backend = "kind"
    kill_fault = "deletion of the serving pods, grace period 0"

    def __init__(self, settings: Settings, dry_run: bool = False, out=None):
        self.settings = settings
        self.dry_run = dry_run
        pins = load_pins()
        files = cluster.files(settings, pins)
        self.recorded = state_io.load(files.dir) or {}
        self.namespace = self.recorded.get("namespace") or DEFAULT_NAMESPACE
        self.plan = Plan(dry_run=dry_run, out=out or sys.stdout, log=out or sys.stderr)
        self.plan.begin("faults")
        self.run = KindRun(pins=pins, files=files, plan=self.plan, namespace=self.namespace)
        """The API client (run.kube, real runs only) and pins, as `up`'s steps have them."""
        if not dry_run and not files.kubeconfig.is_file():
            raise NotRunning(f"The kind testbed (no kubeconfig at {files.kubeconfig})")

    @property
    def kube(self):
        return self.run.kube

    def note(self, text: str) -> None:
        self.plan.note(text)

    # --- kill ----------------------------------------------------------------------------------
    def selector(self, platform: str, endpoint) -> tuple[str, dict[str, str]]:
        from deployers import get_platform

        res = ((self.recorded.get("platforms") or {}).get(platform) or {}).get("resource") or {}
        namespace = res.get("namespace") or self.namespace
        dep = get_platform(platform).deployment_for("kind")
        target = Target(namespace=namespace, node_port=0, model_name=res.get("name") or endpoint.model_name,
                        artifact_subpath="", code_dir="", serving={})
        return namespace, dep.pod_selector(target)

    def pods(self, namespace: str, selector: dict[str, str]) -> list[dict]:
        return self.kube.list("v1", "Pod", namespace, label_selector=label_selector(selector))

    def kill_target(self, platform: str, endpoint) -> KillTarget:
        namespace, selector = self.selector(platform, endpoint)
        where = f"pods -n {namespace} -l {label_selector(selector)}"
        if self.dry_run:
            return KillTarget(platform, where, evidence={"namespace": namespace, "selector": selector, "pods": []})
        if platform not in (self.recorded.get("platforms") or {}):
            raise PlatformNotUp(platform, "not part of this kind testbed", sorted(self.recorded.get("platforms") or {}))
        running = [p for p in self.pods(namespace, selector) if serving(p)]
        if not running:
            raise FaultTargetMissing(platform, f"no Running pod matches {where}")
        return KillTarget(platform, f"{where}: {', '.join(p['metadata']['name'] for p in running)}",
                          evidence={"namespace": namespace, "selector": selector,
                                    "pods": [pod_summary(p) for p in running]})

    def kill(self, target: KillTarget) -> int:
        namespace, names = target.evidence["namespace"], [p["name"] for p in target.evidence["pods"]]
        t = time.time_ns()

        def delete():
            gone = [name for name in names if not self.kube.delete_pod(name, namespace, grace_period_s=0)]
            if len(gone) == len(names):
                raise FaultTargetMissing(target.platform, f"its pods {names} were deleted before the fault")
            return t

        what = " ".join(names) if names else f"<every Running pod of -l {label_selector(target.evidence['selector'])}>"
        self.plan.call(f"kubectl delete pod -n {namespace} {what} --grace-period=0 --force   "
                       f"# {target.platform}: kubelet SIGKILLs the containers", delete)
        return t

    def restore(self, target: KillTarget, endpoint) -> float | None:
        from deployers import get_platform

        recreated_by = get_platform(target.platform).deployment_for("kind").recreated_by
        self.plan.note(f"no restore by the testbed: {recreated_by} recreates "
                       f"the pods; a platform still down is reported (repair: `python -m testbed up --backend kind`)")
        return None

    def after_kill(self, target: KillTarget) -> dict:
        if self.dry_run:
            return {}
        before = {p["uid"] for p in target.evidence["pods"]}
        now = [pod_summary(p) for p in self.pods(target.evidence["namespace"], target.evidence["selector"])]
        return {"pods_after": now, "new_pods": sum(p["uid"] not in before for p in now)}

    # --- detector outage -----------------------------------------------------------------------
    def detector_target(self, platform: str, endpoint) -> DetectorTarget:
        det = self.recorded.get("detection") or {}
        deployment = det.get("deployment") or {"name": detection.DEPLOYMENT_NAME, "namespace": self.namespace}
        service_url = det.get("service_url") or detection.host_url(self.run.pins)
        what = f"deployment/{deployment['name']} -n {deployment['namespace']}"
        if self.dry_run:
            return DetectorTarget(service_url, what, evidence={"deployment": deployment})
        if not det:
            raise FaultTargetMissing(platform, "this kind testbed records no detector service (`python -m testbed "
                                               "status --backend kind`)")
        obj = self.kube.get("apps/v1", "Deployment", deployment["name"], deployment["namespace"])
        if obj is None or not (obj.get("status") or {}).get("readyReplicas"):
            raise FaultTargetMissing(platform, f"{what} has no ready replica "
                                               f"({'absent' if obj is None else obj.get('status')})")
        return DetectorTarget(service_url, what, evidence={"deployment": deployment,
                                                           "replicas": obj["spec"].get("replicas", 1)})

    def _detector_pods(self, target: DetectorTarget) -> list[dict]:
        d = target.evidence["deployment"]
        return self.pods(d["namespace"], detection.LABELS)  # the Deployment's own selector

    def stop_detector(self, target: DetectorTarget) -> int:
        d = target.evidence["deployment"]
        t = time.time_ns()

        def stop():
            self.kube.scale(d["name"], d["namespace"], 0)
            for pod in self._detector_pods(target):
                self.kube.delete_pod(pod["metadata"]["name"], d["namespace"], grace_period_s=0)
            wait_until(f"{target.description} pods gone", GONE_TIMEOUT_S,
                       lambda: (not [p for p in self._detector_pods(target) if serving(p)], "pods still Running"),
                       poll_s=0.5)
            return t

        self.plan.call(f"kubectl scale {target.description} --replicas=0 && kubectl delete pod -n {d['namespace']} "
                       f"-l {label_selector(detection.LABELS)} --grace-period=0 --force", stop)
        return t

    def start_detector(self, target: DetectorTarget, timeout_s: float) -> float:
        d = target.evidence["deployment"]
        started = time.monotonic()
        replicas = int(target.evidence.get("replicas", 1))
        self.plan.call(f"kubectl scale {target.description} --replicas={replicas}",
                       lambda: self.kube.scale(d["name"], d["namespace"], replicas))
        # The pod installs the detectors' pins on start (its initContainer): minutes, not seconds.
        self.plan.wait(f"GET {target.service_url}/ready answers 200 (at most {timeout_s:.0f}s)",
                       lambda: wait_http_ok(f"{target.service_url}/ready", f"{target.description} after the outage",
                                            timeout_s))
        return time.monotonic() - started

    def metric_snapshot(self, platform: str, endpoint) -> dict[str, dict[str, float]]:
        from testbed.prometheus import PrometheusClient

        url = f"http://127.0.0.1:{self.run.pins.prometheus_port}"
        # Every series the platform's targets export in this namespace (the PodMonitors label them
        # platform=<name>), summed per name; the probe keeps the error-like ones that grew. The detector
        # service's own series (job "detectors") carry a platform label too: not the platform's report.
        promql = (f'sum by (__name__, job) ({{platform="{platform}",namespace="{self.namespace}",'
                  f'job!="{detection.PODMONITOR_JOB}"}})')
        if self.dry_run:
            self.plan.note(f"read Prometheus {url}: {promql}")
            return {}
        time.sleep(2 * SCRAPE_INTERVAL_S)  # what happened until now is scraped
        out: dict[str, dict[str, float]] = {}
        for row in PrometheusClient(url).query(promql):
            source = row["metric"].get("job") or platform
            name = row["metric"].get("__name__", "")
            out.setdefault(source, {})[name] = out.get(source, {}).get(name, 0.0) + float(row["value"])
        return out
