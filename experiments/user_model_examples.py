"""Example "user" models and CSVs to try `up --model ... --reference ...` with (and the tests' models).

    .venv/bin/python experiments/user_model_examples.py --out /tmp/examples [--rows 3000] [--seed 7]

Trains them in the formats runtime environment (built on first use): a Pipeline with a ColumnTransformer
on string categories (pipeline.joblib, reference.csv), its integer-coded twin (coded.joblib, coded.csv),
a gradient-boosting regressor (regressor.joblib, regression.csv), XGBoost, LightGBM and ONNX classifiers
(xgboost.json, lightgbm.txt, onnx.onnx, numeric.csv), production-like rows with and without drift
(current_same.csv, current_drifted.csv) and rows with planted outliers (outliers.csv, outliers_truth.csv).
The script that trains them is deployers/runtimes/example_models.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.backends.local import envs  # noqa: E402
from testbed.settings import REPO_ROOT, Settings  # noqa: E402
from testbed.usermodel import inspect_env  # noqa: E402


def build(out: Path, rows: int = 3000, seed: int = 7, envs_dir: Path | None = None, say=print) -> dict:
    python = envs.python_of(envs.ensure(inspect_env(), envs_dir or Settings().envs_dir, say))
    proc = subprocess.run([str(python), str(REPO_ROOT / "deployers" / "runtimes" / "example_models.py"), "--out",
                           str(out), "--rows", str(rows), "--seed", str(seed)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training the example models failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    opts = parser.parse_args()
    print(json.dumps(build(opts.out, opts.rows, opts.seed), indent=2))


if __name__ == "__main__":
    main()
