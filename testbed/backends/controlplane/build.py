"""`make controlplane`: build the control plane and the operators from source with Go, cached by version.

Each component of cluster/versions.yaml `controlplane.components` is built into
<cache>/<component>/<version>-<key>/bin, where key hashes the component's pins, this recipe and the
Go version; a finished build writes manifest.json there, so a second run only checks files. Go
builds upstream code and nothing else; the wrapper go.mod of a module component is generated here,
in the cache directory, never in the repository.

Sources: every component is a Go module from the Go module proxy (`go mod download`), which this
machine, a user's and CI reach; nothing is cloned from a code host. What the proxy does not serve is
listed under `controlplane.unbuildable` in cluster/versions.yaml with the reason, and the checks that
need it are reported as not verifiable (never as passed).

    python -m testbed.backends.controlplane.build [--only NAME ...] [--check] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.errors import TestbedError
from testbed.settings import REPO_ROOT

VERSIONS = REPO_ROOT / "cluster" / "versions.yaml"
RECIPE = "controlplane-build/3"
"""Changes whenever the way binaries are built changes (part of every cache key)."""

GO_ENV = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
"""GOTOOLCHAIN=local: a go.mod asking for a newer Go fails at once instead of fetching a toolchain."""

STEP_TIMEOUT_S = 4 * 3600
"""A cold Kubernetes build on 2 busy cores took more than an hour here."""
NICE = 5
"""Builds yield to interactive work on a shared machine, without starving behind it."""


class BuildFailed(TestbedError):
    def __init__(self, component: str, what: str, tail: str, log: Path | None = None, hint: str = ""):
        where = f" Full log: {log}." if log else ""
        super().__init__(f"Building {component} failed while {what}.{where} Last output:\n{tail}\n{hint}".rstrip())


class GoMissing(TestbedError):
    def __init__(self, found: str, minimum: str):
        super().__init__(
            f"The control plane is built from source with Go >= {minimum}; {found}. Install Go {minimum} or newer "
            f"(https://go.dev/doc/install) and put `go` on PATH; no Docker is needed.")


@dataclass(frozen=True)
class Component:
    name: str
    spec: dict
    """The component's entry in cluster/versions.yaml, as written."""

    @property
    def version(self) -> str:
        return str(self.spec["version"])

    @property
    def binaries(self) -> dict[str, str]:
        return dict(self.spec["binaries"])

    @property
    def source(self) -> str:
        return f"{self.spec['module']}@{self.version}"

    @property
    def skew(self) -> dict | None:
        """{"kind_pin", "why"} when the kind path pins another version than the one built here."""
        return self.spec.get("skew")

    def key(self, go_version: str) -> str:
        blob = json.dumps({"spec": self.spec, "recipe": RECIPE, "go": go_version}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Built:
    component: Component
    dir: Path
    cached: bool
    seconds: float = 0.0
    manifest: dict = field(default_factory=dict)

    def binary(self, name: str) -> Path:
        return self.dir / "bin" / name

    @property
    def share(self) -> Path:
        """Upstream files kept beside the binaries (charts, CRDs): `keep:` in versions.yaml."""
        return self.dir / "share"


def load(path: Path = VERSIONS) -> tuple[str, list[Component]]:
    data = yaml.safe_load(path.read_text())["controlplane"]
    return str(data["go_minimum"]), [Component(name, spec) for name, spec in data["components"].items()]


def unbuildable(path: Path = VERSIONS) -> dict[str, dict]:
    """Components the kind path installs that cannot be built here: name -> {"kind_pin", "module", "why"}."""
    return dict(yaml.safe_load(path.read_text())["controlplane"].get("unbuildable") or {})


def cache_root() -> Path:
    if os.environ.get("TESTBED_CONTROLPLANE_CACHE"):
        return Path(os.environ["TESTBED_CONTROLPLANE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "testbed" / "controlplane"


def go_version(minimum: str) -> str:
    """`go env GOVERSION` (e.g. go1.26.8), checked against the minimum."""
    go = shutil.which("go")
    if go is None:
        raise GoMissing("`go` is not on PATH", minimum)
    proc = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=_env())
    found = proc.stdout.strip()
    if proc.returncode != 0 or not _version_at_least(found.removeprefix("go"), minimum):
        raise GoMissing(f"`go env GOVERSION` says {found or proc.stderr.strip()!r}", minimum)
    return found


def _version_at_least(found: str, minimum: str) -> bool:
    def parts(v):
        return [int(x) for x in re.findall(r"\d+", v)[:3]]
    return parts(found) >= parts(minimum)


def location(component: Component, go: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / component.name / f"{component.version}-{component.key(go)}"


def cached(component: Component, go: str, root: Path | None = None) -> Built | None:
    where = location(component, go, root)
    manifest = where / "manifest.json"
    if not manifest.is_file():
        return None
    if not all((where / "bin" / b).is_file() for b in component.binaries):
        return None
    return Built(component, where, cached=True, manifest=json.loads(manifest.read_text()))


def find(names: list[str] | None = None) -> dict[str, Built | None]:
    """The cached build of each component (None: not built), without building anything."""
    minimum, components = load()
    try:
        go = go_version(minimum)
    except GoMissing:
        go = _recorded_go()
    return {c.name: (cached(c, go) if go else None) for c in components if not names or c.name in names}


def _recorded_go() -> str | None:
    """Without Go on PATH, binaries built by the newest Go recorded in the cache are used."""
    root = cache_root()
    gos = sorted({json.loads(p.read_text()).get("go", "") for p in root.glob("*/*/manifest.json")})
    return gos[-1] if gos else None


# --- building ------------------------------------------------------------------------------------
def build(component: Component, go: str, out=sys.stderr) -> Built:
    import fcntl

    found = cached(component, go)
    if found:
        return found
    lock_path = cache_root() / component.name / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another `make controlplane` building it: wait, then reuse its result
        return cached(component, go) or _build(component, go, out)


def _build(component: Component, go: str, out) -> Built:
    where = location(component, go)
    shutil.rmtree(where, ignore_errors=True)
    (where / "bin").mkdir(parents=True)
    log = where / "build.log"
    started = time.monotonic()
    cpu_before = _children_cpu()
    print(f"  {component.name} {component.version}: building from {component.source} (log {log})", file=out, flush=True)
    workdir, packages = _module_wrapper(component, where, log)
    ldflags = ["-s", "-w", *(f"-X {k}={v}" for k, v in (component.spec.get("set_vars") or {}).items())]
    timings = {}
    for binary, package in packages.items():
        t0 = time.monotonic()
        _run(component, f"compiling {binary} ({package})",
             ["nice", "-n", str(NICE), "go", "build", "-trimpath", "-ldflags", " ".join(ldflags),
              "-o", str(where / "bin" / binary), package], workdir, log)
        timings[binary] = round(time.monotonic() - t0, 1)
        print(f"    {binary}: {timings[binary]:.0f}s", file=out, flush=True)
    seconds = round(time.monotonic() - started, 1)
    cpu_seconds = round(_children_cpu() - cpu_before, 1)
    manifest = {"component": component.name, "version": component.version, "source": component.source,
                "go": go, "recipe": RECIPE, "spec": component.spec, "seconds": seconds, "cpu_seconds": cpu_seconds,
                "binary_seconds": timings,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "bytes": {b: (where / "bin" / b).stat().st_size for b in packages}}
    (where / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Built(component, where, cached=False, seconds=seconds, manifest=manifest)


def _module_wrapper(component: Component, where: Path, log: Path) -> tuple[Path, dict[str, str]]:
    """A generated module requiring the upstream module, with its replaces (local paths mapped to the
    published modules of `local_replaces`), so `go build <package>` builds upstream's main packages."""
    module, version = component.spec["module"], component.version
    info = _download(component, f"{module}@{version}", where, log)
    upstream = json.loads(_run(component, "reading the upstream go.mod", ["go", "mod", "edit", "-json", info["GoMod"]],
                               where, log))
    wrapper = where / "wrapper"
    wrapper.mkdir()
    lines = [f"module testbed.local/controlplane/{component.name}", "", f"go {upstream.get('Go') or '1.26'}", ""]
    lines += [f"godebug {g['Key']}={g['Value']}" for g in upstream.get("Godebug") or []]
    lines += ["", f"require {module} {version}", ""]
    local_version = component.spec.get("local_replaces")
    for rep in upstream.get("Replace") or []:
        old, new = rep["Old"], rep["New"]
        old_text = old["Path"] + (f" {old['Version']}" if old.get("Version") else "")
        if new.get("Version"):
            lines.append(f"replace {old_text} => {new['Path']} {new['Version']}")
        elif new["Path"].startswith("."):
            if "FORBIDDEN" in new["Path"]:
                continue  # etcd marks modules it must never import: nothing to build from
            if not local_version:
                raise BuildFailed(component.name, f"mapping the local replace {old['Path']} => {new['Path']}",
                                  "its go.mod replaces a module by a directory; set local_replaces in "
                                  "cluster/versions.yaml to the published version to use instead", log)
            lines.append(f"replace {old_text} => {old['Path']} {local_version}")
    (wrapper / "go.mod").write_text("\n".join(lines) + "\n")
    imports = "\n".join(f'\t_ "{p}"' for p in sorted(set(component.binaries.values())))
    (wrapper / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run(component, "resolving dependencies (go mod tidy)", ["go", "mod", "tidy"], wrapper, log)
    _keep(component, Path(info["Dir"]), where)
    return wrapper, component.binaries


def _download(component: Component, ref: str, where: Path, log: Path) -> dict:
    out = _run(component, f"downloading {ref} from the Go module proxy", ["go", "mod", "download", "-json", ref],
               where, log, hint="Is the Go module proxy reachable (GOPROXY)? Is this exact version served?")
    return json.loads(out)


def _keep(component: Component, module_dir: Path, where: Path) -> None:
    for kept in component.spec.get("keep", []):
        target = where / "share" / kept
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(module_dir / kept, target)
        for path in [target, *target.rglob("*")]:  # the module cache is read-only
            path.chmod(path.stat().st_mode | 0o200)


def _env() -> dict:
    return {**os.environ, **GO_ENV}


def _run(component: Component, what: str, argv: list[str], cwd: Path, log: Path, hint: str = "") -> str:
    with log.open("a") as fh:
        fh.write(f"\n$ (cd {cwd} && {' '.join(argv)})\n")
        fh.flush()
        try:
            proc = subprocess.run(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=fh, text=True,
                                  timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BuildFailed(component.name, what, f"no result after {STEP_TIMEOUT_S}s", log, hint) from None
        fh.write(proc.stdout[-4000:])
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().strip().splitlines()[-25:])
        raise BuildFailed(component.name, what, tail, log, hint)
    return proc.stdout


def _children_cpu() -> float:
    """User + system CPU seconds of finished child processes (go and its compilers): the build's cost
    independent of how busy the machine was (wall time on a shared machine is not)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def disk_usage(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.backends.controlplane.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="build only this component (repeatable)")
    parser.add_argument("--check", action="store_true", help="build nothing: say what is cached, exit 1 if not all")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("--keep-going", action="store_true", help="build the other components when one fails")
    args = parser.parse_args(argv)
    minimum, components = load()
    if args.only:
        unknown = set(args.only) - {c.name for c in components}
        if unknown:
            parser.error(f"unknown component(s) {sorted(unknown)}; known: {', '.join(c.name for c in components)}")
        components = [c for c in components if c.name in args.only]
    out = sys.stderr
    try:
        go = go_version(minimum)
    except GoMissing as exc:
        if not args.check:
            print(exc, file=out)
            return 2
        go = _recorded_go() or "none"
    root = cache_root()
    started = time.monotonic()
    results: dict[str, dict] = {}
    failures: list[str] = []
    print(f"control plane: {go}, cache {root}", file=out, flush=True)
    for component in components:
        if args.check:
            found = cached(component, go)
            results[component.name] = {"version": component.version, "cached": bool(found),
                                       "dir": str(found.dir) if found else None}
            print(f"  {component.name} {component.version}: {'cached in ' + str(found.dir) if found else 'NOT BUILT'}",
                  file=out)
            continue
        try:
            built = build(component, go, out)
        except TestbedError as exc:
            failures.append(component.name)
            results[component.name] = {"version": component.version, "error": str(exc)}
            print(f"  {component.name} {component.version}: FAILED\n{exc}", file=out, flush=True)
            if not args.keep_going:
                break
            continue
        results[component.name] = {"version": component.version, "cached": built.cached, "dir": str(built.dir),
                                   "seconds": built.manifest.get("seconds") if not built.cached else 0.0,
                                   "build_seconds": built.manifest.get("seconds"),
                                   "build_cpu_seconds": built.manifest.get("cpu_seconds"),
                                   "bytes": sum(built.manifest.get("bytes", {}).values())}
        if built.cached:
            print(f"  {component.name} {component.version}: cached ({built.dir})", file=out, flush=True)
        else:
            print(f"  {component.name} {component.version}: built in {built.seconds:.0f}s", file=out, flush=True)
    elapsed = round(time.monotonic() - started, 1)
    summary = {"go": go, "cache": str(root), "seconds": elapsed, "cache_bytes": disk_usage(root),
               "components": results, "failed": failures}
    print(f"control plane: {len(results) - len(failures)}/{len(results)} ready in {elapsed:.0f}s; cache "
          f"{summary['cache_bytes'] / 2**20:.0f} MiB at {root}", file=out)
    if args.json:
        print(json.dumps(summary, indent=2))
    missing = [n for n, r in results.items() if not r.get("cached") and args.check]
    return 1 if failures or missing else 0


if __name__ == "__main__":
    sys.exit(main())
