"""The control-plane backend: the real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok) and the real operators (KServe, Seldon Core v1,
KubeRay, prometheus-operator) as processes on loopback, built from source with Go (build.py), and
the kind backend's own deploy steps run against them. No Docker; no node runs a container.

`ControlPlaneBackend` is resolved lazily, like the kind backend's.
"""

__all__ = ["ControlPlaneBackend"]


def __getattr__(name: str):
    if name == "ControlPlaneBackend":
        from testbed.backends.controlplane.backend import ControlPlaneBackend

        return ControlPlaneBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
