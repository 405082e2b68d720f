"""The Kubernetes control plane as processes: etcd, kube-apiserver (TLS, loopback, its own CA),
kube-controller-manager, kube-scheduler and kwok, which plays the kubelet of one fake node.

The fake node is sized like the smallest Docker engine the kind preflight accepts
(cluster/versions.yaml kind.minimum_cpus / minimum_memory_gib), so the scheduler places exactly what
would fit on it. kwok gives pods fake IPs from POD_CIDR and marks them Running and Ready; nothing in
them runs, and nothing here ever connects to those IPs (Prometheus reaches them through a closed
loopback proxy: see scrape.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.backends.controlplane import pki as pki_mod
from testbed.backends.controlplane.processes import Proc, free_port

NODE_NAME = "testbed-control-plane"
"""The kind node's name (kind names its node <cluster>-control-plane)."""

POD_CIDR = "10.244.0.0/24"
"""kind's default pod subnet (first node); kwok hands out fake pod IPs from it."""

ETCD_MAX_REQUEST_BYTES = 8 * 2**20
"""The Seldon and KServe CRDs are 2-2.5 MB; etcd's default request limit is 1.5 MiB."""

KWOK_STAGES = ("node/fast/node-initialize.yaml", "node/heartbeat/node-heartbeat.yaml",
               "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml")
"""kwok's own `fast` node and pod lifecycles (kustomize/stage in the kwok module), as kwokctl uses them."""


@dataclass(frozen=True)
class Layout:
    dir: Path

    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.dir / "etcd"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def kind_dir(self) -> Path:
        """The kind backend's ClusterFiles directory: its steps read the kubeconfig and write their own
        state file there (unused here, kept apart from this backend's state.json)."""
        return self.dir / "kind"

    def kubeconfig(self, user: str = "admin") -> Path:
        return self.kind_dir / "kubeconfig" if user == "admin" else self.dir / f"{user}.kubeconfig"


def processes(layout: Layout, bins: dict[str, Path], kwok_stages: Path, pki: pki_mod.Pki,
              kubernetes_version: str) -> list[Proc]:
    """The five processes in start order, each on free loopback ports."""
    etcd_client, etcd_peer, api = free_port(), free_port(), free_port()
    cm_port, sched_port, kwok_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api}"
    layout.kind_dir.mkdir(parents=True, exist_ok=True)
    for user in ("admin", "controller-manager", "scheduler", "kwok"):
        layout.kubeconfig(user).write_text(pki_mod.kubeconfig(pki, server, user))
    log = layout.logs
    etcd = Proc("etcd", [
        str(bins["etcd"]), "--name", "testbed", "--data-dir", str(layout.etcd_data),
        "--listen-client-urls", f"http://127.0.0.1:{etcd_client}", "--advertise-client-urls",
        f"http://127.0.0.1:{etcd_client}", "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-cluster", f"testbed=http://127.0.0.1:{etcd_peer}",
        "--max-request-bytes", str(ETCD_MAX_REQUEST_BYTES), "--quota-backend-bytes", str(2 * 2**30),
        "--unsafe-no-fsync", "--log-level", "warn"],  # a throw-away cluster: no fsync cost on a shared disk
        log / "etcd.log", health=f"http://127.0.0.1:{etcd_client}/health", ports={"client": etcd_client, "peer": etcd_peer})
    apiserver = Proc("kube-apiserver", [
        str(bins["kube-apiserver"]), "--etcd-servers", f"http://127.0.0.1:{etcd_client}",
        "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(api),
        "--tls-cert-file", str(pki.cert("apiserver")), "--tls-private-key-file", str(pki.key("apiserver")),
        "--client-ca-file", str(pki.ca_cert), "--authorization-mode", "Node,RBAC",
        "--enable-admission-plugins", "NodeRestriction",  # with the defaults, as kubeadm (kind) runs it
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(pki.sa_pub), "--service-account-signing-key-file", str(pki.sa_key),
        "--service-cluster-ip-range", pki_mod.SERVICE_CIDR, "--service-node-port-range", "30000-32767",
        "--allow-privileged=true", "--endpoint-reconciler-type", "none",  # 127.0.0.1 is no endpoint address
        "--profiling=false", "--v", "1"],
        log / "kube-apiserver.log", health=f"{server}/readyz", ports={"secure": api})
    manager = Proc("kube-controller-manager", [
        str(bins["kube-controller-manager"]), "--kubeconfig", str(layout.kubeconfig("controller-manager")),
        "--authentication-kubeconfig", str(layout.kubeconfig("controller-manager")),
        "--authorization-kubeconfig", str(layout.kubeconfig("controller-manager")),
        "--bind-address", "127.0.0.1", "--secure-port", str(cm_port), "--leader-elect=false",
        "--use-service-account-credentials=true", "--service-account-private-key-file", str(pki.sa_key),
        "--root-ca-file", str(pki.ca_cert), "--cluster-name", "testbed", "--controllers", "*,bootstrapsigner,tokencleaner",
        "--v", "1"],
        log / "kube-controller-manager.log", health=f"https://127.0.0.1:{cm_port}/healthz", ports={"secure": cm_port})
    scheduler = Proc("kube-scheduler", [
        str(bins["kube-scheduler"]), "--kubeconfig", str(layout.kubeconfig("scheduler")),
        "--authentication-kubeconfig", str(layout.kubeconfig("scheduler")),
        "--authorization-kubeconfig", str(layout.kubeconfig("scheduler")),
        "--bind-address", "127.0.0.1", "--secure-port", str(sched_port), "--leader-elect=false", "--v", "1"],
        log / "kube-scheduler.log", health=f"https://127.0.0.1:{sched_port}/healthz", ports={"secure": sched_port})
    kwok = Proc("kwok", [
        str(bins["kwok"]), "--kubeconfig", str(layout.kubeconfig("kwok")),
        *[arg for stage in KWOK_STAGES for arg in ("--config", str(kwok_stages / stage))],
        "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
        "--cidr", POD_CIDR, "--node-ip", "127.0.0.1", "--node-name", NODE_NAME, "--node-port", str(kwok_port),
        "--server-address", f"127.0.0.1:{kwok_port}"],
        log / "kwok.log", health=f"http://127.0.0.1:{kwok_port}/healthz", ports={"server": kwok_port})
    return [etcd, apiserver, manager, scheduler, kwok]


def node(minimum_cpus: int, minimum_memory_gib: float, kubernetes_version: str) -> dict:
    """The one fake node kwok manages, labelled like kind's control-plane node (without its taint:
    kind removes it from a single-node cluster)."""
    capacity = {"cpu": str(minimum_cpus), "memory": f"{int(minimum_memory_gib * 1024)}Mi", "pods": "110",
                "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME,
                     "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": "",
                                "type": "kwok"}},
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
        "status": {"capacity": capacity, "allocatable": capacity,
                   "nodeInfo": {"kubeletVersion": kubernetes_version, "architecture": "amd64", "operatingSystem": "linux",
                                "containerRuntimeVersion": "kwok", "kubeProxyVersion": kubernetes_version,
                                "osImage": "kwok fake node", "kernelVersion": "", "machineID": "", "systemUUID": "",
                                "bootID": ""}},
    }
