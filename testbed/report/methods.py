"""The report's Methods section: how the numbers were made and what each does and does not say about a platform.

Paragraphs are text with the run's own facts filled in (repeats, seeds, window sizes), so the section
describes the runs the report shows, not a generic design.
"""

from __future__ import annotations

from probes import stats
from probes.scenarios import DRIFT_FEATURE, DRIFT_MAGNITUDES, OUTLIER_SEVERITIES


def _runs_facts(runs) -> str:
    if not runs:
        return "No run is shown: the matrix holds documented cells only."
    parts = []
    for r in runs:
        m = r.meta
        parts.append(f"{r.run_id}: {m.get('repeats')} repeat(s), base seed {m.get('seed')}, backend "
                     f"{m.get('backend')}, experiments {', '.join(r.experiments) or 'none'}")
    return "; ".join(parts) + "."


def reference_variance_text(record: dict | None) -> str:
    if not record:
        return ("Not measured in the results shown: run experiments/reference_variance.py to see how much the "
                "choice of reference sample moves the false-positive rate and power.")
    rows = "; ".join(f"{c['condition']}: {c['rate']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}] over {c['n']} windows, "
                     f"sd between references {c['sd_between_references']:.3f} vs {c['sd_binomial_alone']:.3f} from "
                     f"binomial noise alone (homogeneity p = {c['p_value_homogeneous']:.2g}), deployed reference "
                     f"{c['deployed_reference']['rate']:.3f}" for c in record["conditions"])
    return (f"Run {record['run_id']}: the drift detector refitted on {record['references']} fresh "
            f"{record['reference_rows']}-row reference samples, {record['windows_per_condition']} windows of "
            f"{record['window_rows']} rows per condition and reference (seed {record['seed']}). " + rows + ". Where "
            "the spread between references exceeds binomial noise, the probe's intervals (reference held fixed) "
            "understate the uncertainty of a claim about the detector in general; they are exact for the deployed "
            "detector, which is what every platform serves.")


def sections(runs, reference_variance: dict | None = None) -> list[tuple[str, str]]:
    ladder = "; ".join(f"{k} on {DRIFT_FEATURE[k]}: {', '.join(f'{m:g}' for m in v)}" for k, v in DRIFT_MAGNITUDES.items())
    sev = "; ".join(f"{k}: {', '.join(f'{s:g}' for s in v)}" for k, v in OUTLIER_SEVERITIES.items())
    return [
        ("Runs", _runs_facts(runs)),
        ("Scenario design",
         "Every row is drawn from the population the model was trained on (testbed/population.py), so the truth "
         "is known: which rows are drifted, which are planted outliers, which features matter. Drift streams start "
         "undrifted and change one parameter of the population at a known onset row; magnitudes (" + ladder + ") are "
         "in units needing no estimate (standard deviations, variance factor - 1, drop in correlation, prior "
         "weight). The correlation drift leaves every marginal unchanged, so a detector testing features one at a "
         "time cannot see it: it is there to be reported undetected. Outlier streams carry 5% planted outliers of "
         "three kinds and severities (" + sev + ")."),
        ("Seeds and repeats",
         "A repeat's scenario is seeded by a SHA-256 hash of (run seed, repeat, stream kind, magnitude), never by "
         "adding offsets, so no two streams of any repeat or run share draws. Onsets are placed at a seeded "
         "offset of 0..window-1 rows, so the onset falls at a random phase of the detector's window, and the "
         "order of the streams is shuffled per repeat. The detectors and the explainer's background are the ones "
         "deployed (fitted once on the artifact's reference sample); what that choice adds to the variance is "
         "measured separately (experiments/reference_variance.py), not hidden in the intervals."),
        ("How much the reference sample matters", reference_variance_text(reference_variance)),
        ("Drift: power, false-positive rate, smallest magnitude, delay",
         "Each verdict names the rows of its window, so windows are classed by what they held: control (no "
         "drifted row: an alarm is a false positive), drifted (every row a post-onset row of one stream: an alarm "
         "counts towards that drift's power) and partial (straddles an onset or mixes streams: used for the delay "
         "only). Alarms and windows are added over repeats, then given a " + stats.CLOPPER_PEARSON + " interval. "
         "A magnitude is detected when its power's lower bound exceeds the false-positive rate's upper bound; the "
         f"report also names the smallest whose power's lower bound reaches {stats.RELIABLE_POWER}. A minimum over "
         "a fixed ladder gets no interval of its own: the power of each rung is the uncertainty. Delay is counted "
         "in rows (post-onset rows up to the end of the first alarming window) and seconds (onset row sent to "
         "verdict), only over streams whose magnitude is detected; its median has a " + stats.BOOTSTRAP +
         " interval. The smallest magnitude is a threshold on a ladder: two platforms whose power intervals overlap "
         "at every rung can still land on different rungs by chance (19/19 clears 0.8, 20/21 does not), so compare "
         "the power curves, not the rung."),
        ("Outliers",
         "Recall per planted kind and severity, precision, and the false-positive rate on clean rows, each pooled "
         "over repeats with a Clopper-Pearson interval. Precision is shown beside the best precision any detector "
         "with the measured false-positive rate could reach at this base rate (recall 1): with 5% outliers and a "
         "1% flag rate on clean rows it is about 0.84, so a precision near it is the detector's ceiling, not a "
         "platform's failing."),
        ("Explanations",
         "Exact interventional Shapley values are computed in-process over all 128 coalitions of the 7 features, "
         "with the explainer's own background rows and the model's class probabilities; each platform's values are "
         "compared value by value (maximum absolute error, sign, rank and top-3 agreement, additivity). The worst "
         "repeat is shown; a maximum error has no interval. An explainer that ignores the model (|x - mean|) "
         "recovers the planted features as often as a correct one, and fails this comparison."),
        ("Detection under load",
         "Per request size (1, 7, 20, 100 rows) the detection path's capacity is measured closed loop (4 "
         "connections, 2 s); then two streams, one drifting from its middle, are sent interleaved and open loop at "
         "0.5, 1 and 2 times it, first to the plain inference route, then through the detection path, for 4 s each. "
         "Latency counts from when a request was due, so queueing anywhere counts; when the client's 48 workers "
         "are all waiting on a saturated server, requests leave late (the send lag shown) and the offered rate is "
         "below nominal: cells at 1x and 2x say how a path degrades, the 0.5x cells compare paths. Rows lost and "
         "verdicts missing are counted against the verdict log; verdict delay runs from a request's send to its "
         "verdict's receipt."),
        ("Monitoring",
         "A signal counts as exposed only when it is found in the platform's scrape and its value moved with the "
         "traffic the probe sent (a request counter by exactly the requests answered). The catalogue only says "
         "where to look; a series that exists but does not move, or nothing found, is reported as such."),
        ("What the numbers do and do not say",
         "Every platform runs the same detectors and explainer, so power, false-positive rate and recall measure "
         "the shared detector on this scenario; they differ between platforms only where the platform changes "
         "what reaches the detector (rows lost, windows cut differently, requests batched) or how fast. Those "
         "differences, the delivery counts, window semantics and latency with and without detection, are the "
         "platform's own. A path's tumbling window carries over from earlier traffic (other probes, other "
         "clients), so where a probe's streams fall in it depends on what came before: windows that mix streams "
         "or straddle an onset are counted and set aside, not assumed away. Cells say n and the interval method; "
         "documented cells are not measured at all."),
    ]
