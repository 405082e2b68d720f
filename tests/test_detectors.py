"""The saved detectors (alibi-detect, in their own venv through a subprocess) and the probes' bad input.

alibi-detect is not in the orchestrator's venv, so detectors run in the `detectors` runtime venv
(built by the project's own code, reused while its spec is unchanged), as they do in the testbed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from probes import drift, outlier, scoring
from probes.context import ProbeContext
from probes.scenarios import control_stream, drift_stream, outlier_stream
from testbed import artifact as artifact_mod
from testbed import detectors
from testbed.backends.local import envs, processes
from testbed.endpoint import Endpoint
from testbed.errors import DetectorMismatch, EmptyScenario, UserDataError
from testbed.population import Population
from testbed.prometheus import PrometheusClient
from testbed.settings import Settings

SETTINGS = Settings()
# The detectors run in their own runtime environment, which these tests build (once) and use.
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fitted():
    art = artifact_mod.ensure(SETTINGS.artifacts_dir, SETTINGS.artifact_seed)
    return art, detectors.ensure(art, SETTINGS.envs_dir)


RUN_DETECTORS = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import detectors_io
    meta, od, cd = detectors_io.load(sys.argv[2], sys.argv[3], 7)
    out = {}
    for name in ("control", "shift"):
        x = np.load(f"{sys.argv[4]}/{name}.npy")
        w = detectors_io.DriftWindows(cd, meta["drift"]["window_rows"], meta["feature_names"])
        verdicts = []
        for i in range(0, len(x), 20):
            verdicts += w.add(x[i:i + 20], f"{name}/{i}")
        out[name] = [v["is_drift"] for v in verdicts]
    x = np.load(f"{sys.argv[4]}/outliers.npy")
    out["flags"] = sum((detectors_io.outlier_verdict(od, x[i:i + 20], i)["flags"] for i in range(0, len(x), 20)), [])
    print(json.dumps(out))
""")


def test_saved_detectors_fire_on_a_large_shift_and_not_on_control(fitted, tmp_path):
    art, det = fitted
    pop = Population(SETTINGS.artifact_seed)
    np.save(tmp_path / "control.npy", control_stream(pop, 4000, seed=21).rows)
    np.save(tmp_path / "shift.npy", drift_stream(pop, "mean_shift", 1.5, n=600, onset=0, seed=22).rows)
    planted = outlier_stream(pop, 2000, seed=23)
    np.save(tmp_path / "outliers.npy", planted.rows)
    python = envs.python_of(envs.ensure(detectors.ENV, SETTINGS.envs_dir))
    proc = subprocess.run([str(python), "-c", RUN_DETECTORS, str(detectors.RUNTIMES_DIR), str(det.path), art.sha256,
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["control"]) == 20 and len(out["shift"]) == 3
    assert out["shift"] == [1, 1, 1], "a 1.5-sd mean shift must raise an alarm on every window"
    p_val = det.metadata["drift"]["p_val"]
    assert sum(out["control"]) <= scoring.binomial_upper(20, p_val), out["control"]
    s = scoring.classification(out["flags"], planted.is_outlier)
    assert s["recall"] >= 0.8 and s["precision"] >= 0.6, s
    assert s["fpr"] <= 0.03, s  # the threshold is the reference's 99th percentile


def test_detector_artifact_must_match_the_model(fitted, tmp_path):
    art, det = fitted
    assert detectors.verify(det.path, art).metadata["model_sha256"] == art.sha256
    for field, value, message in (("model_sha256", "0" * 64, "fitted for model sha256 000000000000"),
                                  ("n_features", 6, "expects 6 features")):
        copy = tmp_path / field
        shutil.copytree(det.path, copy)
        meta = json.loads((copy / "metadata.json").read_text())
        meta[field] = value
        (copy / "metadata.json").write_text(json.dumps(meta))
        with pytest.raises(DetectorMismatch, match=message):
            detectors.verify(copy, art)
    tampered = tmp_path / "tampered"
    shutil.copytree(det.path, tampered)
    (tampered / "outlier" / "detector.joblib").write_bytes(b"not a detector")
    with pytest.raises(DetectorMismatch, match="outlier/detector.joblib is missing or does not match"):
        detectors.verify(tampered, art)


def test_detector_service_refuses_a_mismatched_artifact(fitted, tmp_path):
    art, det = fitted
    python = envs.python_of(envs.ensure(detectors.ENV, SETTINGS.envs_dir))
    proc = subprocess.run([str(python), str(detectors.RUNTIMES_DIR / "detector_service.py"), "--detectors",
                           str(det.path), "--port", str(processes.free_port()), "--model-sha256", "f" * 64,
                           "--n-features", "7"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert "fitted for model sha256" in proc.stdout and "ffffffffffff" in proc.stdout


def _ctx(art, endpoints, **options):
    return ProbeContext(endpoints=endpoints, prometheus=PrometheusClient(f"http://127.0.0.1:{processes.free_port()}"),
                        artifact=art, backend="local", seed=3, run_id="test", options=options)


def test_probes_against_a_platform_that_is_not_up_report_a_named_error(fitted):
    art, _ = fitted
    port = processes.free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/v2/models/{art.name}/infer"
    path = {"url": url, "label": "add-on", "verdicts_url": f"http://127.0.0.1:{port}/verdicts?platform=kserve",
            "prometheus_labels": {"platform": "kserve", "mechanism": "add-on"}, "request_rows": 20}
    down = Endpoint(platform="kserve", backend="local", base_url=f"http://127.0.0.1:{port}", model_name=art.name,
                    detection={"outlier": path, "drift": path})
    bare = Endpoint(platform="rayserve", backend="kind", base_url=f"http://127.0.0.1:{port}", model_name=art.name)
    ctx = _ctx(art, {"kserve": down, "rayserve": bare}, n=200, control_n=400, drift_n=400, onset=200,
               kinds=["mean_shift"], magnitudes={"mean_shift": [1.5]})
    for module in (outlier, drift):
        results = module.run(ctx)
        assert [r.platform for r in results] == ["kserve", "rayserve"]
        assert all(r.verdict == "error" for r in results)
        assert "DetectionPathDown" in results[0].evidence["error"] and "is unreachable" in results[0].evidence["error"]
        assert results[0].mechanism == "add-on"
        assert "names no detection path" in results[1].evidence["error"] and results[1].mechanism == "none"


def test_zero_sample_and_malformed_user_data_are_named_errors(fitted, tmp_path):
    art, _ = fitted
    header = ",".join(art.feature_names)
    empty = tmp_path / "empty.csv"
    empty.write_text(header + "\n")
    with pytest.raises(UserDataError, match="zero data rows"):
        outlier.scenario(_ctx(art, {}, data_csv=str(empty)))
    with pytest.raises(UserDataError, match="zero data rows"):
        drift.scenario(_ctx(art, {}, data_csv=str(empty)))
    with pytest.raises(EmptyScenario):
        outlier.scenario(_ctx(art, {}, n=0))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(UserDataError, match="lacks the model's feature"):
        outlier.scenario(_ctx(art, {}, data_csv=str(wrong)))
    good = tmp_path / "good.csv"
    good.write_text(header + "\n" + "\n".join(",".join(["0"] * 7) for _ in range(3)) + "\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("is_outlier\n0\n1\n")
    with pytest.raises(UserDataError, match="2 labels but the data file has 3 rows"):
        outlier.scenario(_ctx(art, {}, data_csv=str(good), truth_csv=str(truth)))
    truth.write_text("is_outlier\n0\n1\n0\n")
    s = outlier.scenario(_ctx(art, {}, data_csv=str(good), truth_csv=str(truth)))
    assert s.n == 3 and s.outlier_index.tolist() == [1]
    # the user's rows come after a control segment like the artifact's reference: one stream, onset at row 1000
    streams = drift.scenario(_ctx(art, {}, data_csv=str(good)))
    assert len(streams) == 1 and streams[0].n == drift.CONTROL_SEGMENT + 3 and streams[0].onset == drift.CONTROL_SEGMENT
    assert (streams[0].rows[drift.CONTROL_SEGMENT:] == 0).all()
