"""Example "user" models and CSVs, to try `up --model --reference` and to test it: a credit-risk-like table
with numeric and categorical columns, and models in every served format trained on it.

Runs in the formats runtime environment (scikit-learn, XGBoost, LightGBM, skl2onnx):
    python example_models.py --out DIR [--rows N] [--seed S]
Writes DIR/reference.csv (features + target `default`), DIR/regression.csv (features + target `loss`),
DIR/current_drifted.csv (income shifted up by 1 sd: production data that drifted), DIR/current_same.csv
(fresh rows like the reference), DIR/outliers.csv + outliers_truth.csv, and the models:
    pipeline.joblib   Pipeline(ColumnTransformer(StandardScaler on numbers, OneHotEncoder on region and plan),
                      LogisticRegression), fitted on a DataFrame: it takes the columns by name, strings included
    coded.joblib      the same on integer-coded categories (reference coded.csv), fitted on an array
    regressor.joblib  GradientBoostingRegressor on the numeric columns (target `loss`)
    xgboost.json      XGBClassifier on the numeric columns (save_model)
    lightgbm.txt      LGBMClassifier's booster on the numeric columns (save_model)
    onnx.onnx         the coded LogisticRegression converted with skl2onnx (one double input)
Prints a JSON summary.
"""

import argparse
import json
from pathlib import Path

import numpy as np

NUMERIC = ("income", "age", "debt_ratio", "tenure_years")
REGIONS = ("north", "south", "east", "west")
PLANS = ("basic", "plus", "pro")


def draw(n: int, rng: np.random.Generator, income_shift_sd: float = 0.0) -> dict:
    """Columns of a synthetic credit table. income and debt_ratio correlate (r about -0.6)."""
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, -0.6], [-0.6, 1.0]], size=n)
    income = 50_000 + 15_000 * (z[:, 0] + income_shift_sd)
    debt_ratio = 0.35 + 0.1 * z[:, 1]
    age = rng.integers(18, 80, size=n)
    tenure = np.round(rng.gamma(2.0, 3.0, size=n), 2)
    region = rng.choice(REGIONS, size=n, p=(0.4, 0.3, 0.2, 0.1))
    plan = rng.choice(PLANS, size=n, p=(0.6, 0.3, 0.1))
    logit = (-1.0 - 1.2 * z[:, 0] + 1.5 * z[:, 1] - 0.02 * (age - 45) + 0.4 * (region == "east")
             - 0.6 * (plan == "pro"))
    default = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    loss = np.round(1000 * np.exp(0.8 * z[:, 1] - 0.5 * z[:, 0]) + 50 * (plan == "basic") + rng.normal(0, 100, n), 2)
    return {"income": np.round(income, 2), "age": age, "debt_ratio": np.round(debt_ratio, 4), "tenure_years": tenure,
            "region": region, "plan": plan, "default": default, "loss": loss}


def write_csv(path: Path, cols: dict, names) -> None:
    with open(path, "w") as fh:
        fh.write(",".join(names) + "\n")
        for i in range(len(cols[names[0]])):
            fh.write(",".join(str(cols[c][i]) for c in names) + "\n")


def coded(cols: dict) -> np.ndarray:
    return np.column_stack([np.asarray(cols[c], dtype=float) for c in NUMERIC] +
                           [np.searchsorted(REGIONS_SORTED, cols["region"]).astype(float),
                            np.searchsorted(PLANS_SORTED, cols["plan"]).astype(float)])


REGIONS_SORTED = tuple(sorted(REGIONS))
PLANS_SORTED = tuple(sorted(PLANS))


def build(out: Path, rows: int, seed: int) -> dict:
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = draw(rows, rng)
    features = list(NUMERIC) + ["region", "plan"]
    write_csv(out / "reference.csv", train, features + ["default"])
    write_csv(out / "regression.csv", train, list(NUMERIC) + ["loss"])
    write_csv(out / "current_same.csv", draw(600, rng), features)
    write_csv(out / "current_drifted.csv", draw(600, rng, income_shift_sd=1.0), features)
    base = draw(400, rng)
    truth = np.zeros(400, dtype=int)
    planted = rng.choice(400, size=40, replace=False)
    for k, i in enumerate(planted):
        truth[i] = 1
        if k % 2:
            base["income"][i] = 50_000 + 15_000 * 12  # 12 sd: far beyond anything in the reference
        else:
            base["region"][i] = "atlantis"  # a category the reference never had
    write_csv(out / "outliers.csv", base, features)
    (out / "outliers_truth.csv").write_text("is_outlier\n" + "\n".join(str(t) for t in truth) + "\n")

    frame = pd.DataFrame({c: train[c] for c in features})
    y = train["default"]
    pipe = Pipeline([("prep", ColumnTransformer([("num", StandardScaler(), list(NUMERIC)),
                                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["region", "plan"])])),
                     ("clf", LogisticRegression(max_iter=1000))]).fit(frame, y)
    joblib.dump(pipe, out / "pipeline.joblib")

    X = coded(train)
    write_csv(out / "coded.csv", {**train, "region": X[:, 4].astype(int), "plan": X[:, 5].astype(int)},
              features + ["default"])
    coded_pipe = Pipeline([("prep", ColumnTransformer([("num", StandardScaler(), [0, 1, 2, 3]),
                                                       ("cat", OneHotEncoder(handle_unknown="ignore"), [4, 5])])),
                           ("clf", LogisticRegression(max_iter=1000))]).fit(X, y)
    joblib.dump(coded_pipe, out / "coded.joblib")

    Xn = X[:, :4]
    reg = GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=seed).fit(Xn, train["loss"])
    joblib.dump(reg, out / "regressor.joblib")

    import xgboost as xgb

    xgb.XGBClassifier(n_estimators=40, max_depth=3, random_state=seed, n_jobs=1).fit(Xn, y).save_model(
        out / "xgboost.json")

    import lightgbm as lgb

    lgb.LGBMClassifier(n_estimators=40, num_leaves=8, random_state=seed, n_jobs=1, verbose=-1).fit(
        Xn, y).booster_.save_model(str(out / "lightgbm.txt"))

    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType

    lr = LogisticRegression(max_iter=1000).fit(Xn, y)
    onx = skl2onnx.convert_sklearn(lr, initial_types=[("input", DoubleTensorType([None, 4]))],
                                   options={id(lr): {"zipmap": False}}, target_opset=17)
    (out / "onnx.onnx").write_bytes(onx.SerializeToString())
    # the numeric-only reference for the XGBoost, LightGBM and ONNX models
    write_csv(out / "numeric.csv", train, list(NUMERIC) + ["default"])
    return {"dir": str(out), "rows": rows, "seed": seed,
            "files": sorted(p.name for p in out.iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    opts = parser.parse_args()
    print(json.dumps(build(opts.out, opts.rows, opts.seed)))


if __name__ == "__main__":
    main()
