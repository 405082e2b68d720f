"""Each operator the kind backend installs, as a process: its chart's Deployment turned into a command.

The container's args and env come from the rendered Deployment (`$(VAR)` expanded as the kubelet
does; fieldRefs resolved to this process's namespace and name; ConfigMap volumes written to files
and their mount paths rewritten). An operator subclass says only what differs on loopback: which
flags carry listen addresses, where its webhook server takes its certificate, how it is healthy.
Credentials: a token of the chart's own ServiceAccount (TokenRequest), so the chart's RBAC is what
the operator runs with, as in its pod; prometheus-operator, whose chart is not rendered here, runs
with the testbed's admin certificate.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from testbed.backends.controlplane.processes import Proc, free_port

ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Launch:
    """What one operator process needs, derived from its chart (or its flags, for prometheus-operator)."""

    name: str
    namespace: str
    service_account: str | None
    args: list[str]
    env: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    """Mounted ConfigMap files: path under the process's directory -> content."""


class Operator:
    component: str = ""
    """Its component in cluster/versions.yaml controlplane.components (binary and kept chart)."""

    binary: str = ""
    release: str | None = None
    """Its chart's release in cluster/versions.yaml charts (None: not rendered from a chart)."""

    chart_path: str = ""
    """The chart's directory under the component's kept files."""

    other_charts: tuple[str, ...] = ()
    """Further charts of this operator the kind path installs (rendered from the same module's share/)."""

    container: str = "manager"
    webhook: bool = False
    """Serves admission webhooks: gets a certificate (SAN 127.0.0.1) and its configurations point here."""

    beyond_loopback: dict[str, str] = {}
    """Port name -> why that listener binds every interface whatever the flags (status shows the cause)."""

    # --- hooks ---------------------------------------------------------------------------------
    def loopback_args(self, args: list[str], ports: dict[str, int]) -> list[str]:
        """The chart's args with every listen address moved to a free 127.0.0.1 port."""
        return args

    def ports(self) -> dict[str, int]:
        return {"metrics": free_port(), "health": free_port(), "egress_trap": free_port(),
                **({"webhook": free_port()} if self.webhook else {})}

    def health_url(self, ports: dict[str, int]) -> str:
        return f"http://127.0.0.1:{ports['health']}/readyz"

    def extra_env(self, launch: Launch) -> dict[str, str]:
        return {}

    # --- from the chart --------------------------------------------------------------------------
    def launch_from(self, deployment: dict, config: list[dict]) -> Launch:
        meta, pod = deployment["metadata"], deployment["spec"]["template"]["spec"]
        namespace = meta.get("namespace") or "default"
        containers = pod.get("containers") or []
        container = next((c for c in containers if c.get("name") == self.container), containers[0])
        pod_name = f"{meta['name']}-controlplane"
        lookup = {(o["kind"], o["metadata"]["name"]): o for o in config}
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            env[item["name"]] = _env_value(item, env, namespace, pod_name, pod, lookup)
        files: dict[str, str] = {}
        mounts = {}
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            source = volume.get("configMap")
            if not source:
                continue
            cm = lookup.get(("ConfigMap", source["name"])) or {}
            local = "mounts" + mount["mountPath"]
            mounts[mount["mountPath"]] = local
            for key, value in (cm.get("data") or {}).items():
                files[f"{local}/{key}"] = value
        args = [_expand(a, env) for a in (container.get("command") or [])[1:] + (container.get("args") or [])]
        return Launch(self.component, namespace, pod.get("serviceAccountName") or pod.get("serviceAccount"), args, env,
                      files)

    def process(self, launch: Launch, binary: Path, workdir: Path, kubeconfig: Path, log: Path,
                ports: dict[str, int]) -> Proc:
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        for rel, content in launch.files.items():
            path = workdir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        args = [_rewrite_mounts(a, launch.files, workdir) for a in launch.args]
        args = self.loopback_args(args, ports)
        env = {**launch.env, "KUBECONFIG": str(kubeconfig), "TMPDIR": str(workdir / "tmp"),
               **egress_trap(ports), **self.extra_env(launch)}
        (workdir / "tmp").mkdir(exist_ok=True)
        return Proc(self.component, [str(binary), *args], log, health=self.health_url(ports), env=env, cwd=workdir,
                    ports=ports)

    def webhook_cert_dir(self, workdir: Path) -> Path:
        """Where controller-runtime's webhook server looks by default: $TMPDIR/k8s-webhook-server/serving-certs."""
        return workdir / "tmp" / "k8s-webhook-server" / "serving-certs"


def egress_trap(ports: dict[str, int]) -> dict[str, str]:
    """Proxy settings that keep an operator's HTTP off kwok's fake pod IPs (10.244.0.0/24, a private range
    of some other network): KubeRay probes a head pod's Serve proxy at http://<pod IP>:8000 and its
    dashboard at <head service>.svc.cluster.local. Go's default transport sends every request whose host
    is not loopback to HTTP(S)_PROXY, here a loopback port nothing listens on (ports["egress_trap"]), so
    such a request fails at once on this machine; the API server (127.0.0.1) is reached directly."""
    trap = f"http://127.0.0.1:{ports['egress_trap']}"
    return {"HTTP_PROXY": trap, "HTTPS_PROXY": trap, "http_proxy": trap, "https_proxy": trap,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def _env_value(item: dict, env: dict, namespace: str, pod_name: str, pod: dict, lookup: dict) -> str:
    if "value" in item:
        return _expand(str(item["value"]), env)
    ref = item.get("valueFrom") or {}
    if "fieldRef" in ref:
        path = ref["fieldRef"]["fieldPath"]
        return {"metadata.namespace": namespace, "metadata.name": pod_name, "status.podIP": "127.0.0.1",
                "status.hostIP": "127.0.0.1", "spec.nodeName": "testbed-control-plane",
                "spec.serviceAccountName": pod.get("serviceAccountName") or "default"}.get(path, "")
    for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
        if key in ref:
            obj = lookup.get((kind, ref[key]["name"])) or {}
            data = obj.get("data") or {}
            value = data.get(ref[key]["key"], "")
            if kind == "Secret" and value:
                import base64

                value = base64.b64decode(value).decode()
            return value
    return ""


def _expand(text: str, env: dict) -> str:
    """$(VAR) -> env value, as the kubelet expands a container's command, args and env."""
    return ENV_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _rewrite_mounts(arg: str, files: dict[str, str], workdir: Path) -> str:
    for rel in files:
        mount_path = "/" + rel.removeprefix("mounts/").rsplit("/", 1)[0]
        if mount_path in arg:
            return arg.replace(mount_path, str(workdir / "mounts" / mount_path.lstrip("/")))
    return arg


def set_flag(args: list[str], flag: str, value: str) -> list[str]:
    """args with --flag=value (replacing --flag=x or `--flag x`, else appended)."""
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == flag and i + 1 < len(args) and not args[i + 1].startswith("-"):
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return [f"{flag}={value}", *out]  # first: Go's flag package stops at the first non-flag (Seldon's chart ends on '')


def drop_flag(args: list[str], flag: str) -> list[str]:
    return [a for a in args if a != flag and not a.startswith(flag + "=")]


# --- the operators ---------------------------------------------------------------------------------
class KServe(Operator):
    component, binary, release = "kserve-controller", "kserve-manager", "kserve-resources"
    chart_path = "charts/kserve-resources"
    other_charts = ("kserve-crd", "kserve-runtime-configs")
    webhook = True
    beyond_loopback = {"webhook": "KServe's manager (cmd/manager) gives controller-runtime's webhook server only "
                                  "a port (--webhook-port), no host: it binds every interface"}

    def loopback_args(self, args, ports):
        # Leader election finds its namespace only in a pod (service-account file) and has no flag for it.
        args = drop_flag(args, "--leader-elect")
        args = set_flag(args, "--metrics-addr", f"127.0.0.1:{ports['metrics']}")
        args = set_flag(args, "--health-probe-addr", f"127.0.0.1:{ports['health']}")
        return set_flag(args, "--webhook-port", str(ports["webhook"]))


class KubeRay(Operator):
    """KubeRay's operator, built from the proxy's ray-operator module (v1.6.2: the proxy refuses the kind
    path's v1.7.0 zip, see cluster/versions.yaml `skew`). The module has no Helm chart, so nothing is
    rendered: its ServiceAccount and RBAC are the module's own config/rbac (the kustomize base, namespaced
    as the chart installs it), and its arguments are what the kind path's chart (kuberay-operator v1.7.0,
    templates/deployment.yaml) renders for cluster/values/kuberay-operator.yaml, which sets only
    resources: the chart's defaults below."""

    component, binary, release = "kuberay-operator", "kuberay-operator", "kuberay-operator"
    container = "kuberay-operator"
    service_account = "kuberay-operator"
    """values.yaml serviceAccount.name (= config/rbac/service_account.yaml)."""

    CHART_ARGS = ("--log-stdout-encoder", "json", "--log-file-encoder", "json", "--enable-leader-election=true",
                  "--enable-metrics=true", "--reconcile-concurrency=1", "--qps=100", "--burst=200")
    """Chart v1.7.0 defaults: logging.stdoutEncoder/fileEncoder json, leaderElectionEnabled true,
    metrics.enabled true, reconcileConcurrency 1, kubeClient qps 100.0 / burst 200."""

    CHART_FEATURE_GATES = (("RayClusterStatusConditions", True), ("RayJobDeletionPolicy", True),
                           ("RayMultiHostIndexing", True), ("RayServiceIncrementalUpgrade", True),
                           ("RayCronJob", False), ("RayClusterMTLS", False), ("RayClusterNetworkPolicy", False),
                           ("RayClusterHistoryServer", False))
    """Chart v1.7.0 values.yaml featureGates, rendered as one --feature-gates=Name=bool,... argument."""

    def launch_from_module(self, share: Path, namespace: str) -> tuple[Launch, list[dict], list[tuple[str, str]]]:
        """(launch, the RBAC objects to apply, deviations from the kind path as (what, why))."""
        known = known_feature_gates(share / "pkg" / "features")
        gates = [(n, on) for n, on in self.CHART_FEATURE_GATES if n in known]
        dropped = [n for n, on in self.CHART_FEATURE_GATES if n not in known]
        deviations = [("--enable-leader-election=false (chart: true)",
                       "one process, no replica to hand over to; on a loaded machine a missed lease renewal "
                       "makes the manager exit ('leader election lost', seen here)")]
        if dropped:
            unknown_on = [n for n, on in self.CHART_FEATURE_GATES if n in dropped and on]
            deviations.append((f"feature gates {', '.join(dropped)} not passed",
                               "unknown to this operator version" + (
                                   f"; the chart ENABLES {', '.join(unknown_on)}: not exercised here"
                                   if unknown_on else " (the chart sets them false: no effect)")))
        args = [*self.CHART_ARGS, "--feature-gates=" + ",".join(f"{n}={str(on).lower()}" for n, on in gates)]
        args = set_flag(args, "--enable-leader-election", "false")
        rbac = rbac_from_kustomize(share / "config" / "rbac", namespace)
        return Launch(self.component, namespace, self.service_account, args, {}), rbac, deviations

    def loopback_args(self, args, ports):
        args = set_flag(args, "--metrics-addr", f"127.0.0.1:{ports['metrics']}")
        return set_flag(args, "--health-probe-bind-address", f"127.0.0.1:{ports['health']}")

    def health_url(self, ports):
        return f"http://127.0.0.1:{ports['health']}/readyz"


def known_feature_gates(features_dir: Path) -> set[str]:
    """Gate names an operator's pkg/features declares (`Name featuregate.Feature = "Name"`)."""
    pattern = re.compile(r'featuregate\.Feature\s*=\s*"([A-Za-z0-9]+)"')
    return {m for path in sorted(features_dir.glob("*.go")) if not path.name.endswith("_test.go")
            for m in pattern.findall(path.read_text())}


def rbac_from_kustomize(rbac_dir: Path, namespace: str) -> list[dict]:
    """The objects a kustomize base lists under `resources:`, each namespaced object (and each
    ServiceAccount subject of a binding) put in `namespace`, as kustomize's namespace transformer does."""
    import yaml

    listed = (yaml.safe_load((rbac_dir / "kustomization.yaml").read_text()) or {}).get("resources") or []
    out = []
    for rel in listed:
        for obj in yaml.safe_load_all((rbac_dir / rel).read_text()):
            if not obj:
                continue
            if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                obj["metadata"]["namespace"] = namespace
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
            out.append(obj)
    return out


class PrometheusOperator(Operator):
    """Not from a chart: kube-prometheus-stack's chart is not a Go module. Flags as that chart sets them
    for cluster/values/kube-prometheus-stack.yaml (no TLS, no admission webhook)."""
    component, binary, release = "prometheus-operator", "prometheus-operator", None
    namespace = "monitoring"

    def ports(self):
        return {"web": free_port(), "egress_trap": free_port()}

    def health_url(self, ports):
        return f"http://127.0.0.1:{ports['web']}/healthz"


OPERATORS: tuple[type[Operator], ...] = (PrometheusOperator, KServe, KubeRay)
"""Seldon Core v1's operator is not among them: cluster/versions.yaml `unbuildable` says why."""
