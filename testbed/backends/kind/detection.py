"""The detection path on the kind backend: the detector service in the cluster, and where it is.

The same detector service the local backend runs (deployers/runtimes/detector_service.py), as a
Deployment `detector-service` in the backend's namespace, loading the detectors `up` fits locally
beside the artifact (testbed.detectors; the artifacts directory is the kind node's volume). Its
Service is reached in the cluster (the platforms' payload loggers, Ray's Detector deployment) and on
the host through a NodePort on 127.0.0.1 (probes: verdict log, /metrics). Two `up` steps:
- `detectors` (before the cluster): fit once or verify the saved detectors.
- `detector service` (before the platforms): apply Deployment, Service, PodMonitor; wait until
  the Deployment is Available and GET <host URL>/ready answers 200.
Each platform's kind deployment adds its own path (deployers/*.py: KServe and Seldon payload
loggers, Ray's `detected` application) and publishes it as Endpoint.detection (path_info).
"""

from __future__ import annotations

import re
import time

import httpx

from testbed import detectors
from testbed.backends.kind import diagnostics, scrape_targets, templates
from testbed.backends.kind.kube import condition, label_selector, wait_http_ok, wait_until
from testbed.backends.kind.pins import Pins
from testbed.detection_path import describe, sink_urls
from testbed.errors import ResourceNotReady
from testbed.steps import UpContext

DEPLOYMENT_NAME = "detector-service"
SERVICE_NAME = DEPLOYMENT_NAME
PORT = 8080
"""Container port (named http) and Service port."""

DEPS_DIR = "/opt/testbed-detector-deps"
"""The emptyDir the initContainer pip-installs into, on the service's PYTHONPATH."""

READY_TIMEOUT_S = 600.0
"""Image pull + pip install of alibi-detect and its dependencies (hundreds of MB) + detector load."""

INSTALL_FAILURES = 3
"""The initContainer failing this often means pip cannot install (no PyPI from the pod?): stop waiting."""

PAYLOAD_LOGGER = "payload logger"
"""The `mechanism` label of payloads a platform's logger delivers to /events."""

PODMONITOR_JOB = "detectors"
"""The job label manifests/detection/podmonitor.yaml gives the detector service's series."""

LABELS = {"app.kubernetes.io/name": DEPLOYMENT_NAME, **templates.PART_OF}
SERVICE_ONLY = ("prometheus-client",)
"""testbed.detectors.ENV pins only the service itself imports (a Ray Detector does not; Ray brings its own)."""


# --- where it is ---------------------------------------------------------------------------------
def service_url(namespace: str) -> str:
    """The detector service inside the cluster."""
    return f"http://{SERVICE_NAME}.{namespace}.svc.cluster.local:{PORT}"


def host_url(pins: Pins) -> str:
    """The detector service from the host (its NodePort on 127.0.0.1)."""
    return f"http://127.0.0.1:{pins.detection_port}"


def events_url(service: str, platform: str) -> str:
    """Where a platform's payload logger sends each request (CloudEvents binary mode: body = V2 request)."""
    return sink_urls(service, platform, PAYLOAD_LOGGER)["events"]


def verdicts_url(service: str, platform: str, mechanism: str) -> str:
    """Where code that computes verdicts itself (Ray's Detector) reports them."""
    return sink_urls(service, platform, mechanism)["verdicts"]


def payload_logger(service: str, platform: str) -> dict:
    """A KServe predictor's or a Seldon graph node's `logger`: each request (mode request: the service
    reads V2 requests; a response body would count as a rejected payload) to the service's /events."""
    return {"mode": "request", "url": events_url(service, platform)}


def logger_detection(owner: str, logger_url: str | None, detection: bool | None) -> bool | None:
    """The detection option of a deployment whose one logger slot may also hold a generic `logger_url`:
    both at once is an error; an explicit logger_url turns automatic detection (None) off."""
    if detection and logger_url:
        raise ValueError(f"{owner}: one payload logger per model: logger_url and detection exclude each other")
    return None if detection is None and not logger_url else bool(detection)


# --- what is applied -------------------------------------------------------------------------------
def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def install_command(env=detectors.ENV) -> list[str]:
    """pip install of exactly the local `detectors` environment's pins (one source: testbed.detectors.ENV)."""
    if env.no_deps:
        raise ValueError(f"{env.name}: --no-deps requirements {env.no_deps} need a second pip call; "
                         f"add it to testbed/backends/kind/detection.py install_command")
    return ["python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "--progress-bar", "off",
            "--target", DEPS_DIR, *env.requirements]


def ray_pip(ray_pins, env=detectors.ENV) -> list[str]:
    """The Ray application's pins plus what its Detector loads (ENV without the service-only packages).
    A package pinned by both must be pinned alike (the detectors are pickles: same scikit-learn)."""
    merged = {requirement_name(r): r for r in ray_pins}
    for req in env.requirements:
        name = requirement_name(req)
        if name in SERVICE_ONLY:
            continue
        if name in merged and merged[name] != req:
            raise ValueError(f"Ray pins {merged[name]!r}, the detectors need {req!r}: make them agree "
                             f"(cluster/versions.yaml serving.rayserve.pip, testbed/detectors.py ENV)")
        merged.setdefault(name, req)
    return list(merged.values())


def objects(namespace: str, pins: Pins, *, code_dir: str, detectors_subpath: str, model_sha256: str,
            n_features: int, arch: str = "amd64") -> list[dict]:
    """Deployment, Service, PodMonitor of the detector service (apply in this order), for an `arch` node."""
    image = pins.image_for(pins.detection["image"], arch)
    command = ["python", f"{templates.MOUNT_PATH}/{code_dir}/detector_service.py",
               "--detectors", f"{templates.MOUNT_PATH}/{detectors_subpath}", "--host", "0.0.0.0",
               "--port", str(PORT), "--model-sha256", model_sha256, "--n-features", str(int(n_features))]
    common = dict(name=DEPLOYMENT_NAME, namespace=namespace, labels=LABELS)
    return [
        templates.render("detection/deployment.yaml", image=image, install_command=install_command(),
                         command=command, deps_dir=DEPS_DIR, port=PORT, mount_path=templates.MOUNT_PATH,
                         pvc_name=templates.PVC_NAME, **common),
        templates.render("detection/service.yaml", port=PORT, node_port=pins.detection_port, **common),
        templates.render("detection/podmonitor.yaml", **common),
    ]


# --- up steps --------------------------------------------------------------------------------------
def step_detectors(ctx: UpContext) -> None:
    """Fit (once per artifact and config) or verify the detectors beside the artifact, locally."""
    run = ctx.extra["kind"]
    if not ctx.settings.detection:
        run.plan.note("detection is off (TESTBED_DETECTION=0): no detector service, no payload loggers")
        ctx.say("  detection is off (TESTBED_DETECTION=0)")
        return
    target = detectors.directory_for(ctx.artifact)
    run.detectors_subpath = target.name
    if run.plan.dry_run:
        state = "present (verified, reused)" if _verified(target, ctx.artifact) else "absent: fitted by a real run"
        run.plan.note(f"testbed.detectors.ensure: detectors for {ctx.artifact.name} in {target} ({state}); the "
                      f"node sees them at {templates.MOUNT_PATH}/{target.name} on the artifacts volume")
        return
    fitted = detectors.ensure(ctx.artifact, ctx.settings.envs_dir, ctx.say)
    ctx.extra["detectors"] = fitted
    ctx.say(f"  detectors {fitted.path.name} (config {fitted.metadata['config_key']})")


def _verified(path, artifact) -> bool:
    from testbed.errors import DetectorMismatch

    if not path.exists():
        return False
    try:
        detectors.verify(path, artifact)
        return True
    except DetectorMismatch:
        return False


def step_service(ctx: UpContext, save) -> None:
    """Apply the detector service (before the platforms that send to it) and wait for it."""
    run = ctx.extra["kind"]
    if not ctx.settings.detection:
        return
    objs = objects(run.namespace, run.pins, code_dir=run.code_dir, detectors_subpath=run.detectors_subpath,
                   model_sha256=ctx.artifact.sha256, n_features=len(ctx.artifact.feature_names), arch=run.node_arch)
    run.detection_objects = objs
    run.detector_service = service_url(run.namespace)
    for line in scrape_targets.check(objs[2], scrape_targets.deployment_pods(objs[0])):
        run.plan.note(line)
    started = time.monotonic()
    for obj in objs:
        run.plan.apply(obj)
    state = ctx.extra["kind_detection"] = state_of(run)
    save(ctx)
    host = host_url(run.pins)
    what = f"Deployment {run.namespace}/{DEPLOYMENT_NAME}"
    deadline = started + READY_TIMEOUT_S
    run.plan.wait(f"{what}: condition Available (pip install in its initContainer, then detectors loaded; at most "
                  f"{READY_TIMEOUT_S:.0f}s)", lambda: _wait_available(run, what, deadline))
    run.plan.wait(f"GET {host}/ready answers 200", lambda: wait_http_ok(f"{host}/ready", f"{what} through {host}/ready",
                                                max(10.0, deadline - time.monotonic()), lambda: diagnostics_of(run)))
    run.plan.note(f"platforms send to {run.detector_service} (in the cluster); probes read {host}/verdicts and "
                  f"{host}/metrics; Prometheus scrapes job={PODMONITOR_JOB}")
    if not run.plan.dry_run:
        state["ready_after_s"] = round(time.monotonic() - started, 2)
        ctx.timings["ready:detection"] = state["ready_after_s"]
        save(ctx)
        ctx.say(f"  {what} ready after {state['ready_after_s']:.0f}s; {host}")


def state_of(run) -> dict:
    """The state file's `detection` entry (`status` and the probes read it)."""
    return {"service_url": host_url(run.pins), "in_cluster_url": service_url(run.namespace),
            "deployment": {"name": DEPLOYMENT_NAME, "namespace": run.namespace},
            "service": {"name": SERVICE_NAME, "namespace": run.namespace, "node_port": run.pins.detection_port},
            "detectors_subpath": run.detectors_subpath, "ready_after_s": None, "paths": {}}


def diagnostics_of(run) -> str:
    kubeconfig, ns = run.files.kubeconfig, run.namespace
    return diagnostics.collect(
        diagnostics.object_commands(kubeconfig, "deployment", DEPLOYMENT_NAME, ns)
        + [diagnostics.kubectl(kubeconfig, "logs", "-n", ns, f"deployment/{DEPLOYMENT_NAME}", "-c", container,
                               "--tail", "30") for container in ("pip-install", "detector-service")]
        + diagnostics.namespace_commands(kubeconfig, ns))


def pod_problem(pods: list[dict]) -> str | None:
    """A state the pod will not leave by itself (pip failing again and again, image not pullable), or None."""
    for pod in pods:
        status = pod.get("status") or {}
        for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = ((c.get("state") or {}).get("waiting") or {})
            if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                return f"container {c.get('name')}: {waiting['reason']}: {waiting.get('message', '')}"
            if c.get("name") == "pip-install" and int(c.get("restartCount") or 0) >= INSTALL_FAILURES:
                return (f"initContainer pip-install failed {c['restartCount']} times: does the pod reach PyPI? "
                        f"(its log is below)")
    return None


def _wait_available(run, what: str, deadline: float) -> None:
    def probe():
        obj = run.kube.get("apps/v1", "Deployment", DEPLOYMENT_NAME, run.namespace)
        if obj is None:
            return False, "not found (was it applied?)"
        available = condition(obj, "Available")
        if available and available.get("status") == "True":
            return True, "Available"
        pods = run.kube.list("v1", "Pod", run.namespace,
                             label_selector=label_selector(LABELS))
        problem = pod_problem(pods)
        if problem:
            raise ResourceNotReady(what, problem, None, diagnostics_of(run))
        phases = [f"{p['metadata']['name']}: {(p.get('status') or {}).get('phase')}" for p in pods]
        return False, f"Available={(available or {}).get('status')}; pods {phases or 'none yet'}"

    wait_until(what, max(1.0, deadline - time.monotonic()), probe, lambda: diagnostics_of(run))


# --- what probes see -------------------------------------------------------------------------------
def path_info(ctx: UpContext, platform: str, infer_url: str, label: str, mechanism: str, namespace: str,
              **details) -> dict:
    """Endpoint.detection for one platform on kind (shape: testbed/detection_path.py), host-side URLs."""
    run = ctx.extra["kind"]
    host = host_url(run.pins)
    # namespace + job select this testbed's detector service among every target Prometheus scrapes.
    labels = {"platform": platform, "mechanism": mechanism, "job": PODMONITOR_JOB, "namespace": namespace}
    return describe(ctx.extra["detectors"], platform, infer_url, label, host, labels,
                    detector_service={"host_url": host, "in_cluster_url": service_url(namespace),
                                      "deployment": f"{namespace}/{DEPLOYMENT_NAME}"},
                    detectors_path_in_cluster=f"{templates.MOUNT_PATH}/{run.detectors_subpath}", **details)


def status(recorded: dict | None, kube, client: httpx.Client) -> dict | None:
    """`status --backend kind`: the recorded detector service, checked (Deployment Available, GET /ready)."""
    if not recorded:
        return None
    dep = recorded.get("deployment") or {}
    resource_state = "unknown"
    if kube is not None and dep:
        try:
            obj = kube.get("apps/v1", "Deployment", dep["name"], dep["namespace"])
            available = condition(obj, "Available") if obj else None
            resource_state = ("absent" if obj is None else
                              "Available" if (available or {}).get("status") == "True" else
                              f"Available={(available or {}).get('status')}")
        except Exception as exc:  # an API server that went away: say so, do not fail `status`
            resource_state = f"{type(exc).__name__}: {exc}"
    url = f"{recorded.get('service_url')}/ready"
    try:
        state = "ready" if client.get(url).status_code == 200 else "not ready"
    except httpx.HTTPError:
        state = "unreachable"
    return {**recorded, "state": state, "ready_url": url, "resource_state": resource_state}
