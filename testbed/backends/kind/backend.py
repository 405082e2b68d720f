"""`up`, `status` and `down` for the kind backend.

`up` is a list of steps over one UpContext; each step acts through the Plan (context.KindRun.plan),
so `--dry-run` prints exactly the commands and manifests a real run would use. Every step is
idempotent (kind cluster reused when healthy, `helm upgrade --install`, server-side apply), so
running `up` again finishes what a failed run left.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from deployers import get_platform
from testbed import artifact as artifact_mod
from testbed import state as state_io
from testbed.backends.kind import architecture, budget, cluster, failure, helm, infrastructure, preflight, \
    scrape_targets, templates
from testbed.backends.kind import detection as kind_detection
from testbed.backends.kind.context import KindRun, runtime_code_dirname, stage_runtime_code
from testbed.backends.kind.kube import wait_until
from testbed.backends.kind.pins import Chart, pins as load_pins
from testbed.backends.kind.plan import Plan, run, tail_of
from testbed.backends.kind.status import cluster_status
from testbed.errors import ClusterConflict, PreflightFailed, TestbedError
from testbed.settings import Settings
from testbed.steps import Step, UpContext, verify_parity

KIND_READY_FLOOR_S = 900.0
"""Each platform may take this long on kind: the first run pulls several GB of images (Ray's alone is large)."""

INFRA_TIMEOUT_S = 300.0
SCRAPE_TIMEOUT_S = 180.0
STATE_SCHEMA = "testbed.kind-state/v1"


class KindBackend:
    name = "kind"

    # --- up ------------------------------------------------------------------------------------
    def up_steps(self, ctx: UpContext) -> list[Step]:
        pins = load_pins()
        plan = Plan(dry_run=ctx.dry_run, out=ctx.extra.get("plan_out") or sys.stdout, log=ctx.out)
        ctx.extra["kind"] = KindRun(pins=pins, files=cluster.files(ctx.settings, pins), plan=plan,
                                    namespace=ctx.extra.get("namespace") or "testbed",
                                    platforms=tuple(ctx.settings.platforms))
        ctx.deployments = {name: get_platform(name).deployment_for(self.name) for name in ctx.settings.platforms}
        steps = [
            Step("preflight", self._preflight),
            Step("model artifact", self._artifact),
            Step("detectors", kind_detection.step_detectors),
            Step("kind cluster", self._cluster),
            Step("pre-load images", self._load_images),
            *[Step(f"helm {chart.release} {chart.version}", lambda c, chart=chart: self._helm(c, chart))
              for chart in pins.charts_for(tuple(ctx.settings.platforms))],
            Step("wait for CRDs, webhooks and controllers", self._wait_infrastructure),
            Step("namespace and model volume", self._namespace),
            Step("detector service", lambda c: kind_detection.step_service(c, self._save)),
            Step("deploy platforms", self._deploy),
            Step("wait for readiness", self._wait_ready),
            Step("prediction parity", self._parity),
            Step("Prometheus scrapes each platform", self._scrapes),
            Step("finish", self._finish),
        ]
        return [Step(s.name, lambda c, s=s: self._run_step(c, s)) for s in steps]

    def _run_step(self, ctx: UpContext, step: Step) -> None:
        ctx.extra["kind"].plan.begin(step.name)
        ctx.extra["failed_step"] = step.name
        step.run(ctx)
        ctx.extra.pop("failed_step", None)

    def already_up(self, settings: Settings) -> dict | None:
        """The status of a complete, healthy testbed, or None (then `up` runs its idempotent steps)."""
        current = state_io.load(cluster.files(settings, load_pins()).dir)
        if current and current.get("complete"):
            status = self.status(settings)
            if status["state"] == "running":
                return status
        return None

    def _preflight(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        checks = (f"docker info: engine reachable, >= {run_.pins.minimum_cpus} CPUs, "
                  f">= {run_.pins.minimum_memory_gib:g} GiB; "
                  + ", ".join(f"{t.name} >= {t.minimum}" for t in run_.pins.tools.values() if t.name != "docker")
                  + f"; 127.0.0.1 ports {_ports_text(run_.pins)} free unless the cluster exists")
        checks += "; every image the plan pulls has a build for the engine's CPU architecture"
        if run_.plan.dry_run:
            run_.plan.note(f"checks: {checks}")
            for name in run_.pins.tools:
                found = shutil.which(name)
                run_.plan.note(f"{name}: {found or 'NOT FOUND on PATH - a real run stops here; install: ' + run_.pins.tools[name].install}")
            run_.node_arch, source = architecture.planned_arch()
            run_.plan.note(f"node architecture: {run_.node_arch}, from {source}; a real run reads `docker info` and "
                           f"then the Nodes")
            run_.pins.images(run_.node_arch, run_.platforms)  # ArchitectureUnsupported: a real run refuses too
            return
        report = preflight.check(run_.pins, run_.platforms)
        ctx.extra.setdefault("versions", {})["tools"] = report.versions
        if report.problems:
            raise PreflightFailed(report.problems)
        run_.node_arch = report.docker_arch
        ctx.say(f"  {', '.join(f'{k} {v}' for k, v in report.versions.items())}; Docker: {report.docker_cpus} CPUs, "
                f"{report.docker_memory_gib} GiB, {report.docker_arch}")

    def _artifact(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        ctx.artifact = artifact_mod.ensure(ctx.settings.artifacts_dir, ctx.settings.artifact_seed)
        run_.artifact_subpath = ctx.artifact.path.name
        run_.code_dir = runtime_code_dirname()
        run_.plan.note(f"artifact {ctx.artifact.name} sha256 {ctx.artifact.sha256[:12]} at {ctx.artifact.path} "
                       f"(local; the node sees it at {cluster.ARTIFACTS_NODE_PATH}/{run_.artifact_subpath})")
        if run_.plan.dry_run:
            run_.plan.note(f"copy deployers/runtimes/*.py to {ctx.settings.artifacts_dir / run_.code_dir}")
        else:
            stage_runtime_code(ctx.settings.artifacts_dir)
        ctx.say(f"  {ctx.artifact.name} sha256 {ctx.artifact.sha256[:12]}; runtime code {run_.code_dir}")

    def _cluster(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        cf, pins, plan = run_.files, run_.pins, run_.plan
        plan.file("kind-config.yaml", cluster.render_config(ctx.settings.artifacts_dir), path=cf.config)
        if plan.dry_run:
            plan.note(f"if a kind cluster named {cf.name!r} already exists, it is reused when its node runs "
                      f"{pins.kubernetes} and mounts {ctx.settings.artifacts_dir}; otherwise created:")
            plan.command(cluster.create_command(cf, pins), timeout_s=600)
            return
        existing = run(["kind", "get", "clusters"], timeout_s=30)
        if existing.returncode == 0 and cf.name in existing.stdout.split():
            plan.command(cluster.export_kubeconfig_command(cf), timeout_s=60)
            self._check_reusable(run_, ctx.settings)
            ctx.extra["created_cluster"] = False
            ctx.say(f"  reusing the existing kind cluster {cf.name!r}")
        else:
            ctx.extra["created_cluster"] = True
            self._save(ctx)  # before creating: `down` must find a cluster even if this process dies
            plan.command(cluster.create_command(cf, pins), timeout_s=600,
                         hint="Is Docker running, with enough memory? The output of `kind create cluster` is above.")
        plan.apply_fn = run_.kube.apply
        self._check_node_arch(run_)
        self._save(ctx)

    @staticmethod
    def _check_node_arch(run_: KindRun) -> None:
        """The Nodes run the architecture the images were chosen for (any API server: kind, kwok, ...)."""
        problem = architecture.nodes_problem(architecture.node_architectures(run_.kube), run_.node_arch)
        if problem:
            raise ClusterConflict(run_.files.name, problem)

    def _check_reusable(self, run_: KindRun, settings: Settings) -> None:
        cf, pins = run_.files, run_.pins
        try:
            nodes = run_.kube.list("v1", "Node")
        except Exception as exc:
            raise ClusterConflict(cf.name, f"its API server does not answer ({type(exc).__name__}: {exc})") from None
        versions = {(n.get("status") or {}).get("nodeInfo", {}).get("kubeletVersion") for n in nodes}
        if versions != {pins.kubernetes}:
            raise ClusterConflict(cf.name, f"its nodes run {sorted(v or '?' for v in versions)}, the testbed pins "
                                           f"{pins.kubernetes}")
        proc = run(["docker", "inspect", "--format", "{{json .Mounts}}", f"{cf.name}-control-plane"], timeout_s=30)
        mounts = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
        sources = {m.get("Source") or "" for m in mounts if m.get("Destination") == cluster.ARTIFACTS_NODE_PATH}
        want = str(Path(settings.artifacts_dir).resolve())
        # Docker Desktop reports host paths with a VM prefix (/host_mnt/...): compare the tail.
        if not any(source == want or source.endswith(want) for source in sources):
            raise ClusterConflict(cf.name, f"its node mounts {sorted(s for s in sources if s) or 'nothing'} at "
                                           f"{cluster.ARTIFACTS_NODE_PATH}, this testbed needs {want}")

    def _load_images(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        images = run_.pins.images(run_.node_arch, run_.platforms)
        if run_.plan.dry_run:
            for image in images:
                run_.plan.note(f"if present in the local Docker engine: "
                               f"{' '.join(cluster.load_image_command(run_.files, image))}")
            return
        loaded, pulled_by_node = [], []
        for image in images:
            if run(["docker", "image", "inspect", image], timeout_s=30).returncode == 0:
                run_.plan.command(cluster.load_image_command(run_.files, image), timeout_s=600)
                loaded.append(image)
            else:
                pulled_by_node.append(image)
        ctx.say(f"  loaded {len(loaded)} pre-pulled image(s); the node pulls the other {len(pulled_by_node)} "
                f"(`python -m testbed images` lists them)")

    def _helm(self, ctx: UpContext, chart: Chart) -> None:
        run_ = ctx.extra["kind"]
        run_.plan.file(f"helm/{chart.release}.values.yaml", chart.values.read_text())
        run_.plan.command(helm.install_command(chart, run_.files.kubeconfig), timeout_s=helm.TIMEOUT_S,
                          attempts=chart.attempts,
                          hint=f"Helm release {chart.release} ({chart.chart} {chart.version}) in namespace "
                               f"{chart.namespace}; its pods and events follow.")

    def _wait_infrastructure(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        pins, plan = run_.pins, run_.plan
        kube = None if plan.dry_run else run_.kube
        namespaces, crds = pins.controller_namespaces_for(run_.platforms), pins.crds_for(run_.platforms)
        plan.wait(f"CRDs Established: {', '.join(crds)}",
                  lambda: wait_until("CRDs", INFRA_TIMEOUT_S, infrastructure.crds_established(kube, crds)))
        plan.wait(f"admission webhooks served by {', '.join(namespaces)} have a CA bundle and a ready endpoint",
                  lambda: wait_until("admission webhooks", INFRA_TIMEOUT_S,
                                     infrastructure.webhooks_served(kube, namespaces)))
        plan.wait(f"every Deployment in {', '.join(namespaces)} available",
                  lambda: wait_until("controllers", INFRA_TIMEOUT_S,
                                     infrastructure.deployments_available(kube, namespaces)))

    def _namespace(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        for obj in templates.namespace_objects(run_.namespace):
            run_.plan.apply(obj)

    def _deploy(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        objects = [*run_.detection_objects,
                   *[obj for dep in ctx.deployments.values() for obj in dep.manifests(dep.target(ctx))]]
        injected = [item for dep in ctx.deployments.values() for item in dep.injected_requests(dep.target(ctx))]
        items = budget.cluster_items(run_.pins, objects, injected,
                                     releases=[c.release for c in run_.pins.charts_for(run_.platforms)])
        run_.plan.note(f"resource budget with these platforms{' and the detector service' if run_.detection_objects else ''}: "
                       f"{budget.summary(items)} (scheduler requests, control plane estimated"
                       + (f"; injected by operators: {', '.join(i.what for i in injected)}" if injected else "")
                       + f"); the preflight asks Docker for >= {run_.pins.minimum_cpus} CPUs, "
                       f">= {run_.pins.minimum_memory_gib:g} GiB")
        for name, dep in ctx.deployments.items():
            dep.deploy(ctx)
            ctx.say(f"  {name}: applied {dep.kind} {ctx.extra['kind'].namespace}/{ctx.artifact.name}")
        self._save(ctx)

    def _wait_ready(self, ctx: UpContext) -> None:
        timeout_s = max(ctx.settings.ready_timeout_s, KIND_READY_FLOOR_S)
        if ctx.extra["kind"].plan.dry_run:
            for name, dep in ctx.deployments.items():
                ctx.endpoints[name] = dep.wait_ready(ctx, timeout_s)
            return
        for dep in ctx.deployments.values():  # discovery once, here, not concurrently in the threads below
            ctx.extra["kind"].kube.resource(dep.api_version, dep.kind)
        errors: dict[str, TestbedError] = {}

        def wait(name, dep):
            try:
                ctx.endpoints[name] = dep.wait_ready(ctx, timeout_s)
            except TestbedError as exc:
                errors[name] = exc

        threads = [threading.Thread(target=wait, args=item, daemon=True) for item in ctx.deployments.items()]
        for t in threads:
            t.start()
        started = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(5)
            line = ", ".join(f"{n} ready" if n in ctx.endpoints else (f"{n} FAILED" if n in errors else f"{n} waiting")
                             for n in ctx.deployments)
            ctx.say(f"  [{time.monotonic() - started:5.0f}s] {line}")
        for name, dep in ctx.deployments.items():
            if dep.ready_after_s is not None:
                ctx.timings[f"ready:{name}"] = dep.ready_after_s
        self._save(ctx)
        if errors:
            raise next(iter(errors.values()))

    def _parity(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        if run_.plan.dry_run:
            run_.plan.wait(f"prediction parity: POST the artifact's {artifact_mod.N_PROBE_ROWS} probe rows to "
                           + ", ".join(ep.infer_url for ep in ctx.endpoints.values())
                           + "; every platform must predict what the in-process model predicts")
            return
        verify_parity(ctx, self._save)

    def _scrapes(self, ctx: UpContext) -> None:
        from testbed.prometheus import PrometheusClient

        run_ = ctx.extra["kind"]
        url = f"http://127.0.0.1:{run_.pins.prometheus_port}"
        # How many targets each PodMonitor yields on the pods the operators generate (scrape_targets): a
        # missing endpoint (Seldon's MLServer beside its executor) shows as too few `up` series.
        queries = {name: (f'up{{job="{name}",namespace="{run_.namespace}"}}', dep.expected_targets(dep.target(ctx)))
                   for name, dep in ctx.deployments.items()}
        if run_.detector_service:
            queries["detector service"] = (f'up{{job="{kind_detection.PODMONITOR_JOB}",namespace="{run_.namespace}"}}',
                                           len(scrape_targets.endpoint_targets(
                                               run_.detection_objects[2], 0,
                                               scrape_targets.deployment_pods(run_.detection_objects[0]))))
        if run_.plan.dry_run:
            run_.plan.wait(f"Prometheus at {url}: " + ", ".join(f"{q} == 1 on {n} target(s)" for q, n in queries.values()))
            return
        client = PrometheusClient(url)

        def probe():
            missing = []
            for name, (promql, wanted) in queries.items():
                rows = client.query(promql)
                if len(rows) < wanted or any(r["value"] != 1.0 for r in rows):
                    missing.append(f"{promql} -> {[r['value'] for r in rows] or 'no series'} (want {wanted} target(s) "
                                   f"at 1)")
            return not missing, "; ".join(missing)

        wait_until(f"Prometheus ({url}) scraping every platform", SCRAPE_TIMEOUT_S, probe)
        ctx.say(f"  Prometheus at {url} scrapes {', '.join(queries)}: all up")

    def _finish(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        plan = run_.plan
        if plan.dry_run:
            out_dir = ctx.extra.get("out_dir")
            summary = f"plan: {len(plan.commands())} commands, {len(plan.manifests())} manifests; nothing was run"
            if out_dir:
                written = plan.write(Path(out_dir))
                summary += f"; wrote {len(written)} files under {out_dir}"
            plan.note(summary)
            ctx.say(f"  {summary}")
            return
        ctx.extra["complete"] = True
        self._save(ctx)

    # --- failure -------------------------------------------------------------------------------
    def rollback(self, ctx: UpContext) -> None:
        """Show the failed step's cluster state; delete a cluster this attempt created, unless --retain."""
        failure.report_and_clean(ctx)

    def _save(self, ctx: UpContext) -> None:
        run_ = ctx.extra["kind"]
        if run_.plan.dry_run:
            return
        cf = run_.files
        state_io.atomic_write_json(cf.state, {
            "schema": STATE_SCHEMA,
            "backend": self.name,
            "cluster": cf.name,
            "kubeconfig": str(cf.kubeconfig),
            "created_by_testbed": ctx.extra.get("created_cluster"),
            "namespace": run_.namespace,
            "complete": bool(ctx.extra.get("complete")),
            "model": ctx.artifact.summary() if ctx.artifact else None,
            "prometheus": {"url": f"http://127.0.0.1:{run_.pins.prometheus_port}"},
            "node_arch": run_.node_arch,
            "platforms": {name: {**dep.to_state(ctx), "versions": run_.pins.serving_for(name, run_.node_arch)}
                          for name, dep in ctx.deployments.items() if dep.started_at is not None},
            "parity": ctx.extra.get("parity"),
            "detection": self._detection_state(ctx),
            "timings": ctx.timings,
            "versions": ctx.extra.get("versions", {}),
        })

    def _detection_state(self, ctx: UpContext) -> dict | None:
        """The detector service as recorded by its step, with each platform's published detection path."""
        recorded = ctx.extra.get("kind_detection")
        if recorded is None:
            return None
        if ctx.extra.get("detectors") is not None:
            recorded["detectors"] = ctx.extra["detectors"].summary()
        published = {name: dep.endpoint(ctx).detection for name, dep in ctx.deployments.items()
                     if dep.started_at is not None}
        recorded["paths"] = {name: path for name, path in published.items() if path}
        return recorded

    # --- deploying beside `up` (experiments, e2e tests) ---------------------------------------
    def attach(self, settings: Settings, namespace: str, out=None) -> UpContext:
        """An UpContext on the running cluster, with `namespace` and its artifacts volume applied.

        Deploy any platform's kind Deployment (with its own node_port from cluster/ports.yaml
        `spare`) into it, then `detach` to delete the namespace and everything in it.
        """
        from testbed.errors import NotRunning

        pins = load_pins()
        cf = cluster.files(settings, pins)
        if not cf.kubeconfig.is_file():
            raise NotRunning(f"The kind cluster {cf.name!r} (no kubeconfig at {cf.kubeconfig})")
        run_ = KindRun(pins=pins, files=cf, plan=Plan(dry_run=False, out=out or sys.stderr, log=out or sys.stderr),
                       namespace=namespace)
        run_.plan.apply_fn = run_.kube.apply
        arches = set(architecture.node_architectures(run_.kube).values())
        if len(arches) != 1:
            raise ClusterConflict(cf.name, f"its Nodes run {sorted(arches) or 'no architecture'}; the testbed needs one")
        run_.node_arch = arches.pop()
        run_.plan.begin(f"attach {namespace}")
        ctx = UpContext(settings=settings, out=out or sys.stderr, extra={"kind": run_})
        ctx.artifact = artifact_mod.ensure(settings.artifacts_dir, settings.artifact_seed)
        run_.artifact_subpath = ctx.artifact.path.name
        run_.code_dir = stage_runtime_code(settings.artifacts_dir).name
        for obj in templates.namespace_objects(namespace):
            run_.plan.apply(obj)
        return ctx

    def detach(self, ctx: UpContext, timeout_s: float = 300.0) -> None:
        """Delete an attached namespace (its resources go with it) and its artifacts volume."""
        run_ = ctx.extra["kind"]
        namespace_obj, pv, _ = templates.namespace_objects(run_.namespace)
        run_.kube.delete(namespace_obj)
        run_.kube.wait_gone(namespace_obj, timeout_s)
        run_.kube.delete(pv)

    # --- down / status -------------------------------------------------------------------------
    def down(self, settings: Settings, out=None) -> list[str]:
        pins = load_pins()
        cf = cluster.files(settings, pins)
        recorded = state_io.load(cf.dir)
        if shutil.which("kind") is None:
            if recorded:
                raise PreflightFailed([f"kind: not found on PATH, needed to delete the cluster {cf.name!r}. "
                                       f"Install: {pins.tools['kind'].install}"])
            return []
        lines = []
        existing = run(["kind", "get", "clusters"], timeout_s=30)
        if existing.returncode == 0 and cf.name in existing.stdout.split():
            proc = run(cluster.delete_command(cf), timeout_s=300)
            if proc.returncode != 0:
                raise TestbedError(f"`kind delete cluster --name {cf.name}` failed:\n{tail_of(proc)}")
            lines.append(f"deleted the kind cluster {cf.name!r}")
        for path in (cf.state, cf.kubeconfig):
            path.unlink(missing_ok=True)
        return lines

    def faults(self, settings: Settings, dry_run: bool = False, out=None):
        """What the fault probes act through here: pod deletion, scaling (testbed.faults)."""
        from testbed.backends.kind.faults import KindFaults

        return KindFaults(settings, dry_run=dry_run, out=out)

    def planned_status(self, settings: Settings) -> dict:
        """The status `up` would leave, from its dry run (endpoints on the pinned NodePorts): what a fault's
        --dry-run plans against when no kind testbed is running. Nothing is created but the local artifact."""
        import io

        from testbed.steps import run_steps

        ctx = UpContext(settings=settings, dry_run=True, out=io.StringIO(), extra={"plan_out": io.StringIO()})
        run_steps(self.up_steps(ctx), ctx)
        run_ = ctx.extra["kind"]
        endpoints = {}
        for name, ep in ctx.endpoints.items():
            dep = ctx.deployments[name]
            target = dep.target(ctx)
            if not ep.detection and dep.detection_on(target):
                # Detectors not fitted yet (a dry run fits nothing): the planned path is known all the same.
                route = {**dep.detection_route(target, ep.base_url), "planned": "detectors not fitted yet"}
                ep = replace(ep, detection={"outlier": route, "drift": route})
            endpoints[name] = ep
        return {"backend": self.name, "state": "planned", "model": ctx.artifact.summary(),
                "prometheus": {"url": f"http://127.0.0.1:{run_.pins.prometheus_port}", "state": "planned"},
                "platforms": {name: {"state": "planned", "endpoint": ep.to_json(),
                                     "versions": run_.pins.serving_for(name, run_.node_arch)}
                              for name, ep in endpoints.items()}}

    def status(self, settings: Settings) -> dict:
        pins = load_pins()
        return cluster_status(cluster.files(settings, pins), pins)


def _ports_text(pins) -> str:
    return ", ".join(map(str, pins.host_ports()))
