"""The platform/backend seam.

A Platform (KServe, Seldon, Ray Serve, ...) is one module in `deployers/` that exports
`PLATFORM`. It has one Deployment implementation per backend; a Backend (local, kind) picks its
own with `platform.deployment_for(backend_name)`. Adding a platform = one module + one line
in `deployers/__init__.py`; adding a backend = one Deployment class per platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from testbed.endpoint import Endpoint

if TYPE_CHECKING:
    from testbed.steps import UpContext


class Deployment(Protocol):
    """One platform serving the artifact on one backend."""

    platform: str

    def deploy(self, ctx: "UpContext") -> None:
        """Start (local) or apply (kind) what serves the model. Returns without waiting."""

    def wait_ready(self, ctx: "UpContext", timeout_s: float) -> Endpoint:
        """Block until the model answers its readiness route; raise a TestbedError on failure or timeout."""

    def endpoint(self, ctx: "UpContext") -> Endpoint:
        """The Endpoint of what `deploy` started (valid once ready)."""

    def teardown(self, ctx: "UpContext") -> None:
        """Stop/delete everything `deploy` made. Safe to call on a partial or absent deployment."""


@dataclass(frozen=True)
class Platform:
    name: str
    """Registry name used on the command line and in results."""

    display_name: str

    deployments: dict[str, Callable[[], Deployment]]
    """Factory per backend name, e.g. {"local": KServeLocal, "kind": KServeKind}."""

    infer_requests_promql: str = ""
    """PromQL counting the V2 infer requests this platform served successfully, as it reports them
    itself (job label = platform name). Used by `up`'s checks, tests and the monitoring probe."""

    facts: dict = field(default_factory=dict)
    """Documented mechanisms (detection, explain, batching, metrics, licence) with sources;
    the report shows them beside what was measured."""

    def deployment_for(self, backend: str) -> Deployment:
        try:
            factory = self.deployments[backend]
        except KeyError:
            from testbed.errors import TestbedError

            raise TestbedError(
                f"Platform {self.name!r} has no implementation for the {backend!r} backend "
                f"(it has: {', '.join(self.deployments)})."
            ) from None
        return factory()
