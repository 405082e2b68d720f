"""What the fault probes act through: one `Faults` implementation per backend.

The probes (probes/kill.py, overload.py, detector_outage.py) run the same sequence on every backend:
steady load, inject a fault, watch the timeline, score it. Only the fault itself differs:

| fault             | local backend                                  | kind backend                                     |
|-------------------|------------------------------------------------|--------------------------------------------------|
| kill              | SIGKILL the recorded serving worker            | delete the serving pods, grace period 0          |
| restore           | re-execute the recorded command (the probe)    | none: the platform's controllers recreate pods   |
| detector outage   | SIGKILL the detector service's session         | scale Deployment detector-service to 0, pods     |
|                   |                                                | deleted with grace 0; scaled back to 1 after     |

With `dry_run`, an implementation resolves nothing it would have to change, prints each action it
would take (and the load it would send), and the probe stops before scoring: `python -m testbed
probe kill --backend kind --dry-run` shows what the kind form does without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from testbed.endpoint import Endpoint


@dataclass
class KillTarget:
    """What a kill fault will act on, resolved before any load starts (so a missing target costs nothing)."""

    platform: str
    description: str
    """One line for people: "pid 123 (listens on port 8080)", "pods testbed/app=isvc.x-predictor: [...]"."""

    evidence: dict = field(default_factory=dict)
    """Copied into the Result's evidence as `worker` (pid, how found; or pod names, uids, nodes)."""

    handle: object = None
    """The backend's own data for restore (e.g. the captured command line); not serialised."""


@dataclass
class DetectorTarget:
    """The detector service a detector-outage fault takes down, and where to read it afterwards."""

    service_url: str
    """Host-side URL of the service (reads /metrics, /ready)."""

    description: str
    evidence: dict = field(default_factory=dict)
    handle: object = None


class Faults(Protocol):
    backend: str
    dry_run: bool
    kill_fault: str
    """What `kill` does on this backend, in words (copied into the kill Result's evidence)."""

    # --- kill ----------------------------------------------------------------------------------
    def kill_target(self, platform: str, endpoint: Endpoint) -> KillTarget:
        """Resolve what serves `platform` now; PlatformNotUp / FaultTargetMissing when nothing does."""

    def kill(self, target: KillTarget) -> int:
        """Inject the kill; returns the wall-clock ns just before it (time.time_ns())."""

    def restore(self, target: KillTarget, endpoint: Endpoint) -> float | None:
        """After no self-recovery: bring the platform back if this backend's testbed does that (local:
        re-executes the process), returning the seconds it took; None where the platform's own
        controllers are the only recovery (kind)."""

    def after_kill(self, target: KillTarget) -> dict:
        """What serves the platform after recovery (kind: the new pods), for the evidence."""

    # --- detector outage -----------------------------------------------------------------------
    def detector_target(self, platform: str, endpoint: Endpoint) -> DetectorTarget:
        """The detector service on this platform's detection path; FaultTargetMissing when it is not running."""

    def stop_detector(self, target: DetectorTarget) -> int:
        """Take the detector service down (and check it is down); wall-clock ns just before."""

    def start_detector(self, target: DetectorTarget, timeout_s: float) -> float:
        """Bring it back; seconds until it answered ready (RuntimeStartFailed / ResourceNotReady otherwise)."""

    def metric_snapshot(self, platform: str, endpoint: Endpoint) -> dict[str, dict[str, float]]:
        """{source: {series name: summed value}} of what the platform (and its detection sidecars)
        exports, read the way this backend is observed (local: each /metrics page; kind: Prometheus)."""

    # --- dry run -------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        """A step of the fault's plan (printed with dry_run; a progress line otherwise)."""
