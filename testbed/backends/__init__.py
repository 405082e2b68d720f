"""Backends: where platforms run. Each implements the Backend protocol below."""

from __future__ import annotations

import importlib
from typing import Protocol

from testbed.errors import UnknownBackend
from testbed.settings import Settings
from testbed.steps import Step, UpContext

# name -> "module:Class"; imported on demand so the local path never imports kubernetes.
BACKENDS = {
    "local": "testbed.backends.local.backend:LocalBackend",
    "kind": "testbed.backends.kind:KindBackend",
    "controlplane": "testbed.backends.controlplane:ControlPlaneBackend",
}


class Backend(Protocol):
    name: str

    def up_steps(self, ctx: UpContext) -> list[Step]:
        """The ordered steps of `up` (infrastructure, artifact, deploy each platform, checks)."""

    def rollback(self, ctx: UpContext) -> None:
        """Stop what a failed `up` started in this attempt, keeping what ran before it."""

    def down(self, settings: Settings, out) -> list[str]:
        """Stop everything; return one line per thing stopped."""

    def status(self, settings: Settings) -> dict:
        """The stable `status --json` document (see README: "status --json")."""

    def faults(self, settings: Settings, dry_run: bool = False, out=None):
        """The testbed.faults.Faults implementation the fault probes act through on this backend."""


def get_backend(name: str) -> Backend:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UnknownBackend(name, sorted(BACKENDS)) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()
