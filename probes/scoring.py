"""Scores of detector verdicts against scenario truth: pure functions, no I/O.

Drift verdicts arrive per window; a window names the rows it covered as `members`
([request_id, first row offset, rows]). `locate` maps them back to (stream, row index) through the
request ids the probe used, so windows are classified by what they really contain:
- a control window holds no drifted row of any stream (its alarms are false positives);
- a post-onset window of stream S holds at least one drifted row of S (its alarms detect S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def classification(flags, truth) -> dict:
    """Confusion counts, precision, recall, F1 (None where undefined: no flags / no positives)."""
    flags = np.asarray(flags, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if flags.shape != truth.shape:
        raise ValueError(f"{flags.shape[0]} flags for {truth.shape[0]} truth values")
    tp = int(np.sum(flags & truth))
    fp = int(np.sum(flags & ~truth))
    fn = int(np.sum(~flags & truth))
    tn = int(np.sum(~flags & ~truth))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    fpr = fp / (fp + tn) if fp + tn else None
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall, "f1": f1,
            "fpr": fpr}


def recall_by_group(flags, index, groups) -> dict:
    """Recall of the rows `index` (planted outliers), grouped by `groups` (e.g. 'far_tail@6')."""
    flags = np.asarray(flags, dtype=bool)
    out: dict[str, dict] = {}
    for i, g in zip(index, groups):
        entry = out.setdefault(str(g), {"n": 0, "detected": 0})
        entry["n"] += 1
        entry["detected"] += int(flags[i])
    for entry in out.values():
        entry["recall"] = entry["detected"] / entry["n"]
    return dict(sorted(out.items()))


def request_id(tag: str, stream: str, start: int) -> str:
    """The V2 request id the probes send: it names the stream and the first row of the request."""
    return f"{tag}/{stream}/{start}"


def parse_request_id(rid, tag: str) -> tuple[str, int] | None:
    if not isinstance(rid, str) or not rid.startswith(tag + "/"):
        return None
    stream, _, start = rid[len(tag) + 1:].rpartition("/")
    try:
        return stream, int(start)
    except ValueError:
        return None


@dataclass(frozen=True)
class Window:
    index: int
    is_drift: bool
    time: float
    rows: dict
    """stream name -> (first row index, last row index) of the rows this window covered."""

    foreign_rows: int = 0
    """Rows from requests this probe did not send (another client's traffic)."""


def locate(verdict: dict, tag: str) -> Window:
    """A drift verdict's members as row ranges per stream of this probe run."""
    rows: dict[str, list[int]] = {}
    foreign = 0
    for rid, offset, n in verdict["members"]:
        parsed = parse_request_id(rid, tag)
        if parsed is None:
            foreign += int(n)
            continue
        stream, start = parsed
        lo, hi = start + int(offset), start + int(offset) + int(n) - 1
        cur = rows.get(stream)
        rows[stream] = [lo, hi] if cur is None else [min(cur[0], lo), max(cur[1], hi)]
    return Window(index=int(verdict["window"]), is_drift=bool(verdict["is_drift"]), time=float(verdict["time"]),
                  rows={k: (v[0], v[1]) for k, v in rows.items()}, foreign_rows=foreign)


def is_control(window: Window, onsets: dict[str, int | None]) -> bool:
    """No row of the window is drifted (onset None = a stream that never drifts)."""
    for stream, (_, hi) in window.rows.items():
        onset = onsets.get(stream)
        if onset is not None and hi >= onset:
            return False
    return window.foreign_rows == 0


def false_positive_rate(windows: list[Window], onsets: dict[str, int | None]) -> dict:
    control = [w for w in windows if is_control(w, onsets)]
    alarms = sum(w.is_drift for w in control)
    return {"control_windows": len(control), "false_alarms": int(alarms),
            "fpr": alarms / len(control) if control else None}


def detection_delay(windows: list[Window], stream: str, onset: int, onset_sent_at: float | None) -> dict:
    """First alarm on a window holding drifted rows of `stream`: delay in rows and seconds after onset.

    delay_samples counts drifted rows consumed up to the end of the alarming window (its last row of
    this stream, minus onset, plus one); delay_seconds runs from the moment the onset row was sent to
    the moment the detector produced the verdict (same clock: loopback, one machine).
    """
    post = sorted((w for w in windows if stream in w.rows and w.rows[stream][1] >= onset), key=lambda w: w.index)
    for w in post:
        if w.is_drift:
            last = w.rows[stream][1]
            return {"detected": True, "window": w.index, "delay_samples": last - onset + 1,
                    "delay_seconds": (w.time - onset_sent_at) if onset_sent_at is not None else None,
                    "post_onset_windows": len(post)}
    return {"detected": False, "window": None, "delay_samples": None, "delay_seconds": None,
            "post_onset_windows": len(post)}


CONTROL, DRIFTED, PARTIAL, FOREIGN = "control", "drifted", "partial", "foreign"


def window_class(window: Window, onsets: dict[str, int | None]) -> tuple[str, str | None]:
    """(class, stream) of a window, for power and false-positive counts:
    - control: no drifted row of any stream (an alarm is a false positive);
    - drifted: every row is a post-onset row of one stream (an alarm measures the power against that drift);
    - partial: some drifted rows and some others (straddles an onset, or mixes streams): used for the delay,
      left out of power and FPR, since its share of drifted rows is an accident of window phase;
    - foreign: holds rows another client sent (none of ours to score)."""
    if window.foreign_rows:
        return FOREIGN, None
    if is_control(window, onsets):
        return CONTROL, None
    if len(window.rows) == 1:
        (stream, (lo, _)), = window.rows.items()
        onset = onsets.get(stream)
        if onset is not None and lo >= onset:
            return DRIFTED, stream
    return PARTIAL, None


def mixes_streams(window: Window) -> bool:
    """The window holds rows of more than one stream (or of another client)."""
    return len(window.rows) + (1 if window.foreign_rows else 0) > 1


def window_counts(windows: list[Window], onsets: dict[str, int | None]) -> dict:
    """Alarm counts per class: {"control": [alarms, windows], "drifted": {stream: [alarms, windows]},
    "partial": [alarms, windows], "foreign": n, "mixing_streams": n}."""
    out = {"control": [0, 0], "drifted": {s: [0, 0] for s, o in onsets.items() if o is not None},
           "partial": [0, 0], "foreign": 0, "mixing_streams": 0}
    for w in windows:
        cls, stream = window_class(w, onsets)
        out["mixing_streams"] += mixes_streams(w)
        if cls == FOREIGN:
            out["foreign"] += 1
            continue
        slot = out["drifted"][stream] if cls == DRIFTED else out[cls]
        slot[0] += int(w.is_drift)
        slot[1] += 1
    return out


def binomial_upper(n: int, p: float, quantile: float = 0.999) -> int:
    """Smallest k with P[Binomial(n, p) <= k] >= quantile: the most false alarms a detector with
    false-positive rate p may raise in n control windows before we call it miscalibrated."""
    if n <= 0:
        return 0
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if cdf >= quantile:
            return k
    return n


def latency_summary(with_s: list[float], without_s: list[float]) -> dict:
    """Side-by-side latency (seconds) of inference with and without the detection path."""
    if not with_s or not without_s:
        raise ValueError("latency summary needs samples on both sides")
    w, b = np.asarray(with_s), np.asarray(without_s)
    out = {"n": int(min(len(w), len(b)))}
    for name, arr in (("with_detection", w), ("without_detection", b)):
        out[name] = {"p50_ms": float(np.percentile(arr, 50) * 1e3), "p90_ms": float(np.percentile(arr, 90) * 1e3),
                     "p99_ms": float(np.percentile(arr, 99) * 1e3), "mean_ms": float(arr.mean() * 1e3)}
    out["ratio_p50"] = out["with_detection"]["p50_ms"] / out["without_detection"]["p50_ms"]
    out["ratio_p99"] = out["with_detection"]["p99_ms"] / out["without_detection"]["p99_ms"]
    return out
