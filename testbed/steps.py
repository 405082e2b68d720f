"""`up` as an ordered list of steps sharing one context (the shape kind uses for cluster creation)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, TextIO

from testbed.artifact import Artifact
from testbed.endpoint import Endpoint
from testbed.errors import ParityFailed, StepFailed, TestbedError
from testbed.settings import Settings


class Deployment(Protocol):
    """One platform serving the artifact on one backend (a platform module's class per backend, e.g.
    deployers/kserve.py KServeLocal, KServeKind; the bases are testbed/backends/*/deployment.py)."""

    platform: str

    def deploy(self, ctx: "UpContext") -> None:
        """Start (local) or apply (kind) what serves the model. Returns without waiting."""

    def wait_ready(self, ctx: "UpContext", timeout_s: float) -> Endpoint:
        """Block until the model answers its readiness route; raise a TestbedError on failure or timeout."""

    def endpoint(self, ctx: "UpContext") -> Endpoint:
        """The Endpoint of what `deploy` started (valid once ready)."""

    def teardown(self, ctx: "UpContext") -> None:
        """Stop/delete everything `deploy` made. Safe to call on a partial or absent deployment."""


@dataclass
class UpContext:
    settings: Settings
    artifact: Artifact | None = None
    deployments: dict[str, Deployment] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step and per platform readiness, kept for the status file and benchmarks."""
    extra: dict = field(default_factory=dict)
    """Backend-specific shared values (ports, Prometheus URL, kube client, ...)."""
    out: TextIO = sys.stderr
    dry_run: bool = False

    def say(self, message: str) -> None:
        try:
            print(message, file=self.out, flush=True)
        except (OSError, ValueError):
            # The terminal or pipe that started `up` is gone (killed parent, closed pipe): progress is
            # lost, but the work, and above all a rollback, must go on.
            pass


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[UpContext], None]


def run_steps(steps: list[Step], ctx: UpContext, on_failure: Callable[[UpContext], None] | None = None) -> None:
    """Run steps in order, timing each; on any failure call on_failure (cleanup) and re-raise."""
    total = len(steps)
    for i, step in enumerate(steps, 1):
        ctx.say(f"[{i}/{total}] {step.name} ...")
        started = time.monotonic()
        try:
            step.run(ctx)
        except BaseException as exc:
            ctx.say(f"[{i}/{total}] {step.name}: FAILED")
            if on_failure is not None:
                on_failure(ctx)
            if isinstance(exc, (TestbedError, KeyboardInterrupt, SystemExit)):
                raise
            raise StepFailed(step.name, exc) from exc
        ctx.timings[step.name] = round(time.monotonic() - started, 3)
        ctx.say(f"[{i}/{total}] {step.name}: done in {ctx.timings[step.name]:.1f}s")


def verify_parity(ctx: UpContext, save: Callable[[UpContext], None]) -> None:
    """The `prediction parity` step of every backend: the artifact's fixed probe rows must get the
    in-process model's predictions from every endpoint (ParityFailed names who differs)."""
    from probes import parity
    from testbed import v2

    rows = ctx.artifact.probe_rows()
    expected = ctx.artifact.expected_predictions()
    result = parity.run(rows, expected, list(ctx.endpoints.values()), task=ctx.artifact.task,
                        wire=v2.wire_for(ctx.artifact))
    ctx.extra["parity"] = result
    save(ctx)
    if not result["ok"]:
        raise ParityFailed(parity.describe_failures(result))
    where = "in-process" if not ctx.artifact.is_user else "the model in its runtime environment"
    agree = "identical predictions" if ctx.artifact.task != "regression" else f"values within {parity.REL_TOL:g}"
    ctx.say(f"  {result['rows']} probe rows: {agree} on {', '.join(ctx.endpoints)} and {where}")
