"""The `probe` verb's plumbing without a server: registry, context from status, user CSV checks."""

import pytest

from probes import registry, userdata
from testbed import errors
from testbed_cli import run_testbed as run_cli

FEATURES = ["x0", "x1", "x2", "x3", "x4", "x5", "segment"]


def test_probe_against_a_stopped_testbed_says_so(tmp_path):
    proc = run_cli("probe", "monitoring", state_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert "is not running" in proc.stderr and "testbed up" in proc.stderr


def test_unknown_probe_is_named(tmp_path):
    proc = run_cli("probe", "latency-ish", state_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert "'latency-ish'" in proc.stderr and "monitoring" in proc.stderr


def test_data_flag_for_a_probe_that_does_not_read_it(tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text(",".join(FEATURES) + "\n" + ",".join(["0"] * 7) + "\n")
    proc = run_cli("probe", "monitoring", "--data", str(csv), state_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert "--data is read only by the drift and outlier probe(s)" in proc.stderr


def test_a_reference_belongs_to_up_not_to_a_probe(tmp_path):
    # Detectors fitted on one reference judged a user's REF and CUR against it: every window alarmed (issue 14).
    proc = run_cli("probe", "drift", "--reference", "ref.csv", "--data", "cur.csv", state_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert "up --model MODEL --reference REF.csv" in proc.stderr and "probe drift --data CUR.csv" in proc.stderr


def test_missing_probe_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(registry.PROBES, "ghost", "probes.ghost_probe_that_does_not_exist")
    with pytest.raises(errors.ProbeUnavailable, match="not installed in this checkout"):
        registry.load("ghost")
    assert callable(registry.load("monitoring").run)
    assert registry.expand("all") == [p for p in registry.PROBES if p not in registry.FAULTS]


def status(**platform_states):
    return {"backend": "local", "state": "degraded", "model": {"path": "/nonexistent"},
            "prometheus": {"state": "ready", "url": "http://127.0.0.1:1"},
            "platforms": {n: {"state": s, "endpoint": {"platform": n}} for n, s in platform_states.items()}}


def test_context_refuses_a_platform_that_is_not_up():
    with pytest.raises(errors.PlatformNotUp, match="'seldon' is not up.*state: dead.*ready platforms: kserve"):
        registry.context_from_status(status(kserve="ready", seldon="dead"), None)
    with pytest.raises(errors.PlatformNotUp, match="not part of this testbed"):
        registry.context_from_status(status(kserve="ready"), ("rayserve",))


def test_context_refuses_a_stopped_testbed_and_a_dead_prometheus():
    with pytest.raises(errors.NotRunning):
        registry.context_from_status({"backend": "local", "state": "stopped", "platforms": {}}, None)
    dead = status(kserve="ready")
    dead["prometheus"]["state"] = "dead"
    with pytest.raises(errors.NotRunning, match="Prometheus"):
        registry.context_from_status(dead, None)


def test_for_probe_passes_only_the_data_a_probe_reads(tmp_path):
    from probes.context import ProbeContext

    ctx = ProbeContext(endpoints={}, prometheus=None, artifact=None, backend="local",
                       options={"data_csv": "d.csv", "truth_csv": "t.csv", "scrape_interval_s": 2.0})
    assert registry.for_probe(ctx, "outlier").options == ctx.options
    assert registry.for_probe(ctx, "drift").options == {"data_csv": "d.csv", "scrape_interval_s": 2.0}
    assert registry.for_probe(ctx, "monitoring").options == {"scrape_interval_s": 2.0}


def write(path, text):
    path.write_text(text)
    return path


def test_user_rows_are_checked_against_the_model_features(tmp_path):
    from testbed.tabular import Feature

    typed = [Feature(n, "float64", "numeric") for n in FEATURES[:-1]] + [Feature("segment", "int64", "categorical",
                                                                                 (0, 1, 2, 3))]
    good = write(tmp_path / "ok.csv", ",".join(FEATURES) + "\n" + "1,2,3,4,5,6,0\n0,0,0,0,0,0,1\n")
    assert userdata.read_rows(good, typed).shape == (2, 7)
    # columns are matched by name, in any order, and come back in the model's order
    swapped = write(tmp_path / "swapped.csv", ",".join(FEATURES[::-1]) + "\n" + "1,2,3,4,5,6,0\n")
    assert userdata.read_rows(swapped, typed).tolist() == [[0, 6, 5, 4, 3, 2, 1]]
    wrong = write(tmp_path / "wrong.csv", "a,b\n1,2\n")
    with pytest.raises(errors.UserDataError, match="lacks the model's feature.*x0.*does not take: a, b"):
        userdata.read_rows(wrong, typed)
    with pytest.raises(errors.UserDataError, match="zero data rows"):
        userdata.read_rows(write(tmp_path / "empty.csv", ",".join(FEATURES) + "\n"), typed)
    with pytest.raises(errors.UserDataError, match="line 3, column 'x2': 'x' is not a number"):
        userdata.read_rows(write(tmp_path / "text.csv", ",".join(FEATURES) + "\n1,2,3,4,5,6,0\n1,2,x,4,5,6,0\n"),
                           typed)
    with pytest.raises(errors.UserDataError, match="no such file"):
        userdata.read_rows(tmp_path / "absent.csv", typed)


def test_truth_is_one_binary_column_per_data_row(tmp_path):
    assert userdata.read_truth(write(tmp_path / "t.csv", "is_outlier\n0\n1\n"), 2).tolist() == [0, 1]
    with pytest.raises(errors.UserDataError, match="3 labels but the data file has 2 rows"):
        userdata.read_truth(write(tmp_path / "t3.csv", "y\n0\n1\n1\n"), 2)
    with pytest.raises(errors.UserDataError, match="must be 0 or 1"):
        userdata.read_truth(write(tmp_path / "t2.csv", "y\n0\n2\n"), 2)
    with pytest.raises(errors.UserDataError, match="exactly one column"):
        userdata.read_truth(write(tmp_path / "tw.csv", "a,b\n0,1\n"), 1)
