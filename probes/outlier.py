"""Outlier probe: send rows with planted outliers through each platform's detection path and score
the detector's flags against the truth; count events lost between platform and detector.

`run(ctx)` -> one Result per platform. ctx.options: {"data_csv": path|None, "truth_csv": path|None,
"n": rows (default 3000), "rate": outlier share (default 0.05), "latency_pairs": 100}. Without a CSV
the stream is `scenarios.outlier_stream` (seeded by ctx.seed, drawn from the artifact's population); for a user's
model, `userscenarios.outlier_stream` (held-out reference rows, outliers planted relative to the reference).
"""

from __future__ import annotations

import time

import httpx
import numpy as np

from deployers import protocol_of
from probes import detection_io as dio
from probes import scoring, stats
from probes.context import ProbeContext
from testbed import v2
from probes.scenarios import OUTLIER_KINDS, Stream, outlier_stream
from probes.stats import derive_seed
from testbed.errors import TestbedError
from testbed.population import Population
from testbed.results import Result

PROBE = "outlier"
RECALL_PASS = 0.5
"""Verdict `detected` needs recall >= this on the planted outliers (scores carry the numbers)."""


def scenario(ctx: ProbeContext) -> Stream:
    opts = ctx.options or {}
    if opts.get("data_csv"):
        return dio.user_rows(opts["data_csv"], ctx.artifact.features, "user-data", opts.get("truth_csv"))
    if ctx.artifact.is_user:
        from probes import userscenarios as us

        source = ctx.artifact.data_source()
        return us.outlier_stream(source, us.plan(ctx.artifact.reference(), source), int(opts.get("n", 3000)),
                                 seed=derive_seed(ctx.seed, ctx.repeat, "outliers"), rate=float(opts.get("rate", 0.05)))
    population = Population(ctx.artifact.metadata["recipe"]["seed"])
    return outlier_stream(population, int(opts.get("n", 3000)), seed=derive_seed(ctx.seed, ctx.repeat, "outliers"),
                          rate=float(opts.get("rate", 0.05)))


def score(stream: Stream, flags: np.ndarray, scores: np.ndarray) -> dict:
    """Pure: classification counts, recall per planted kind and per (kind, severity), and the false-positive rate
    on clean rows, each with a Clopper-Pearson interval; precision beside the best precision any detector could
    reach at this base rate and this false-positive rate (recall 1), since with 5% planted outliers a 1% flag
    rate on clean rows alone caps precision near 0.84."""
    out: dict = {"flagged": int(flags.sum()), "flag_rate": float(flags.mean())}
    if len(stream.outlier_index) or stream.kind == "outliers":
        c = scoring.classification(flags, stream.is_outlier)
        out.update(c)
        groups = [f"{k}@{s:g}" for k, s in zip(stream.outlier_kind, stream.outlier_severity)]
        for key, labels in (("recall_by_kind_severity", groups), ("recall_by_kind", stream.outlier_kind)):
            table = scoring.recall_by_group(flags, stream.outlier_index, labels)
            for entry in table.values():
                r = stats.clopper_pearson(entry["detected"], entry["n"])
                entry.update(lo=r.lo, hi=r.hi)
            out[key] = table
        fpr = stats.clopper_pearson(c["fp"], c["fp"] + c["tn"])
        base_rate = (c["tp"] + c["fn"]) / len(flags)
        out.update(fpr_lo=fpr.lo, fpr_hi=fpr.hi, base_rate=base_rate, interval_method=stats.CLOPPER_PEARSON,
                   precision_bound=stats.precision_bound(base_rate, c["fpr"]) if c["fpr"] is not None else None)
        if c["tp"] + c["fp"]:
            p = stats.clopper_pearson(c["tp"], c["tp"] + c["fp"])
            out.update(precision_lo=p.lo, precision_hi=p.hi)
        if c["tp"] + c["fn"]:
            r = stats.clopper_pearson(c["tp"], c["tp"] + c["fn"])
            out.update(recall_lo=r.lo, recall_hi=r.hi)
    return out


def verdict_word(scores: dict) -> str:
    if "recall" in scores:
        return "detected" if (scores["recall"] or 0) >= RECALL_PASS else "missed"
    return "flagged" if scores["flagged"] else "none flagged"


def run(ctx: ProbeContext) -> list[Result]:
    stream = scenario(ctx)  # EmptyScenario / InvalidPayload before any traffic
    return [measure(ctx, endpoint, stream) for endpoint in ctx.endpoints.values()]


def measure(ctx: ProbeContext, endpoint, stream: Stream) -> Result:
    kinds = sorted(set(stream.outlier_kind)) if ctx.artifact.is_user else list(OUTLIER_KINDS)
    result, path, tag = dio.open_result(ctx, endpoint, PROBE, "outlier",
                                        {"scenario": stream.summary(), "outlier_kinds": kinds})
    if path is None:
        return result
    evidence = result.evidence
    request_rows = int(path.get("request_rows") or (endpoint.detection.get("drift") or {}).get("request_rows") or 20)
    rows_q = dio.counter_query("testbed_detector_rows", path)
    flags_q = dio.counter_query("testbed_outlier_flags", path)
    evidence.update({"request_rows": request_rows, "promql": {"rows": rows_q, "flags": flags_q}})
    try:
        rows_before = dio.prometheus_sum(ctx.prometheus, rows_q)
        flags_before = dio.prometheus_sum(ctx.prometheus, flags_q)
        since = dio.last_seq(path["verdicts_url"])
        sent = dio.Sent()
        with httpx.Client(timeout=30.0) as client:
            dio.send_stream(client, path["url"], stream, tag, request_rows, sent, protocol_of(endpoint),
                            v2.wire_for(ctx.artifact))
        records, waited = dio.collect(path["verdicts_url"], since, tag, sent.requests - len(sent.failed))
        flags, scores, missing_rows = dio.outlier_flags(records, stream, tag, request_rows)
        rows_after = dio.wait_counter(ctx.prometheus, rows_q, rows_before + sent.rows)
        flags_after = dio.prometheus_sum(ctx.prometheus, flags_q)
        result.scores = score(stream, flags, scores)
        counted = rows_after - rows_before
        result.scores.update({
            "rows_sent": sent.rows, "requests_sent": sent.requests, "requests_failed": len(sent.failed),
            "rows_counted_prometheus": counted, "events_lost": sent.rows - counted,
            "rows_without_verdict": missing_rows,
            "flags_counted_prometheus": flags_after - flags_before,
            "prometheus_matches_sent": counted == sent.rows,
        })
        pairs = int((ctx.options or {}).get("latency_pairs", 100))
        if pairs > 0:
            result.scores["latency"] = dio.side_by_side_latency(endpoint, path, stream.rows, pairs, request_rows, tag,
                                                                v2.wire_for(ctx.artifact))
        result.measurements = {"flags": flags.astype(int).tolist(),
                               "scores": [None if np.isnan(s) else round(float(s), 4) for s in scores],
                               "truth_index": stream.outlier_index.tolist(),
                               "failed_requests": sent.failed[:20], "verdict_wait_s": round(waited, 2),
                               "send_seconds": round(sent.seconds, 3)}
        result.verdict = verdict_word(result.scores)
    except (TestbedError, httpx.HTTPError, KeyError, ValueError) as exc:
        evidence["error"] = dio.error_text(exc)
        result.verdict = "error"
    result.finished_at = time.time()
    return result
