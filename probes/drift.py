"""Drift probe: a no-drift control stream and graded drifts with known onsets, through each platform's
detection path. Scores, per window class (probes/scoring.py: window_class): alarms on control windows
(false-positive rate), alarms on windows wholly drifted by one stream (power per kind and magnitude), and
per stream the first alarm after onset (delay in rows and seconds). Counts are kept so the report pools
repeats before it takes intervals (probes/stats.py) and decides which magnitudes are detected.

`run(ctx)` -> one Result per platform. ctx.options: {"data_csv": path|None, "control_n": 4000, "drift_n": 1400,
"onset": 300, "randomise_onset": True, "window_rows": the detectors' window, "kinds": [...],
"magnitudes": {kind: [...]}}.
A user's model (`up --model --reference`): the detectors were fitted on their reference, and the streams are made
from its held-out rows (probes/userscenarios.py: the control, and drifts in the same units).
User data (`--data CUR.csv`): a control segment of CONTROL_SEGMENT rows like the reference (held-out rows for a
user's model, fresh draws for the testbed's) and then the data rows, as one stream whose onset is the first data
row; the detectors are the deployed ones, fitted on the artifact's reference, so the question answered is "does
this platform's path flag my data, against my reference", and the control segment measures the false alarms of
the same run.
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
from probes.stats import derive_seed
from probes.scenarios import DRIFT_KINDS, DRIFT_MAGNITUDES, Stream, control_stream, drift_suite, user_stream
from testbed.detectors import CONFIG as DETECTOR_CONFIG
from testbed.errors import TestbedError
from testbed.population import Population
from testbed.results import Result

PROBE = "drift"
FPR_QUANTILE = 0.999
CONTROL_N = 4000
DRIFT_N = 1400
ONSET = 300
CONTROL_SEGMENT = CONTROL_N
"""Rows like the reference sent before a user's --data rows: 20 windows of 200, the false alarms of this run. Fewer
would leave the false-positive rate's upper bound too high to call anything detected (0 of 5 windows: 0.52)."""
"""Each drift stream: 300-499 undrifted rows (onset at a seeded phase of the window), then 901-1100 drifted
rows: 3-5 windows of 200 rows wholly drifted per stream and repeat."""


def scenario(ctx: ProbeContext, window_rows: int = 200) -> list[Stream]:
    """The streams in the order they are sent. Seeds: a hash of (ctx.seed, ctx.repeat, kind, magnitude)
    per stream; onsets at onset + a seeded 0..window_rows-1 rows; the order shuffled per repeat."""
    opts = ctx.options or {}
    if opts.get("data_csv"):
        from probes import userdata

        data = userdata.read_rows(opts["data_csv"], ctx.artifact.features)
        seed = derive_seed(ctx.seed, ctx.repeat, "control-segment")
        n_control = int(opts.get("control_segment", CONTROL_SEGMENT))
        control, _ = ctx.artifact.data_source().sample(n_control, np.random.default_rng(seed))
        s = user_stream(np.vstack([control, data]), name="user-data", kind="user")
        return [Stream(name=s.name, kind="user", rows=s.rows, seed=seed, onset=n_control, feature=None)]
    if ctx.artifact.is_user:
        return user_scenario(ctx, window_rows)
    population = Population(ctx.artifact.metadata["recipe"]["seed"])
    magnitudes = opts.get("magnitudes") or DRIFT_MAGNITUDES
    kinds = opts.get("kinds") or DRIFT_KINDS
    magnitudes = {k: tuple(v) for k, v in magnitudes.items() if k in kinds}
    control = control_stream(population, int(opts.get("control_n", CONTROL_N)),
                             seed=derive_seed(ctx.seed, ctx.repeat, "control"))
    drifts = drift_suite(population, ctx.seed, n=int(opts.get("drift_n", DRIFT_N)),
                         onset=int(opts.get("onset", ONSET)), magnitudes=magnitudes, repeat=ctx.repeat,
                         onset_jitter=window_rows if opts.get("randomise_onset", True) else 0)
    order = np.random.default_rng(derive_seed(ctx.seed, ctx.repeat, "order")).permutation(len(drifts))
    return [control, *(drifts[i] for i in order)]


def user_scenario(ctx: ProbeContext, window_rows: int) -> list[Stream]:
    """A user's model: the control and the drift suite from the held-out reference rows (probes/userscenarios.py),
    seeded like `scenario`; kinds the data cannot carry are left out (the plan in the evidence says why)."""
    from probes import userscenarios as us

    opts = ctx.options or {}
    source = ctx.artifact.data_source()
    p = us.plan(ctx.artifact.reference(), source)
    kinds = opts.get("kinds") or us.DRIFT_MAGNITUDES
    magnitudes = {k: tuple(v) for k, v in (opts.get("magnitudes") or us.DRIFT_MAGNITUDES).items() if k in kinds}
    control = us.control_stream(source, int(opts.get("control_n", CONTROL_N)),
                                seed=derive_seed(ctx.seed, ctx.repeat, "control"))
    drifts = us.drift_suite(source, p, ctx.seed, n=int(opts.get("drift_n", DRIFT_N)), onset=int(opts.get("onset", ONSET)),
                            magnitudes=magnitudes, repeat=ctx.repeat,
                            onset_jitter=window_rows if opts.get("randomise_onset", True) else 0)
    order = np.random.default_rng(derive_seed(ctx.seed, ctx.repeat, "order")).permutation(len(drifts))
    return [control, *(drifts[i] for i in order)]


def plan_evidence(ctx: ProbeContext) -> dict:
    """What the streams act on, for a user's model (which features, which kinds were left out and why)."""
    if not ctx.artifact.is_user or (ctx.options or {}).get("data_csv"):
        return {}
    from probes import userscenarios as us

    return {"user_plan": us.plan(ctx.artifact.reference(), ctx.artifact.data_source()).describe()}


def score(streams: list[Stream], windows: list[scoring.Window], sent_at: dict, tag: str, p_val: float) -> dict:
    """Pure. Per window class (scoring.window_class): false alarms on control windows; alarms on windows wholly
    drifted by one stream (power), per kind and magnitude; per stream, the first alarm on a window holding any
    of its post-onset rows (delay in rows and seconds). Counts are kept so the report can pool repeats;
    intervals here are this repeat's alone (Clopper-Pearson)."""
    onsets = {s.name: s.onset for s in streams}
    counts = scoring.window_counts(windows, onsets)
    fpr = stats.clopper_pearson(*counts["control"])
    allowed = scoring.binomial_upper(fpr.n, p_val, FPR_QUANTILE)
    per_stream, power = {}, {}
    for s in streams:
        if s.onset is None:
            continue
        onset_rid = _rid_of_row(tag, s, s.onset, sent_at)
        d = scoring.detection_delay(windows, s.name, s.onset, sent_at.get(onset_rid))
        k, n = counts["drifted"].get(s.name, [0, 0])
        per_stream[s.name] = {"kind": s.kind, "magnitude": s.magnitude, "feature": s.feature, "onset": s.onset,
                              "seed": s.seed, "drifted_windows": n, "drifted_alarms": k, **d}
        slot = power.setdefault(s.kind, {}).setdefault(f"{s.magnitude:g}", [0, 0])
        slot[0] += k
        slot[1] += n
    rates = {kind: {m: stats.clopper_pearson(*kn) for m, kn in by_m.items()} for kind, by_m in power.items()}
    smallest = {kind: stats.smallest_detected({float(m): r for m, r in by_m.items()}, fpr)
                for kind, by_m in rates.items()}
    out = {"fpr": fpr.rate, "fpr_lo": fpr.lo, "fpr_hi": fpr.hi, "control_windows": fpr.n, "false_alarms": fpr.k,
           "allowed_false_alarms": allowed, "fpr_within_configured": fpr.k <= allowed,
           "interval_method": stats.CLOPPER_PEARSON,
           "windows": len(windows), "partial_windows": counts["partial"][1], "foreign_windows": counts["foreign"],
           "windows_mixing_streams": counts["mixing_streams"],
           "power_counts": power,
           "power": {kind: {m: r.to_json() for m, r in by_m.items()} for kind, by_m in rates.items()},
           "streams": per_stream,
           # This repeat alone; the report decides on counts pooled over repeats.
           "smallest_magnitude_detected": smallest}
    return out


def _rid_of_row(tag: str, stream: Stream, row: int, sent_at: dict) -> str:
    """The id of the request that carried `row` (requests start at multiples of their size)."""
    starts = sorted(int(r.rsplit("/", 1)[1]) for r in sent_at if r.startswith(f"{tag}/{stream.name}/"))
    start = max((s for s in starts if s <= row), default=0)
    return scoring.request_id(tag, stream.name, start)


def verdict_word(scores: dict) -> str:
    if not scores["streams"]:
        return "alarm" if scores["false_alarms"] else "no alarm"
    detected = any(v is not None for v in scores["smallest_magnitude_detected"].values())
    if set(scores["power_counts"]) == {"user"}:  # a user's rows: whether they drifted is what is asked
        return "flagged" if detected else "not flagged"
    return "detected" if detected else "missed"


def run(ctx: ProbeContext) -> list[Result]:
    window = int((ctx.options or {}).get("window_rows") or DETECTOR_CONFIG["drift"]["window_rows"])
    streams = scenario(ctx, window)
    return [measure(ctx, endpoint, streams) for endpoint in ctx.endpoints.values()]


def measure(ctx: ProbeContext, endpoint, streams: list[Stream]) -> Result:
    result, path, tag = dio.open_result(ctx, endpoint, PROBE, "drift", {"scenario": [s.summary() for s in streams],
                                                                        **plan_evidence(ctx)})
    if path is None:
        return result
    evidence = result.evidence
    request_rows = int(path.get("request_rows") or 20)
    p_val = float((path.get("detector") or {}).get("p_val", 0.05))
    queries = {name: dio.counter_query(metric, path) for name, metric in
               (("rows", "testbed_detector_rows"), ("windows", "testbed_drift_windows"),
                ("alarms", "testbed_drift_alarms"))}
    evidence.update({"window_rows": path.get("window_rows"), "request_rows": request_rows, "promql": queries,
                     "fpr_quantile": FPR_QUANTILE})
    try:
        before = {k: dio.prometheus_sum(ctx.prometheus, q) for k, q in queries.items()}
        native = path.get("native_promql") or {}
        native_before = {k: dio.prometheus_sum(ctx.prometheus, q) for k, q in native.items()}
        since = dio.last_seq(path["verdicts_url"])
        sent = dio.Sent()
        with httpx.Client(timeout=30.0) as client:
            for s in streams:
                dio.send_stream(client, path["url"], s, tag, request_rows, sent, protocol_of(endpoint),
                                v2.wire_for(ctx.artifact))
        records, waited = dio.collect(path["verdicts_url"], since, tag, sent.requests - len(sent.failed))
        windows = [scoring.locate(r, tag) for r in records if r["kind"] == "drift"]
        result.scores = score(streams, windows, sent.sent_at, tag, p_val)
        after_rows = dio.wait_counter(ctx.prometheus, queries["rows"], before["rows"] + sent.rows)
        after_windows = dio.wait_counter(ctx.prometheus, queries["windows"], before["windows"] + len(windows))
        after_alarms = dio.prometheus_sum(ctx.prometheus, queries["alarms"])
        log_alarms = sum(w.is_drift for w in windows)
        result.scores.update({
            "rows_sent": sent.rows, "requests_sent": sent.requests, "requests_failed": len(sent.failed),
            "rows_counted_prometheus": after_rows - before["rows"], "events_lost": sent.rows - (after_rows - before["rows"]),
            "windows_counted_prometheus": after_windows - before["windows"],
            "alarms_counted_prometheus": after_alarms - before["alarms"], "alarms_in_verdict_log": log_alarms,
            "prometheus_matches_sent": (after_rows - before["rows"]) == sent.rows,
        })
        for name, query in native.items():  # the platform's own drift metrics, where it has them
            evidence["promql"][f"native_{name}"] = query
            target = native_before[name] + (len(windows) if name == "windows" else 0)
            after = dio.wait_counter(ctx.prometheus, query, target) if name == "windows" else \
                dio.prometheus_sum(ctx.prometheus, query)
            result.scores[f"native_{name}_counted_prometheus"] = after - native_before[name]
        result.measurements = {
            "windows": [{"index": w.index, "is_drift": w.is_drift, "rows": {k: list(v) for k, v in w.rows.items()},
                         "foreign_rows": w.foreign_rows} for w in windows],
            "p_values": [r["p_vals"] for r in records if r["kind"] == "drift"],
            "failed_requests": sent.failed[:20], "verdict_wait_s": round(waited, 2),
            "send_seconds": round(sent.seconds, 3),
            "per_magnitude": [{"kind": v["kind"], "magnitude": v["magnitude"], "delay_samples": v["delay_samples"],
                               "delay_seconds": v["delay_seconds"], "drifted_windows": v["drifted_windows"],
                               "drifted_alarms": v["drifted_alarms"]}
                              for v in result.scores.get("streams", {}).values()]}
        result.verdict = verdict_word(result.scores)
    except (TestbedError, httpx.HTTPError, KeyError, ValueError) as exc:
        evidence["error"] = dio.error_text(exc)
        result.verdict = "error"
    result.finished_at = time.time()
    return result
