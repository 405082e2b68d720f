"""`python -m testbed report`: the criteria matrix (measured cells with CI, run id and backend for
KServe, Seldon Core and Ray Serve; documented rows with sources for the other systems), plots, and
the provenance of every run, as Markdown and as one self-contained HTML file (images inlined).
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.report.criteria import CRITERIA, BY_EXPERIMENT, Cell, measured_cell
from testbed.report.runs import LoadedRun, Selection, select_runs
from testbed.state import atomic_write_text

DOCUMENTED = Path(__file__).with_name("documented.yaml")
DOCUMENTED_SCHEMA = "testbed.documented/v1"


def load_documented(path: Path = DOCUMENTED) -> dict:
    data = yaml.safe_load(path.read_text())
    if data.get("schema") != DOCUMENTED_SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {DOCUMENTED_SCHEMA!r}")
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
    """(system entry from documented.yaml, criterion key -> Cell)."""


def build_matrix(documented: dict, runs: list[LoadedRun], sha256: str | None) -> Matrix:
    runs_meta = {r.run_id: {"partial_experiments": {e: bool(m) for e, m in r.missing_units.items()}} for r in runs}
    pairs = [(e, res) for r in runs for e, res in r.results]
    matrix = Matrix(title=f"artifact {sha256[:12]}" if sha256 else "documented only", sha256=sha256)
    for system in documented["systems"]:
        cells: dict[str, Cell] = {}
        platform = system.get("measured_platform")
        for c in CRITERIA:
            doc = system["cells"].get(c.documented_as or c.key)
            measured = [r for e, r in pairs if platform and r.platform == platform and e in c.experiments]
            if measured:
                cells[c.key] = measured_cell(c, measured, runs_meta)
            elif doc:
                note = " (documented; not measured yet)" if platform and c.experiment else ""
                cells[c.key] = Cell(kind="documented", lines=[doc["text"] + note], sources=list(doc.get("sources") or []))
            else:
                cells[c.key] = Cell(kind="none", lines=["—"])
        matrix.rows.append((system, cells))
    return matrix


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
                    kubernetes_path=_kubernetes_path(root))
    md, page = to_markdown(report), to_html(report)
    atomic_write_text(out_dir / "report.md", md)
    atomic_write_text(out_dir / "report.html", page)
    for name in ("report.md", "report.html"):
        (out_dir / name).chmod(0o644)  # a report is for sharing (atomic writes create files 0600)
    return {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "runs": [r.run_id for r in sel.runs],
            "skipped": sel.skipped, "report": report}


def _kubernetes_path(root: Path) -> dict:
    from deployers import PLATFORMS
    from testbed import kubernetes_path

    return kubernetes_path.levels(sorted(PLATFORMS), results_dir=root)


def kubernetes_path_rows(rep: Report) -> list[tuple[str, str, list[str]]]:
    """(platform, level reached, one line per level) for the report's Kubernetes path section."""
    from testbed.kubernetes_path import LEVELS

    rows = []
    for name, entry in (rep.kubernetes_path or {}).items():
        details = []
        for key, label in LEVELS:
            e = entry.get(key)
            details.append(f"{label}: no record" if e is None else
                           f"{label}: {'yes' if e['reached'] else 'no'}" + (f" ({e['at']})" if e.get("at") else "")
                           + (f", {', '.join(f'{k} {v}' for k, v in e['versions'].items() if isinstance(v, str))}"
                              if e.get("versions") else "") + f": {e['why']}")
        rows.append((name, entry["level"], details))
    return rows


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


def cell_text(cell: Cell, sources: Sources, sep: str) -> str:
    text = sep.join(cell.lines)
    if cell.kind == "documented":
        refs = sources.refs(cell.sources)
        text = "*documented:* " + text + (" " + "".join(f"[{n}]" for n in refs) if refs else "")
    return text


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


def to_markdown(rep: Report) -> str:
    sources = Sources()
    out = ["# ML deployment testbed: comparison report", "",
           f"Generated {_fmt_time(rep.generated_at)} from "
           + (f"{len(rep.runs)} run(s): {', '.join(r.run_id for r in rep.runs)}." if rep.runs
              else "documented rows only: no run exists yet (run an experiment in experiments/)."), ""]
    out += ["**Legend.** Measured cells: mean [95% t-interval over repeats] n=repeats, the verdicts over repeats, "
            "the detection/serving mechanism, then the run id and backend; intervals of fractions are clipped to [0, 1]. *documented:* cells are taken from the "
            "system's own documentation (sources below) and are **not measured**. PARTIAL marks cells from "
            "interrupted runs.", ""]
    warnings = [f"- run `{rid}` not used: {why}" for rid, why in rep.skipped]
    warnings += [f"- run `{r.run_id}` is PARTIAL: " + "; ".join(f"{e}: {len(u)} unit(s) missing" for e, u in
                                                                 r.missing_units.items() if u)
                 for r in rep.runs if r.partial]
    warnings += [f"- run `{r.run_id}` left out experiment `{name}`: {why}"
                 for r in rep.runs for name, why in (r.meta.get("skipped_experiments") or {}).items()]
    warnings += [f"- experiment(s) {', '.join(rep.experiments_unknown)} have no column in the matrix"] \
        if rep.experiments_unknown else []
    if warnings:
        out += ["## Warnings", "", *warnings, ""]
    for matrix in rep.matrices:
        out += [f"## Criteria matrix ({matrix.title})", ""]
        out.append("| System | " + " | ".join(c.title for c in CRITERIA) + " |")
        out.append("|---|" + "---|" * len(CRITERIA))
        for system, cells in matrix.rows:
            label = system["name"] + ("" if system.get("measured_platform") else " *(not measured)*")
            out.append("| " + _md_escape(label) + " | "
                       + " | ".join(_md_escape(cell_text(cells[c.key], sources, "<br>")) for c in CRITERIA) + " |")
        out.append("")
    if rep.kubernetes_path:
        out += ["## Kubernetes path", "", "How far each platform's kind deployment has been checked "
                "(schema-valid < control-plane verified < run on a real kind cluster).", ""]
        for name, level, details in kubernetes_path_rows(rep):
            out += [f"- **{name}**: {level}"] + [f"  - {_md_escape(d)}" for d in details]
        out.append("")
    out += ["## Licences", "", rep.documented["licence_note"].strip() + " "
            + "".join(f"[{n}]" for n in sources.refs(rep.documented.get("licence_sources", []))), ""]
    out += ["## Plots", ""]
    for key, title, path, reason in rep.plots:
        out.append(f"![{title}]({path.name})" if path else f"- {title}: not drawn ({reason}).")
        out.append("")
    out += ["## Runs", ""]
    for row in run_rows(rep.runs):
        out.append(f"### `{row['run']}`")
        out += [f"- {k}: {_md_escape(str(v))}" for k, v in row.items() if k != "run" and v not in ("", None)]
        out.append("")
    if not rep.runs:
        out += ["No runs.", ""]
    out += ["## Sources (documented cells)", ""] + [f"{i}. {u}" for i, u in enumerate(sources.urls, 1)] + [""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #bbb;padding:4px;vertical-align:top}th{background:#eee}td.documented{background:#f6f6f6;
color:#555;font-style:italic}td.measured{background:#eef8ee}td.partial{background:#fff3d6}.warn{color:#a40}
img{max-width:48%;margin:4px;border:1px solid #ddd}code{font-size:11px}"""


def to_html(rep: Report) -> str:
    e = html.escape
    sources = Sources()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Testbed comparison report</title>",
             f"<style>{CSS}</style></head><body><h1>ML deployment testbed: comparison report</h1>",
             f"<p>Generated {e(_fmt_time(rep.generated_at))} from "
             + (f"{len(rep.runs)} run(s): {e(', '.join(r.run_id for r in rep.runs))}" if rep.runs
                else "documented rows only: no run exists yet") + ".</p>",
             "<p><b>Legend.</b> Green: measured (mean [95% t-interval] n=repeats, verdicts, mechanism, run id, "
             "backend). Grey italics: documented, <b>not measured</b>. Amber: from an interrupted (partial) run.</p>"]
    warns = [f"run {rid} not used: {why}" for rid, why in rep.skipped]
    warns += [f"run {r.run_id} is PARTIAL" for r in rep.runs if r.partial]
    warns += [f"run {r.run_id} left out experiment {name}: {why}"
              for r in rep.runs for name, why in (r.meta.get("skipped_experiments") or {}).items()]
    if warns:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{e(w)}</li>" for w in warns) + "</ul>")
    for matrix in rep.matrices:
        parts.append(f"<h2>Criteria matrix ({e(matrix.title)})</h2><table><tr><th>System</th>"
                     + "".join(f"<th>{e(c.title)}</th>" for c in CRITERIA) + "</tr>")
        for system, cells in matrix.rows:
            label = e(system["name"]) + ("" if system.get("measured_platform") else "<br><i>(not measured)</i>")
            tds = []
            for c in CRITERIA:
                cell = cells[c.key]
                cls = "partial" if cell.partial else cell.kind
                text = "<br>".join(e(x) for x in cell.lines)
                if cell.kind == "documented":
                    refs = sources.refs(cell.sources)
                    text += " " + "".join(f"<a href='#src{n}'>[{n}]</a>" for n in refs)
                tds.append(f"<td class='{cls}'>{text}</td>")
            parts.append(f"<tr><th>{label}</th>{''.join(tds)}</tr>")
        parts.append("</table>")
    if rep.kubernetes_path:
        parts.append("<h2>Kubernetes path</h2><ul>" + "".join(
            f"<li><b>{e(name)}</b>: {e(level)}<ul>" + "".join(f"<li>{e(d)}</li>" for d in details) + "</ul></li>"
            for name, level, details in kubernetes_path_rows(rep)) + "</ul>")
    lic = sources.refs(rep.documented.get("licence_sources", []))
    parts.append(f"<h2>Licences</h2><p>{e(rep.documented['licence_note'].strip())} "
                 + "".join(f"<a href='#src{n}'>[{n}]</a>" for n in lic) + "</p><h2>Plots</h2>")
    for key, title, path, reason in rep.plots:
        if path:
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<img alt='{e(title)}' title='{e(title)}' src='data:image/png;base64,{data}'>")
        else:
            parts.append(f"<p>{e(title)}: not drawn ({e(reason)}).</p>")
    parts.append("<h2>Runs</h2>")
    rows = run_rows(rep.runs)
    if rows:
        keys = [k for k in rows[0]]
        parts.append("<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{e(str(row[k]))}</td>" for k in keys) + "</tr>" for row in rows)
                     + "</table>")
    else:
        parts.append("<p>No runs.</p>")
    parts.append("<h2>Sources (documented cells)</h2><ol>"
                 + "".join(f"<li id='src{i}'><a href='{e(u)}'>{e(u)}</a></li>" for i, u in enumerate(sources.urls, 1))
                 + "</ol></body></html>")
    return "\n".join(parts)
