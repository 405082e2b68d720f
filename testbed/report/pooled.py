"""Numbers pooled over repeats for the detection and explanation criteria (pure: Results in, summaries out).

Rates are pooled as counts first (alarms and windows, flags and rows, added over repeats), then given a
Clopper-Pearson interval (probes/stats.py): averaging per-repeat rates and putting a t-interval on three of
them would ignore how many windows each rate rests on. A drift magnitude is detected when its pooled power's
lower bound exceeds the pooled false-positive rate's upper bound; delays are summarised over the streams whose
magnitude is detected, with a bootstrap interval on the median.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probes import stats
from testbed.results import Result


@dataclass
class DriftSummary:
    repeats: int
    fpr: stats.Rate
    power: dict[str, dict[float, stats.Rate]]
    smallest: dict[str, float | None]
    reliable: dict[str, float | None]
    delay_rows: stats.Summary
    delay_s: stats.Summary
    windows_mixing_streams: int
    windows: int
    seeds: list = field(default_factory=list)


def has_drift_counts(results: list[Result]) -> bool:
    return any("power_counts" in r.scores for r in results)


def drift(results: list[Result]) -> DriftSummary:
    rs = [r for r in results if "power_counts" in r.scores]
    fpr = stats.pooled([(r.scores["false_alarms"], r.scores["control_windows"]) for r in rs])
    counts: dict[str, dict[float, list[tuple[int, int]]]] = {}
    for r in rs:
        for kind, by_m in r.scores["power_counts"].items():
            for m, kn in by_m.items():
                counts.setdefault(kind, {}).setdefault(float(m), []).append(tuple(kn))
    power = {kind: {m: stats.pooled(v) for m, v in sorted(by_m.items())} for kind, by_m in sorted(counts.items())}
    smallest = {kind: stats.smallest_detected(by_m, fpr) for kind, by_m in power.items()}
    reliable = {kind: stats.smallest_reliable(by_m) for kind, by_m in power.items()}
    delays_rows, delays_s = [], []
    for r in rs:
        for s in (r.scores.get("streams") or {}).values():
            mag = float(s["magnitude"])
            if s.get("detected") and mag in power.get(s["kind"], {}) and \
                    stats.detected_above_chance(power[s["kind"]][mag], fpr):
                delays_rows.append(s.get("delay_samples"))
                delays_s.append(s.get("delay_seconds"))
    seed = stats.derive_seed("report-delay", *sorted({r.run_id for r in rs}))
    return DriftSummary(repeats=len(rs), fpr=fpr, power=power, smallest=smallest, reliable=reliable,
                        delay_rows=stats.median_summary(delays_rows, seed=seed),
                        delay_s=stats.median_summary(delays_s, seed=seed),
                        windows_mixing_streams=sum(int(r.scores.get("windows_mixing_streams") or 0) for r in rs),
                        windows=sum(int(r.scores.get("windows") or 0) for r in rs),
                        seeds=sorted({(r.evidence or {}).get("seed") for r in rs}, key=str))


@dataclass
class OutlierSummary:
    repeats: int
    precision: stats.Rate
    recall: stats.Rate
    fpr: stats.Rate
    base_rate: float | None
    precision_bound: float | None
    recall_by_kind: dict[str, stats.Rate]
    recall_by_kind_severity: dict[str, stats.Rate]


def has_outlier_counts(results: list[Result]) -> bool:
    return any("recall_by_kind" in r.scores and "tp" in r.scores for r in results)


def outlier(results: list[Result]) -> OutlierSummary:
    rs = [r for r in results if "tp" in r.scores]
    tp, fp, fn, tn = (sum(int(r.scores[k]) for r in rs) for k in ("tp", "fp", "fn", "tn"))
    fpr = stats.clopper_pearson(fp, fp + tn)
    total = tp + fp + fn + tn
    base = (tp + fn) / total if total else None
    by_kind, by_ks = {}, {}
    for key, out in (("recall_by_kind", by_kind), ("recall_by_kind_severity", by_ks)):
        pooled: dict[str, list[tuple[int, int]]] = {}
        for r in rs:
            for g, e in (r.scores.get(key) or {}).items():
                pooled.setdefault(g, []).append((e["detected"], e["n"]))
        out.update({g: stats.pooled(v) for g, v in sorted(pooled.items())})
    return OutlierSummary(repeats=len(rs), precision=stats.clopper_pearson(tp, tp + fp),
                          recall=stats.clopper_pearson(tp, tp + fn), fpr=fpr, base_rate=base,
                          precision_bound=stats.precision_bound(base, fpr.rate) if base is not None and fpr.rate
                          is not None else None,
                          recall_by_kind=by_kind, recall_by_kind_severity=by_ks)


def has_exact_explain(results: list[Result]) -> bool:
    return any("max_abs_error" in r.scores for r in results)


def explain(results: list[Result]) -> dict:
    """Worst case over repeats of the value-by-value scores (a maximum error is a maximum over all values)."""
    rs = [r for r in results if "max_abs_error" in r.scores]
    worst = lambda k, f: f(float(r.scores[k]) for r in rs if r.scores.get(k) is not None)  # noqa: E731
    return {"repeats": len(rs), "values": sum(int(r.scores.get("values_compared") or 0) for r in rs),
            "max_abs_error": worst("max_abs_error", max), "additivity_error": worst("additivity_error", max),
            "sign_agreement": worst("sign_agreement", min), "rank_agreement": worst("rank_agreement", min),
            "topk_agreement": worst("topk_agreement", min),
            "passes": sum(r.verdict == "pass" for r in rs), "tolerance": rs[0].scores.get("tolerance") if rs else None,
            # a user's model with more than 12 features is scored against permutation-sampled values
            "truth": "sampled" if any(r.scores.get("truth") == "permutation-sampled" for r in rs) else "exact",
            # The platform's cost of an explanation: every timed request of every repeat (the first, cold call
            # is kept apart by the probe), median with a percentile-bootstrap interval over requests.
            "latency_s": stats.median_summary([x for r in rs for x in (r.measurements.get("latencies_s") or [])]),
            "rows_per_request": sorted({int(n) for r in rs for n in [r.evidence.get("rows_per_request")
                                                                      or r.scores.get("rows_per_request")] if n})}
