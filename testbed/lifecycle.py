"""The testbed's lifecycle as functions: `up`, `down`, `status`, and `ensure_up` for code that needs a
running testbed. The CLI verbs, the experiment harness, the Kubeflow pipeline's components and the ease
probe all call these; none of them calls the CLI.

`up` on a testbed that is already up does nothing; on a degraded one (a process it started has died)
it restarts exactly what died, then checks prediction parity and the scrape targets again, and
starts afresh only when that fails; after an interrupted `up` it stops what survived and starts afresh.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from testbed import state
from testbed.backends import get_backend
from testbed.errors import AlreadyRunning, NotRunning, TestbedError
from testbed.settings import Settings
from testbed.steps import UpContext, run_steps


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class UpOutcome:
    status: dict
    """`status` of the testbed after `up` (its stable JSON document); {} after a dry run."""

    action: str
    """started | repaired | already up | planned"""

    restarted: list[str] = field(default_factory=list)
    """With `repaired`: what died and was started again."""


def up(settings: Settings, *, dry_run: bool = False, out_dir: str | None = None, retain: bool = False,
       say=_stderr) -> UpOutcome:
    backend = get_backend(settings.backend)
    ctx = UpContext(settings=settings, dry_run=dry_run, extra={"out_dir": out_dir, "retain": retain})
    ctx.say = say
    if dry_run:
        run_steps(backend.up_steps(ctx), ctx)
        return UpOutcome({}, "planned")
    wanted = None
    if settings.model is not None:
        from testbed import usermodel

        # Every check of a user's model and data runs before the testbed (if one runs) is looked at: a refusal
        # changes nothing.
        wanted = usermodel.ensure(settings.model, settings.artifacts_dir, settings.envs_dir, say)
    with state.exclusive(settings.run_dir, "up"):
        _same_model(backend.status(settings), wanted)
        running = backend.already_up(settings)
        if running is not None:
            say("The testbed is already up; nothing to do.")
            return UpOutcome(running, "already up")
        repair = getattr(backend, "repair_steps", None)
        steps = repair(ctx) if repair else None
        if steps:
            restarted = list(ctx.extra["restart"])
            say(f"The testbed is degraded: restarting {', '.join(restarted)} (everything else keeps running)."
                if restarted else "The testbed is degraded, but every process it started is alive: waiting for "
                                  "it, then checking parity and scrape targets again.")
            try:
                run_steps(steps, ctx, on_failure=getattr(backend, "release", None))
                return UpOutcome(backend.status(settings), "repaired", restarted)
            except TestbedError as exc:
                say(f"Repairing the testbed failed: {exc}\nStopping the whole testbed and starting it afresh ...")
                for line in backend.down(settings):
                    say(f"  {line}")
                ctx = UpContext(settings=settings, extra={"out_dir": out_dir, "retain": retain})
                ctx.say = say
        run_steps(backend.up_steps(ctx), ctx, on_failure=backend.rollback)
    return UpOutcome(backend.status(settings), "started")


def _same_model(current: dict, wanted) -> None:
    """AlreadyRunning when a testbed runs (or is degraded) serving another model than this `up` asks for."""
    model = current.get("model") or {}
    if current.get("state") == "stopped" or not model:
        return
    if wanted is not None and model.get("sha256") != wanted.sha256 or wanted is None and model.get("origin") == "user":
        asked = f"{wanted.name} (sha256 {wanted.sha256[:12]})" if wanted else "the testbed's own model"
        raise AlreadyRunning("The testbed", f"it serves {model.get('name')} (sha256 {str(model.get('sha256'))[:12]}), "
                                            f"not {asked}; nothing was changed")


def down(settings: Settings) -> list[str]:
    """Stop everything `up` started; one line per thing stopped ([] when nothing ran)."""
    with state.exclusive(settings.run_dir, "down"):
        return get_backend(settings.backend).down(settings)


def status(settings: Settings) -> dict:
    """The stable `status --json` document (schema testbed.status/v1)."""
    return get_backend(settings.backend).status(settings)


def ensure_up(settings: Settings, say=_stderr) -> tuple[dict, bool]:
    """The status of a running testbed serving settings.platforms, bringing it up (or repairing it)
    when it is not. Returns (status, started_here): started_here is True when this call started it
    from nothing (so the caller should take it down again)."""
    current = status(settings)
    missing = [p for p in settings.platforms if p not in current.get("platforms", {})]
    if current["state"] == "running" and not missing:
        return current, False
    if current.get("platforms") and missing:
        raise NotRunning(f"Platform(s) {', '.join(missing)} on the {settings.backend} testbed (it serves "
                         f"{', '.join(current['platforms'])}; run `python -m testbed down` and start again with "
                         f"the platforms you need)")
    say(f"The {settings.backend} testbed is {current['state']}: bringing it up ...")
    outcome = up(settings, say=say)
    if outcome.status.get("state") != "running":
        raise NotRunning(f"The {settings.backend} testbed (state {outcome.status.get('state')!r} after `up`)")
    return outcome.status, current["state"] == "stopped"
