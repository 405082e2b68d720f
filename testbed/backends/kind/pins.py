"""The kind backend's pinned versions and ports, read from cluster/ (data, not code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from testbed.settings import REPO_ROOT

CLUSTER_DIR = REPO_ROOT / "cluster"


@dataclass(frozen=True)
class Chart:
    release: str
    chart: str
    """Chart name in `repo`, or a full oci:// reference."""

    version: str
    namespace: str
    values: Path
    """Absolute path of the values file (cluster/values/...)."""

    licence: str
    repo: str | None = None
    set: dict[str, str] = field(default_factory=dict)
    """Pins that live inside the chart's values (image tags), passed as `--set`."""

    attempts: int = 1
    source: str = ""


@dataclass(frozen=True)
class Tool:
    name: str
    minimum: str
    install: str
    version: str | None = None
    """The version the docs and CI use; any >= minimum is accepted."""


@dataclass(frozen=True)
class Pins:
    cluster_name: str
    node_image: str
    kubernetes: str
    create_wait: str
    minimum_cpus: int
    minimum_memory_gib: float
    tools: dict[str, Tool]
    charts: tuple[Chart, ...]
    crds: tuple[str, ...]
    controller_namespaces: tuple[str, ...]
    serving: dict[str, dict]
    images_by_source: dict[str, tuple[str, ...]]
    ports: dict
    detection: dict = field(default_factory=dict)
    """cluster/versions.yaml `detection`: the detector service's image."""

    def images(self) -> list[str]:
        """Every image the testbed runs in the cluster, once each, in versions.yaml order."""
        seen: dict[str, None] = {}
        for images in self.images_by_source.values():
            for image in images:
                seen.setdefault(image, None)
        return list(seen)

    def chart(self, release: str) -> Chart:
        for chart in self.charts:
            if chart.release == release:
                return chart
        raise KeyError(release)

    def node_port(self, platform: str) -> int:
        return int(self.ports["platforms"][platform])

    @property
    def prometheus_port(self) -> int:
        return int(self.ports["prometheus"])

    @property
    def spare_ports(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.ports.get("spare", ()))

    @property
    def detection_port(self) -> int:
        """The detector service's NodePort, mapped to 127.0.0.1."""
        return int(self.ports["detection"])

    def host_ports(self) -> list[int]:
        """Every port kind maps to 127.0.0.1 (cluster/ports.yaml), sorted."""
        return sorted([self.prometheus_port, *map(int, self.ports["platforms"].values()), self.detection_port,
                       *self.spare_ports])


def load(cluster_dir: Path = CLUSTER_DIR) -> Pins:
    data = yaml.safe_load((cluster_dir / "versions.yaml").read_text())
    ports = yaml.safe_load((cluster_dir / "ports.yaml").read_text())
    kind = data["kind"]
    charts = tuple(
        Chart(release=c["release"], chart=c["chart"], version=str(c["version"]), namespace=c["namespace"],
              values=cluster_dir / c["values"], licence=c["licence"], repo=c.get("repo"),
              set={str(k): str(v) for k, v in (c.get("set") or {}).items()}, attempts=int(c.get("attempts", 1)),
              source=c.get("source", ""))
        for c in data["charts"]
    )
    tools = {name: Tool(name=name, minimum=str(t["minimum"]), install=t["install"], version=t.get("version"))
             for name, t in data["tools"].items()}
    return Pins(
        cluster_name=kind["cluster_name"], node_image=kind["node_image"], kubernetes=kind["kubernetes"],
        create_wait=str(kind["create_wait"]), minimum_cpus=int(kind["minimum_cpus"]),
        minimum_memory_gib=float(kind["minimum_memory_gib"]), tools=tools, charts=charts,
        crds=tuple(data["crds"]), controller_namespaces=tuple(data["controller_namespaces"]),
        serving=data["serving"], images_by_source={k: tuple(v) for k, v in data["images"].items()}, ports=ports,
        detection=data.get("detection") or {},
    )


@lru_cache(maxsize=1)
def pins() -> Pins:
    """The repository's pins, read once per process."""
    return load()
