"""The experiment harness: bring the testbed up (if it is not), run probe modules with repeats, and
write a self-describing, resumable result set under results/<run-id>/. Every measurement goes through
it: the scripts in experiments/, the Kubeflow pipeline's probe step, and `python -m testbed probe X`
(a run of one repeat on the running testbed, which it never brings up).

Layout of a run (one run may hold several experiments, e.g. `experiments/all.py`):
    results/<run-id>/run.json                     what the run was (schema testbed.run/v1)
    results/<run-id>/<experiment>/<probe>-<platform>-r<repeat>.json   one Result each (testbed/results.py)

The unit of work is one (repeat, platform) pair: the probe runs with a ProbeContext holding that one
endpoint, its Results are written atomically, and only then is the unit recorded as done in run.json
(also atomically). An interrupted run keeps every finished unit; `--resume RUN-ID` runs only the rest,
and refuses when the testbed now serves a different artifact or the run was made with other options.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib
import json
import platform as _platform
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata as _metadata
from pathlib import Path
from typing import Callable

from testbed import results as results_mod
from testbed.errors import ExperimentError, NotRunning, PlatformNotUp, TestbedError
from testbed.settings import REPO_ROOT, Settings
from testbed.state import atomic_write_json

RUN_SCHEMA = "testbed.run/v1"
ORCHESTRATOR_PACKAGES = ("numpy", "scipy", "scikit-learn", "joblib", "httpx", "prometheus-client", "kfp",
                         "matplotlib", "alibi-detect", "alibi", "kubernetes")

ProbeFn = Callable[..., list]


# --- what a run is -------------------------------------------------------------------------------
@dataclass
class ExperimentSpec:
    name: str
    """Directory under results/<run-id>/ and key in run.json's `experiments`."""

    probe: str | ProbeFn
    """A probe module name (`probes.outlier`, exposing run(ctx) -> list[Result]) or the function itself."""

    options: dict = field(default_factory=dict)
    """Passed to every ProbeContext as ctx.options (e.g. drift magnitudes); recorded in run.json."""

    per_platform: bool = True
    """Run the probe once per platform (the unit of resumption) rather than once for all platforms."""

    restarts_testbed: bool = False
    """The probe takes the testbed down and up itself (ease of deployment). Such experiments run after
    the others; the harness then restores the testbed it found (or takes down the one it started)."""

    def probe_fn(self) -> ProbeFn:
        if callable(self.probe):
            return self.probe
        try:
            module = importlib.import_module(self.probe)
        except ModuleNotFoundError as exc:
            raise ExperimentError(self.name, f"its probe module {self.probe!r} is not importable ({exc}); "
                                  f"this checkout does not have it yet, or it has another name") from None
        if not callable(getattr(module, "run", None)):
            raise ExperimentError(self.name, f"{self.probe} has no run(ctx) function")
        return module.run

    def probe_name(self) -> str:
        return self.probe if isinstance(self.probe, str) else f"{self.probe.__module__}.{self.probe.__qualname__}"


EXPERIMENTS_DIR = REPO_ROOT / "experiments"


def load_spec(name: str) -> ExperimentSpec:
    """The SPEC of experiments/<name>.py (scripts are files, not a package)."""
    import importlib.util

    path = EXPERIMENTS_DIR / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise ExperimentError(name, f"there is no {path}; experiments: {', '.join(known)}")
    module_spec = importlib.util.spec_from_file_location(f"testbed_experiment_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, ExperimentSpec):
        raise ExperimentError(name, f"{path} defines no SPEC (an ExperimentSpec)")
    return spec


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--backend", default="local", help="local (default) or kind")
    parser.add_argument("--platforms", help="comma-separated subset (default: all registered platforms)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions per platform (default 3; on --resume the run's own, or more to extend it)")
    parser.add_argument("--seed", type=int, default=20261125,
                        help="base seed; each repeat's seed is derived from it by hashing (run.json: seeds)")
    parser.add_argument("--resume", metavar="RUN-ID", help="continue an interrupted run, skipping finished work")
    parser.add_argument("--run-id", help="name of a new run (default: <experiment>-<time>-<random>)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"where runs are written (default {results_mod.RESULTS_DIR}; env TESTBED_RESULTS_DIR)")
    parser.add_argument("--keep-up", action="store_true",
                        help="leave a testbed this experiment brought up running (default: `down` it at the end)")
    return parser


# --- seeds ---------------------------------------------------------------------------------------
def repeat_seed(base: int, repeat: int) -> int:
    """The seed of one repeat, derived by hashing (base, repeat): repeats of one run never share draws,
    and neither do runs with nearby base seeds (with base + repeat, repeat 1 of seed 7 is repeat 0 of 8)."""
    digest = hashlib.sha256(f"testbed.repeat-seed/v1:{base}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def seeds_for(base: int, repeats: int) -> dict[str, int]:
    return {f"r{r}": repeat_seed(base, r) for r in range(repeats)}


# --- provenance ----------------------------------------------------------------------------------
def orchestrator_versions() -> dict:
    out = {"python": _platform.python_version()}
    for name in ORCHESTRATOR_PACKAGES:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            pass
    return out


def prometheus_version(settings: Settings) -> str | None:
    from testbed.prometheus import find_binary

    try:
        proc = subprocess.run([find_binary(settings.prometheus_bin), "--version"], capture_output=True, text=True,
                              timeout=10)
    except (TestbedError, OSError, subprocess.SubprocessError):
        return None
    first = (proc.stdout or proc.stderr).splitlines()
    return first[0].strip() if first else None


def git_revision() -> dict:
    def git(*args):
        proc = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def describe_testbed(status: dict, settings: Settings) -> dict:
    """Everything about the testbed a reader of the run needs: versions of every component, artifact."""
    model = status.get("model") or {}
    art_versions = {}
    try:
        art_versions = json.loads((Path(model["path"]) / "metadata.json").read_text()).get("versions", {})
    except (KeyError, OSError, ValueError):
        pass
    return {
        "backend": status["backend"],
        "artifact": {"name": model.get("name"), "sha256": model.get("sha256"), "path": model.get("path"),
                     "versions": art_versions,
                     # a user's model (`up --model`): whose, which format, classifier or regressor
                     **{k: model[k] for k in ("origin", "format", "task") if k in model}},
        "skipped_platforms": status.get("skipped_platforms") or {},
        "versions": {
            "platforms": {p: info.get("versions", {}) for p, info in status.get("platforms", {}).items()},
            "prometheus": prometheus_version(settings),
            "orchestrator": orchestrator_versions(),
            "testbed": git_revision(),
        },
        "timings": status.get("timings", {}),
        "platform_processes": {p: {"processes": info.get("processes"), "rss_mb": info.get("rss_mb"),
                                   "ready_after_s": info.get("ready_after_s")}
                               for p, info in status.get("platforms", {}).items()},
    }


# --- the run directory ---------------------------------------------------------------------------
class Run:
    """results/<run-id>/ and its run.json; every change is written atomically at once."""

    def __init__(self, root: Path, run_id: str):
        self.root = root
        self.run_id = run_id
        self.dir = root / run_id
        self.file = self.dir / "run.json"
        self.data: dict = {}

    @classmethod
    def create(cls, root: Path, run_id: str, header: dict) -> "Run":
        run = cls(root, run_id)
        if run.file.exists():
            raise ExperimentError("harness", f"run {run_id!r} already exists at {run.dir}; resume it with "
                                  f"--resume {run_id} or choose another --run-id")
        run.data = {"schema": RUN_SCHEMA, "run_id": run_id, "created_at": time.time(), "state": "running", **header,
                    "experiments": {}}
        run.save()
        return run

    @classmethod
    def open(cls, root: Path, run_id: str) -> "Run":
        run = cls(root, run_id)
        if not run.file.is_file():
            raise ExperimentError("harness", f"there is no run {run_id!r} under {root} (no {run.file}); "
                                  f"list runs with `ls {root}`")
        try:
            run.data = json.loads(run.file.read_text())
        except ValueError as exc:
            raise ExperimentError("harness", f"{run.file} is not valid JSON ({exc})") from None
        if run.data.get("schema") != RUN_SCHEMA:
            raise ExperimentError("harness", f"{run.file} has schema {run.data.get('schema')!r}; this testbed "
                                  f"writes {RUN_SCHEMA!r} and cannot resume an older run: start a new one")
        return run

    def save(self) -> None:
        atomic_write_json(self.file, self.data)

    def experiment(self, name: str) -> dict:
        return self.data["experiments"].setdefault(name, {"completed_units": [], "failures": {}, "state": "new"})

    @contextmanager
    def locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ExperimentError("harness", f"run {self.run_id!r} is being written by another process "
                                      f"({self.dir / '.lock'}); wait for it to finish") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def unit_key(repeat: int, platform: str) -> str:
    return f"r{repeat}/{platform}"


def check_resumable(run: Run, settings: Settings, repeats: int, seed: int, describe: dict) -> None:
    """Refuse to mix a resumed run with a different testbed or different options."""
    d = run.data
    problems = []
    if d.get("backend") != settings.backend:
        problems.append(f"backend {d.get('backend')!r} (now {settings.backend!r})")
    if d.get("seed") != seed:
        problems.append(f"seed {d.get('seed')} (now {seed})")
    if repeats < d.get("repeats", 0):
        problems.append(f"repeats {d.get('repeats')} (now {repeats}: a resumed run can only get more repeats)")
    if list(d.get("platforms", [])) != list(settings.platforms):
        problems.append(f"platforms {','.join(d.get('platforms', []))} (now {','.join(settings.platforms)})")
    was, now = (d.get("artifact") or {}).get("sha256"), describe["artifact"]["sha256"]
    if was != now:
        problems.append(f"artifact sha256 {str(was)[:12]} (the testbed now serves {str(now)[:12]})")
    if problems:
        raise ExperimentError("harness", f"run {run.run_id!r} cannot be resumed as asked: it was made with "
                              + "; ".join(problems) + ". Resume with the run's own options, or start a new run.")


# --- running -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    run: Run
    results: list = field(default_factory=list)
    """The Results this call wrote (a resumed run's earlier ones are in its directory)."""

    failures: list[tuple[str, str]] = field(default_factory=list)
    """(experiment r<repeat>/<platform>, error) of each unit that failed; they are kept in run.json and
    `--resume RUN-ID` runs them again."""


def execute(specs: list[ExperimentSpec], args, say=print, extra_header: dict | None = None, *,
            bring_up: bool = True) -> Outcome:
    """Run each spec's probe with repeats on the testbed, writing results/<run-id>/.

    bring_up=False measures the running testbed as it is (NotRunning / PlatformNotUp when it, or a
    platform asked for, is not up) and, without --platforms, every platform it serves: the `probe`
    verb runs this way, with one repeat."""
    from deployers import parse_platforms
    from probes import registry
    from testbed import lifecycle

    settings = Settings(backend=args.backend)
    if args.platforms:
        settings = replace(settings, platforms=parse_platforms(args.platforms, settings.backend))
    root = Path(args.results_dir) if args.results_dir else results_mod.RESULTS_DIR
    probe_fns = {s.name: s.probe_fn() for s in specs}  # fail before bringing anything up
    if args.resume:
        run = Run.open(root, args.resume)
        settings = replace(settings, platforms=tuple(run.data.get("platforms") or settings.platforms))
        if args.repeats is None:
            args.repeats = run.data.get("repeats", 3)
    args.repeats = 3 if args.repeats is None else args.repeats
    if args.repeats < 1:
        raise ExperimentError("harness", f"--repeats {args.repeats}: give at least 1")

    if bring_up:
        status, started_here = lifecycle.ensure_up(settings, say)
    else:
        status, started_here = lifecycle.status(settings), False
        if not args.platforms and status.get("platforms"):
            settings = replace(settings, platforms=tuple(status["platforms"]))
        registry.context_from_status(status, settings.platforms)  # not up: say so before creating a run
    try:
        describe = describe_testbed(status, settings)
        if args.resume:
            check_resumable(run, settings, args.repeats, args.seed, describe)
            if args.repeats > run.data["repeats"]:
                run.data["repeats"] = args.repeats
                run.data["seeds"] = seeds_for(args.seed, args.repeats)
            say(f"Resuming run {run.run_id} in {run.dir}")
        else:
            run_id = args.run_id or results_mod.new_run_id(specs[0].name if len(specs) == 1 else "run")
            header = {"kind": "experiment", "backend": settings.backend, "platforms": list(settings.platforms),
                      "repeats": args.repeats, "seed": args.seed, "seeds": seeds_for(args.seed, args.repeats),
                      "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "hardware": results_mod.hardware(),
                      **describe, **(extra_header or {})}
            run = Run.create(root, run_id, header)
            say(f"Run {run.run_id}: writing to {run.dir}")
        outcome = Outcome(run)
        with run.locked():
            run.data.setdefault("resumed_at", [])
            if args.resume:
                run.data["resumed_at"].append(time.time())
                run.data["state"] = "running"
            restarted = False
            for spec in sorted(specs, key=lambda s: s.restarts_testbed):
                _run_one(run, spec, probe_fns[spec.name], status, settings, args.repeats, args.seed, say, outcome)
                restarted |= spec.restarts_testbed
            if restarted and not (started_here and not args.keep_up):
                say("Restoring the testbed as it was before the experiments that restart it ...")
                lifecycle.down(settings)
                status, _ = lifecycle.ensure_up(settings, say)
            run.data["finished_at"] = time.time()
            run.data["state"] = "complete" if not outcome.failures else "incomplete"
            run.save()
        say(f"Run {run.run_id}: {run.data['state']}" + (f", {len(outcome.failures)} unit(s) failed: resume with "
                                                         f"--resume {run.run_id}" if outcome.failures else ""))
        return outcome
    finally:
        if started_here and not args.keep_up:
            lifecycle.down(settings)


def run_experiments(specs: list[ExperimentSpec], args, say=print, extra_header: dict | None = None) -> int:
    """execute(), then print the run directory; the exit code of a script (1 when a unit failed)."""
    outcome = execute(specs, args, say, extra_header)
    print(outcome.run.dir)
    return 0 if not outcome.failures else 1


def _run_one(run: Run, spec: ExperimentSpec, probe_fn: ProbeFn, status: dict, settings: Settings,
             repeats: int, seed: int, say, outcome: Outcome) -> None:
    from probes import registry

    exp = run.experiment(spec.name)
    exp.update({"probe": spec.probe_name(), "options": spec.options, "state": "running"})
    exp.setdefault("wall_s", 0.0)
    run.save()
    done = set(exp["completed_units"])
    groups = [(p,) for p in settings.platforms] if spec.per_platform else [tuple(settings.platforms)]
    for repeat in range(repeats):
        for group in groups:
            keys = [unit_key(repeat, p) for p in group]
            if all(k in done for k in keys):
                continue
            started = time.monotonic()
            say(f"[{spec.name}] repeat {repeat + 1}/{repeats} on {', '.join(group)} ...")
            ctx = registry.context_from_status(status, group, seed=repeat_seed(seed, repeat), run_id=run.run_id,
                                               repeat=repeat, options=spec.options)
            try:
                produced = probe_fn(ctx)
                written = _write_results(produced, run, spec.name, ctx, group)
            except (NotRunning, PlatformNotUp):
                raise  # the testbed is gone: no later unit can run either
            except Exception as exc:  # one failing unit must not lose the others: record, go on
                message = str(exc) if isinstance(exc, TestbedError) else f"{type(exc).__name__}: {exc}"
                for k in keys:
                    exp["failures"][k] = {"error": message, "traceback": traceback.format_exc()[-4000:],
                                          "at": time.time()}
                    outcome.failures.append((f"{spec.name} {k}", message))
                exp["wall_s"] = round(exp["wall_s"] + time.monotonic() - started, 3)
                run.save()
                say(f"[{spec.name}] repeat {repeat + 1} on {', '.join(group)}: FAILED: {message}")
                continue
            for k in keys:
                exp["failures"].pop(k, None)
                exp["completed_units"].append(k)
                done.add(k)
            exp["wall_s"] = round(exp["wall_s"] + time.monotonic() - started, 3)
            exp.setdefault("files", []).extend(written)
            run.save()
            outcome.results.extend(produced)
            say(f"[{spec.name}] repeat {repeat + 1}/{repeats} on {', '.join(group)}: "
                + ", ".join(f"{r.platform} {r.verdict}" for r in produced))
    exp["state"] = "complete" if not exp["failures"] else "incomplete"
    run.save()


def _write_results(produced, run: Run, experiment: str, ctx, group: tuple[str, ...]) -> list[str]:
    if not isinstance(produced, list) or not all(isinstance(r, results_mod.Result) for r in produced):
        raise TypeError(f"probe returned {type(produced).__name__}, expected list[Result]")
    seen = set()
    for r in produced:
        if r.platform not in group:
            raise ValueError(f"probe returned a result for {r.platform!r}, which it was not given ({group})")
        key = (r.probe, r.platform)
        if key in seen:
            raise ValueError(f"probe returned two results named {r.probe!r} for {r.platform!r}; give each its "
                             f"own probe name")
        seen.add(key)
    written = []
    for r in produced:
        r.run_id, r.repeat = run.run_id, ctx.repeat
        r.artifact_sha256 = r.artifact_sha256 or ctx.artifact.sha256
        if r.artifact_sha256 != ctx.artifact.sha256:
            raise ValueError(f"probe result names artifact {r.artifact_sha256[:12]}, the testbed serves "
                             f"{ctx.artifact.sha256[:12]}")
        r.evidence.setdefault("seed", ctx.seed)
        r.evidence.setdefault("versions", ctx.versions.get(r.platform, {}))
        written.append(str(results_mod.write(r, run.dir, experiment).relative_to(run.dir)))
    return written


def main(specs: ExperimentSpec | list[ExperimentSpec], argv: list[str] | None = None,
         description: str | None = None) -> int:
    """Entry point of every script in experiments/: parse the common flags, run, map errors to exit codes."""
    specs = specs if isinstance(specs, list) else [specs]
    parser = add_arguments(argparse.ArgumentParser(description=description))
    args = parser.parse_args(argv)
    try:
        return run_experiments(specs, args, say=lambda m: print(m, file=sys.stderr, flush=True))
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished units are kept; resume with --resume RUN-ID (the run id is printed above)",
              file=sys.stderr)
        return 130

