"""Reading result sets for the report: validate each run, pick the latest runs, refuse bad mixes.

What is refused, with a message naming the run and the fix (ReportError):
- a named run that does not exist, or has no run.json (a partial copy or not a testbed run);
- a run.json or a result file of another schema (an older testbed);
- a result whose artifact sha256 differs from its run's;
- named runs of different artifacts combined, unless the caller asks to show them apart.
What is shown, marked: an interrupted or partial run (cells say PARTIAL, the run table says which
units are missing). When runs are picked automatically, runs that cannot be used are listed with
the reason in the report, never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from testbed.errors import ReportError
from testbed.experiment import RUN_SCHEMA
from testbed.results import SCHEMA as RESULT_SCHEMA
from testbed.results import Result


@dataclass
class LoadedRun:
    run_id: str
    dir: Path
    meta: dict
    results: list[tuple[str, Result]] = field(default_factory=list)
    """(experiment, Result) pairs."""

    missing_units: dict[str, list[str]] = field(default_factory=dict)
    """experiment -> units (r<repeat>/<platform>) that run.json expects but no finished record has."""

    @property
    def sha256(self) -> str:
        return (self.meta.get("artifact") or {}).get("sha256") or ""

    @property
    def created_at(self) -> float:
        return float(self.meta.get("created_at") or 0)

    @property
    def experiments(self) -> list[str]:
        return sorted({e for e, _ in self.results})

    @property
    def partial(self) -> bool:
        return any(self.missing_units.values())


def load_run(root: Path, run_id: str) -> LoadedRun:
    run_dir = root / run_id
    if not run_dir.is_dir():
        raise ReportError(f"there is no run {run_id!r} under {root}. Runs there: "
                          f"{', '.join(sorted(p.name for p in list_run_dirs(root))) or 'none'}.")
    meta_file = run_dir / "run.json"
    if not meta_file.is_file():
        raise ReportError(f"run {run_id!r} has no run.json ({meta_file}): it is partial or not a testbed run, so "
                          f"its backend, versions and artifact are unknown. Re-run the experiment (or resume it "
                          f"with --resume {run_id} if it was interrupted before writing run.json).")
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as exc:
        raise ReportError(f"run {run_id!r}: {meta_file} is not valid JSON ({exc}).") from None
    if meta.get("schema") != RUN_SCHEMA:
        raise ReportError(f"run {run_id!r} was written with schema {meta.get('schema')!r}; this report reads "
                          f"{RUN_SCHEMA!r}. It comes from an older testbed: re-run the experiment with this one.")
    run = LoadedRun(run_id=run_id, dir=run_dir, meta=meta)
    sha = run.sha256
    for path in sorted(run_dir.glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ReportError(f"run {run_id!r}: {path.relative_to(root)} is not valid JSON ({exc}).") from None
        if data.get("schema") != RESULT_SCHEMA:
            raise ReportError(f"run {run_id!r}: {path.relative_to(root)} has result schema {data.get('schema')!r}; "
                              f"this report reads {RESULT_SCHEMA!r}. Re-run the experiment with this testbed.")
        result = Result.from_json(data)
        if result.artifact_sha256 != sha:
            raise ReportError(f"run {run_id!r}: {path.relative_to(root)} names artifact "
                              f"{result.artifact_sha256[:12]}, but the run's artifact is {sha[:12]}: the run "
                              f"directory mixes artifacts. Move that file out or re-run.")
        run.results.append((path.parent.name, result))
    platforms = meta.get("platforms") or []
    repeats = int(meta.get("repeats") or 0)
    for name, exp in (meta.get("experiments") or {}).items():
        expected = {f"r{r}/{p}" for r in range(repeats) for p in platforms}
        done = set(exp.get("completed_units") or [])
        missing = sorted(expected - done)
        if missing:
            run.missing_units[name] = missing
    return run


def list_run_dirs(root: Path) -> list[Path]:
    """Run directories; a reference-variance record (experiments/reference_variance.py, read by Methods) is not one."""
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("report", "."))
            and not ((p / "reference_variance.json").is_file() and not (p / "run.json").is_file())]


@dataclass
class Selection:
    runs: list[LoadedRun]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(run id, reason) of runs looked at and not used."""


def select_runs(root: Path, run_ids: list[str], by_artifact: bool = False) -> Selection:
    """Named runs (all must load) or, with none named, the latest run for each experiment and platform: a run on
    some platforms (a machine that holds four at a time, a re-run of one) replaces only their results."""
    if run_ids:
        runs = [load_run(root, rid) for rid in run_ids]
        shas = {r.sha256 for r in runs}
        if len(shas) > 1 and not by_artifact:
            listing = "; ".join(f"{r.run_id}: {r.sha256[:12]}" for r in runs)
            raise ReportError(f"the runs measure different model artifacts ({listing}). Their numbers are not "
                              f"comparable in one table. Name runs of one artifact, or pass --by-artifact to show "
                              f"one matrix per artifact.")
        return Selection(runs=runs)
    sel = Selection(runs=[])
    loaded = []
    for path in list_run_dirs(root):
        try:
            loaded.append(load_run(root, path.name))
        except ReportError as exc:
            sel.skipped.append((path.name, str(exc)))
    loaded.sort(key=lambda r: r.created_at, reverse=True)
    if not loaded:
        return sel
    artifact = loaded[0].sha256
    taken: set[str] = set()
    for run in loaded:
        if run.sha256 != artifact and not by_artifact:
            sel.skipped.append((run.run_id, f"artifact {run.sha256[:12]} differs from the newest run's "
                                            f"{artifact[:12]} (pass --by-artifact to show it apart)"))
            continue
        key = lambda e, r: (e, r.platform, run.sha256)  # noqa: E731 - newest run per experiment and platform
        fresh = [(e, r) for e, r in run.results if key(e, r) not in taken]
        if not fresh:
            if run.experiments:
                sel.skipped.append((run.run_id, "newer runs measured the same experiments on the same platforms"))
            else:
                sel.skipped.append((run.run_id, "no finished results"))
            continue
        taken.update(key(e, r) for e, r in fresh)
        run.results = fresh
        sel.runs.append(run)
    return sel
