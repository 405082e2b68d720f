"""What every probe receives: the running testbed as endpoints, plus seeds and run identity.

A probe module exposes `run(ctx: ProbeContext) -> list[Result]` (one Result per platform), and
keeps its scenario generation and scoring as pure functions that need no server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.artifact import Artifact
from testbed.endpoint import Endpoint
from testbed.prometheus import PrometheusClient


@dataclass
class ProbeContext:
    endpoints: dict[str, Endpoint]
    """Platform name -> Endpoint, only the platforms this probe should measure."""

    prometheus: PrometheusClient
    artifact: Artifact
    backend: str
    seed: int = 0
    run_id: str = ""
    repeat: int = 0
    versions: dict = field(default_factory=dict)
    """Platform -> {package: version}, from `status --json`, copied into every Result's evidence."""

    options: dict = field(default_factory=dict)
    """Probe-specific options from the CLI or an experiment (e.g. user-supplied CSV paths)."""

    exposure: dict | None = None
    """Platform -> {"listeners": its serving processes' listening sockets beyond loopback (each with `cause` when
    the platform has no option that closes it), "loopback_by_testbed": what the testbed does to keep it on
    loopback}, from `status --json`; None when the backend audits no sockets."""


def exposure_from_status(status: dict, platforms) -> dict | None:
    """ProbeContext.exposure from `status --json` (the local backend lists each platform's sockets)."""
    infos = {name: (status.get("platforms") or {}).get(name) or {} for name in platforms}
    if not infos or any("listening" not in info for info in infos.values()):
        return None
    return {name: {"listeners": [s for s in info["listening"] if not s.get("loopback")],
                   "loopback_by_testbed": list(info.get("loopback_by_testbed") or [])}
            for name, info in infos.items()}
