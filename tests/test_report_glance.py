"""The report as a reader meets it: pooled drift/outlier/explain cells from probe-shaped scores, the compact
matrix, and the HTML rendered by headless Chromium (Debian's package) into a screenshot that is checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from probes import stats
from testbed import report
from testbed.experiment import RUN_SCHEMA
from testbed.results import Result, write
from testbed.state import atomic_write_json

SHA = "b" * 64
PLATFORMS = ("kserve", "seldon")


def _drift_scores(platform: str, repeat: int) -> dict:
    """Scores shaped as probes/drift.py writes them: counts per kind and magnitude."""
    power = {"mean_shift": {"0.05": [0, 5], "0.3": [4, 5], "0.6": [6, 6]},
             "correlation": {"0.6": [0, 5], "1.2": [1, 5]}}
    if platform == "seldon":
        power["mean_shift"]["0.3"] = [2, 5]
    streams = {}
    for kind, by_m in power.items():
        for m, (k, n) in by_m.items():
            streams[f"{kind}@{m}"] = {"kind": kind, "magnitude": float(m), "detected": k > 0, "drifted_windows": n,
                                      "drifted_alarms": k, "delay_samples": 150 + 20 * repeat if k else None,
                                      "delay_seconds": 0.5 + repeat if k else None}
    return {"fpr": 2 / 40, "false_alarms": 2, "control_windows": 40, "power_counts": power, "streams": streams,
            "windows": 80, "windows_mixing_streams": 3 if platform == "seldon" else 0}


def _outlier_scores(repeat: int) -> dict:
    return {"tp": 80, "fp": 19, "fn": 20, "tn": 1881, "precision": 80 / 99, "recall": 0.8, "f1": 0.8,
            "recall_by_kind": {"far_tail": {"n": 40, "detected": 40}, "impossible_segment": {"n": 30, "detected": 10},
                               "unseen_combination": {"n": 30, "detected": 30}},
            "recall_by_kind_severity": {"far_tail@6": {"n": 40, "detected": 40}}}


@pytest.fixture
def run_root(tmp_path):
    root = tmp_path / "results"
    rid = "glance-run"
    d = root / rid
    exps = {e: {"completed_units": [f"r{r}/{p}" for r in range(3) for p in PLATFORMS], "failures": {},
                "state": "complete"} for e in ("drift", "outlier", "explain")}
    atomic_write_json(d / "run.json", {
        "schema": RUN_SCHEMA, "run_id": rid, "created_at": 1.8e9, "state": "complete", "backend": "local",
        "platforms": list(PLATFORMS), "repeats": 3, "seed": 11, "seeds": {}, "experiments": exps,
        "artifact": {"name": "reference-classifier", "sha256": SHA}, "hardware": {}, "versions": {}})
    for p in PLATFORMS:
        mech = "add-on" if p == "kserve" else "native"
        for r in range(3):
            base = dict(platform=p, backend="local", artifact_sha256=SHA, run_id=rid, repeat=r, mechanism=mech,
                        evidence={"seed": 11 + r})
            write(Result(probe="drift", verdict="detected", scores=_drift_scores(p, r), **base), d, "drift")
            write(Result(probe="outlier", verdict="detected", scores=_outlier_scores(r), **base), d, "outlier")
            write(Result(probe="explain", verdict="pass", scores={
                "max_abs_error": 2e-9 * (r + 1), "additivity_error": 1e-12, "sign_agreement": 1.0,
                "rank_agreement": 1.0, "topk_agreement": 1.0, "values_compared": 420, "tolerance": 0.01},
                measurements={"latencies_s": [0.010 * (r + 1), 0.020 * (r + 1)]},
                **{**base, "evidence": {**base["evidence"], "rows_per_request": 5}}), d, "explain")
    return root


def cells(built):
    return {system["id"]: c for system, c in built["report"].matrices[0].rows}


def test_drift_cells_pool_counts_and_apply_the_detection_rule(run_root, tmp_path):
    built = report.build(run_root, [], tmp_path / "out")
    ks, sd = cells(built)["kserve"]["drift"], cells(built)["seldon"]["drift"]
    fpr = stats.clopper_pearson(6, 120)
    assert ks.lines[0] == f"FPR (control windows) {fpr.text(3)}"
    # kserve: mean shift 0.3 alarmed 12/15 (lower bound 0.52 > FPR upper 0.106): detected; 0.6 18/18 (lower bound
    # 0.81) reliable. 15/15 would not be: its lower bound is 0.78.
    assert any(line.startswith("mean_shift: detected from 0.3, power >= 0.8 from 0.6") for line in ks.lines)
    assert any(line.startswith("correlation: undetected at every magnitude") for line in ks.lines)
    assert ks.headline == f"mean shift ≥0.6 sd: power {stats.clopper_pearson(18, 18).text()}"
    assert ks.method == "n=3 repeats pooled; Clopper-Pearson 95%" and ks.tag == "add-on"
    # The delay is over detected streams only (mean shift 0.3 and 0.6: 2 per repeat), not the lone 1.2 alarms.
    assert any(line.startswith("delay over 6 detected streams: median 170 rows") for line in ks.lines)
    assert "windows mixing streams: 9/240" in sd.lines
    assert sd.headline.startswith("mean shift ≥0.6 sd")


def test_outlier_and_explain_cells(run_root, tmp_path):
    built = report.build(run_root, [], tmp_path / "out")
    out = cells(built)["kserve"]["outlier"]
    assert out.headline == f"recall {stats.clopper_pearson(240, 300).text()}"
    assert "bound at this FPR and base rate 0.050" in out.lines[1]
    assert "impossible_segment 0.33" in out.lines[3]
    ex = cells(built)["seldon"]["explainability"]
    assert ex.headline == "max |err| 6e-09 vs exact" and ex.method.startswith("n=3 repeats, 1260 values")
    # Explanation latency pools the six timed requests: 10, 20, 20, 40, 30, 60 ms -> median 25 ms.
    lat = stats.median_summary([0.01, 0.02, 0.02, 0.04, 0.03, 0.06])
    assert ex.lines[2] == (f"latency p50 25 ms [{lat.lo * 1000:.0f}, {lat.hi * 1000:.0f}] per request of 5 rows "
                          f"(n=6 requests, 3 repeats pooled, {stats.BOOTSTRAP})")


def test_markdown_leads_with_the_compact_matrix_and_has_methods(run_root, tmp_path):
    built = report.build(run_root, [], tmp_path / "out")
    md = built["markdown"].read_text()
    assert md.index("## At a glance") < md.index("## Details by criterion") < md.index("## Methods")
    row = next(line for line in md.splitlines() if line.startswith("| KServe |"))
    assert "glance-run" not in row  # run ids live in the detail sections
    assert "Clopper-Pearson" in md and "hash of (run seed, repeat, stream kind, magnitude)" in md
    amazon = next(line for line in md.splitlines() if line.startswith("| Amazon SageMaker"))
    assert "not measurable here" in amazon


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html: Path, png: Path, width: int = 1600, height: int = 1000) -> None:
    """Render a page with Debian's chromium, headless, in a fresh profile; the PNG is what a reader sees first."""
    binary = chromium()
    if binary is None:
        pytest.fail("chromium is not installed: `apt-get install chromium` (make setup does this); the report "
                    "is checked as a reader sees it")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                               f"--window-size={width},{height}", html.as_uri()],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]


def _png_pixels(png: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(str(png))[:, :, :3]


def test_the_html_renders_with_the_matrix_on_the_first_screen(run_root, tmp_path):
    built = report.build(run_root, [], tmp_path / "out")
    png = tmp_path / "out" / "report.png"
    screenshot(built["html"], png)
    px = _png_pixels(png)
    assert px.shape[:2] == (1000, 1600)
    # The measured cells' green (#dff3df), the documented blue-grey (#e8eef6) and the hatched grey of cells not
    # measurable here are all on the first screen: the matrix leads the page.
    def share(rgb):
        return float(np.mean(np.all(np.abs(px - np.array(rgb) / 255) < 0.02, axis=2)))
    assert share((0xdf, 0xf3, 0xdf)) > 0.01, "no measured (green) cell on the first screen"
    assert share((0xe8, 0xee, 0xf6)) > 0.01, "no documented (blue-grey) cell on the first screen"
    assert share((0xe9, 0xe9, 0xe9)) + share((0xf4, 0xf4, 0xf4)) > 0.002, "no not-measurable (hatched) cell"
    text = built["html"].read_text()
    assert text.index("At a glance") < text.index("Details by criterion") < text.index("id='methods'")
    json.dumps(str(png))  # the path is kept in the test's tmp dir for a human look


def test_methods_show_the_newest_reference_variance_record(run_root, tmp_path):
    record = {"schema": "testbed.reference_variance/v1", "run_id": "reference-variance-x", "seed": 5, "references": 20,
              "reference_rows": 2000, "windows_per_condition": 40, "window_rows": 200,
              "conditions": [{"condition": "control", "rate": 0.045, "lo": 0.032, "hi": 0.062, "n": 800,
                              "sd_between_references": 0.038, "sd_binomial_alone": 0.033, "p_value_homogeneous": 0.16,
                              "deployed_reference": {"rate": 0.075}}]}
    atomic_write_json(run_root / "reference-variance-x" / "reference_variance.json", record)
    built = report.build(run_root, [], tmp_path / "out")
    md = built["markdown"].read_text()
    assert "control: 0.045 [0.032, 0.062] over 800 windows" in md
    assert "reference-variance-x" not in [rid for rid, _ in built["skipped"]]  # not a run, not a warning


def test_load_and_monitoring_headlines():
    from testbed.report import criteria

    cell = {"size": 20, "factor": 0.5, "rate": 28.0, "rows_lost": 0, "rows_ok": 2240, "verdicts_missing": 0,
            "windows_mixing_streams": 11, "drift_windows": 11, "verdict_delay_p99_s": 1.39, "window_rows_median": 200.0,
            "verdict_delay_p50_s": 0.55, "verdict_delay_p50_s_ci": [0.23, 0.74], "verdicts_timed": 112,
            "with_detection_p50_ms": 28.0, "without_detection_p50_ms": 21.0}
    load = Result(probe="detection-load", platform="seldon", backend="local", artifact_sha256=SHA, verdict="measured",
                  measurements={"cells": [cell, {**cell, "size": 7, "window_rows_median": 70.0}]}, repeat=0)
    outage = Result(probe="detector-outage-onset", platform="seldon", backend="local", artifact_sha256=SHA,
                    verdict="alarmed", scores={"unavailable_s": 26.2, "statuses_during_outage": {"200": 46},
                                               "requests_unseen_during_outage": 46, "requests_during_outage": 46,
                                               "alarmed_after_onset": True, "drift_alarm_delay_s": 27.4}, repeat=0)
    lines, head, method = criteria.load_lines([load, outage])
    assert head == "verdict p50 0.55 s [0.23, 0.74] at x0.5, 20 rows; lost 0/4480 rows"
    assert method.startswith("n=1 repeat(s), 112 verdicts")
    assert any("7 rows x0.5" in line and "window rows [70.0]" in line for line in lines)
    assert any(line.startswith("detector down at onset (26.2 s") for line in lines)
    mon = [Result(probe="monitoring", platform="kserve", backend="local", artifact_sha256=SHA, verdict="pass",
                  scores={"signals_exposed": 5, "coverage": 5 / 7}, measurements={"signals": dict.fromkeys("abcdefg")},
                  repeat=r) for r in range(3)]
    c = criteria.measured_cell(criteria.BY_KEY["monitoring"], mon, {})
    assert c.headline == "5/7 signals move with traffic" and c.method == "n=3 repeats, all agree"
