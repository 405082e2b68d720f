"""The kind backend: a kind cluster with cert-manager, Prometheus, KServe, Seldon Core and KubeRay at
pinned versions (cluster/versions.yaml), and the platforms as custom resources (manifests/).

`KindBackend` is resolved lazily: the deployers import this package's deployment base class, and
the backend imports the deployers. The `kubernetes` client is imported only once a cluster exists.
"""

__all__ = ["KindBackend"]


def __getattr__(name: str):
    if name == "KindBackend":
        from testbed.backends.kind.backend import KindBackend

        return KindBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
