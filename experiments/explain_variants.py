"""The explainer every platform serves, on model variants built to defeat shortcuts, against exact Shapley values.

The platforms serve one model, so the explain probe scores their paths on it. This experiment asks whether the
shared explainer configuration itself (alibi KernelShap, deployers/runtimes/explainer_io.py CONFIG, run in the
kserve runtime environment exactly as the platforms run it) recovers exact values when the test is hard
(probes/shapley.py variant_models: a x50 zero-coefficient noise feature; a model leaning on noise feature x3),
and shows the fake |x - mean| explainer failing beside it. No platform runs: it measures the method.

    python experiments/explain_variants.py [--rows 20] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes import shapley, stats  # noqa: E402
from testbed.population import Population  # noqa: E402
from testbed.settings import REPO_ROOT, Settings  # noqa: E402

KERNEL_SHAP = textwrap.dedent("""
    import json, sys
    import joblib, numpy as np
    sys.path.insert(0, sys.argv[1])
    from explainer_io import CONFIG
    from alibi.explainers import KernelShap
    d = np.load(sys.argv[2])
    out = {}
    for name in json.loads(sys.argv[3]):
        model = joblib.load(sys.argv[4] + f"/{name}.joblib")
        ex = KernelShap(model.predict_proba, link=CONFIG["link"], task=CONFIG["task"], seed=CONFIG["seed"])
        ex.fit(d[name + "_bg"])
        e = ex.explain(d[name + "_rows"])
        out[name] = {"values": np.asarray(e.shap_values).tolist(), "expected_value": np.asarray(e.expected_value).tolist()}
    print(json.dumps(out))
""")


def main(argv=None) -> int:
    import joblib

    from testbed.artifact import recipe
    from testbed.backends.local import envs
    from deployers import kserve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args(argv)
    settings = Settings()
    seed = recipe(settings.artifact_seed)["seed"]
    models = shapley.variant_models(seed)
    pop = Population(seed)
    data, truth = {}, {}
    for name, v in models.items():
        bg, _ = pop.sample(20, np.random.default_rng(stats.derive_seed(args.seed, name, "background")))
        rows, _ = pop.sample(args.rows, np.random.default_rng(stats.derive_seed(args.seed, name, "rows")))
        data[name + "_bg"], data[name + "_rows"] = v["transform"](bg), v["transform"](rows)
        truth[name] = shapley.exact(v["model"].predict_proba, data[name + "_rows"], data[name + "_bg"])
    python = envs.python_of(envs.ensure(kserve.ENV, settings.envs_dir, print))
    with tempfile.TemporaryDirectory() as tmp:
        for name, v in models.items():
            joblib.dump(v["model"], f"{tmp}/{name}.joblib")
        np.savez(f"{tmp}/data.npz", **data)
        proc = subprocess.run([str(python), "-c", KERNEL_SHAP, str(REPO_ROOT / "deployers" / "runtimes"),
                               f"{tmp}/data.npz", json.dumps(list(models)), tmp], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'variant':<18} {'explainer':<14} {'verdict':<8} {'max|err|':>9} {'sign':>6} {'rank':>6} {'top3':>6}  note")
    for name, v in models.items():
        t = truth[name]
        for label, values, ev in (("KernelShap", np.asarray(got[name]["values"]), got[name]["expected_value"]),
                                  ("|x - mean|", shapley.mean_abs_deviation_explainer(
                                      data[name + "_rows"], data[name + "_bg"], 3), None)):
            s = shapley.score(values, t, expected_value=None if ev is None else np.asarray(ev))
            sc = s["scores"]
            print(f"{name:<18} {label:<14} {s['verdict']:<8} {sc['max_abs_error']:>9.2e} {sc['sign_agreement']:>6.3f} "
                  f"{sc['rank_agreement']:>6.3f} {sc['topk_agreement']:>6.3f}  {v['note']}")
    print(f"rows {args.rows} per variant, background 20, seed {args.seed}; exact values over 128 coalitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
