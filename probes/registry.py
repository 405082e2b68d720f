"""Probe registry and the ProbeContext built from a running testbed's `status --json` document.

Probe modules are imported on demand: a probe whose module is absent (or fails to import) gives
a ProbeUnavailable error naming it, and the other probes still run.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from probes.context import ProbeContext, exposure_from_status
from testbed import artifact as artifact_mod
from testbed.endpoint import Endpoint
from testbed.errors import NotRunning, PlatformNotUp, ProbeUnavailable, TestbedError
from testbed.prometheus import PrometheusClient

PROBES: dict[str, str] = {
    "outlier": "probes.outlier",
    "drift": "probes.drift",
    "monitoring": "probes.monitoring",
    "explain": "probes.explain",
    "robustness": "probes.robustness",
    "kill": "probes.kill",
    "overload": "probes.overload",
    "detector-outage": "probes.detector_outage",
}
"""Probe name -> module exposing `run(ctx: ProbeContext) -> list[Result]`; `all` runs them in this order."""

FAULTS = ("kill", "overload", "detector-outage")
"""Fault probes disturb the testbed (kill processes, saturate it): run only by name, never by `all`."""

# Which user-data options each probe reads (ctx.options keys); the CLI refuses the others.
USER_DATA = {"drift": ("data_csv",), "outlier": ("data_csv", "truth_csv")}


def expand(name: str) -> list[str]:
    if name == "all":
        return [p for p in PROBES if p not in FAULTS]
    if name not in PROBES:
        raise ProbeUnavailable(name, "no such probe", list(PROBES))
    return [name]


def load(name: str) -> ModuleType:
    target = PROBES.get(name)
    if target is None:
        raise ProbeUnavailable(name, "no such probe", list(PROBES))
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name == target:
            raise ProbeUnavailable(name, f"its module {target} is not installed in this checkout", list(PROBES)) \
                from None
        raise ProbeUnavailable(name, f"importing {target} failed: {exc}", list(PROBES)) from None
    if not callable(getattr(module, "run", None)):
        raise ProbeUnavailable(name, f"{target} has no run(ctx) function", list(PROBES))
    return module


def context_from_status(status: dict, platforms: tuple[str, ...] | None, seed: int = 0, run_id: str = "",
                        options: dict | None = None, repeat: int = 0) -> ProbeContext:
    """The ProbeContext for the running testbed, from its `status --json` document alone (the one
    builder: the harness and the fault dry runs use it); NotRunning / PlatformNotUp when it (or a
    platform) is not up.

    A "planned" status (a backend's dry run of `up`, e.g. KindBackend.planned_status) counts as up:
    only fault probes with dry_run use it, to print what they would do."""
    if status.get("state") == "stopped" or not status.get("platforms"):
        raise NotRunning(f"The testbed ({status.get('backend', 'local')} backend)")
    up = ("planned",) if status.get("state") == "planned" else ("ready",)
    prom = status.get("prometheus") or {}
    if prom.get("state") not in up:
        raise NotRunning(f"The testbed's Prometheus (state: {prom.get('state', 'absent')})")
    ready = [n for n, p in status["platforms"].items() if p.get("state") in up]
    wanted = list(platforms) if platforms else list(status["platforms"])
    for name in wanted:
        info = status["platforms"].get(name)
        if info is None or info.get("state") not in up or not info.get("endpoint"):
            raise PlatformNotUp(name, info.get("state", "unknown") if info else "not part of this testbed", ready)
    model = status.get("model") or {}
    if not model.get("path"):
        raise TestbedError("The running testbed's status names no model artifact; run `python -m testbed down` "
                           "and `python -m testbed up` again.")
    return ProbeContext(
        endpoints={n: Endpoint.from_json(status["platforms"][n]["endpoint"]) for n in wanted},
        prometheus=PrometheusClient(prom["url"]),
        artifact=artifact_mod.load(Path(model["path"])),
        backend=status["backend"],
        seed=seed,
        run_id=run_id,
        repeat=repeat,
        versions={n: status["platforms"][n].get("versions", {}) for n in wanted},
        options=dict(options or {}),
        exposure=exposure_from_status(status, wanted),
    )


def options_for(name: str, options: dict) -> dict:
    """options with only the user-data entries this probe reads."""
    user_keys = {k for keys in USER_DATA.values() for k in keys}
    return {k: v for k, v in options.items() if k not in user_keys or k in USER_DATA.get(name, ())}


def for_probe(ctx: ProbeContext, name: str) -> ProbeContext:
    """ctx with only the user-data options this probe reads."""
    return replace(ctx, options=options_for(name, ctx.options))
