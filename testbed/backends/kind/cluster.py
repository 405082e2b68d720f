"""The kind cluster: its files under the state dir, its rendered config, and the kind commands."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.backends.kind.pins import CLUSTER_DIR, Pins
from testbed.settings import Settings

ARTIFACTS_NODE_PATH = "/testbed-artifacts"
"""Where the host's artifacts directory appears inside the kind node (cluster/kind-config.yaml)."""


@dataclass(frozen=True)
class ClusterFiles:
    name: str
    dir: Path

    @property
    def kubeconfig(self) -> Path:
        """kind writes the cluster's credentials here, not into ~/.kube/config."""
        return self.dir / "kubeconfig"

    @property
    def config(self) -> Path:
        return self.dir / "kind-config.yaml"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"


def files(settings: Settings, pins: Pins) -> ClusterFiles:
    name = os.environ.get("TESTBED_KIND_CLUSTER") or pins.cluster_name
    return ClusterFiles(name=name, dir=settings.state_dir / "kind")


def render_config(artifacts_dir: Path) -> str:
    """cluster/kind-config.yaml with the artifacts mount pointing at this machine's directory."""
    config = yaml.safe_load((CLUSTER_DIR / "kind-config.yaml").read_text())
    mounts = [m for node in config["nodes"] for m in node.get("extraMounts", [])
              if m["containerPath"] == ARTIFACTS_NODE_PATH]
    if not mounts:
        raise ValueError(f"{CLUSTER_DIR / 'kind-config.yaml'} has no extraMount for {ARTIFACTS_NODE_PATH}")
    for mount in mounts:
        mount["hostPath"] = str(Path(artifacts_dir).resolve())
    return yaml.safe_dump(config, sort_keys=False)


def create_command(cf: ClusterFiles, pins: Pins) -> list[str]:
    return ["kind", "create", "cluster", "--name", cf.name, "--config", str(cf.config), "--image", pins.node_image,
            "--kubeconfig", str(cf.kubeconfig), "--wait", pins.create_wait]


def delete_command(cf: ClusterFiles) -> list[str]:
    return ["kind", "delete", "cluster", "--name", cf.name, "--kubeconfig", str(cf.kubeconfig)]


def export_kubeconfig_command(cf: ClusterFiles) -> list[str]:
    return ["kind", "export", "kubeconfig", "--name", cf.name, "--kubeconfig", str(cf.kubeconfig)]


def load_image_command(cf: ClusterFiles, image: str) -> list[str]:
    return ["kind", "load", "docker-image", image, "--name", cf.name]
