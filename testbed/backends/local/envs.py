"""Runtime virtual environments: one per runtime, as each would have its own image.

An EnvSpec lists exact pins (resolving without lower bounds picks ancient releases). `ensure`
builds the venv with uv into a directory named by the spec's hash (`<envs dir>/<name>-<digest>`) and
stamps it; an unchanged spec is reused. A built environment is never changed again: a new spec gets a
new directory, so several state directories (a user's testbed and the tests' own) can share one envs
directory (TESTBED_ENVS_DIR) without a rebuild ever pulling files from under a running runtime.
Builds of one spec are serialised by a lock file, so two `up`s at once build it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import EnvironmentBuildFailed

STAMP = ".testbed-env.json"
PYTHON = "3.11"
# uv does not write .pyc files by default, and PYTHONDONTWRITEBYTECODE (set on some machines) stops
# Python from caching them: every runtime start then compiles its imports from source (alibi,
# shap, ray, kserve: seconds of CPU each on 2 cores). Compiling at install time avoids that.
INSTALL_FLAGS = ("--compile-bytecode",)


@dataclass(frozen=True)
class EnvSpec:
    name: str
    """What the environment is for; its directory is `<envs dir>/<name>-<digest>`."""

    requirements: tuple[str, ...]
    """Pinned requirements, resolved together."""

    no_deps: tuple[str, ...] = ()
    """Installed afterwards with --no-deps (packages whose metadata over-pins, e.g. TensorFlow)."""

    def digest(self) -> str:
        payload = json.dumps([PYTHON, sorted(self.requirements), sorted(self.no_deps), list(INSTALL_FLAGS)])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except ImportError:
        found = shutil.which("uv")
        if not found:
            raise EnvironmentBuildFailed("uv", "find uv", "uv is not installed in the testbed's environment; "
                                         "run `make setup` (it installs the project with uv).") from None
        return found


def env_dir(spec: EnvSpec, envs_dir: Path) -> Path:
    """Where spec's environment lives (built or not)."""
    return envs_dir / f"{spec.name}-{spec.digest()}"


def python_of(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def is_current(spec: EnvSpec, env_dir: Path) -> bool:
    stamp = env_dir / STAMP
    if not stamp.is_file() or not python_of(env_dir).exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("digest") == spec.digest()
    except json.JSONDecodeError:
        return False


def _run(env: str, cmd: list[str], log) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "UV_NO_PROGRESS": "1"})
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise EnvironmentBuildFailed(env, " ".join(cmd[:4]) + " ...", tail)


def ensure(spec: EnvSpec, envs_dir: Path, say=lambda m: None) -> Path:
    """Return the venv directory for spec, building it first if it is not built yet."""
    target = env_dir(spec, envs_dir)
    if is_current(spec, target):
        return target
    envs_dir.mkdir(parents=True, exist_ok=True)
    with open(envs_dir / f".{target.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another `up` (or a test session) may be building it right now
        if is_current(spec, target):
            return target
        say(f"  building runtime environment {spec.name!r} (first time only) ...")
        uv = uv_binary()
        with open(envs_dir / f"{target.name}.build.log", "w") as log:
            # The venv records its own absolute path, so build it where it will live; the stamp, written
            # last, is what makes it current.
            shutil.rmtree(target, ignore_errors=True)
            _run(spec.name, [uv, "venv", "--quiet", "--python", sys.executable, str(target)], log)
            py = str(python_of(target))
            _run(spec.name, [uv, "pip", "install", *INSTALL_FLAGS, "--python", py, *spec.requirements], log)
            if spec.no_deps:
                _run(spec.name, [uv, "pip", "install", *INSTALL_FLAGS, "--python", py, "--no-deps", *spec.no_deps], log)
        (target / STAMP).write_text(json.dumps({"name": spec.name, "digest": spec.digest(),
                                                "requirements": list(spec.requirements),
                                                "no_deps": list(spec.no_deps)}, indent=2))
    return target


def installed_versions(env_dir: Path, packages: list[str]) -> dict[str, str]:
    """Versions of the named distributions inside a runtime venv (for results' evidence)."""
    code = ("import json,sys\nfrom importlib.metadata import version, PackageNotFoundError\n"
            "out={}\nfor p in sys.argv[1:]:\n    try: out[p]=version(p)\n    except PackageNotFoundError: out[p]=None\n"
            "print(json.dumps(out))")
    proc = subprocess.run([str(python_of(env_dir)), "-c", code, *packages], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}
