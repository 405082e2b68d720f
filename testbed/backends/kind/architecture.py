"""The kind node's CPU architecture, and the images the plan pulls for it.

A kind node runs the Docker engine's architecture; containerd in it pulls each image's build for that
architecture, and an image with none sits in ErrImagePull ("no match for platform in manifest").
So `up` finds the architecture first and refuses before anything is pulled:
- dry run: $TESTBED_KIND_ARCH, else this machine's;
- real run, preflight: `docker info` (Architecture), before the cluster exists;
- once an API server answers (kind, or any cluster given by a kubeconfig): every Node's
  status.nodeInfo.architecture, which must agree.
Which image has which build is data (cluster/versions.yaml `architectures`); Pins resolves tags.
"""

from __future__ import annotations

import os
import platform as _platform

ENV_VAR = "TESTBED_KIND_ARCH"

_NAMES = {"x86_64": "amd64", "amd64": "amd64", "x64": "amd64", "aarch64": "arm64", "arm64": "arm64",
          "arm64v8": "arm64"}


def normalize(name: str) -> str:
    """Docker/uname/Go spellings -> Go's (what Nodes and image indexes use): x86_64 -> amd64, aarch64 -> arm64."""
    key = (name or "").strip().lower()
    return _NAMES.get(key, key)


def host_arch() -> str:
    return normalize(_platform.machine())


def planned_arch() -> tuple[str, str]:
    """(architecture, where it came from) for a dry run."""
    if os.environ.get(ENV_VAR):
        return normalize(os.environ[ENV_VAR]), f"${ENV_VAR}"
    return host_arch(), "this machine (set $TESTBED_KIND_ARCH to plan for another)"


def node_architectures(kube) -> dict[str, str]:
    """Node name -> its architecture, from the API server (kind, kwok, any cluster)."""
    return {n["metadata"]["name"]: normalize(((n.get("status") or {}).get("nodeInfo") or {}).get("architecture") or "")
            for n in kube.list("v1", "Node")}


def nodes_problem(nodes: dict[str, str], expected: str) -> str | None:
    """Why these nodes cannot run the images planned for `expected`, or None."""
    if not nodes:
        return "the API server lists no Node"
    other = {name: arch for name, arch in nodes.items() if arch != expected}
    if other:
        listed = ", ".join(f"{n} ({a or 'architecture not reported'})" for n, a in sorted(other.items()))
        return f"the images were chosen for {expected}, but Node(s) {listed} differ"
    return None
