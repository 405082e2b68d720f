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
