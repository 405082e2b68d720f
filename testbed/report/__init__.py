"""`python -m testbed report`: the criteria matrix (measured cells with CI, run id and backend for
the registered platforms; documented rows with sources for the other systems), plots, and
the provenance of every run, as Markdown and as one self-contained HTML file (images inlined).
"""

from __future__ import annotations

import base64
import html
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.report import methods
from testbed.report.criteria import CRITERIA, BY_EXPERIMENT, Cell, measured_cell
from testbed.report.runs import LoadedRun, Selection, select_runs
from testbed.state import atomic_write_text

DOCUMENTED = Path(__file__).with_name("documented.yaml")
DOCUMENTED_SCHEMA = "testbed.documented/v1"


def measured_systems() -> list[dict]:
    """One matrix row per registered platform, in registry order: its documented facts (the platform
    module's PLATFORM.documented, with sources) where nothing is measured yet."""
    from deployers import PLATFORMS  # here: the results exporter imports this package, not the platforms

    return [p.documented.as_system(name) if p.documented else
            {"id": name, "name": p.display_name, "measured_platform": name, "cells": {}}
            for name, p in PLATFORMS.items()]


def load_documented(path: Path = DOCUMENTED, measured: list[dict] | None = None) -> dict:
    """documented.yaml (systems the testbed does not measure) after the measured platforms' rows."""
    data = yaml.safe_load(path.read_text())
    if data.get("schema") != DOCUMENTED_SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {DOCUMENTED_SCHEMA!r}")
    measured = measured_systems() if measured is None else measured
    ids = {m["id"] for m in measured}
    twice = [s["id"] for s in data["systems"] if s["id"] in ids or s.get("measured_platform")]
    if twice:
        raise ValueError(f"{path}: rows for measured platforms {twice}: a measured platform's documented facts "
                         f"live in its module (deployers/<name>.py, PLATFORM.documented); move them there")
    data["systems"] = [*measured, *data["systems"]]
    keys = {c.key for c in CRITERIA}
    for system in data["systems"]:
        unknown = set(system["cells"]) - keys
        if unknown:
            raise ValueError(f"{path}: system {system['id']!r} has cells for unknown criteria {sorted(unknown)}")
    return data


@dataclass
class Matrix:
    title: str
    sha256: str | None
    rows: list[tuple[dict, dict[str, Cell]]] = field(default_factory=list)
    """(system entry: a measured platform's or documented.yaml's, criterion key -> Cell)."""


def build_matrix(documented: dict, runs: list[LoadedRun], sha256: str | None) -> Matrix:
    runs_meta = {r.run_id: {"partial_experiments": {e: bool(m) for e, m in r.missing_units.items()},
                            "repeats": r.meta.get("repeats"), "kind": r.meta.get("kind")} for r in runs}
    pairs = [(e, res) for r in runs for e, res in r.results]
    matrix = Matrix(title=matrix_title(runs, sha256), sha256=sha256)
    skipped = {p: why for r in runs for p, why in (r.meta.get("skipped_platforms") or {}).items()}
    for system in documented["systems"]:
        cells: dict[str, Cell] = {}
        platform = system.get("measured_platform")
        for c in CRITERIA:
            doc = system["cells"].get(c.documented_as or c.key)
            measured = [r for e, r in pairs if platform and r.platform == platform and e in c.experiments]
            if measured:
                cells[c.key] = measured_cell(c, measured, runs_meta)
            elif platform in skipped and c.experiment:
                cells[c.key] = Cell(kind="pending", lines=[f"not served: {skipped[platform]}"])
            elif doc:
                note = " (documented; not measured yet)" if platform and c.experiment else ""
                cells[c.key] = Cell(kind="documented", lines=[doc["text"] + note], sources=list(doc.get("sources") or []))
            elif platform and c.experiment:
                cells[c.key] = Cell(kind="pending", lines=[f"not measured yet: run experiments/"
                                                           f"{c.experiment.replace('-', '_')}.py"])
            else:
                cells[c.key] = Cell(kind="none", lines=["—"])
        matrix.rows.append((system, cells))
    return matrix


def matrix_title(runs: list[LoadedRun], sha256: str | None) -> str:
    """Whose model the matrix measures: a user's model by name, format and task, or the testbed's own."""
    if not sha256:
        return "documented only"
    art = next(((r.meta.get("artifact") or {}) for r in runs), {})
    if art.get("origin") == "user":
        return f"your model {art.get('name')}: {art.get('format')} {art.get('task')}, artifact {sha256[:12]}"
    return f"artifact {sha256[:12]}"


@dataclass
class Report:
    generated_at: float
    matrices: list[Matrix]
    runs: list[LoadedRun]
    skipped: list[tuple[str, str]]
    documented: dict
    plots: list[tuple[str, str, Path | None, str | None]]
    """(key, title, png path or None, reason when absent)."""

    experiments_unknown: list[str]
    kubernetes_path: dict | None = None
    """testbed.kubernetes_path.levels of each measured platform (None: not computed)."""
    reference_variance: dict | None = None
    """The newest experiments/reference_variance.py record under the results root, for Methods."""


def build(root: Path, run_ids: list[str], out_dir: Path, by_artifact: bool = False) -> dict:
    """Select runs, compute the matrices and plots, write report.md and report.html into out_dir."""
    documented = load_documented()
    sel: Selection = select_runs(root, run_ids, by_artifact=by_artifact)
    groups: dict[str, list[LoadedRun]] = {}
    for run in sel.runs:
        groups.setdefault(run.sha256, []).append(run)
    matrices = [build_matrix(documented, rs, sha) for sha, rs in groups.items()] or [build_matrix(documented, [], None)]
    out_dir.mkdir(parents=True, exist_ok=True)
    from testbed.report import plots as plots_mod  # matplotlib: only when drawing (the exporter imports this package)

    plot_rows = []
    for sha, rs in groups.items() or [(None, [])]:
        pairs = [(e, res) for r in rs for e, res in r.results]
        for key, title, fn in plots_mod.PLOTS:
            name = f"{key}-{sha[:12]}.png" if len(groups) > 1 else f"{key}.png"
            path, reason = fn(pairs, out_dir / name)
            plot_rows.append((key, title + (f" (artifact {sha[:12]})" if len(groups) > 1 else ""), path, reason))
    known = {"parity"} | set(BY_EXPERIMENT)
    unknown = sorted({e for r in sel.runs for e in r.experiments} - known)
    report = Report(generated_at=time.time(), matrices=matrices, runs=sel.runs, skipped=sel.skipped,
                    documented=documented, plots=plot_rows, experiments_unknown=unknown,
                    kubernetes_path=_kubernetes_path(root),
                    reference_variance=latest_reference_variance(root))
    md, page = to_markdown(report), to_html(report)
    atomic_write_text(out_dir / "report.md", md)
    atomic_write_text(out_dir / "report.html", page)
    for name in ("report.md", "report.html"):
        (out_dir / name).chmod(0o644)  # a report is for sharing (atomic writes create files 0600)
    return {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "runs": [r.run_id for r in sel.runs],
            "skipped": sel.skipped, "report": report}


def _kubernetes_path(root: Path) -> dict:
    from testbed import kubernetes_path

    return kubernetes_path.levels(kubernetes_path.kind_platforms(), results_dir=root)


def kubernetes_path_rows(rep: Report) -> list[tuple[str, str, list[str]]]:
    """(platform, level reached, one line per level) for the report's Kubernetes path section."""
    from testbed.kubernetes_path import details

    return [(name, entry["level"], [d.strip() for d in details(entry)])
            for name, entry in (rep.kubernetes_path or {}).items()]


def latest_reference_variance(root: Path) -> dict | None:
    import json

    records = []
    for path in Path(root).glob("*/reference_variance.json") if Path(root).is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if data.get("schema") == "testbed.reference_variance/v1":
            records.append((path.stat().st_mtime, data))
    return max(records, key=lambda x: x[0])[1] if records else None


# --- rendering -----------------------------------------------------------------------------------
class Sources:
    """Numbers each distinct source URL once, for footnote-style references."""

    def __init__(self):
        self.urls: list[str] = []

    def refs(self, urls: list[str]) -> list[int]:
        out = []
        for u in urls:
            if u not in self.urls:
                self.urls.append(u)
            out.append(self.urls.index(u) + 1)
        return out


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "—"


def run_rows(runs: list[LoadedRun]) -> list[dict]:
    rows = []
    for r in runs:
        m = r.meta
        hw = m.get("hardware") or {}
        vers = m.get("versions") or {}
        plat = "; ".join(f"{p}: " + ", ".join(f"{k} {v}" for k, v in pv.items() if v)
                         for p, pv in (vers.get("platforms") or {}).items())
        orch = ", ".join(f"{k} {v}" for k, v in (vers.get("orchestrator") or {}).items())
        walls = ", ".join(f"{e} {x.get('wall_s', 0):.1f}s" for e, x in (m.get("experiments") or {}).items())
        missing = "; ".join(f"{e}: {len(u)} unit(s) missing ({', '.join(u[:4])}{'…' if len(u) > 4 else ''})"
                            for e, u in r.missing_units.items() if u)
        rows.append({
            "run": r.run_id, "state": m.get("state", "?") + (" (PARTIAL)" if r.partial else ""),
            "backend": m.get("backend"), "platforms": ", ".join(m.get("platforms") or []),
            "experiments": ", ".join(r.experiments) or "—", "repeats": m.get("repeats"),
            "seeds": ", ".join(f"{k}={v}" for k, v in (m.get("seeds") or {}).items()),
            "artifact": f"{r.sha256[:12]} ({(m.get('artifact') or {}).get('name', '?')})",
            "hardware": f"{hw.get('cpu', '?')}, {hw.get('cores', '?')} cores, {hw.get('memory_gb', '?')} GB, "
                        f"{hw.get('machine', '')} kernel {hw.get('kernel', '')}",
            "versions": plat + (f"; prometheus: {vers.get('prometheus')}" if vers.get("prometheus") else "")
                        + (f"; orchestrator: {orch}" if orch else "")
                        + (f"; testbed {str((vers.get('testbed') or {}).get('commit'))[:12]}"
                           + (" (dirty)" if (vers.get('testbed') or {}).get('dirty') else "")),
            "started": _fmt_time(m.get("created_at")), "wall": walls or "—", "missing": missing,
        })
    return rows


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


NOT_MEASURABLE = "not measurable here"


def cell_class(system: dict, cell: Cell) -> str:
    """measured / partial / documented / unmeasurable: what a cell's colour says."""
    if cell.kind == "measured":
        return "partial" if cell.partial else "measured"
    if cell.kind == "documented" and system.get("measurable_here", True):
        return "documented"
    if cell.kind == "pending":
        return "pending"
    return "unmeasurable"


def short(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def split_notes(rep: Report) -> tuple[list[str], list[str]]:
    """(warnings a reader must see, routine notes): a run superseded by a newer one is routine."""
    warnings, routine = [], []
    for rid, why in rep.skipped:
        (routine if why.startswith(("a newer run", "no finished results")) else warnings).append(
            f"run {rid} not used: {why}")
    warnings += [f"run {r.run_id} is PARTIAL: " + "; ".join(f"{e}: {len(u)} unit(s) missing"
                                                             for e, u in r.missing_units.items() if u)
                 for r in rep.runs if r.partial]
    warnings += [f"run {r.run_id} left out experiment {name}: {why}"
                 for r in rep.runs for name, why in (r.meta.get("skipped_experiments") or {}).items()]
    if rep.experiments_unknown:
        warnings.append(f"experiment(s) {', '.join(rep.experiments_unknown)} have no column in the matrix")
    return warnings, routine


def _glance_text(system: dict, cell: Cell, sources: Sources) -> tuple[str, str, str]:
    """(headline, tag, small print) of a cell in the at-a-glance matrix."""
    if cell.kind == "measured":
        return cell.headline or (cell.lines[0] if cell.lines else "—"), cell.tag, cell.method
    if cell.kind == "documented":
        refs = "".join(f"[{n}]" for n in sources.refs(cell.sources))
        what = "documented" if system.get("measurable_here", True) else f"documented; {NOT_MEASURABLE}"
        return short(cell.lines[0], 48), "", f"{what} {refs}".strip()
    if cell.kind == "pending":
        if cell.lines[0].startswith("not served: "):
            return "not served", "", cell.lines[0].split(": ", 1)[-1]
        return "not measured yet", "", cell.lines[0].split(": ", 1)[-1]
    return "—", "", NOT_MEASURABLE


def not_measured(rep: Report) -> list[tuple[str, str, list[str]]]:
    """(system, why, sources) of each documented system that says why the testbed does not measure it."""
    return [(s["name"], " ".join(str(s["not_measured_because"]).split()), list(s.get("not_measured_sources") or []))
            for s in rep.documented["systems"] if s.get("not_measured_because")]


def measured_criteria(rep: Report) -> list:
    return [c for c in CRITERIA if any(cells[c.key].kind == "measured" for m in rep.matrices for _, cells in m.rows)]


def to_markdown(rep: Report) -> str:
    sources = Sources()
    out = ["# ML deployment testbed: comparison report", "",
           f"Generated {_fmt_time(rep.generated_at)} from "
           + (f"{len(rep.runs)} run(s): {', '.join(r.run_id for r in rep.runs)}." if rep.runs
              else "documented rows only: no run exists yet (run an experiment in experiments/)."), ""]
    out += ["**Legend.** Each cell: one headline with its interval, the mechanism in `code`, then n and the interval "
            "method. *documented* cells are taken from the system's own documentation and are **not measured**; "
            f"*{NOT_MEASURABLE}* marks systems this machine cannot run. PARTIAL: from an interrupted run. Details, "
            "run ids and every number behind a headline are in the per-criterion sections below.", ""]
    warnings, routine = split_notes(rep)
    if warnings:
        out += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    for matrix in rep.matrices:
        out += [f"## At a glance ({matrix.title})", ""]
        out.append("| System | " + " | ".join(c.title for c in CRITERIA) + " |")
        out.append("|---|" + "---|" * len(CRITERIA))
        for system, cells in matrix.rows:
            label = system["name"] + ("" if system.get("measured_platform") else " *(not measured)*")
            tds = []
            for c in CRITERIA:
                cell = cells[c.key]
                head, tag, small = _glance_text(system, cell, sources)
                if cell.kind == "documented":
                    text = f"*documented:* {head} {small.split(' ', 1)[-1] if '[' in small else ''}".strip()
                else:
                    text = head + (f" `{tag}`" if tag else "") + (f" ({small})" if small else "") \
                        + (" PARTIAL" if cell.partial else "")
                tds.append(_md_escape(text))
            out.append("| " + _md_escape(label) + " | " + " | ".join(tds) + " |")
        out.append("")
    unmeasured = not_measured(rep)
    if unmeasured:
        out += ["## Not measured, and why", ""]
        out += [f"- **{name}**: {_md_escape(why)} " + "".join(f"[{n}]" for n in sources.refs(urls))
                for name, why, urls in unmeasured]
        out.append("")
    out += ["## Details by criterion", ""]
    for c in measured_criteria(rep):
        out += [f"### {c.title}", ""]
        for matrix in rep.matrices:
            for system, cells in matrix.rows:
                cell = cells[c.key]
                if cell.kind != "measured":
                    continue
                out.append(f"- **{system['name']}** ({cell.tag or 'no mechanism'}; {cell.method}):")
                out += [f"  - {_md_escape(line)}" for line in cell.lines]
        out.append("")
    if rep.kubernetes_path:
        out += ["## Kubernetes path", "", "How far each platform's kind deployment has been checked "
                "(schema-valid < control-plane partially verified < control-plane verified < run on a real kind cluster).", ""]
        for name, level, details in kubernetes_path_rows(rep):
            out += [f"- **{name}**: {level}"] + [f"  - {_md_escape(d)}" for d in details]
        out.append("")
    out += ["## Plots", ""]
    for key, title, path, reason in rep.plots:
        out.append(f"![{title}]({path.name})" if path else f"- {title}: not drawn ({reason}).")
        out.append("")
    out += ["## Methods", ""]
    for heading, text in methods.sections(rep.runs, rep.reference_variance):
        out += [f"**{heading}.** {text}", ""]
    out += ["## Licences", "", rep.documented["licence_note"].strip() + " "
            + "".join(f"[{n}]" for n in sources.refs(rep.documented.get("licence_sources", []))), ""]
    out += ["## Runs", ""]
    for row in run_rows(rep.runs):
        out.append(f"### `{row['run']}`")
        out += [f"- {k}: {_md_escape(str(v))}" for k, v in row.items() if k != "run" and v not in ("", None)]
        out.append("")
    if not rep.runs:
        out += ["No runs.", ""]
    if routine:
        out += ["## Routine notes", "", *[f"- {n}" for n in routine], ""]
    # Full documented texts (the matrix shortens them).
    out += ["## Documented cells", ""]
    for matrix in rep.matrices[:1]:
        for system, cells in matrix.rows:
            docs = [(c, cells[c.key]) for c in CRITERIA if cells[c.key].kind == "documented"]
            if docs:
                out.append(f"- **{system['name']}**: " + "; ".join(
                    f"{c.title}: {_md_escape(cell.lines[0])} " + "".join(f"[{n}]" for n in sources.refs(cell.sources))
                    for c, cell in docs))
    out += ["", "## Sources (documented cells)", ""] + [f"{i}. {u}" for i, u in enumerate(sources.urls, 1)] + [""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;max-width:1800px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 5px;vertical-align:top}
th{background:#eee;text-align:left}table.glance{table-layout:fixed;width:100%;font-size:11px}
table.glance td,table.glance th{overflow-wrap:anywhere;word-break:break-word}table.glance th:first-child{width:7em}
td.documented .h,td.unmeasurable .h{font-weight:normal}
.measured{background:#dff3df}.partial{background:#fff0c8}.documented{background:#e8eef6;color:#445;font-style:italic}
.unmeasurable{background:repeating-linear-gradient(45deg,#f4f4f4,#f4f4f4 6px,#e9e9e9 6px,#e9e9e9 12px);color:#777}
.h{font-weight:600}.tag{display:inline-block;font-size:10px;border-radius:3px;padding:0 4px;margin-left:2px;
background:#365;color:#fff;font-style:normal}.tag.add-on{background:#946}.tag.user{background:#555}
.pending{background:#fff;color:#777}.small{font-size:10px;color:#666}.warn{color:#a40}.legend span{display:inline-block;padding:2px 8px;margin-right:6px;
border:1px solid #ccc}details{margin:.5em 0}summary{cursor:pointer;color:#555}
img{max-width:48%;margin:4px;border:1px solid #ddd}code{font-size:11px}td ul{margin:0;padding-left:1.1em}"""


def _tag_html(tag: str) -> str:
    if not tag:
        return ""
    cls = "add-on" if "add-on" in tag else ("user" if "user" in tag else "")
    return f"<span class='tag {cls}'>{html.escape(tag)}</span>"


def to_html(rep: Report) -> str:
    e = html.escape
    sources = Sources()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Testbed comparison report</title>",
             f"<style>{CSS}</style></head><body><h1>ML deployment testbed: comparison report</h1>",
             f"<p class='small'>Generated {e(_fmt_time(rep.generated_at))} from "
             + (f"{len(rep.runs)} run(s): {e(', '.join(r.run_id for r in rep.runs))}" if rep.runs
                else "documented rows only: no run exists yet") + ".</p>",
             "<p class='legend'><span class='measured'>measured</span><span class='partial'>measured, partial run"
             "</span><span class='documented'>documented, not measured</span><span class='unmeasurable'>"
             f"{NOT_MEASURABLE}</span> Each cell: headline [95% interval], mechanism tag, n and interval method. "
             "Details and run ids: <a href='#details'>per criterion</a>; how: <a href='#methods'>Methods</a>.</p>"]
    warnings, routine = split_notes(rep)
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{e(w)}</li>" for w in warnings) + "</ul>")
    for matrix in rep.matrices:
        parts.append(f"<h2>At a glance <span class='small'>({e(matrix.title)})</span></h2><table class='glance'>"
                     "<tr><th>System</th>" + "".join(f"<th>{e(c.title)}</th>" for c in CRITERIA) + "</tr>")
        for system, cells in matrix.rows:
            label = e(system["name"]) + ("" if system.get("measured_platform") else
                                         "<br><span class='small'>not measured</span>")
            tds = []
            for c in CRITERIA:
                cell = cells[c.key]
                head, tag, small = _glance_text(system, cell, sources)
                title = e(" | ".join(cell.lines)) if cell.kind != "measured" else e(cell.method)
                small_html = e(small)
                if cell.kind == "documented":
                    small_html = re.sub(r"\[(\d+)\]", r"<a href='#src\1'>[\1]</a>", small_html)
                tds.append(f"<td class='{cell_class(system, cell)}' title='{title}'><span class='h'>{e(head)}</span>"
                           f"{_tag_html(tag)}<div class='small'>{small_html}</div></td>")
            parts.append(f"<tr><th>{label}</th>{''.join(tds)}</tr>")
        parts.append("</table>")
    unmeasured = not_measured(rep)
    if unmeasured:
        parts.append("<h2>Not measured, and why</h2><ul>" + "".join(
            f"<li><b>{e(name)}</b>: {e(why)} " + "".join(f"<a href='#src{n}'>[{n}]</a>" for n in sources.refs(urls))
            + "</li>" for name, why, urls in unmeasured) + "</ul>")
    parts.append("<h2 id='details'>Details by criterion</h2>")
    for c in measured_criteria(rep):
        parts.append(f"<h3>{e(c.title)}</h3><table><tr><th>Platform</th><th>Headline</th><th>Numbers</th>"
                     "<th>n, method</th><th>Runs</th></tr>")
        for matrix in rep.matrices:
            for system, cells in matrix.rows:
                cell = cells[c.key]
                if cell.kind != "measured":
                    continue
                body = [x for x in cell.lines if not x.startswith("run ")]
                parts.append(f"<tr><th>{e(system['name'])}</th><td class='{cell_class(system, cell)}'>"
                             f"<span class='h'>{e(cell.headline)}</span>{_tag_html(cell.tag)}</td>"
                             "<td><ul>" + "".join(f"<li>{e(x)}</li>" for x in body) + "</ul></td>"
                             f"<td class='small'>{e(cell.method)}</td><td class='small'>"
                             f"{e(', '.join(sorted(set(cell.runs))))} · {e(', '.join(sorted(set(cell.backends))))}"
                             + (" · PARTIAL" if cell.partial else "") + "</td></tr>")
        parts.append("</table>")
    if rep.kubernetes_path:
        parts.append("<h2>Kubernetes path</h2><ul>" + "".join(
            f"<li><b>{e(name)}</b>: {e(level)}<ul>" + "".join(f"<li>{e(d)}</li>" for d in details) + "</ul></li>"
            for name, level, details in kubernetes_path_rows(rep)) + "</ul>")
    parts.append("<h2>Plots</h2>")
    for key, title, path, reason in rep.plots:
        if path:
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<img alt='{e(title)}' title='{e(title)}' src='data:image/png;base64,{data}'>")
        else:
            parts.append(f"<p class='small'>{e(title)}: not drawn ({e(reason)}).</p>")
    parts.append("<h2 id='methods'>Methods</h2>")
    parts += [f"<p><b>{e(h)}.</b> {e(t)}</p>" for h, t in methods.sections(rep.runs, rep.reference_variance)]
    lic = sources.refs(rep.documented.get("licence_sources", []))
    parts.append(f"<h2>Licences</h2><p>{e(rep.documented['licence_note'].strip())} "
                 + "".join(f"<a href='#src{n}'>[{n}]</a>" for n in lic) + "</p>")
    parts.append("<h2>Runs</h2>")
    rows = run_rows(rep.runs)
    if rows:
        keys = [k for k in rows[0]]
        parts.append("<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{e(str(row[k]))}</td>" for k in keys) + "</tr>" for row in rows)
                     + "</table>")
    else:
        parts.append("<p>No runs.</p>")
    if routine:
        parts.append(f"<details><summary>Routine notes ({len(routine)})</summary><ul>"
                     + "".join(f"<li>{e(n)}</li>" for n in routine) + "</ul></details>")
    parts.append("<details><summary>Documented cells in full</summary><ul>")
    for matrix in rep.matrices[:1]:
        for system, cells in matrix.rows:
            docs = [(c, cells[c.key]) for c in CRITERIA if cells[c.key].kind == "documented"]
            if docs:
                parts.append(f"<li><b>{e(system['name'])}</b>: " + "; ".join(
                    f"{e(c.title)}: {e(cell.lines[0])} " + "".join(f"<a href='#src{n}'>[{n}]</a>"
                                                                  for n in sources.refs(cell.sources))
                    for c, cell in docs) + "</li>")
    parts.append("</ul></details>")
    parts.append("<h2>Sources (documented cells)</h2><ol>"
                 + "".join(f"<li id='src{i}'><a href='{e(u)}'>{e(u)}</a></li>" for i, u in enumerate(sources.urls, 1))
                 + "</ol></body></html>")
    return "\n".join(parts)
