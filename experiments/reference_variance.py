"""How much the choice of reference sample matters: the drift detector refitted on fresh reference samples.

The platforms' detection paths all load one TabularDrift fitted once on the artifact's reference sample, so
the drift probe's intervals (windows pooled over repeats) hold the reference fixed. This experiment varies it:
for each of --references fresh 2,000-row reference samples drawn from the training population (seeds hashed
from (seed, "reference", i)), it fits TabularDrift with the deployed configuration (testbed/detectors.py
CONFIG, alibi-detect 0.13.0 in the `detectors` environment) and scores the same kind of windows the probe
scores: control windows and windows wholly drifted at a few magnitudes, each drawn afresh per reference.

It reports, per condition, the pooled rate with a Clopper-Pearson interval, the spread of per-reference rates
against the spread binomial noise alone would give (a chi-square test of homogeneity across references), and
the deployed reference's own rate beside them. No platform runs: this measures the shared detector.

    python experiments/reference_variance.py [--references 20] [--windows 40] [--seed S] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from scipy import stats as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes import stats  # noqa: E402
from probes.scenarios import drift_stream  # noqa: E402
from testbed import artifact as artifact_mod  # noqa: E402
from testbed import detectors  # noqa: E402
from testbed.backends.local import envs  # noqa: E402
from testbed.population import Population  # noqa: E402
from testbed.results import RESULTS_DIR, hardware, new_run_id  # noqa: E402
from testbed.settings import Settings  # noqa: E402
from testbed.state import atomic_write_json  # noqa: E402

CONDITIONS = (("control", 0.0), ("mean_shift", 0.15), ("mean_shift", 0.3), ("variance", 0.6), ("prior", 0.3),
              ("correlation", 1.2))

FIT_AND_SCORE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from alibi_detect.cd import TabularDrift
    d = np.load(sys.argv[1])
    cfg = json.loads(sys.argv[2])
    cats = {int(k): None for k in cfg["categorical"]}
    out = []
    for i in range(d["references"].shape[0]):
        cd = TabularDrift(d["references"][i], p_val=cfg["p_val"], categories_per_feature=cats,
                          correction=cfg["correction"])
        out.append([[int(cd.predict(w)["data"]["is_drift"]) for w in d["windows"][i, c]]
                    for c in range(d["windows"].shape[1])])
    print(json.dumps(out))
""")


def windows_for(pop: Population, kind: str, magnitude: float, n_windows: int, window: int, seed: int) -> np.ndarray:
    if kind == "control":
        rows, _ = pop.sample(n_windows * window, np.random.default_rng(seed))
    else:
        rows = drift_stream(pop, kind, magnitude, n=n_windows * window, onset=0, seed=seed).rows
    return rows.reshape(n_windows, window, -1)


def homogeneity(alarms: np.ndarray) -> dict:
    """Per-reference rates of one condition: spread against binomial noise, chi-square test across references."""
    k = alarms.sum(axis=1)
    n = alarms.shape[1]
    p = k.sum() / (n * len(k))
    rates = k / n
    sd_binomial = float(np.sqrt(p * (1 - p) / n))
    if 0 < p < 1:
        chi2 = float(np.sum((k - n * p) ** 2 / (n * p * (1 - p))))
        p_value = float(st.chi2.sf(chi2, len(k) - 1))
    else:
        chi2, p_value = 0.0, 1.0
    return {"rate_min": float(rates.min()), "rate_max": float(rates.max()), "sd_between_references": float(rates.std(ddof=1)),
            "sd_binomial_alone": sd_binomial, "chi2": chi2, "df": len(k) - 1, "p_value_homogeneous": p_value}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", type=int, default=20)
    parser.add_argument("--windows", type=int, default=40, help="windows per condition and reference")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--out", type=Path, default=None, help=f"results root (default {RESULTS_DIR})")
    args = parser.parse_args(argv)
    if args.references < 2 or args.windows < 1:
        parser.error("--references needs at least 2 (a spread needs two) and --windows at least 1")
    settings = Settings()
    art = artifact_mod.ensure(settings.artifacts_dir, settings.artifact_seed)
    pop = Population(art.metadata["recipe"]["seed"])
    cfg = detectors.CONFIG["drift"]
    window = int(cfg["window_rows"])
    n_ref = int(art.metadata["reference_rows"])
    started = time.time()
    deployed = art.reference()[None]
    refs = np.stack([pop.sample(n_ref, np.random.default_rng(stats.derive_seed(args.seed, "reference", i)))[0]
                     for i in range(args.references)])
    all_refs = np.concatenate([deployed, refs])
    wins = np.stack([np.stack([windows_for(pop, kind, mag, args.windows, window,
                                           stats.derive_seed(args.seed, "windows", i, kind, mag))
                               for kind, mag in CONDITIONS]) for i in range(len(all_refs))])
    python = envs.python_of(envs.ensure(detectors.ENV, settings.envs_dir, print))
    categorical = [i for i, f in enumerate(art.metadata["features"]) if f.get("kind") == "categorical"]
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "data.npz", references=all_refs, windows=wins)
        proc = subprocess.run([str(python), "-c", FIT_AND_SCORE, str(Path(tmp) / "data.npz"),
                               json.dumps({**cfg, "categorical": categorical})], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    alarms = np.asarray(json.loads(proc.stdout.strip().splitlines()[-1]))  # (1 + references, conditions, windows)
    table = []
    for c, (kind, mag) in enumerate(CONDITIONS):
        fresh = alarms[1:, c, :]
        pooled = stats.clopper_pearson(int(fresh.sum()), fresh.size)
        dep = stats.clopper_pearson(int(alarms[0, c].sum()), alarms.shape[2])
        table.append({"condition": f"{kind}@{mag:g}" if kind != "control" else "control", **pooled.to_json(),
                      "deployed_reference": dep.to_json(), **homogeneity(fresh)})
    run_id = new_run_id("reference-variance")
    out_dir = (args.out or RESULTS_DIR) / run_id
    record = {"schema": "testbed.reference_variance/v1", "run_id": run_id, "seed": args.seed,
              "references": args.references, "windows_per_condition": args.windows, "window_rows": window,
              "reference_rows": n_ref, "detector": {k: cfg[k] for k in ("p_val", "correction")},
              "seeds": "derive_seed(seed, 'reference', i) and derive_seed(seed, 'windows', i, kind, magnitude)",
              "artifact_sha256": art.sha256, "hardware": hardware(), "wall_s": round(time.time() - started, 1),
              "conditions": table}
    atomic_write_json(out_dir / "reference_variance.json", record)
    print(f"{'condition':<18} {'pooled rate [CP 95%]':<28} {'deployed ref':<22} {'sd between refs':>16} "
          f"{'sd binomial':>12} {'p homog.':>9}")
    for row in table:
        print(f"{row['condition']:<18} {row['rate']:.3f} [{row['lo']:.3f}, {row['hi']:.3f}] {row['k']}/{row['n']:<6} "
              f"{row['deployed_reference']['rate']:.3f} ({row['deployed_reference']['k']}/{row['deployed_reference']['n']})"
              f"{'':<6} {row['sd_between_references']:>16.3f} {row['sd_binomial_alone']:>12.3f} "
              f"{row['p_value_homogeneous']:>9.3g}")
    print(out_dir / "reference_variance.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
