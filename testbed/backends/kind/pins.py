"""The kind backend's pinned versions and ports, read from cluster/ (data, not code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from testbed.errors import ArchitectureUnsupported
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

    platform_parts: dict[str, dict] = field(default_factory=dict)
    """Platform -> the charts, CRDs, controller namespaces and image group only it needs."""

    architectures: dict[str, dict] = field(default_factory=dict)
    """Image (as listed, the amd64 tag) -> {arch: `same` | another tag | `none`, checked: how it was verified}."""

    def images(self, arch: str | None = None, platforms: tuple[str, ...] | None = None) -> list[str]:
        """Every image the testbed runs in the cluster, once each, in versions.yaml order: the listed tags, or
        those an `arch` node pulls for `platforms` (ArchitectureUnsupported when one has no such build)."""
        if arch is not None:
            missing = self.unavailable(arch, platforms)
            if missing:
                raise ArchitectureUnsupported(arch, missing, self.refusal_fix(arch, platforms))
        seen: dict[str, None] = {}
        for group in self.image_groups(platforms):
            for image in self.images_by_source[group]:
                seen.setdefault(image if arch is None else self.image_for(image, arch), None)
        return list(seen)

    def image_groups(self, platforms: tuple[str, ...] | None = None) -> list[str]:
        """The image groups (versions.yaml `images` keys) pulled when `platforms` are deployed (None: all)."""
        skipped = {part["images"] for name, part in self.platform_parts.items()
                   if platforms is not None and name not in platforms}
        return [group for group in self.images_by_source if group not in skipped]

    def image_for(self, image: str, arch: str) -> str | None:
        """The tag an `arch` node pulls for `image` (listed = amd64); None when there is no such build."""
        if arch == "amd64":
            return image
        entry = self.architectures.get(image)
        if entry is None:
            raise KeyError(f"{image}: no entry in cluster/versions.yaml `architectures`")
        choice = entry.get(arch)
        if choice in (None, "none"):
            return None
        return image if choice == "same" else choice

    def unavailable(self, arch: str, platforms: tuple[str, ...] | None = None) -> dict[str, list[str]]:
        """Who needs what has no `arch` build: {platform, or "every platform": [images]}."""
        owner = {part["images"]: name for name, part in self.platform_parts.items()}
        missing: dict[str, list[str]] = {}
        for group in self.image_groups(platforms):
            for image in self.images_by_source[group]:
                if self.image_for(image, arch) is None:
                    missing.setdefault(owner.get(group, "every platform"), []).append(image)
        return missing

    def refusal_fix(self, arch: str, platforms: tuple[str, ...] | None) -> str:
        recorded = {"amd64"} | {a for entry in self.architectures.values() for a in entry if a != "checked"}
        if arch not in recorded:
            return (f"cluster/versions.yaml records amd64 and {', '.join(sorted(recorded - {'amd64'}))} builds only: "
                    f"run the kind backend on an amd64 machine (or the local backend here), or add {arch} to "
                    f"`architectures` after checking each image's release build.")
        wanted = list(platforms or self.serving)
        usable = [p for p in wanted if p not in self.unavailable(arch, (p,))]
        if self.unavailable(arch, ()):
            return (f"Images every run needs have no {arch} build: run the kind backend on an amd64 machine "
                    f"(or the local backend here).")
        if usable:
            return (f"Leave the other platforms out: `python -m testbed up --backend kind --platforms "
                    f"{','.join(usable)}`, or run the kind backend on an amd64 machine (the local backend runs every "
                    f"platform here).")
        return f"Run the kind backend on an amd64 machine (the local backend runs every platform here)."

    def serving_for(self, platform: str, arch: str = "amd64") -> dict:
        """cluster/versions.yaml `serving.<platform>` with the image an `arch` node pulls."""
        serving = dict(self.serving[platform])
        if "image" in serving:
            serving["image"] = self.image_for(serving["image"], arch) or serving["image"]
        return serving

    def charts_for(self, platforms: tuple[str, ...] | None = None) -> tuple[Chart, ...]:
        """The charts `up` installs for `platforms` (None: all), in install order."""
        skipped = {c for name, part in self.platform_parts.items() if platforms is not None and name not in platforms
                   for c in part["charts"]}
        return tuple(c for c in self.charts if c.release not in skipped)

    def crds_for(self, platforms: tuple[str, ...] | None = None) -> tuple[str, ...]:
        skipped = {c for name, part in self.platform_parts.items() if platforms is not None and name not in platforms
                   for c in part["crds"]}
        return tuple(c for c in self.crds if c not in skipped)

    def controller_namespaces_for(self, platforms: tuple[str, ...] | None = None) -> tuple[str, ...]:
        skipped = {n for name, part in self.platform_parts.items() if platforms is not None and name not in platforms
                   for n in part["namespaces"]}
        return tuple(n for n in self.controller_namespaces if n not in skipped)

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
        detection=data.get("detection") or {}, platform_parts=data.get("platform_parts") or {},
        architectures=data.get("architectures") or {},
    )


@lru_cache(maxsize=1)
def pins() -> Pins:
    """The repository's pins, read once per process."""
    return load()
