"""What the kind backend's steps and deployments share through UpContext.extra["kind"]."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from testbed.backends.kind.cluster import ClusterFiles
from testbed.backends.kind.pins import Pins
from testbed.backends.kind.plan import Plan
from testbed.settings import REPO_ROOT

DEFAULT_NAMESPACE = "testbed"
RUNTIMES_DIR = REPO_ROOT / "deployers" / "runtimes"


@dataclass
class KindRun:
    pins: Pins
    files: ClusterFiles
    plan: Plan
    namespace: str = DEFAULT_NAMESPACE
    artifact_subpath: str | None = None
    """Name of the artifact's directory under the artifacts volume (= under settings.artifacts_dir)."""

    code_dir: str | None = None
    """Directory under the artifacts volume holding deployers/runtimes/*.py (Ray imports ray_app from it)."""

    detectors_subpath: str | None = None
    """Directory of the fitted detectors under the artifacts volume (set by the `detectors` step)."""

    detector_service: str | None = None
    """In-cluster URL of the detector service `up` deployed in `namespace`; None: none (detection off, attach)."""

    detection_objects: list = field(default_factory=list)
    """The detector service's Deployment, Service and PodMonitor as applied (the resource budget counts them)."""

    node_arch: str = "amd64"
    """The kind node's CPU architecture (testbed/backends/kind/architecture.py): which image tags are pulled."""

    platforms: tuple[str, ...] | None = None
    """The platforms `up` deploys (their charts, CRDs, namespaces and images only); None: all."""

    _kube: object | None = field(default=None, repr=False)

    @property
    def kube(self):
        """The API client (testbed.backends.kind.kube.Kube); only in a real run, once the cluster exists."""
        if self.plan.dry_run:
            raise RuntimeError("no API client in a dry run")
        if self._kube is None:
            from testbed.backends.kind.kube import Kube

            self._kube = Kube(self.files.kubeconfig, progress=self.plan.progress)
        return self._kube


def runtime_files() -> list[Path]:
    return sorted(RUNTIMES_DIR.glob("*.py"))


def runtime_code_dirname() -> str:
    """runtimes-<sha256 of the runtime modules>: a new name whenever the code changes."""
    digest = hashlib.sha256()
    for path in runtime_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"runtimes-{digest.hexdigest()[:12]}"


def stage_runtime_code(artifacts_dir: Path) -> Path:
    """Copy deployers/runtimes/*.py next to the artifacts (mounted into the cluster); idempotent."""
    target = Path(artifacts_dir) / runtime_code_dirname()
    if not target.is_dir():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for path in runtime_files():
            shutil.copy2(path, tmp / path.name)
        tmp.chmod(0o755)
        tmp.rename(target)
    return target
