"""`up`, `status` and `down` for the control-plane backend.

`up` starts the control plane and the operators as processes (cached binaries of `make
controlplane`), then runs the kind backend's own steps against that API server: its artifact step,
its namespace step, its detector-service objects, its `deploy platforms` step (each platform's
KindDeployment, unchanged) and each deployment's own readiness rule. What the kind path generates is
then checked (verify.py) and the findings are kept in the state file, which `status` re-checks.
Nothing runs in a pod: kwok plays the node, so images, model loading and requests into pods are
listed as not verifiable here.
"""

from __future__ import annotations

import base64
import shutil
import sys
import time
from pathlib import Path

from deployers import get_platform
from testbed import state as state_io
from testbed.backends.controlplane import build, charts, core, elsewhere, pki as pki_mod, prometheus, verify
from testbed.backends.controlplane import crds as crds_mod
from testbed.backends.controlplane import processes as procs
from testbed.backends.controlplane.operators import OPERATORS, Operator
from testbed.backends.kind.cluster import ClusterFiles
from testbed.backends.kind.context import KindRun
from testbed.backends.kind.kube import wait_until
from testbed.backends.kind.pins import pins as load_pins
from testbed.backends.kind.plan import Plan
from testbed.errors import PreflightFailed, TestbedError
from testbed.settings import Settings
from testbed.steps import Step, UpContext

STATE_SCHEMA = "testbed.controlplane-state/v1"
START_TIMEOUT_S = 180.0
CRD_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 300.0
NAMESPACE_TIMEOUT_S = 180.0
KUBERNETES = "kubernetes"
BASE_COMPONENTS = ("etcd", KUBERNETES, "kwok", "helm", "prometheus-operator", "prometheus")
"""Built components every run needs; each platform's operator comes on top (operators._operators)."""


def layout(settings: Settings) -> core.Layout:
    return core.Layout(settings.state_dir / "controlplane")


class ControlPlaneBackend:
    name = "controlplane"

    # --- up ------------------------------------------------------------------------------------
    def up_steps(self, ctx: UpContext) -> list[Step]:
        from testbed.backends.kind.backend import KindBackend

        if ctx.dry_run:
            raise TestbedError("--dry-run is the kind backend's (`up --backend kind --dry-run`); the control-plane "
                               "backend exists to apply that plan to a real API server")
        kind = KindBackend()
        pins = load_pins()
        lay = layout(ctx.settings)
        namespace = ctx.extra.get("namespace") or "testbed"
        run = KindRun(pins=pins, files=ClusterFiles(name="testbed-controlplane", dir=lay.kind_dir),
                      plan=Plan(dry_run=False, out=ctx.out, log=ctx.out), namespace=namespace,
                      platforms=tuple(ctx.settings.platforms))
        ctx.extra["kind"] = run
        ctx.extra["cp"] = {"layout": lay, "records": {}, "not_applied": [], "operators": {}, "findings": {}}
        ctx.deployments = {name: get_platform(name).deployment_for("kind") for name in ctx.settings.platforms}
        return [
            Step("preflight: cached binaries", self._preflight),
            Step("model artifact (kind step)", kind._artifact),
            Step("detector names", self._detector_names),
            Step("etcd, kube-apiserver, controller-manager, scheduler, kwok", self._control_plane),
            Step("operators' CRDs, configuration and RBAC (charts rendered)", self._operator_config),
            Step("operators as processes, webhooks on loopback", self._operators),
            Step("namespace and model volume (kind step)", lambda c: self._kind_step(c, kind._namespace)),
            Step("detector service objects", self._detector_service),
            Step("deploy platforms (kind step)", lambda c: self._deploy(c, kind)),
            Step("operators reconcile: each platform's readiness rule", self._wait_ready),
            Step("checks: objects, endpoints, ports, scrape config", self._verify),
            Step("Prometheus (prometheus-operator config, kubernetes_sd)", self._prometheus),
            Step("finish", self._finish),
        ]

    def _preflight(self, ctx: UpContext) -> None:
        needed = [*BASE_COMPONENTS, *[op.component for op in _operators(ctx.extra["kind"])]]
        found = {name: b for name, b in build.find(needed).items()}
        missing = [name for name, b in found.items() if b is None]
        if missing:
            raise PreflightFailed([f"control-plane binaries not built: {', '.join(missing)}. Run `make controlplane` "
                                   f"(Go >= {build.load()[0]}, no Docker; the first build takes long, later runs seconds)"])
        prom = prometheus.binary()
        if prom is None:
            raise PreflightFailed([prometheus.MISSING])
        cp = ctx.extra["cp"]
        cp["built"] = found
        cp["versions"] = {name: b.component.version for name, b in found.items()}
        cp["versions"]["prometheus"] = prometheus.version(prom)
        cp["skew"] = {name: {"built": b.component.version, **b.component.skew}
                      for name, b in found.items() if b.component.skew}
        cp["unverifiable"] = unverifiable_platforms(ctx.extra["kind"])
        ctx.say("  " + ", ".join(f"{k} {v}" for k, v in cp["versions"].items()))
        for name, s in cp["skew"].items():
            ctx.say(f"  VERSION SKEW {name}: {s['built']} here, the kind path pins {s['kind_pin']} ({s['why']})")
        for platform, u in cp["unverifiable"].items():
            ctx.say(f"  NOT RUN {u['operator']} {u['kind_pin']} ({platform}): {u['why']}")

    def _detector_names(self, ctx: UpContext) -> None:
        """The kind backend fits detectors here; no pod loads them on kwok, so only their name is needed."""
        from testbed import detectors

        run = ctx.extra["kind"]
        if ctx.settings.detection:
            run.detectors_subpath = detectors.directory_for(ctx.artifact).name
            ctx.say(f"  detectors directory {run.detectors_subpath} (not fitted: no pod reads it here)")

    def _control_plane(self, ctx: UpContext) -> None:
        cp, run = ctx.extra["cp"], ctx.extra["kind"]
        lay: core.Layout = cp["layout"]
        if lay.state.is_file() and any(procs.running(r) for r in
                                       (state_io.load(lay.dir) or {}).get("processes", {}).values()):
            raise TestbedError(f"A control plane from an earlier `up` still runs (state {lay.state}). Run "
                               f"`python -m testbed down --backend controlplane` first.")
        shutil.rmtree(lay.etcd_data, ignore_errors=True)
        pki = cp["pki"] = pki_mod.ensure(lay.pki_dir)
        built = cp["built"]
        bins = {b: built[c].binary(b) for c in ("etcd", KUBERNETES, "kwok") for b in built[c].component.binaries}
        plist = core.processes(lay, bins, built["kwok"].share / "kustomize" / "stage", pki,
                               built[KUBERNETES].component.version)
        admin = (str(pki.cert("admin")), str(pki.key("admin")))
        for p in plist:
            procs.start(p)
            cp["records"][p.name] = p.record()
            self._save(ctx)
            ca = str(pki.ca_cert) if p.name == "kube-apiserver" else None
            seconds = procs.wait_healthy(p, START_TIMEOUT_S, client_cert=admin if ca else None, ca=ca)
            ctx.say(f"  {p.name} pid {p.pid} healthy after {seconds:.1f}s ({p.health})")
        cp["api_server"] = f"https://127.0.0.1:{plist[1].ports['secure']}"
        run.plan.apply_fn = run.kube.apply
        node = core.node(run.pins.minimum_cpus, run.pins.minimum_memory_gib, run.pins.kubernetes)
        run.kube.apply(node)
        wait_until(f"node {core.NODE_NAME} Ready (kwok)", 60, lambda: _node_ready(run.kube))
        ctx.say(f"  node {core.NODE_NAME}: {run.pins.minimum_cpus} CPU, {run.pins.minimum_memory_gib:g} GiB "
                f"(the kind preflight's minimum Docker engine), Ready")
        self._save(ctx)

    def _operator_config(self, ctx: UpContext) -> None:
        cp, run = ctx.extra["cp"], ctx.extra["kind"]
        built = cp["built"]
        helm = built["helm"].binary("helm")
        kube_version = built[KUBERNETES].component.version
        releases = [c.release for c in run.pins.charts_for(run.platforms)]  # what the kind path installs
        rendered: dict[str, charts.Rendered] = {}
        for op in _operators(run):
            if op.chart_path:
                rendered[op.release] = charts.render(helm, run.pins.chart(op.release),
                                                     built[op.component].share / op.chart_path, kube_version)
        # An operator's other charts the kind backend installs (KServe: its CRDs and runtime configs).
        for op in _operators(run):
            for release in op.other_charts:
                if release in releases:
                    rendered[release] = charts.render(helm, run.pins.chart(release),
                                                      built[op.component].share / "charts" / release, kube_version)
        # CRDs of charts not rendered here (KubeRay's module has no chart; Seldon's chart is not to be had):
        # the vendored files, which are what the kind path's charts install (cluster/crds/SOURCES.md).
        groups = {name.split(".", 1)[1] for name in run.pins.crds_for(run.platforms)}
        crds, cp["findings"]["crds"] = crds_mod.plan([c for r in rendered.values() for c in r.crds],
                                                     prometheus.operator_crds(built["prometheus-operator"].share),
                                                     vendored_groups=(prometheus.GROUP, *sorted(groups)))
        ctx.say(f"  {cp['findings']['crds']['state'].upper()} crds: {cp['findings']['crds']['text']}")
        namespaces = sorted({run.pins.chart(op.release).namespace for op in _operators(run) if op.release}
                            | {prometheus.NAMESPACE})
        cp["namespaces"] = namespaces  # `down` deletes these (KubeRay's comes from no rendered chart)
        for ns in namespaces:
            run.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for crd in crds:
            run.kube.apply(crd)
        names = [c["metadata"]["name"] for c in crds]
        from testbed.backends.kind import infrastructure

        wait_until("CRDs Established", CRD_TIMEOUT_S, infrastructure.crds_established(run.kube, tuple(names)))
        for r in rendered.values():
            for obj in r.rbac + r.config:
                run.kube.apply(obj)
            cp["not_applied"] += [list(x) for x in r.not_applied]
        cp["launches"] = {}
        for op in _operators(run):
            if op.release and not op.chart_path:  # KubeRay: from its module (operators.KubeRay)
                launch, rbac, deviations = op.launch_from_module(built[op.component].share,
                                                                 run.pins.chart(op.release).namespace)
                for obj in rbac:
                    run.kube.apply(obj)
                cp["launches"][op.component] = (launch, deviations)
                cp["not_applied"].append([f"chart {op.release} {run.pins.chart(op.release).version}",
                                          f"not a Go module: its RBAC is {op.component} "
                                          f"{built[op.component].component.version}'s config/rbac, its arguments "
                                          f"the chart's defaults (operators.KubeRay)"])
        cp["rendered"] = rendered
        cp["crds"] = names
        ctx.say(f"  {len(crds)} CRDs Established; {sum(len(r.rbac) + len(r.config) for r in rendered.values())} RBAC and "
                f"configuration objects applied from {', '.join(rendered)}; {len(cp['not_applied'])} not applied "
                f"(done by this backend instead: see status)")
        self._save(ctx)

    def _operators(self, ctx: UpContext) -> None:
        cp, run = ctx.extra["cp"], ctx.extra["kind"]
        lay: core.Layout = cp["layout"]
        pki: pki_mod.Pki = cp["pki"]
        ca_b64 = base64.b64encode(pki.ca_bundle()).decode()
        rendered: dict[str, charts.Rendered] = cp["rendered"]
        for op in _operators(run):
            built = cp["built"][op.component]
            workdir = lay.dir / "operators" / op.component
            ports = op.ports()
            deviations = []
            if op.release is None:
                launch = prometheus.operator_launch(cp["api_server"], pki, ports)
                kubeconfig = lay.kubeconfig("admin")
            else:
                if op.component in cp["launches"]:
                    launch, deviations = cp["launches"][op.component]
                else:
                    r = rendered[op.release]
                    deployment = next(d for d in r.deployments if _has_container(d, op.container))
                    launch = op.launch_from(deployment, r.config)
                kubeconfig = lay.dir / f"{op.component}.kubeconfig"
                token = _service_account_token(run.kube, launch.namespace, launch.service_account)
                kubeconfig.write_text(pki_mod.kubeconfig(pki, cp["api_server"], launch.service_account, token=token))
            p = op.process(launch, built.binary(op.binary), workdir, kubeconfig, lay.logs / f"{op.component}.log", ports)
            p.env.setdefault("POD_NAMESPACE", launch.namespace)
            if op.webhook:
                certs = op.webhook_cert_dir(workdir)
                certs.mkdir(parents=True, exist_ok=True)
                shutil.copy(pki.cert("webhook"), certs / "tls.crt")
                shutil.copy(pki.key("webhook"), certs / "tls.key")
            procs.start(p)
            cp["records"][op.component] = p.record()
            cp["operators"][op.component] = {"identity": f"ServiceAccount {launch.namespace}/{launch.service_account}"
                                             if op.release else "testbed admin certificate",
                                             "args": p.argv[1:], "ports": ports, "log": str(p.log),
                                             "version": built.component.version,
                                             "deviations": [{"what": w, "why": y} for w, y in deviations]}
            self._save(ctx)
            seconds = procs.wait_healthy(p, START_TIMEOUT_S)
            ctx.say(f"  {op.component} pid {p.pid} healthy after {seconds:.1f}s ({p.health}); runs as "
                    f"{cp['operators'][op.component]['identity']}")
            if op.release in rendered:
                for config in rendered[op.release].webhooks:
                    hooked = charts.webhooks_to_loopback(config, ports["webhook"], ca_b64) if op.webhook else config
                    run.kube.apply(hooked)
                    cp["operators"][op.component].setdefault("webhooks", []).append(
                        {"kind": hooked["kind"], "name": hooked["metadata"]["name"],
                         "urls": [h["clientConfig"].get("url") for h in hooked.get("webhooks") or []]})
        # Objects of the operators' own kinds, after their webhooks serve (kind: kserve-runtime-configs).
        for r in rendered.values():
            for obj in r.resources:
                run.kube.apply(obj)
        prometheus.apply_prometheus(run.kube, cp)
        self._save(ctx)

    def _kind_step(self, ctx: UpContext, step) -> None:
        ctx.extra["kind"].plan.begin("kind")
        step(ctx)

    def _deploy(self, ctx: UpContext, kind) -> None:
        where = elsewhere.checkout()
        if where is not None:
            elsewhere.use(ctx.deployments, where, ctx.say)
            ctx.extra["cp"]["kind_path_at"] = str(where)
        self._kind_step(ctx, kind._deploy)

    def _detector_service(self, ctx: UpContext) -> None:
        """The kind step's objects and its Deployment-Available wait; its GET /ready through the NodePort
        needs a running pod, which kwok does not have."""
        from testbed.backends.kind import detection

        run = ctx.extra["kind"]
        if not ctx.settings.detection:
            return
        objs = detection.objects(run.namespace, run.pins, code_dir=run.code_dir, detectors_subpath=run.detectors_subpath,
                                 model_sha256=ctx.artifact.sha256, n_features=len(ctx.artifact.feature_names))
        run.detection_objects = objs
        run.detector_service = detection.service_url(run.namespace)
        for obj in objs:
            run.plan.apply(obj)
        ctx.extra["kind_detection"] = detection.state_of(run)
        detection._wait_available(run, f"Deployment {run.namespace}/{detection.DEPLOYMENT_NAME}",
                                   time.monotonic() + READY_TIMEOUT_S)
        ctx.say(f"  Deployment {run.namespace}/{detection.DEPLOYMENT_NAME} Available (kwok pod)")

    def _wait_ready(self, ctx: UpContext) -> None:
        cp, run = ctx.extra["cp"], ctx.extra["kind"]
        readiness = cp["findings"]["readiness"] = {}
        for name, dep in ctx.deployments.items():
            target = dep.target(ctx)
            what = f"{dep.kind} {target.namespace}/{target.model_name}"
            if name in cp["unverifiable"]:
                u = cp["unverifiable"][name]
                readiness[name] = {"state": verify.NOT_VERIFIABLE,
                                   "text": f"{what} {dep._ready_text()}: not verifiable here ({u['operator']} "
                                           f"{u['kind_pin']} is not run: {u['why']})"}
                ctx.say(f"  {name}: {readiness[name]['text']}")
                continue
            reachable = verify.ready_reachable(dep)
            if not reachable:
                # What it can reach here: its operator making the pods (then the checks see them).
                try:
                    wait_until(f"{what}: its operator creates pods", READY_TIMEOUT_S, lambda: (
                        any(o["kind"] == "Pod" for o in verify.owned(run.kube, dep.api_version, dep.kind,
                                                                      target.model_name, target.namespace)["objects"]),
                        "no pod yet"))
                except TestbedError:
                    pass  # the `owned` check reports it
                readiness[name] = verify.unreachable_readiness(run.kube, dep, target)
                ctx.say(f"  {name}: {readiness[name]['text']}")
                continue
            started = time.monotonic()
            try:
                dep._wait_resource(run, target, what, time.monotonic() + READY_TIMEOUT_S)
                readiness[name] = {"state": "pass", "text": f"{what}: {dep._ready_text()} after "
                                                            f"{time.monotonic() - started:.0f}s"}
            except TestbedError as exc:
                readiness[name] = {"state": "fail", "text": f"{what}: {str(exc).splitlines()[0]}"}
            ctx.say(f"  {name}: {readiness[name]['text']}")
        self._save(ctx)

    def _verify(self, ctx: UpContext) -> None:
        cp, run = ctx.extra["cp"], ctx.extra["kind"]
        cp["findings"].update(verify.run_checks(ctx, cp))
        for line in verify.summary_lines(cp["findings"]):
            ctx.say(f"  {line}")
        self._save(ctx)

    def _prometheus(self, ctx: UpContext) -> None:
        cp = ctx.extra["cp"]
        prom = prometheus.start(ctx, cp)
        cp["records"]["prometheus"] = prom.record()
        self._save(ctx)
        cp["findings"]["scrape"] = prometheus.check_targets(ctx, cp)
        for line in verify.summary_lines({"scrape": cp["findings"]["scrape"]}):
            ctx.say(f"  {line}")
        self._save(ctx)

    def _finish(self, ctx: UpContext) -> None:
        from testbed import kubernetes_path

        cp = ctx.extra["cp"]
        cp["complete"] = True
        cp["verified_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if cp.get("kind_path_at"):
            ctx.say(f"  no Kubernetes-path level recorded: the objects came from {cp['kind_path_at']} ({elsewhere.ENV})")
            verdicts = {}
        else:
            verdicts = {name: verify.platform_verdict(cp["findings"], name, unverifiable=cp["unverifiable"].get(name),
                                                  skew=_platform_skew(ctx.extra["kind"], name, cp["skew"]))
                        for name in ctx.deployments}
            path = kubernetes_path.record("controlplane", verdicts, cp["versions"],
                                          detail="python -m testbed up --backend controlplane")
            ctx.say(f"  recorded in {path}: " + ", ".join(f"{n} {kubernetes_path.verdict_word(v)}"
                                                         for n, v in verdicts.items()))
        self._save(ctx)
        failed = verify.failed(cp["findings"])
        if failed:
            raise verify.ChecksFailed(failed, cp["layout"].state)

    # --- state ---------------------------------------------------------------------------------
    def _save(self, ctx: UpContext) -> None:
        cp, run = ctx.extra["cp"], ctx.extra["kind"]
        lay: core.Layout = cp["layout"]
        state_io.atomic_write_json(lay.state, {
            "schema": STATE_SCHEMA, "backend": self.name, "complete": bool(cp.get("complete")),
            "verified_at": cp.get("verified_at"), "api_server": cp.get("api_server"),
            "kubeconfig": str(lay.kubeconfig()), "namespace": run.namespace,
            "namespaces": sorted({run.namespace, *cp.get("namespaces", []),
                                  *[run.pins.chart(r).namespace for r in (cp.get("rendered") or {})]}),
            "versions": cp.get("versions", {}), "skew": cp.get("skew", {}), "unverifiable": cp.get("unverifiable", {}),
            "processes": cp["records"], "operators": cp["operators"],
            "not_applied": cp["not_applied"], "crds": cp.get("crds", []),
            "model": ctx.artifact.summary() if ctx.artifact else None,
            "platforms": {name: {"resource": {"apiVersion": dep.api_version, "kind": dep.kind,
                                              "name": dep.target(ctx).model_name,
                                              "namespace": dep.target(ctx).namespace}}
                          for name, dep in ctx.deployments.items() if dep.started_at is not None},
            "applied": [charts.object_id(o) for o in run.plan.manifests()],
            "findings": cp["findings"], "timings": ctx.timings, "kind_path_at": cp.get("kind_path_at"),
        })

    # --- failure -------------------------------------------------------------------------------
    def rollback(self, ctx: UpContext) -> None:
        """Keep everything running when every step ran and a check failed (the findings are the result;
        `status` and `down` work as after a passing run) or with --retain; else stop what started."""
        cp = ctx.extra.get("cp") or {}
        if cp.get("complete") or ctx.extra.get("retain"):
            ctx.say(f"  left running for inspection: `python -m testbed status --backend controlplane`; "
                    f"`python -m testbed down --backend controlplane` stops it")
            return
        for name, record in reversed(list((cp.get("records") or {}).items())):
            if procs.stop(record):
                ctx.say(f"  stopped {name}")

    def already_up(self, settings: Settings) -> dict | None:
        return None

    # --- down / status -------------------------------------------------------------------------
    def down(self, settings: Settings, out=None) -> list[str]:
        lay = layout(settings)
        recorded = state_io.load(lay.dir)
        if recorded is None:
            return []
        lines = []
        records = recorded.get("processes") or {}
        if procs.running(records.get("kube-apiserver") or {}):
            try:
                lines += _delete_namespaces(lay, recorded)
            except TestbedError as exc:  # stop the processes all the same; say what did not finish
                lines.append(f"namespaces did NOT finish terminating: {str(exc).splitlines()[0]}")
        for name, record in reversed(list(records.items())):
            if procs.stop(record):
                lines.append(f"stopped {name} (pid {record['pid']})")
        shutil.rmtree(lay.etcd_data, ignore_errors=True)
        shutil.rmtree(lay.dir / "operators", ignore_errors=True)
        (lay.kind_dir / "state.json").unlink(missing_ok=True)
        lay.state.unlink(missing_ok=True)
        return lines

    def status(self, settings: Settings) -> dict:
        from testbed.backends.controlplane.status import status

        return status(layout(settings))

    def faults(self, settings: Settings, dry_run: bool = False, out=None):
        raise TestbedError("The control-plane backend runs no pod: fault probes need `--backend local` or `kind`.")


def _operators(run: KindRun) -> list[Operator]:
    """The operators of the charts the kind path installs for these platforms (prometheus-operator always)."""
    releases = {c.release for c in run.pins.charts_for(run.platforms)}
    return [op for op in (cls() for cls in OPERATORS) if op.release is None or op.release in releases]


def unverifiable_platforms(run: KindRun) -> dict[str, dict]:
    """platform -> {"operator", "kind_pin", "why"} for each chosen platform whose operator cannot be built
    here (cluster/versions.yaml `unbuildable`): what only that operator does is not verifiable."""
    out = {}
    for operator, spec in build.unbuildable().items():
        for platform in run.platforms:
            if spec.get("release") in run.pins.platform_parts.get(platform, {}).get("charts", ()):
                out[platform] = {"operator": operator, "kind_pin": str(spec.get("kind_pin")), "why": spec["why"]}
    return out


def _platform_skew(run: KindRun, platform: str, skew: dict) -> dict | None:
    """The built operator of this platform whose version differs from the kind path's pin, if any."""
    charts = run.pins.platform_parts.get(platform, {}).get("charts", ())
    for op in _operators(run):
        if op.release in charts and op.component in skew:
            return {"component": op.component, **skew[op.component]}
    return None


def _node_ready(kube) -> tuple[bool, str]:
    from testbed.backends.kind.kube import condition

    node = kube.get("v1", "Node", core.NODE_NAME)
    ready = condition(node, "Ready")
    return bool(ready and ready.get("status") == "True"), f"Ready={(ready or {}).get('status')}"


def _has_container(deployment: dict, name: str) -> bool:
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    return any(c.get("name") == name for c in containers) or len(containers) == 1


def _service_account_token(kube, namespace: str, name: str | None) -> str:
    if not name:
        raise TestbedError(f"the operator's Deployment in {namespace} names no ServiceAccount")
    from kubernetes import client

    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=86400))
    result = client.CoreV1Api(kube.dyn.client).create_namespaced_service_account_token(name, namespace, body)
    return result.status.token


def _delete_namespaces(lay: core.Layout, recorded: dict) -> list[str]:
    """Delete the testbed's namespace first and see it finish terminating while the operators still run
    with valid credentials, then the operators' and monitoring namespaces.

    Why the order: the custom resources carry finalizers that only their operator removes (KServe's
    InferenceService `inferenceservice.finalizers`); each operator authenticates with a token of its
    chart's ServiceAccount, which lives in its own namespace. Deleting every namespace at once deletes
    those ServiceAccounts, the operator's token stops being accepted, the finalizer stays, and the
    testbed's namespace never finishes terminating (seen: 168 s and counting)."""
    from testbed.backends.kind.kube import Kube

    kube = Kube(lay.kubeconfig())
    names = recorded.get("namespaces") or []
    first = [n for n in names if n == recorded.get("namespace")]
    lines = []
    started = time.monotonic()
    for group in (first, [n for n in names if n not in first]):
        group_started = time.monotonic()
        for ns in group:
            if kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}):
                lines.append(f"deleted namespace {ns}")
        for ns in group:
            _wait_namespace_gone(kube, ns, max(5.0, NAMESPACE_TIMEOUT_S - (time.monotonic() - started)))
        if group:
            lines.append(f"  {', '.join(group)} gone {time.monotonic() - group_started:.1f}s after the delete")
    if names:
        lines.append(f"namespaces {', '.join(names)} finished terminating after {time.monotonic() - started:.0f}s")
    for pv in kube.list("v1", "PersistentVolume", label_selector="app.kubernetes.io/part-of=ml-deployment-testbed"):
        kube.delete(pv)
    return lines


def _wait_namespace_gone(kube, namespace: str, timeout_s: float) -> None:
    """Wait for the namespace to be gone; on time-out, say what keeps it (its status conditions name the
    remaining content and finalizers)."""
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    try:
        kube.wait_gone(obj, timeout_s)
    except TestbedError:
        ns = kube.get("v1", "Namespace", namespace) or {}
        conditions = [f"{c.get('type')}: {c.get('message')}" for c in (ns.get("status") or {}).get("conditions") or []
                      if c.get("status") == "True"]
        raise TestbedError(f"namespace {namespace} did not finish terminating within {timeout_s:.0f}s: "
                           + ("; ".join(conditions) or "no condition says why")) from None
