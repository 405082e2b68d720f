"""The report from a small stored result set (tests/data/results, written by tests/data/make_results.py):
exact cells, documented rows, plots, and the bad-input cases (older schema, missing/partial run,
mixed artifacts)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from testbed import report
from testbed.cli import main as cli_main
from testbed.errors import ReportError
from testbed.report.criteria import CRITERIA

DATA = Path(__file__).parent / "data" / "results"


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(DATA, root)
    return root


def cells_of(built, system_id):
    for system, cells in built["report"].matrices[0].rows:
        if system["id"] == system_id:
            return cells
    raise KeyError(system_id)


def test_measured_cells_are_exact(results, tmp_path):
    built = report.build(results, [], tmp_path / "out")
    assert built["runs"] == ["fixture-b", "fixture-a"]
    ks, sd = cells_of(built, "kserve"), cells_of(built, "seldon")
    # f1 [0.8, 0.9, 1.0]: mean 0.9, sd 0.1, t(2)=4.303 -> half width 0.248; clipped at 1 (a fraction).
    assert ks["outlier"].lines == ["F1 0.9 [0.652, 1] n=3; P 0.9 [0.9, 0.9] n=3; R 0.7 [0.452, 0.948] n=3",
                                   "detected 3/3 · add-on", "run fixture-a · local"]
    assert sd["outlier"].lines[0] == "F1 0.5 [0.5, 0.5] n=3; P 0.9 [0.9, 0.9] n=3; R 0.7 [0.452, 0.948] n=3"
    # fpr [0, 0.05, 0.1]: half width 0.124, clipped at 0.
    assert ks["drift"].lines[0] == "FPR 0.05 [0, 0.174] n=3; min. mean shift 0.5 [0.5, 0.5] n=3"
    assert ks["formats"].lines == ["user code: sklearn ✓; not served: onnx, xgboost", "n=3 repeats",
                                   "run fixture-a · local"]
    assert sd["formats"].lines[0] == "native: sklearn ✓, xgboost ✓; not served: onnx"
    assert ks["monitoring"].lines[0] == "coverage 0.75 [0.75, 0.75] n=3"
    # fixture-b was interrupted: its one finished unit is shown, marked PARTIAL.
    assert ks["explainability"].lines == ["top-k recall 1 (n=1); p50 s 0.04 (n=1)", "pass 1/1",
                                          "run fixture-b · local · PARTIAL"]
    assert ks["explainability"].partial
    assert sd["explainability"].kind == "documented"
    assert all(cells_of(built, "kserve")[c.key].kind == "documented" for c in CRITERIA if c.experiment is None)


def test_documented_rows_are_marked_and_sourced(results, tmp_path):
    built = report.build(results, [], tmp_path / "out")
    md = built["markdown"].read_text()
    for name in ("TF Serving", "Amazon SageMaker", "Azure ML", "Vertex AI", "Kubeflow (as a whole)"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} *(not measured)*"))
        documented = {k for s in report.load_documented()["systems"] for k in s["cells"]}
        assert row.count("*documented:*") == sum((c.documented_as or c.key) in documented for c in CRITERIA)
    # Registered platforms are measured rows; without results yet, their cells are their modules' documented ones.
    for name in ("BentoML", "MLflow", "TorchServe"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        assert "*documented:*" in row
    why = md.split("## Not measured, and why", 1)[1].split("\n## ", 1)[0]
    assert "**TF Serving**: Its server is the C++ binary tensorflow_model_server" in why and "SavedModel" in why
    assert "**Vertex AI**: a managed cloud service" in why
    seldon = next(line for line in md.splitlines() if line.startswith("- **Seldon Core**: "))  # in full
    assert "BSL-1.1 for Seldon Core v1 >= 1.18 and v2 >= 2.7" in seldon and "MLServer stays Apache-2.0" in seldon
    assert "alibi >= 0.9.5 and alibi-detect >= 0.11.5 are BSL-1.1" in md
    assert "https://www.seldon.io/resources/licensing-faqs" in md
    assert "Test CPU, 2 cores, 24.0 GB" in md and "kserve 0.20.0" in md and "backend: local" in md


def test_plots_drawn_and_inlined_in_html(results, tmp_path):
    built = report.build(results, [], tmp_path / "out")
    keys = {key: path for key, _, path, _ in built["report"].plots}
    assert all(keys[k] is not None and keys[k].stat().st_size > 1000 for k in
               ("drift_delay", "outlier_pr", "coverage", "latency_cdf"))
    page = built["html"].read_text()
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r"<img[^>]+src=['\"](?!data:)", page), "HTML must not reference external images"


def test_documented_only_when_no_run(tmp_path):
    built = report.build(tmp_path / "empty", [], tmp_path / "out")
    assert built["runs"] == []
    md = built["markdown"].read_text()
    assert "documented rows only" in md
    assert "(documented; not measured yet)" in md
    # Criteria no system documents (detection under load) are pending on the measured platforms, never blank.
    assert all(c.kind in ("documented", "pending", "none") for _, cells in built["report"].matrices[0].rows
               for c in cells.values())
    assert {c.kind for system, cells in built["report"].matrices[0].rows if system.get("measured_platform")
            for c in cells.values()} == {"documented", "pending"}


def test_named_runs_and_cli(results, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["report", "fixture-a", "--results-dir", str(results), "--out", str(out)]) == 0
    assert "runs: fixture-a" in capsys.readouterr().out
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


def test_missing_run_is_refused(results, tmp_path):
    with pytest.raises(ReportError, match="there is no run 'nope'.*fixture-a"):
        report.build(results, ["nope"], tmp_path / "out")
    assert cli_main(["report", "nope", "--results-dir", str(results), "--out", str(tmp_path / "o")]) == 2


def test_run_without_run_json_is_refused_and_skipped(results, tmp_path):
    (results / "fixture-a" / "run.json").unlink()
    with pytest.raises(ReportError, match="has no run.json"):
        report.build(results, ["fixture-a"], tmp_path / "out")
    built = report.build(results, [], tmp_path / "out")
    assert built["runs"] == ["fixture-b"]
    assert [rid for rid, _ in built["skipped"]] == ["fixture-a"]
    assert "- run fixture-a not used: Report: run 'fixture-a' has no run.json" in built["markdown"].read_text()


def test_older_result_schema_is_refused(results, tmp_path):
    path = results / "fixture-a" / "outlier" / "outlier-kserve-r0.json"
    data = json.loads(path.read_text())
    data["schema"] = "testbed.result/v0"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match="result schema 'testbed.result/v0'.*Re-run"):
        report.build(results, ["fixture-a"], tmp_path / "out")


def test_older_run_schema_is_refused(results, tmp_path):
    path = results / "fixture-a" / "run.json"
    data = json.loads(path.read_text())
    data["schema"] = "testbed.run/v0"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match="schema 'testbed.run/v0'.*older testbed"):
        report.build(results, ["fixture-a"], tmp_path / "out")


def _other_artifact(results):
    shutil.copytree(results / "fixture-b", results / "fixture-c")
    for path in (results / "fixture-c").rglob("*.json"):
        data = json.loads(path.read_text())
        if "artifact" in data:
            data["artifact"]["sha256"] = "b" * 64
            data["created_at"] += 100
            data["run_id"] = "fixture-c"
        else:
            data["artifact_sha256"], data["run_id"] = "b" * 64, "fixture-c"
        path.write_text(json.dumps(data))


def test_runs_of_different_artifacts_refused_or_shown_apart(results, tmp_path):
    _other_artifact(results)
    with pytest.raises(ReportError, match="different model artifacts.*fixture-a: aaaaaaaaaaaa; fixture-c: bbbbbbbbbbbb"):
        report.build(results, ["fixture-a", "fixture-c"], tmp_path / "out")
    built = report.build(results, ["fixture-a", "fixture-c"], tmp_path / "out", by_artifact=True)
    assert [m.title for m in built["report"].matrices] == ["artifact aaaaaaaaaaaa", "artifact bbbbbbbbbbbb"]
    # Picked automatically: the newest run's artifact wins, the other is listed as not used.
    auto = report.build(results, [], tmp_path / "auto")
    assert auto["runs"] == ["fixture-c"]
    assert {rid for rid, _ in auto["skipped"]} == {"fixture-a", "fixture-b"}


def test_result_artifact_differing_from_its_run_is_refused(results, tmp_path):
    path = results / "fixture-a" / "parity" / "parity-seldon-r2.json"
    data = json.loads(path.read_text())
    data["artifact_sha256"] = "c" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match="mixes artifacts"):
        report.build(results, ["fixture-a"], tmp_path / "out")


def test_exporter_exports_the_report_numbers(results):
    from testbed.exporter import collect_values, registry_for
    from prometheus_client import generate_latest

    values, runs, skipped = collect_values(results)
    assert (runs, skipped) == (2, 0)
    got = {(l["experiment"], l["platform"], l.get("score"), suffix): v for l, suffix, v in values}
    assert got[("outlier", "kserve", "f1", "score")] == pytest.approx(0.9)
    assert got[("outlier", "kserve", "f1", "score_ci_low")] == pytest.approx(0.6516, abs=1e-4)
    assert got[("outlier", "kserve", "f1", "score_ci_high")] == 1.0
    assert got[("outlier", "kserve", None, "repeats")] == 3
    text = generate_latest(registry_for(results)).decode()
    assert 'testbed_probe_verdict{backend="local",experiment="outlier",platform="kserve",probe="outlier",' \
           'run_id="fixture-a",verdict="detected"} 3.0' in text
    assert "testbed_results_read_error 0.0" in text


def test_intervals_of_bounded_scores_stay_in_their_range():
    from testbed.report.criteria import interval, mean_ci

    growth = [61.6, 427.0, 691.0]  # faults-r4's KServe p99 growth: the raw t-interval dips below 0
    assert mean_ci(growth)[1] < 0
    m, lo, hi = interval(growth, "latency_growth_p99")
    assert lo == 0.0 and hi == mean_ci(growth)[2] and m == mean_ci(growth)[0]
    _, lo, hi = interval([0.2, 0.166, 0.285, 0.9], "error_rate")
    assert 0.0 <= lo and hi <= 1.0
    assert interval([-1.0, 1.0, 3.0], "some_signed_score")[1] < 0  # others are left as measured
    # the ease cell's time to ready: a first start of 32 s and two of 9 s gave 16.8 [-16.2, 49.9] s
    assert interval([32.19, 8.8, 9.48], "ready_s")[1] == 0.0


def test_a_users_model_is_titled_by_name_and_platforms_that_could_not_serve_it_say_why(results, tmp_path):
    """A run on a user's model (`up --model`): the matrix names the model, and a platform skipped for its format
    shows 'not served' with the reason in every measured criterion, not 'not measured yet'."""
    run = json.loads((results / "fixture-a" / "run.json").read_text())
    run["artifact"].update(origin="user", name="credit", format="onnx", task="classification")
    run["skipped_platforms"] = {"rayserve": "rayserve cannot serve the onnx model credit: no runtime. What would "
                                            "work: the model in scikit-learn form"}
    (results / "fixture-a" / "run.json").write_text(json.dumps(run))
    built = report.build(results, ["fixture-a"], tmp_path / "out")
    matrix = built["report"].matrices[0]
    assert matrix.title.startswith("your model credit: onnx classification, artifact ")
    ray = cells_of(built, "rayserve")
    assert ray["outlier"].kind == "pending" and ray["outlier"].lines[0].startswith("not served: rayserve cannot")
    md = built["markdown"].read_text()
    assert "your model credit" in md and "not served" in md


def test_a_probe_run_shows_its_cells_marked_n1_and_its_plots(tmp_path):
    """What `python -m testbed probe explain` writes (the harness's layout and run.json, one repeat) is shown
    as measured cells marked as one run, and feeds the latency CDF (explanation latencies)."""
    from testbed.experiment import Run
    from testbed.results import Result, write

    root, sha = tmp_path / "results", "a" * 64
    run = Run.create(root, "probe-x", {"kind": "probe", "backend": "local", "platforms": ["kserve"], "repeats": 1,
                                       "seed": 0, "artifact": {"name": "m", "sha256": sha}})
    run.experiment("explain")["completed_units"] = ["r0/kserve"]
    run.data["state"] = "complete"
    run.save()
    write(Result(probe="explain", platform="kserve", backend="local", artifact_sha256=sha, verdict="pass",
                 scores={"topk_recall": 1.0, "latency_p50_s": 0.04}, measurements={"latencies_s": [0.04, 0.05, 0.2]},
                 mechanism="add-on", run_id="probe-x"), run.dir, "explain")
    built = report.build(root, [], tmp_path / "out")
    cell = cells_of(built, "kserve")["explainability"]
    assert cell.kind == "measured"
    assert cell.lines == ["top-k recall 1 (n=1); p50 s 0.04 (n=1)", "pass 1/1 · add-on",
                          "run probe-x · local · n=1: one run, no interval"]
    plots = {key: (path, reason) for key, _, path, reason in built["report"].plots}
    assert plots["latency_cdf"][0] is not None and plots["latency_cdf"][0].is_file()
    assert "no column in the matrix" not in built["markdown"].read_text()


def _perf_result(probe, platform, verdict, scores, mechanism, repeats=3):
    from testbed.results import Result

    return Result(probe=probe, platform=platform, backend="local", artifact_sha256="a" * 64, verdict=verdict,
                  scores=scores, mechanism=mechanism, run_id="perf-x", evidence={"repeats": repeats})


def test_the_batching_cell_shows_the_performance_experiments_own_intervals_and_the_batching_mechanism():
    """The performance experiment writes one Result per platform and probe that pools its repeats with its own
    bootstrap interval (or min-max range): the cell shows that interval, not 'n=1, no interval'; its tag is the
    batching Result's mechanism (overhead and offline Results carry mechanisms of their own)."""
    from testbed.report.criteria import BY_KEY, measured_cell

    batching = BY_KEY["batching"]
    meta = {"perf-x": {"repeats": 3, "partial_experiments": {}}}
    torchserve = [
        _perf_result("batching", "torchserve", "supported", {"peak_gain": 3.2, "peak_gain_ci": [2.5, 4.0]}, "native"),
        _perf_result("overhead", "torchserve", "measured", {"ratio_p50": 40.0, "ratio_p50_ci": [35.0, 47.0]}, "native"),
        _perf_result("offline", "torchserve", "measured",
                     {"v2_rows_per_s": 9e4, "v2_rows_per_s_range": [8e4, 1e5]}, "none"),
        _perf_result("cost", "torchserve", "measured", {"cost_per_million": 0.02}, None)]
    cell = measured_cell(batching, torchserve, meta)
    assert cell.headline == "batching gain 3.2 [2.5, 4]"
    assert cell.method == "95% bootstrap over 3 repeats pooled in one run"
    assert cell.tag == "native"
    text = "\n".join(cell.lines)
    assert "overhead x 40 [35, 47] (95% bootstrap over 3 repeats pooled in one run)" in text
    assert "offline rows/s (V2) 9e+04 [8e+04, 1e+05] (min-max over 3 repeats pooled in one run)" in text
    assert "cost / 1M 0.02 (one value pooled over 3 repeats; no interval)" in text

    mlflow = [_perf_result("batching", "mlflow", "not available", {"peak_gain": None}, "none"),
              _perf_result("overhead", "mlflow", "measured",
                           {"ratio_p50": 30.0, "ratio_p50_ci": [29.0, 31.0], "ratio_p50_with_adapter": 31.5}, "native")]
    cell = measured_cell(batching, mlflow, meta)
    assert cell.headline == "batching gain: not available" and cell.tag == "none"
    assert "overhead x with the client-side adapter 31.5" in "\n".join(cell.lines)


def test_a_newer_run_on_some_platforms_replaces_only_their_results(results, tmp_path):
    """Picked automatically, the newest result per experiment and platform: a monitoring re-run on kserve alone
    (a machine that holds a few platforms at a time) must not hide seldon's monitoring cell of an older run."""
    newer = results / "fixture-d"
    shutil.copytree(results / "fixture-a", newer)
    for path in newer.rglob("*.json"):
        data = json.loads(path.read_text())
        if path.name == "run.json":
            data.update(run_id="fixture-d", created_at=data["created_at"] + 500, platforms=["kserve"],
                        experiments={"monitoring": {**data["experiments"]["monitoring"],
                                                    "completed_units": ["r0/kserve", "r1/kserve", "r2/kserve"]}})
        elif path.parent.name != "monitoring" or data["platform"] != "kserve":
            path.unlink()
            continue
        else:
            data["run_id"] = "fixture-d"
        path.write_text(json.dumps(data))
    built = report.build(results, [], tmp_path / "out")
    assert built["runs"] == ["fixture-d", "fixture-b", "fixture-a"]
    assert cells_of(built, "kserve")["monitoring"].runs == ["fixture-d"]
    assert cells_of(built, "seldon")["monitoring"].runs == ["fixture-a"]
    assert cells_of(built, "kserve")["outlier"].runs == ["fixture-a"]
