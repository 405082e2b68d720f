"""Plots (matplotlib, Agg): each function takes (experiment, Result) pairs and writes one PNG, or
returns None with the reason when the results carry no data for it.

What each plot reads (the contract with the probes):
- drift delay vs magnitude: Result.measurements["per_magnitude"] = [{"magnitude": m, "delay_samples": d|None}, ...]
  (None = not detected), or measurements["delay_samples_by_magnitude"] = {m: d|None}.
- outlier precision/recall: Result.scores["precision"], ["recall"] of the outlier experiment.
- metric coverage heatmap: Result.measurements["signals"] = {signal: bool | number} (monitoring).
- latency CDF: Result.measurements["latency_ms"] = [float, ...] or ["latencies_s"] = [float, ...] (any
  experiment; e.g. parity's single-row inference, explain's explanation requests), one line per
  (platform, experiment).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from testbed.report.criteria import mean_ci  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # Fixed metadata so the same results give the same bytes.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def _by_platform(pairs, experiment: str | None = None):
    out: dict[str, list] = {}
    for exp, r in pairs:
        if experiment is None or exp == experiment:
            out.setdefault(r.platform, []).append(r)
    return out


def drift_delay(pairs, path: Path):
    series = {}
    for platform, rs in sorted(_by_platform(pairs, "drift").items()):
        points: dict[float, list[float]] = {}
        for r in rs:
            table = r.measurements.get("per_magnitude")
            items = ([(row.get("magnitude"), row.get("delay_samples")) for row in table] if isinstance(table, list)
                     else list((r.measurements.get("delay_samples_by_magnitude") or {}).items()))
            for mag, delay in items:
                if mag is not None and delay is not None:
                    points.setdefault(float(mag), []).append(float(delay))
        if points:
            series[platform] = points
    if not series:
        return None, "no drift result carries per-magnitude delays (measurements.per_magnitude)"
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for platform, points in series.items():
        mags = sorted(points)
        stats = [mean_ci(points[m]) for m in mags]
        means = [s[0] for s in stats]
        err = [[s[0] - s[1] if s[1] is not None else 0 for s in stats],
               [s[2] - s[0] if s[2] is not None else 0 for s in stats]]
        ax.errorbar(mags, means, yerr=err, marker="o", capsize=3, label=platform)
    ax.set_xlabel("drift magnitude")
    ax.set_ylabel("detection delay (samples)")
    ax.set_title("Drift detection delay vs magnitude (mean, 95% CI)")
    ax.legend()
    return _save(fig, path), None


def drift_power(pairs, path: Path):
    """Power curves: one panel per drift kind, one line per platform; alarms on wholly drifted windows pooled
    over repeats with Clopper-Pearson bars, and the pooled false-positive rate's upper bound as a dashed line."""
    from testbed.report import pooled

    by_platform = {p: pooled.drift(rs) for p, rs in sorted(_by_platform(pairs, "drift").items())
                   if pooled.has_drift_counts(rs)}
    if not by_platform:
        return None, "no drift result carries power counts (scores.power_counts)"
    kinds = sorted({k for d in by_platform.values() for k in d.power})
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds), 3.2), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        for i, (platform, d) in enumerate(by_platform.items()):
            by_m = d.power.get(kind, {})
            if not by_m:
                continue
            mags = sorted(by_m)
            x = np.arange(len(mags)) + (i - (len(by_platform) - 1) / 2) * 0.08
            y = [by_m[m].rate for m in mags]
            err = [[by_m[m].rate - by_m[m].lo for m in mags], [by_m[m].hi - by_m[m].rate for m in mags]]
            line = ax.errorbar(x, y, yerr=err, marker="o", capsize=2, label=f"{platform} (n={d.repeats})")
            ax.axhline(d.fpr.hi, ls="--", lw=0.8, color=line[0].get_color())
            ax.set_xticks(np.arange(len(mags)), [f"{m:g}" for m in mags])
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("magnitude")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("share of drifted windows alarmed")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Drift power per kind (Clopper-Pearson 95%; dashed: FPR upper bound)", fontsize=9)
    return _save(fig, path), None


def outlier_pr(pairs, path: Path):
    data = {p: rs for p, rs in sorted(_by_platform(pairs, "outlier").items())
            if any("precision" in r.scores and "recall" in r.scores for r in rs)}
    if not data:
        return None, "no outlier result carries scores.precision and scores.recall"
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(len(data))
    for i, metric in enumerate(("precision", "recall")):
        stats = [mean_ci([float(r.scores[metric]) for r in rs if metric in r.scores]) for rs in data.values()]
        means = [s[0] for s in stats]
        err = [[s[0] - s[1] if s[1] is not None else 0 for s in stats],
               [s[2] - s[0] if s[2] is not None else 0 for s in stats]]
        ax.bar(x + (i - 0.5) * 0.38, means, 0.38, yerr=err, capsize=3, label=metric)
    ax.set_xticks(x, list(data))
    ax.set_ylim(0, 1.05)
    ax.set_title("Outlier detection: precision and recall per platform")
    ax.legend()
    return _save(fig, path), None


def coverage_heatmap(pairs, path: Path):
    by_platform = _by_platform(pairs, "monitoring")
    signals = sorted({s for rs in by_platform.values() for r in rs for s in (r.measurements.get("signals") or {})})
    if not signals:
        return None, "no monitoring result carries measurements.signals"
    platforms = sorted(by_platform)
    grid = np.zeros((len(platforms), len(signals)))
    for i, p in enumerate(platforms):
        for j, s in enumerate(signals):
            vals = [float(bool((r.measurements.get("signals") or {}).get(s))) for r in by_platform[p]]
            grid[i, j] = sum(vals) / len(vals)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(signals) + 2), 0.6 * len(platforms) + 2))
    im = ax.imshow(grid, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(signals)), signals, rotation=40, ha="right")
    ax.set_yticks(range(len(platforms)), platforms)
    for i in range(len(platforms)):
        for j in range(len(signals)):
            ax.text(j, i, f"{grid[i, j]:.2g}", ha="center", va="center", fontsize=8,
                    color="white" if grid[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of repeats exposed")
    ax.set_title("Metric coverage in Prometheus")
    return _save(fig, path), None


def latency_cdf(pairs, path: Path):
    series = {}
    for exp, r in pairs:
        lat = r.measurements.get("latency_ms")
        seconds = r.measurements.get("latencies_s")
        if not (isinstance(lat, list) and lat) and isinstance(seconds, list) and seconds:
            lat = [float(x) * 1e3 for x in seconds]
        if isinstance(lat, list) and lat:
            series.setdefault(f"{r.platform} ({exp})", []).extend(float(x) for x in lat)
    if not series:
        return None, "no result carries measurements.latency_ms or measurements.latencies_s"
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, values in sorted(series.items()):
        v = np.sort(np.asarray(values))
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=f"{label}, n={len(v)}")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF")
    ax.legend(fontsize=8)
    return _save(fig, path), None


PLOTS = (
    ("drift_power", "Drift power per platform and kind", drift_power),
    ("drift_delay", "Drift detection delay vs magnitude", drift_delay),
    ("outlier_pr", "Outlier precision/recall per platform", outlier_pr),
    ("coverage", "Metric coverage heatmap", coverage_heatmap),
    ("latency_cdf", "Latency CDFs", latency_cdf),
)
