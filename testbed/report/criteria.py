"""The criteria matrix: which columns exist, which experiment measures each, and how a cell is
computed from Results (pure functions: Results in, cell text out).

Measured cells read named scores from Result.scores. A probe that names its scores otherwise is
not silently dropped: its cell lists the scores it did report, marked as not in this list.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from testbed.results import Result


@dataclass(frozen=True)
class Criterion:
    key: str
    title: str
    experiment: str | None = None
    """The experiment directory (results/<run>/<experiment>/) whose Results measure this column."""

    scores: tuple[tuple[str, str], ...] = ()
    """(score key, label) shown in order, each as mean [95% CI] over repeats."""

    kind: str = "scores"
    """scores | formats: how measured results become a cell."""

    also_from: tuple[str, ...] = ()
    """Further experiment directories whose Results feed this column (one per fault probe)."""

    documented_as: str | None = None
    """Key of the documented cell (testbed/report/documented.yaml) shown when nothing is measured;
    None means this criterion's own key."""

    causes_from: str | None = None
    """Result.measurements key holding a list of {..., "cause": str | None}: the cell names each cause once, with
    how many items it explains (the most in any one Result); items without a cause count as unexplained."""

    mechanism_from: str | None = None
    """The probe whose Results' mechanism tags the cell (None: every Result's): the batching cell's overhead and
    offline Results have mechanisms of their own that say nothing about batching."""

    notes_from: str | None = None
    """Result.evidence key holding a list of sentences the cell shows once each (what a number owes to the
    testbed rather than to the platform)."""

    @property
    def experiments(self) -> tuple[str, ...]:
        return ((self.experiment,) if self.experiment else ()) + self.also_from


CRITERIA: tuple[Criterion, ...] = (
    Criterion("formats", "Model formats", "formats", kind="formats"),
    Criterion("outlier", "Outlier detection", "outlier", (("f1", "F1"), ("precision", "P"), ("recall", "R"))),
    Criterion("drift", "Drift detection", "drift",
              (("fpr", "FPR"), ("min_mean_shift_detected", "min. mean shift"),
               ("min_variance_detected", "min. variance"), ("min_prior_detected", "min. prior shift"),
               ("min_correlation_detected", "min. correlation"), ("median_delay_samples", "delay rows"))),
    Criterion("monitoring", "Monitoring", "monitoring", (("coverage", "coverage"), ("count_accuracy", "count acc."))),
    Criterion("explainability", "Explainability", "explain", (("topk_recall", "top-k recall"), ("latency_p50_s", "p50 s"))),
    Criterion("cicd", "CI/CD", "pipeline", (("verified", "pipeline verified"),)),
    Criterion("deployment_focus", "Deployment focus"),
    Criterion("cost_licence", "Cost / licence"),
    Criterion("docker", "Docker support"),
    Criterion("batching", "Batching", "performance",
              (("peak_gain", "batching gain"), ("v2_rows_per_s", "offline rows/s (V2)"),
               ("native_rows_per_s", "offline rows/s (native)"), ("ratio_p50", "overhead x"),
               ("ratio_p50_with_adapter", "overhead x with the client-side adapter"),
               ("cost_per_million", "cost / 1M")), mechanism_from="batching"),
    Criterion("ease", "Ease of deployment", "ease",
              (("ready_s", "ready s"), ("config_lines", "config lines"), ("components", "packages"))),
    Criterion("robustness", "Robustness", "robustness",
              (("client_errors_as_4xx", "client errors as 4xx"), ("server_error_5xx", "5xx answers"),
               ("next_request_failed", "next request failed"),
               ("listeners_beyond_loopback", "listeners beyond loopback")),
              causes_from="listeners_beyond_loopback", notes_from="loopback_by_testbed"),
    # Detection under concurrent open-loop load, and a detector outage at a drift onset (probes/detection_load.py).
    Criterion("detection_load", "Detection under load", "detection-load", also_from=("detector-outage-onset",),
              scores=(("rows_lost_share", "rows lost"), ("worst_verdict_delay_p99_s", "verdict delay p99 s"))),
    # Fault probes (experiments/faults.py): kill, overload and detector outage, one Result each.
    Criterion("faults", "Resilience under faults", "kill", also_from=("overload", "detector-outage"),
              scores=(("self_recovered", "self-recovered after kill"), ("requests_lost", "lost after kill"),
                      ("error_rate", "overload errors"), ("latency_growth_p99", "overload p99 growth"),
                      ("inference_ok_fraction", "inference during detector outage"),
                      ("dropped_fraction", "detector payloads dropped")),
              documented_as="robustness"),
)
BY_KEY = {c.key: c for c in CRITERIA}
BY_EXPERIMENT = {e: c for c in CRITERIA for e in c.experiments}

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}


def t95(df: int) -> float:
    """Two-sided 95% Student t quantile (table; nearest lower df above 10)."""
    if df in T95:
        return T95[df]
    return T95[max(k for k in T95 if k <= df)] if df < 30 else 1.96


def fmt(x: float) -> str:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.3g}"


def mean_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and a 95% t-interval over repeats (None, None when n < 2)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, None, None
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return m, m - half, m + half


# Scores that are fractions by definition: their intervals are clipped to [0, 1] (a t-interval of
# three values near 1 would otherwise claim an F1 above 1).
FRACTIONS = {"f1", "precision", "recall", "fpr", "coverage", "count_accuracy", "topk_recall", "verified", "agreement",
             "stayed_up_fraction", "handled_fraction", "self_recovered", "error_rate", "inference_ok_fraction",
             "dropped_fraction"}

# Scores that cannot be negative (counts, durations, growth ratios): their lower bound is clipped at 0
# (three noisy p99-growth repeats gave 393 [-392, 1180] otherwise).
NON_NEGATIVE = {"requests_lost", "latency_growth_p99", "time_to_recover_s", "recovery_s", "listeners_beyond_loopback",
                "ready_s", "config_lines", "components"}


def interval(values: list[float], key: str) -> tuple[float, float | None, float | None]:
    """mean_ci, clipped to [0, 1] for fractions and at 0 for non-negative scores: the numbers the report and
    the exporter both show."""
    m, lo, hi = mean_ci(values)
    if lo is not None and key in FRACTIONS:
        lo, hi = max(0.0, lo), min(1.0, hi)
    elif lo is not None and key in NON_NEGATIVE:
        lo = max(0.0, lo)
    return m, lo, hi


def summarize(label: str, values: list[float], key: str | None = None) -> str:
    m, lo, hi = interval(values, key or label)
    if lo is None:
        return f"{label} {fmt(m)} (n=1)"
    return f"{label} {fmt(m)} [{fmt(lo)}, {fmt(hi)}] n={len(values)}"


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def own_interval(key: str, results: list[Result]) -> tuple[float, float, float, str] | None:
    """A single Result that pools its run's repeats itself (the performance experiment) carries the score's own
    interval: `<key>_ci` (its bootstrap over repeats) or `<key>_range` (min and max over repeats). (value, lo, hi,
    method), or None where a t-interval over Results applies."""
    if len(results) != 1 or not _numeric(results[0].scores.get(key)):
        return None
    r = results[0]
    repeats = r.evidence.get("repeats")
    if repeats == 1:
        return None
    for suffix, how in (("_ci", "95% bootstrap over"), ("_range", "min-max over")):
        bounds = r.scores.get(key + suffix)
        if isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(_numeric(b) for b in bounds):
            return float(r.scores[key]), float(bounds[0]), float(bounds[1]), \
                f"{how} {repeats} repeats pooled in one run" if repeats else f"{how} the run's repeats"
    return None


def summarize_scores(label: str, key: str, results: list[Result]) -> str:
    own = own_interval(key, results)
    if own is not None:
        m, lo, hi, how = own
        return f"{label} {fmt(m)} [{fmt(lo)}, {fmt(hi)}] ({how})"
    repeats = results[0].evidence.get("repeats") if len(results) == 1 else None
    if isinstance(repeats, int) and repeats > 1:
        return f"{label} {fmt(float(results[0].scores[key]))} (one value pooled over {repeats} repeats; no interval)"
    return summarize(label, [float(r.scores[key]) for r in results if _numeric(r.scores.get(key))], key)


def cell_mechanisms(criterion: "Criterion", results: list[Result]) -> Counter:
    return Counter(r.mechanism for r in results
                   if r.mechanism and (criterion.mechanism_from is None or r.probe == criterion.mechanism_from))


@dataclass
class Cell:
    kind: str
    """measured | documented | none"""

    lines: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    partial: bool = False
    headline: str = ""
    """One number or verdict with its interval: what the at-a-glance matrix shows."""

    tag: str = ""
    """The mechanism (native / add-on / user code) as a short tag."""

    method: str = ""
    """n and the interval method behind the headline."""


def score_lines(criterion: Criterion, results: list[Result]) -> list[str]:
    """The numeric part of a measured cell (no run/backend line)."""
    lines = []
    present = [(k, label) for k, label in criterion.scores if any(_numeric(r.scores.get(k)) for r in results)]
    if present:
        lines.append("; ".join(summarize_scores(label, k, [r for r in results if _numeric(r.scores.get(k))])
                               for k, label in present))
    else:
        others = sorted({k for r in results for k, v in r.scores.items() if _numeric(v)})[:3]
        if others:
            lines.append("; ".join(summarize(k, [float(r.scores[k]) for r in results if _numeric(r.scores.get(k))])
                                   for k in others) + " (scores not in the report's list)")
    verdicts = Counter(r.verdict for r in results)
    mech = cell_mechanisms(criterion, results)
    tail = ", ".join(f"{v} {c}/{len(results)}" for v, c in sorted(verdicts.items()))
    if mech:
        tail += " · " + "/".join(m for m, _ in mech.most_common())
    lines.append(tail)
    return lines


def cause_lines(key: str, results: list[Result]) -> list[str]:
    """One line per distinct cause in measurements[key] (Criterion.causes_from), with its largest count."""
    most: dict[str, int] = {}
    for r in results:
        for cause, n in Counter(x.get("cause") or "unexplained" for x in r.measurements.get(key) or []).items():
            most[cause] = max(most.get(cause, 0), n)
    return [f"{key.replace('_', ' ')}: {n} × {cause}" for cause, n in most.items()]


def format_lines(results: list[Result]) -> list[str]:
    """Formats cell: per format, how it was served and whether predictions matched, over repeats.

    Each Result (one per platform and repeat) has measurements["formats"][fmt] =
    {"served": bool, "mechanism": str, "parity": bool|None, "max_abs_diff": float|None, "error": str|None}."""
    per_format: dict[str, list[dict]] = {}
    for r in results:
        for name, m in (r.measurements.get("formats") or {}).items():
            per_format.setdefault(name, []).append(m)
    groups: dict[str, list[str]] = {}
    n = len(results)
    for name, ms in sorted(per_format.items()):
        ok = [m for m in ms if m.get("served") and m.get("parity")]
        mech = Counter(m.get("mechanism") or "none" for m in ms).most_common(1)[0][0]
        if len(ok) == n:
            groups.setdefault(mech, []).append(f"{name} ✓")
        elif ok:
            groups.setdefault(mech, []).append(f"{name} {len(ok)}/{n}")
        elif any(m.get("served") for m in ms):
            groups.setdefault("parity failed", []).append(name)
        else:
            groups.setdefault("not served", []).append(name)
    order = ["native", "add-on", "user code", "parity failed", "not served"]
    parts = [f"{g}: {', '.join(groups[g])}" for g in order if g in groups]
    parts += [f"{g}: {', '.join(v)}" for g, v in groups.items() if g not in order]
    return ["; ".join(parts) or "no format results", f"n={n} repeats"]


def _rate(label: str, r, digits: int = 2) -> str:
    return f"{label} {r.text(digits)}" if r.n else f"{label}: no data"


def drift_lines(results: list[Result]) -> tuple[list[str], str, str]:
    """(detail lines, headline, method) from counts pooled over repeats."""
    from testbed.report import pooled

    d = pooled.drift(results)
    method = f"n={d.repeats} repeats pooled; {d.fpr.method}"
    lines = [_rate("FPR (control windows)", d.fpr, 3)]
    for kind, by_m in d.power.items():
        small, rel = d.smallest[kind], d.reliable[kind]
        verdict = (f"detected from {small:g}" if small is not None else "undetected at every magnitude") + \
            (f", power >= 0.8 from {rel:g}" if rel is not None else "")
        lines.append(f"{kind}: {verdict}; power " + ", ".join(f"{m:g}: {r.text()}" for m, r in by_m.items()))
    if d.delay_rows.n:
        dr, ds = d.delay_rows, d.delay_s
        lines.append(f"delay over {dr.n} detected streams: median {dr.median:g} rows"
                     + (f" [{dr.lo:g}, {dr.hi:g}]" if dr.lo is not None else "")
                     + (f", {ds.median:.2f} s" + (f" [{ds.lo:.2f}, {ds.hi:.2f}]" if ds.lo is not None else "")
                        if ds.n else "") + f" ({dr.method})")
    lines.append(f"windows mixing streams: {d.windows_mixing_streams}/{d.windows}")
    ms = d.power.get("mean_shift", {})
    rel = d.reliable.get("mean_shift")
    small = d.smallest.get("mean_shift")
    if rel is not None:
        head = f"mean shift ≥{rel:g} sd: power {ms[rel].text()}"
    elif small is not None:
        head = f"mean shift ≥{small:g} sd (power {ms[small].text()})"
    else:
        head = f"FPR {d.fpr.text()}"
    return lines, head, method


def outlier_lines(results: list[Result]) -> tuple[list[str], str, str]:
    from testbed.report import pooled

    o = pooled.outlier(results)
    method = f"n={o.repeats} repeats pooled; {o.recall.method}"
    lines = [_rate("recall", o.recall), _rate("precision", o.precision)
             + (f" (bound at this FPR and base rate {o.base_rate:.3f}: {o.precision_bound:.2f})"
                if o.precision_bound is not None else ""),
             _rate("FPR (clean rows)", o.fpr, 4),
             "recall by kind: " + "; ".join(f"{g} {r.text()}" for g, r in o.recall_by_kind.items()),
             "by kind@severity: " + "; ".join(f"{g} {r.rate:.2f} ({r.k}/{r.n})"
                                              for g, r in o.recall_by_kind_severity.items())]
    return lines, f"recall {o.recall.text()}", method


def explain_lines(results: list[Result]) -> tuple[list[str], str, str]:
    from testbed.report import pooled

    e = pooled.explain(results)
    fmt_ = lambda x: "—" if x is None else f"{x:.2g}"  # noqa: E731
    lines = [f"vs {e['truth']} Shapley values ({e['values']} values): max |error| {fmt_(e['max_abs_error'])}, "
             f"additivity error {fmt_(e['additivity_error'])}, sign agreement {fmt_(e['sign_agreement'])}, "
             f"rank agreement {fmt_(e['rank_agreement'])}, top-3 agreement {fmt_(e['topk_agreement'])} (worst repeat)",
             f"pass {e['passes']}/{e['repeats']} (tolerance {e['tolerance']})"]
    lat = e["latency_s"]
    if lat.n:
        ci = f" [{lat.lo * 1000:.0f}, {lat.hi * 1000:.0f}]" if lat.lo is not None else ""
        rows = f" of {'/'.join(map(str, e['rows_per_request']))} rows" if e["rows_per_request"] else ""
        lines.append(f"latency p50 {lat.median * 1000:.0f} ms{ci} per request{rows} (n={lat.n} requests, "
                     f"{e['repeats']} repeats pooled, {lat.method})")
    head = f"max |err| {fmt_(e['max_abs_error'])} vs {e['truth']}"
    return lines, head, f"n={e['repeats']} repeats, {e['values']} values; worst case, no interval"


def load_lines(results: list[Result]) -> tuple[list[str], str, str]:
    """Detection under load: per request size and load factor, pooled over repeats where counts allow."""
    from probes import stats as st

    lines, cells = [], {}
    for r in results:
        for c in r.measurements.get("cells") or []:
            cells.setdefault((c["size"], c["factor"]), []).append(c)
    worst_delay, lost_k, lost_n = 0.0, 0, 0
    for (size, factor), cs in sorted(cells.items()):
        k, n = sum(c["rows_lost"] for c in cs), sum(c["rows_ok"] for c in cs)
        lost_k, lost_n = lost_k + k, lost_n + n
        mix = st.pooled([(c["windows_mixing_streams"], c["drift_windows"]) for c in cs])
        d99 = max((c["verdict_delay_p99_s"] or 0.0) for c in cs)
        worst_delay = max(worst_delay, d99)
        wrows = sorted({c["window_rows_median"] for c in cs if c["window_rows_median"] is not None})
        p = lambda key: "/".join(f"{c[key]:.0f}" for c in cs if c.get(key) is not None) or "—"  # noqa: E731
        lines.append(f"{size} rows x{factor:g} ({cs[0]['rate']:.0f} req/s): lost {st.clopper_pearson(k, n).text()}; "
                     f"verdicts missing {sum(c['verdicts_missing'] for c in cs)}; window rows {wrows}; mixing "
                     f"{mix.k}/{mix.n}; verdict delay p50 " + "/".join(
                         f"{c['verdict_delay_p50_s']:.2f}" + (f" [{c['verdict_delay_p50_s_ci'][0]:.2f}, "
                                                               f"{c['verdict_delay_p50_s_ci'][1]:.2f}]"
                                                               if c.get("verdict_delay_p50_s_ci") else "")
                         for c in cs if c.get("verdict_delay_p50_s") is not None)
                     + f" s, p99 {d99:.2f} s; client send lag p99 {max((c.get('send_lag_p99_s') or 0) for c in cs):.2f} s;"
                     f" p50 ms with/without {p('with_detection_p50_ms')}"
                     f" vs {p('without_detection_p50_ms')}, p99 {p('with_detection_p99_ms')} vs "
                     f"{p('without_detection_p99_ms')}")
    for r in results:
        if r.probe == "detector-outage-onset" and r.scores:
            s = r.scores
            lines.append(f"detector down at onset ({s.get('unavailable_s')} s until it answered again): answered "
                         f"{s.get('statuses_during_outage')}, "
                         f"unseen {s.get('requests_unseen_during_outage')}/{s.get('requests_during_outage')}, "
                         f"drift alarmed after: {s.get('alarmed_after_onset')}, alarm delay "
                         f"{s.get('drift_alarm_delay_s') if s.get('drift_alarm_delay_s') is None else round(s['drift_alarm_delay_s'], 2)} s")
    lost = st.clopper_pearson(lost_k, lost_n)
    # Headline: the verdict delay where no path is saturated (half its capacity) at the probes' request size.
    key = (20, 0.5) if (20, 0.5) in cells else (min(cells) if cells else None)
    head, method = "no load cells", ""
    if key is not None:
        c = cells[key][0]
        ci = c.get("verdict_delay_p50_s_ci")
        head = (f"verdict p50 {c['verdict_delay_p50_s']:.2f} s" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                + f" at x{key[1]:g}, {key[0]} rows; lost {lost.k}/{lost.n} rows") \
            if c.get("verdict_delay_p50_s") is not None else f"lost {lost.text()}"
        reps = len({r.repeat for r in results if r.probe == "detection-load"})
        method = (f"n={reps} repeat(s), {c.get('verdicts_timed', '?')} verdicts in that cell; order-statistic bootstrap;"
                  f" rows lost {lost.method}")
    return lines, head, method


def headline_of(criterion: Criterion, results: list[Result]) -> tuple[str, str]:
    """(headline, method) for criteria without a pooled summary: the first listed score, mean [t-interval]."""
    first = criterion.scores[0][0] if criterion.scores else None
    labelled = [r for r in results if r.probe == criterion.mechanism_from]
    if first and labelled and not any(_numeric(r.scores.get(first)) for r in results):
        # e.g. batching on a platform without request batching: say so before any other number
        verdicts = Counter(r.verdict for r in labelled)
        return f"{criterion.scores[0][1]}: {verdicts.most_common(1)[0][0]}", f"n={len(labelled)} result(s)"
    for k, label in criterion.scores:
        vals = [float(r.scores[k]) for r in results if _numeric(r.scores.get(k))]
        own = own_interval(k, [r for r in results if _numeric(r.scores.get(k))])
        if own is not None:
            m, lo, hi, how = own
            return f"{label} {fmt(m)} [{fmt(lo)}, {fmt(hi)}]", how
        if vals:
            m, lo, hi = interval(vals, k)
            return (f"{label} {fmt(m)}" + (f" [{fmt(lo)}, {fmt(hi)}]" if lo is not None else ""),
                    f"n={len(vals)} repeats" + ("; 95% t-interval" if lo is not None else "; one repeat, no interval"))
    verdicts = Counter(r.verdict for r in results)
    v, c = verdicts.most_common(1)[0]
    return f"{v} {c}/{len(results)}", f"n={len(results)} repeats"


def measured_cell(criterion: Criterion, results: list[Result], runs_meta: dict[str, dict]) -> Cell:
    """One platform's measured cell from all its Results for this criterion (possibly several runs/backends)."""
    from testbed.report import pooled

    cell = Cell(kind="measured")
    by_backend: dict[str, list[Result]] = {}
    for r in results:
        by_backend.setdefault(r.backend, []).append(r)
    heads = []
    for backend, rs in sorted(by_backend.items()):
        if criterion.kind == "formats":
            body = format_lines(rs)
            head, method = body[0].split(";")[0], body[1]
        elif criterion.key == "drift" and pooled.has_drift_counts(rs):
            body, head, method = drift_lines(rs)
        elif criterion.key == "outlier" and pooled.has_outlier_counts(rs):
            body, head, method = outlier_lines(rs)
        elif criterion.key == "explainability" and pooled.has_exact_explain(rs):
            body, head, method = explain_lines(rs)
        elif criterion.key == "detection_load":
            body, head, method = load_lines(rs)
        elif criterion.key == "monitoring" and all("signals_exposed" in r.scores for r in rs):
            body = score_lines(criterion, rs)
            exposed = Counter(int(r.scores["signals_exposed"]) for r in rs)
            total = len(rs[0].measurements.get("signals") or {}) or 7
            k, c = exposed.most_common(1)[0]
            head = f"{k}/{total} signals move with traffic" + (f" ({c}/{len(rs)} repeats)" if len(exposed) > 1 else "")
            method = f"n={len(rs)} repeats, " + ("all agree" if len(exposed) == 1 else f"counts {dict(exposed)}")
        else:
            body = score_lines(criterion, rs)
            head, method = headline_of(criterion, rs)
        if criterion.causes_from:
            body += cause_lines(criterion.causes_from, rs)
        if criterion.notes_from:
            notes = dict.fromkeys(n for r in rs for n in r.evidence.get(criterion.notes_from) or [])
            body += [f"{criterion.notes_from.replace('_', ' ')}: {n}" for n in notes]
        if len(by_backend) > 1:
            body[0] = f"{backend}: {body[0]}"
            head = f"{backend}: {head}"
        heads.append((head, method))
        cell.lines.extend(body)
        run_ids = sorted({r.run_id for r in rs})
        for rid in run_ids:
            meta = runs_meta.get(rid, {})
            if any(meta.get("partial_experiments", {}).get(e) for e in criterion.experiments):
                cell.partial = True
        single = all(runs_meta.get(rid, {}).get("repeats") == 1 for rid in run_ids)
        cell.lines.append(f"run {', '.join(run_ids)} · {backend}" + (" · PARTIAL" if cell.partial else "")
                          + (" · n=1: one run, no interval" if single else ""))
        cell.runs.extend(run_ids)
        cell.backends.append(backend)
    cell.headline = " · ".join(h for h, _ in heads)
    cell.method = " · ".join(m for _, m in heads)
    mech = cell_mechanisms(criterion, results)
    cell.tag = "/".join(m for m, _ in mech.most_common())
    return cell
