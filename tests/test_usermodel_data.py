"""A user's model and data without a runtime: model files by their bytes, reference CSVs streamed and typed,
columns matched to the model, scenarios with known truth from held-out rows, parity of labels and values,
which platform serves which format. Pure: no environment is built and no model is loaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from probes import parity, shapley
from probes import userscenarios as us
from testbed import modelfile, tabular, usermodel
from testbed.errors import UserDataError, UserModelError
from testbed.heldout import HeldOut
from testbed.tabular import CATEGORICAL, NUMERIC, Feature


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- model files -------------------------------------------------------------------------------------
HEADS = {
    "pickle": b"\x80\x04\x95\x10\x00\x00\x00",
    "zlib": b"\x78\x5e\x01\x02",
    "xgb-json": b'{"learner":{"attributes":{}',
    "xgb-ubj": b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{",
    "lgb": b"tree\nversion=v4\nnum_class=1\n",
    "onnx": b"\x08\x08\x12\x07skl2onnx\x1a\x04",
    "zip": b"PK\x03\x04\x14\x00",
    "text": b"id,a,b\n1,2,3\n",
}


@pytest.mark.parametrize("head,fmt", [("pickle", "sklearn"), ("zlib", "sklearn"), ("xgb-json", "xgboost"),
                                      ("xgb-ubj", "xgboost"), ("lgb", "lightgbm"), ("onnx", "onnx"),
                                      ("zip", None), ("text", None)])
def test_model_files_are_known_by_their_first_bytes(head, fmt):
    assert modelfile.sniff(HEADS[head])[0] == fmt


def test_a_model_file_that_is_not_what_its_extension_says_is_refused(tmp_path):
    pickled = write(tmp_path / "model.onnx", "")
    pickled.write_bytes(HEADS["pickle"] + b"rest")
    with pytest.raises(UserModelError, match=r"extension \.onnx says an ONNX model, but it looks like a pickle.*"
                                             r"\.joblib or \.pkl"):
        modelfile.identify(pickled)
    csv_as_model = tmp_path / "model.joblib"
    csv_as_model.write_bytes(HEADS["text"])
    with pytest.raises(UserModelError, match="looks like text, not a model file"):
        modelfile.identify(csv_as_model)
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(UserModelError, match="empty"):
        modelfile.identify(tmp_path / "empty.pkl")
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(UserModelError, match="extension '.h5' names no format.*HDF5"):
        modelfile.identify(tmp_path / "model.h5")
    ubj_named_json = tmp_path / "m.json"
    ubj_named_json.write_bytes(HEADS["xgb-ubj"])
    with pytest.raises(UserModelError, match="UBJSON; name it .ubj"):
        modelfile.identify(ubj_named_json)
    ok = tmp_path / "m.txt"
    ok.write_bytes(HEADS["lgb"])
    found = modelfile.identify(ok)
    assert (found.format, found.artifact_name, found.runs_code_when_loaded) == ("lightgbm", "model.bst", False)
    pkl = tmp_path / "m.pkl"
    pkl.write_bytes(HEADS["pickle"])
    assert modelfile.identify(pkl).runs_code_when_loaded


# --- reference CSVs ----------------------------------------------------------------------------------
def test_reference_csvs_are_checked_row_by_row(tmp_path):
    with pytest.raises(UserDataError, match="empty \\(0 bytes\\)"):
        tabular.read_csv(write(tmp_path / "e.csv", ""))
    with pytest.raises(UserDataError, match="zero data rows"):
        tabular.read_csv(write(tmp_path / "h.csv", "a,b\n"))
    with pytest.raises(UserDataError, match="line 3, column 'b': missing value \\('NaN'\\).*impute or drop"):
        tabular.read_csv(write(tmp_path / "n.csv", "a,b\n1,2\n3,NaN\n"))
    with pytest.raises(UserDataError, match="line 2, column 'a': missing value \\(''\\)"):
        tabular.read_csv(write(tmp_path / "m.csv", "a,b\n,2\n"))
    with pytest.raises(UserDataError, match="line 2, column 'b': infinite"):
        tabular.read_csv(write(tmp_path / "i.csv", "a,b\n1,inf\n"))
    with pytest.raises(UserDataError, match="line 3 has 3 fields, the header has 2"):
        tabular.read_csv(write(tmp_path / "f.csv", "a,b\n1,2\n1,2,3\n"))
    with pytest.raises(UserDataError, match="names a more than once"):
        tabular.read_csv(write(tmp_path / "d.csv", "a,a\n1,2\n"))
    with pytest.raises(UserDataError, match="all numbers: the file needs a header row"):
        tabular.read_csv(write(tmp_path / "nh.csv", "1,2\n3,4\n"))
    (tmp_path / "bin.csv").write_bytes(b"a,b\n\xff\xfe\x00\x01\n")
    with pytest.raises(UserDataError, match="not UTF-8 text"):
        tabular.read_csv(tmp_path / "bin.csv")


def test_a_2gb_file_is_refused_with_its_size_without_being_read(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:  # sparse: no disk is used, and nothing may read it
        fh.truncate(2 * 1024 ** 3)
    with pytest.raises(UserDataError, match=r"it is 2\.0 GiB, larger than the 512\.0 MiB.*shuf -n"):
        tabular.read_csv(big)


def test_a_large_reference_is_sampled_uniformly_and_reproducibly(tmp_path):
    rows = "\n".join(f"{i},{i % 7}" for i in range(5000))
    path = write(tmp_path / "r.csv", "a,b\n" + rows + "\n")
    t1 = tabular.read_csv(path, max_rows=500, seed=1)
    t2 = tabular.read_csv(path, max_rows=500, seed=1)
    assert t1.rows_read == 5000 and len(t1.rows) == 500 and t1.rows == t2.rows
    kept = np.array([int(r[0]) for r in t1.rows])
    assert kept.max() > 4000 and len(set(kept)) == 500  # not the first 500 rows
    assert all(int(r[0]) + 2 == line for r, line in zip(t1.rows, t1.line_of))


def test_columns_are_typed_from_the_data_or_as_declared(tmp_path):
    rng = np.random.default_rng(0)
    lines = [f"{rng.normal():.4f},{rng.integers(0, 4)},{rng.integers(18, 90)},{rng.choice(['red', 'blue'])}"
             for _ in range(200)]
    table = tabular.read_csv(write(tmp_path / "t.csv", "x,code,age,colour\n" + "\n".join(lines) + "\n"))
    f = {x.name: x for x in tabular.infer_schema(table, ["x", "code", "age", "colour"])}
    assert (f["x"].kind, f["x"].dtype) == (NUMERIC, "float64")
    assert (f["code"].kind, f["code"].categories) == (CATEGORICAL, (0, 1, 2, 3)) and "--numeric code" in f["code"].why
    assert f["age"].kind == NUMERIC  # 72 distinct whole numbers: a quantity
    assert (f["colour"].kind, f["colour"].dtype, f["colour"].categories) == (CATEGORICAL, "string", ("blue", "red"))
    f2 = {x.name: x for x in tabular.infer_schema(table, ["x", "code", "age", "colour"], categorical=["age"],
                                                  numeric=["code"])}
    assert f2["age"].kind == CATEGORICAL and f2["code"].kind == NUMERIC
    with pytest.raises(UserDataError, match="--categorical names nope"):
        tabular.infer_schema(table, ["x"], categorical=["nope"])
    with pytest.raises(UserDataError, match="'colour' is declared --numeric but holds"):
        tabular.infer_schema(table, ["colour"], numeric=["colour"])
    rows = tabular.encode(table, [f["x"], f["colour"]])
    assert set(rows[:, 1]) <= {0.0, 1.0}
    assert tabular.decode_column(f["colour"], np.array([0, 1, 2])) == ["blue", "red", "unseen-category-2"]


def test_probe_data_is_read_against_the_artifacts_schema(tmp_path):
    features = [Feature("x", "float64", NUMERIC), Feature("colour", "string", CATEGORICAL, ("blue", "red"))]
    rows = tabular.read_rows(write(tmp_path / "d.csv", "colour,x\nred,1.5\ngreen,2\n"), features)
    assert rows.tolist() == [[1.5, 1.0], [2.0, 2.0]]  # by name, in the model's order; green is unseen (code 2)
    with pytest.raises(UserDataError, match="lacks the model's feature\\(s\\) colour"):
        tabular.read_rows(write(tmp_path / "m.csv", "x\n1\n"), features)


# --- the reference against the model ------------------------------------------------------------------
def _table(tmp_path, header, n=10):
    return tabular.read_csv(write(tmp_path / "ref.csv", header + "\n" + "\n".join(
        ",".join("1" for _ in header.split(",")) for _ in range(n)) + "\n"))


def test_reference_columns_are_matched_to_the_models_features(tmp_path):
    mf = modelfile.ModelFile(tmp_path / "m.joblib", "sklearn", "joblib", "a pickle")
    table = _table(tmp_path, "b,a,y")
    request = usermodel.Request(mf.path, table.path)
    with pytest.raises(UserModelError, match="has column\\(s\\) the model does not take: y.*pass --target y"):
        usermodel.match_columns(table, request, {"feature_names": ["a", "b"], "n_features": 2}, mf)
    target = usermodel.Request(mf.path, table.path, target="y")
    assert usermodel.match_columns(table, target, {"feature_names": ["a", "b"], "n_features": 2}, mf) == ["a", "b"]
    with pytest.raises(UserModelError, match="feature\\(s\\) c are not columns of ref.csv"):
        usermodel.match_columns(table, target, {"feature_names": ["a", "c"], "n_features": 2}, mf)
    with pytest.raises(UserModelError, match="takes 3 features, but ref.csv has 2"):
        usermodel.match_columns(table, target, {"feature_names": None, "n_features": 3}, mf)
    assert usermodel.match_columns(table, target, {"feature_names": None, "n_features": None}, mf) == ["b", "a"]


def test_names_and_scores():
    assert usermodel.default_name(Path("/x/My Model_v2.joblib")) == "my-model-v2"
    assert usermodel.default_name(Path("2024.pkl")) == "user-model"
    with pytest.raises(UserModelError, match="--name must be"):
        usermodel.check_name("Bad_Name")
    with pytest.raises(UserModelError, match="testbed's own model's name"):
        usermodel.check_name("reference-classifier")
    assert usermodel.holdout_score("classification", [1, 0, "yes"], ["1", "1.0", "yes"]) == \
        {"metric": "accuracy", "value": 2 / 3, "n": 3}
    r2 = usermodel.holdout_score("regression", [1.0, 2.0, 3.0], ["1", "2", "3"])
    assert r2["metric"] == "r2" and r2["value"] == 1.0
    assert usermodel.holdout_score("regression", [1.0], None) is None


# --- parity --------------------------------------------------------------------------------------------
def test_parity_compares_labels_exactly_and_values_within_tolerance():
    labels = parity.compare([0, 1, "a"], {"p": [0.0, 1, "a"], "q": [0, 0, "a"], "r": "HTTP 500"})
    assert labels["platforms"]["p"]["ok"] and not labels["platforms"]["q"]["ok"]
    assert labels["platforms"]["q"]["mismatches"] == [1] and labels["platforms"]["r"]["error"] == "HTTP 500"
    values = parity.compare([1000.0, 2.5], {"p": [1000.0000001, 2.5], "q": [1000.1, 2.5]}, task="regression")
    assert values["platforms"]["p"]["ok"] and not values["platforms"]["q"]["ok"]
    assert values["platforms"]["q"]["max_abs_difference"] == pytest.approx(0.1)


# --- scenarios from held-out rows ------------------------------------------------------------------------
def _heldout(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0], [[1, 0.7], [0.7, 1]], size=n)
    rows = np.column_stack([100 + 10 * z[:, 0], 5 + 2 * z[:, 1], rng.normal(size=n),
                            rng.choice(3, size=n, p=(0.6, 0.3, 0.1))])
    features = [Feature("a", "float64", NUMERIC), Feature("b", "float64", NUMERIC), Feature("c", "float64", NUMERIC),
                Feature("k", "string", CATEGORICAL, ("x", "y", "z"))]
    return rows[: n // 2], HeldOut(rows[n // 2:], features)


def test_held_out_rows_are_drawn_in_passes_without_repeats():
    _, source = _heldout()
    rows, labels = source.sample(4000, np.random.default_rng(1))
    assert labels is None and rows.shape == (4000, 4)
    first = rows[:1500]
    assert len(np.unique(first, axis=0)) == 1500  # one pass: every held-out row once


def test_the_plan_picks_features_the_kinds_can_act_on():
    ref, source = _heldout()
    p = us.plan(ref, source)
    d = p.describe()
    assert d["mean_shift/variance feature"] == "a" and d["correlated pair"] == ["a", "b"]
    assert d["prior feature"] == "k" and d["left out"] == {}
    only_numeric = HeldOut(source.rows[:, :1], source.features[:1])
    q = us.plan(ref[:, :1], only_numeric)
    assert set(q.left_out) == {"correlation", "unseen_combination", "prior", "impossible_category"}
    assert us.drift_kinds(q) == ("mean_shift", "variance")


def test_drifts_change_what_they_say_by_how_much_they_say():
    ref, source = _heldout()
    p = us.plan(ref, source)
    sd = ref[:, 0].std()
    s = us.drift_stream(source, p, "mean_shift", 1.5, 3000, 1000, seed=3)
    assert s.onset == 1000 and s.feature == "a"
    assert (s.rows[1000:, 0].mean() - s.rows[:1000, 0].mean()) / sd == pytest.approx(1.5, abs=0.12)
    v = us.drift_stream(source, p, "variance", 1.0, 3000, 1000, seed=3)
    assert v.rows[1000:, 0].std() / v.rows[:1000, 0].std() == pytest.approx(2.0, rel=0.08)
    c = us.drift_stream(source, p, "correlation", 1.0, 3000, 1000, seed=3)
    before = np.corrcoef(c.rows[:1000, 0], c.rows[:1000, 1])[0, 1]
    after = np.corrcoef(c.rows[1000:, 0], c.rows[1000:, 1])[0, 1]
    assert before > 0.6 and abs(after) < 0.1
    unshuffled = us.drift_stream(source, p, "correlation", 0.0, 3000, 1000, seed=3)  # same draws, nothing moved
    assert not np.array_equal(c.rows[1000:, 1], unshuffled.rows[1000:, 1])
    assert np.array_equal(np.sort(c.rows[1000:, 1]), np.sort(unshuffled.rows[1000:, 1]))  # marginal kept exactly
    pr = us.drift_stream(source, p, "prior", 1.0, 6000, 1000, seed=3)
    share = np.bincount(pr.rows[1000:, 3].astype(int), minlength=3) / 5000
    assert share == pytest.approx([0.1, 0.3, 0.6], abs=0.03)  # (0.6, 0.3, 0.1) reversed
    with pytest.raises(ValueError, match="cannot be made from this data"):
        us.drift_stream(HeldOut(source.rows[:, :1], source.features[:1]), us.plan(ref[:, :1], HeldOut(
            source.rows[:, :1], source.features[:1])), "prior", 0.5, 100, 10, 1)


def test_outliers_are_planted_relative_to_the_reference():
    ref, source = _heldout()
    p = us.plan(ref, source)
    s = us.outlier_stream(source, p, 3000, seed=5, rate=0.05)
    assert len(s.outlier_index) == 150 and set(s.outlier_kind) == set(us.OUTLIER_SEVERITIES)
    clean = np.delete(s.rows, s.outlier_index, axis=0)
    assert set(np.unique(clean[:, 3])) <= {0.0, 1.0, 2.0}
    for i, kind, sev in zip(s.outlier_index, s.outlier_kind, s.outlier_severity):
        row = s.rows[i]
        if kind == "far_tail":
            beyond = np.maximum(row[:3] - p.reference_max[:3], p.reference_min[:3] - row[:3]) / p.reference_sd[:3]
            assert beyond.max() == pytest.approx(sev)
        elif kind == "impossible_category":
            assert row[3] not in (0.0, 1.0, 2.0)
        else:
            pair = ref[:, :2]
            inv = np.linalg.inv(np.cov(pair, rowvar=False, bias=True))
            d = row[:2] - pair.mean(axis=0)
            assert np.sqrt(d @ inv @ d) == pytest.approx(sev, rel=0.03)
            assert np.all(np.abs(d / pair.std(axis=0)) < sev)  # each feature alone is not extreme


def test_user_drift_suite_seeds_never_repeat():
    ref, source = _heldout()
    p = us.plan(ref, source)
    a = us.drift_suite(source, p, 0, n=400, onset=100, repeat=0)
    b = us.drift_suite(source, p, 0, n=400, onset=100, repeat=1)
    assert len({s.seed for s in a + b}) == len(a) + len(b)


# --- sampled Shapley values ------------------------------------------------------------------------------
def test_sampled_shapley_values_agree_with_exact_ones_within_their_bound():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(5, 2))

    def f(x):
        z = x @ w + 0.5 * x[:, [0]] * x[:, [2]]
        return 1 / (1 + np.exp(-z))

    rows, background = rng.normal(size=(3, 5)), rng.normal(size=(15, 5))
    exact = shapley.exact(f, rows, background)
    sampled = shapley.permutation(f, rows, background, samples=3000, seed=4)
    err = np.abs(exact["values"] - sampled["values"])
    assert (err <= shapley.Z_BOUND * sampled["stderr"] + 1e-12).all()
    scored = shapley.score(exact["values"], sampled)
    assert scored["verdict"] == "pass" and scored["scores"]["truth"] == "permutation-sampled"
    assert shapley.score(exact["values"] + 0.05, sampled)["verdict"] == "fail"


# --- which platform serves which format ---------------------------------------------------------------------
class _Art:
    def __init__(self, fmt, task, meta=None):
        self.format, self.task, self.name = fmt, task, "m"
        self.metadata = {"inspection": {}, **(meta or {})}


def test_platforms_say_what_they_cannot_serve_and_what_would_work():
    from deployers import kserve, rayserve, seldon

    assert "Triton" in seldon.SERVING.refusal("seldon", _Art("onnx", "classification"))
    assert "KServe or Ray Serve" in seldon.SERVING.refusal("seldon", _Art("onnx", "classification"))
    assert kserve.SERVING.refusal("kserve", _Art("onnx", "classification")) is None
    assert "XGBClassifier.save_model" in seldon.SERVING.refusal("seldon", _Art("xgboost", "classification"))
    assert seldon.SERVING.refusal("seldon", _Art("xgboost", "classification",
                                                 {"inspection": {"xgboost_sklearn_type": "classifier"}})) is None
    assert "probabilities" in seldon.SERVING.refusal("seldon", _Art("lightgbm", "classification"))
    assert seldon.SERVING.refusal("seldon", _Art("lightgbm", "regression")) is None
    env = rayserve.SERVING.env_for(rayserve.ENV, _Art("xgboost", "regression"))
    assert env.name == "rayserve-xgboost" and "xgboost==3.2.0" in env.requirements
    assert rayserve.SERVING.env_for(rayserve.ENV, _Art("sklearn", "regression")) is rayserve.ENV
    framed = rayserve.SERVING.env_for(rayserve.ENV, _Art("sklearn", "classification", {"input": "frame"}))
    assert any(r.startswith("pandas==") for r in framed.requirements)
    assert kserve.SERVING.env_for(kserve.ENV, _Art("sklearn", "classification", {"input": "frame"})) is kserve.ENV


def test_every_registered_platform_says_per_format_whether_it_serves_a_users_model_and_up_names_who_does():
    """Each platform's local Deployment carries its serving (LocalProcess.serving); one that does not serve a format
    says why, and `up --model`'s plan adds the platforms of the testbed that do."""
    from deployers import PLATFORMS
    from testbed import modelfile, usermodel

    for name, platform in PLATFORMS.items():
        serving = platform.deployment_for("local").serving
        assert serving is not None, f"{name}'s local Deployment says nothing about a user's model"
        for fmt in modelfile.FORMATS:
            assert fmt in serving.formats or fmt in serving.unsupported, (name, fmt)
    art = _Art("onnx", "classification")
    plan = usermodel.serving_plan(art, list(PLATFORMS))
    served = sorted(n for n, p in plan.items() if p["served"])
    assert served == ["bentoml", "kserve", "mlflow", "rayserve", "torchserve"], served
    assert plan["seldon"]["reason"].startswith("seldon cannot serve the onnx model m"), plan["seldon"]["reason"]
    assert "What would work" in plan["seldon"]["reason"]
    assert plan["mlflow"]["mechanism"] == "native" and "mlflow.onnx" in plan["mlflow"]["loader"]
    assert plan["bentoml"]["mechanism"] == plan["torchserve"]["mechanism"] == "user code"
    # a LightGBM classifier: MLflow's lightgbm flavour answers the Booster's probabilities (as MLServer's runtime)
    plan = usermodel.serving_plan(_Art("lightgbm", "classification"), list(PLATFORMS))
    assert {n for n, p in plan.items() if not p["served"]} == {"seldon", "mlflow"}
    assert "mlflow.lightgbm" in plan["mlflow"]["reason"] and "What would work" in plan["mlflow"]["reason"]
    plan = usermodel.serving_plan(_Art("lightgbm", "classification"), ["mlflow", "seldon", "bentoml"])
    assert plan["mlflow"]["reason"].startswith("mlflow cannot serve the lightgbm model m as given")
    plan = usermodel.serving_plan(_Art("lightgbm", "regression"), list(PLATFORMS))
    assert all(p["served"] for p in plan.values()), plan


def test_the_new_platforms_serve_every_format_from_one_environment_each():
    """BentoML and TorchServe load a user's model in user code, MLflow with its own flavours; each builds one
    environment for every format of a user's model (TorchServe's holds torch: a copy per format would cost minutes
    each), not one per format."""
    from deployers import bentoml, mlflow, torchserve

    for platform, name, extra in ((torchserve, "torchserve-usermodels", set()), (bentoml, "bentoml-usermodels", set()),
                                  (mlflow, "mlflow-usermodels", {"onnx==1.23.2"})):
        envs = {fmt: platform.SERVING.env_for(platform.ENV, _Art(fmt, task, meta)) for fmt in
                ("sklearn", "xgboost", "lightgbm", "onnx") for task, meta in
                (("classification", None), ("regression", {"input": "frame"}))}
        assert {e.name for e in envs.values()} == {name} and len({e.digest() for e in envs.values()}) == 1, name
        wanted = {"xgboost==3.2.0", "lightgbm==4.7.0", "onnxruntime==1.32.0"} | extra
        assert wanted <= set(envs["sklearn"].requirements), name
        assert set(platform.ENV.requirements) <= set(envs["sklearn"].requirements), name
        assert not platform.SERVING.unsupported


# --- the category-aware outlier detector (numpy only) ------------------------------------------------------
def test_unseen_categories_are_outliers_and_distance_comes_from_numbers_only():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deployers" / "runtimes"))
    import detectors_io

    class Distance:  # stands in for alibi's frozen Mahalanobis: |x| of the numeric columns
        threshold = 3.0

        def predict(self, x):
            score = np.abs(x).sum(axis=1)
            return {"data": {"instance_score": score, "is_outlier": (score > self.threshold).astype(int)}}

    det = detectors_io.TabularOutlier(Distance(), [0], {1: [0, 1, 2]})
    out = det.predict(np.array([[1.0, 0], [5.0, 1], [1.0, 7], [1.0, -1]]))["data"]
    assert out["is_outlier"].tolist() == [0, 1, 1, 1]
    assert out["instance_score"][2] >= 100 * det.threshold and out["instance_score"][0] == 1.0
    json.dumps({k: v.tolist() for k, v in out.items() if v is not None})
