"""The kind path's objects as another checkout renders them (TESTBED_KIND_PATH_AT=<checkout>), for
showing what the control-plane checks find in an older kind path, e.g. the commit before a fix:

    git worktree add /tmp/prefix 84c4db3
    TESTBED_KIND_PATH_AT=/tmp/prefix python -m testbed up --backend controlplane
    (or: pytest -m controlplane tests/controlplane --kind-path-at=/tmp/prefix; with '=': pytest reads
    a bare path after an option it does not know yet as a test path)

Only each platform's rendered objects (its custom resource, NodePort Service and PodMonitor: the
deployment's `manifests`) come from the checkout, rendered by its own code and manifests/ in a
separate Python process for the same Target; everything else (control plane, operators, waits and
checks) is this checkout's. Such a run records no Kubernetes-path level: it is not the kind path
this checkout ships.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from testbed.errors import TestbedError

ENV = "TESTBED_KIND_PATH_AT"

_RENDER = """
import dataclasses, json, sys
from deployers import get_platform
from testbed.backends.kind.deployment import Target
req = json.load(sys.stdin)
fields = {f.name for f in dataclasses.fields(Target)}
dep = get_platform(req["platform"]).deployment_for("kind")
target = Target(**{k: v for k, v in req["target"].items() if k in fields})
json.dump(dep.manifests(target), sys.stdout)
"""


def checkout() -> Path | None:
    value = os.environ.get(ENV)
    if not value:
        return None
    path = Path(value).resolve()
    if not (path / "deployers").is_dir() or not (path / "manifests").is_dir():
        raise TestbedError(f"{ENV}={value} is not a checkout of this project (no deployers/ and manifests/ there); "
                           f"make one with `git worktree add DIR COMMIT`")
    return path


def render(where: Path, platform: str, target) -> list[dict]:
    """deployment_for("kind").manifests(target) as the checkout at `where` computes it."""
    request = {"platform": platform, "target": dataclasses.asdict(target)}
    proc = subprocess.run([sys.executable, "-c", _RENDER], cwd=where, input=json.dumps(request), capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(where)})
    if proc.returncode != 0:
        raise TestbedError(f"rendering {platform}'s kind objects with the checkout {where} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def use(deployments: dict, where: Path, say) -> None:
    """Make each deployment apply what the checkout renders (see the module docstring)."""
    for name, dep in deployments.items():
        def manifests(target, _name=name):
            return render(where, _name, target)

        dep.manifests = manifests
        dep.scrape_plan = lambda target, _name=name: [
            f"{_name}: objects rendered by the checkout {where} ({ENV}); this checkout's offline scrape check skipped"]
    say(f"  {ENV}: each platform's objects are rendered by the checkout {where}")
