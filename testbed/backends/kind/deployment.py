"""Base class of every platform's kind Deployment: a custom resource plus its endpoint and monitor.

A platform subclass (deployers/<platform>.py) renders its custom resource from the artifact and
says which pods serve, on which port, and when the resource is ready; this class applies it
(through the Plan, so `--dry-run` prints it), waits for its Ready state with a bounded timeout,
then for the model's V2 ready route through the NodePort on 127.0.0.1, and deletes it on teardown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from testbed.backends.kind import diagnostics, scrape_targets, templates
from testbed.backends.kind.budget import Item
from testbed.backends.kind.kube import wait_http_ok, wait_until
from testbed.backends.kind.scrape_targets import GeneratedPod
from testbed.endpoint import Endpoint
from testbed.errors import ResourceNotReady
from testbed.steps import UpContext


@dataclass(frozen=True)
class Target:
    """Everything a kind deployment renders from: pure data, no cluster needed."""

    namespace: str
    node_port: int
    model_name: str
    """The artifact's name: the CR's name and the model name in /v2/models/<name>."""

    artifact_subpath: str
    """The artifact's directory name on the artifacts volume."""

    code_dir: str
    """Directory on the artifacts volume with deployers/runtimes/*.py."""

    serving: dict
    """cluster/versions.yaml `serving.<platform>`: image, scikit-learn version, ..."""

    model_sha256: str = ""
    """The artifact's sha256 (detectors and Ray's Detector check they were fitted for it)."""

    n_features: int = 0
    detectors_subpath: str = ""
    """Directory of the fitted detectors on the artifacts volume (testbed.detectors.dirname_for)."""

    detector_service: str | None = None
    """In-cluster URL of a detector service in this namespace (deployed by `up`), or None."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    failed: bool = False
    """True when the platform reports a state it will not leave by itself (no point waiting)."""


def offline_check(obj: dict) -> str:
    """Validate obj against its upstream CRD vendored in cluster/crds (a dry run's offline proof)."""
    from testbed.backends.kind import crd_schema

    what = templates.object_id(obj)
    key = (obj["apiVersion"], obj["kind"])
    if key not in crd_schema.CRD_FILES:
        return f"{what}: built-in kind, validated by the API server (field validation Strict) on apply"
    schema = crd_schema.load(*key)
    schema.validate(obj)
    return f"{what}: valid against {schema.source} ({schema.version}, unknown fields rejected)"


class KindDeployment:
    platform: str = ""
    api_version: str = ""
    kind: str = ""
    http_port: int = 0
    """The serving container's HTTP port, targeted by the NodePort Service."""

    readiness_needs_pod: str | None = None
    """Why readiness() can only be reached with the serving pod running (the control-plane backend,
    whose pods run nothing, reports it as not verifiable instead of waiting); None: the operator decides."""

    labels_set_when_serving: dict[str, str] = {}
    """Selector labels the operator puts on a pod only once the pod serves: a Service selecting them has
    endpoints only then (the control-plane backend checks the rest of the selector, and says why)."""

    labels_set_when_serving_why: str = ""

    recreated_by: str = "its controller"
    """Who brings a deleted serving pod back (the kill fault's self-recovery on kind), in words."""

    # --- hooks ---------------------------------------------------------------------------------
    def render_resource(self, target: Target) -> dict:
        raise NotImplementedError

    def pod_selector(self, target: Target) -> dict[str, str]:
        """Labels of the pods that serve the model (the NodePort Service and PodMonitor select them)."""
        raise NotImplementedError

    def render_podmonitor(self, target: Target) -> dict:
        return templates.render(f"{self.platform}/podmonitor.yaml", name=f"testbed-{self.platform}",
                                namespace=target.namespace, selector=self.pod_selector(target))

    def readiness(self, obj: dict) -> Readiness:
        raise NotImplementedError

    def generated_pods(self, target: Target) -> list[GeneratedPod]:
        """The pods the platform's operator creates from render_resource(target), with the ports each
        container declares: what the PodMonitor can select (testbed/backends/kind/scrape_targets.py).
        Written from the operator's source at the pinned tag (cited in each subclass)."""
        raise NotImplementedError

    def injected_requests(self, target: Target) -> list[Item]:
        """Resource requests of containers the operator adds to the pods that the custom resource does not
        size (the resource budget counts them beside every `resources.requests` of the resource itself)."""
        return []

    def scrape_plan(self, target: Target) -> list[str]:
        """Per PodMonitor endpoint: what Prometheus will scrape, next to the ports the generated pods
        declare. NoScrapeTarget (before anything is applied) when an endpoint would scrape nothing."""
        return scrape_targets.check(self.render_podmonitor(target), self.generated_pods(target))

    def expected_targets(self, target: Target) -> int:
        """How many `up` series the PodMonitor yields once every generated pod runs."""
        monitor = self.render_podmonitor(target)
        pods = self.generated_pods(target)
        return sum(len(scrape_targets.endpoint_targets(monitor, i, pods))
                   for i in range(len(monitor["spec"]["podMetricsEndpoints"])))

    def make_endpoint(self, base_url: str, model_name: str) -> Endpoint:
        raise NotImplementedError

    @classmethod
    def variants(cls) -> list[dict]:
        """Constructor options covering every option this deployment has (the schema tests render each)."""
        return [{}]

    # --- detection (testbed/backends/kind/detection.py) ----------------------------------------
    detection: bool | None = False
    """A subclass's constructor option: True on, False off, None (what `up` uses): on when the backend
    deployed a detector service in the deployment's namespace (Target.detector_service)."""

    detection_label: str = "none"
    """How detection is wired on kind (testbed.endpoint.DETECTION_LABELS): native, add-on or user code."""

    def detection_route(self, target: Target, base_url: str) -> dict | None:
        """This platform's detection path: {"url", "label", "mechanism", **details}; None: it has none."""
        return None

    def service_port(self, target: Target) -> int:
        """The pod port the NodePort Service targets: where requests enter the platform's pod."""
        return self.http_port

    def detection_on(self, target: Target) -> bool:
        return bool(target.detector_service) if self.detection is None else bool(self.detection)

    def detector_service(self, target: Target) -> str:
        from testbed.backends.kind import detection

        return target.detector_service or detection.service_url(target.namespace)

    # --- construction --------------------------------------------------------------------------
    def __init__(self, namespace: str | None = None, node_port: int | None = None):
        self.namespace = namespace
        """None: the backend's namespace (UpContext.extra["kind"].namespace)."""

        self.node_port = node_port
        """None: this platform's port in cluster/ports.yaml."""

        self.started_at: float | None = None
        self.ready_after_s: float | None = None
        self._target: Target | None = None

    def target(self, ctx: UpContext) -> Target:
        if self._target is None:
            from testbed.detectors import dirname_for

            run = ctx.extra["kind"]
            namespace = self.namespace or run.namespace
            self._target = Target(
                namespace=namespace,
                node_port=self.node_port or run.pins.node_port(self.platform),
                model_name=ctx.artifact.name, artifact_subpath=run.artifact_subpath, code_dir=run.code_dir,
                serving=run.pins.serving_for(self.platform, run.node_arch), model_sha256=ctx.artifact.sha256,
                n_features=len(ctx.artifact.feature_names),
                detectors_subpath=run.detectors_subpath or dirname_for(run.artifact_subpath),
                detector_service=run.detector_service if namespace == run.namespace else None)
        return self._target

    def manifests(self, target: Target) -> list[dict]:
        """What deploy applies, in order: the custom resource, its NodePort Service, its PodMonitor."""
        return [
            self.render_resource(target),
            templates.nodeport_service(self.platform, target.namespace, self.pod_selector(target), self.service_port(target),
                                       target.node_port),
            self.render_podmonitor(target),
        ]

    # --- Deployment protocol -------------------------------------------------------------------
    def deploy(self, ctx: UpContext) -> None:
        target = self.target(ctx)
        plan = ctx.extra["kind"].plan
        for line in self.scrape_plan(target):
            plan.note(line)
        self.started_at = time.monotonic()
        for obj in self.manifests(target):
            if plan.dry_run:
                plan.note(offline_check(obj))
            plan.apply(obj)
        route = self.detection_route(target, f"http://127.0.0.1:{target.node_port}") \
            if self.detection_on(target) else None
        if route:
            plan.note(f"{self.platform} detection path ({route['label']}, mechanism {route['mechanism']!r}): "
                      f"{route['url']} -> {self.detector_service(target)}")

    def wait_ready(self, ctx: UpContext, timeout_s: float) -> Endpoint:
        run, target = ctx.extra["kind"], self.target(ctx)
        endpoint = self.endpoint(ctx)
        what = f"{self.kind} {target.namespace}/{target.model_name}"
        started = self.started_at or time.monotonic()
        deadline = started + timeout_s
        run.plan.wait(f"{what}: {self._ready_text()} (at most {timeout_s:.0f}s)",
                      lambda: self._wait_resource(run, target, what, deadline))
        run.plan.wait(f"GET {endpoint.model_ready_url} answers 200",
                      lambda: self._wait_http(run, target, endpoint, what, deadline))
        if not run.plan.dry_run:
            self.ready_after_s = round(time.monotonic() - started, 2)
        return endpoint

    def endpoint(self, ctx: UpContext) -> Endpoint:
        target = self.target(ctx)
        endpoint = self.make_endpoint(f"http://127.0.0.1:{target.node_port}", target.model_name)
        route = self.detection_route(target, endpoint.base_url) if self.detection_on(target) else None
        if route is None or ctx.extra.get("detectors") is None:  # none, or a dry run before any fitting
            return endpoint
        from dataclasses import replace

        from testbed.backends.kind import detection

        route = dict(route)
        info = detection.path_info(ctx, self.platform, route.pop("url"), route.pop("label"), route.pop("mechanism"),
                                   target.namespace, **route)
        return replace(endpoint, detection=info)

    def teardown(self, ctx: UpContext) -> None:
        """Delete what deploy applied (the CR's own Services and pods go with it). Safe when absent."""
        run = ctx.extra["kind"]
        target = self.target(ctx)
        for obj in reversed(self.manifests(target)):
            if run.plan.dry_run:
                run.plan.note(f"delete {templates.object_id(obj)}")
            else:
                run.kube.delete(obj)

    # --- waiting -------------------------------------------------------------------------------
    def _ready_text(self) -> str:
        return "Ready"

    def _state(self, run, target: Target) -> str:
        kubeconfig = run.files.kubeconfig
        return diagnostics.collect(
            diagnostics.object_commands(kubeconfig, self.kind.lower(), target.model_name, target.namespace)
            + diagnostics.namespace_commands(kubeconfig, target.namespace))

    def _wait_resource(self, run, target: Target, what: str, deadline: float) -> None:
        def probe():
            obj = run.kube.get(self.api_version, self.kind, target.model_name, target.namespace)
            if obj is None:
                return False, "not found (was it applied?)"
            state = self.readiness(obj)
            if state.failed:
                raise ResourceNotReady(what, state.reason, None, self._state(run, target))
            return state.ready, state.reason

        wait_until(what, max(1.0, deadline - time.monotonic()), probe, lambda: self._state(run, target))

    def _wait_http(self, run, target: Target, endpoint: Endpoint, what: str, deadline: float) -> None:
        wait_http_ok(endpoint.model_ready_url, f"{what} through 127.0.0.1:{target.node_port}",
                     max(10.0, deadline - time.monotonic()), lambda: self._state(run, target))

    # --- persisted form (the state file), so `status` and `down` work from another process ----
    def to_state(self, ctx: UpContext) -> dict:
        target = self.target(ctx)
        return {"resource": {"apiVersion": self.api_version, "kind": self.kind, "name": target.model_name,
                             "namespace": target.namespace},
                "node_port": target.node_port, "ready_after_s": self.ready_after_s,
                "endpoint": self.endpoint(ctx).to_json()}
