"""A user's model and reference CSV as a model artifact, built the way the testbed builds its own.

`up --model PATH --reference REF.csv [--name N] [--target COL] [--categorical a,b] [--numeric c]`:
1. the model file is identified from its extension and first bytes (testbed/modelfile.py): nothing loads yet;
2. the reference CSV is streamed and checked row by row (testbed/tabular.py);
3. the model is loaded and described inside a runtime environment (deployers/runtimes/model_inspect.py run
   with that environment's python): format, task, classes, the feature names and count it recorded, library
   versions, warnings (e.g. pickled with another scikit-learn). The testbed never loads a user's model in its
   own process: a joblib/pickle file runs code while it loads;
4. the reference's columns are matched to the model's features (names, count), typed (numeric or categorical,
   from the data or declared), split into a reference part (detectors, explainer background) and a held-out
   part (scenarios, parity rows), and the model predicts the held-out rows in the runtime environment: which
   input it takes (an array, or a DataFrame with the reference's names and values), and its answers;
5. everything is written atomically as `<artifacts dir>/<name>-<sha256[:12]>/`; an equal recipe is reused.
Any problem raises UserModelError / UserDataError before anything is written or started.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from testbed import artifact as artifact_mod
from testbed import modelfile, tabular
from testbed.errors import UserDataError, UserModelError

FORMAT_VERSION = artifact_mod.FORMAT_VERSION
NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
REFERENCE_SHARE = 0.5
"""Share of the reference rows the detectors and the explainer's background are fitted on; the rest is held
out for scenarios and parity."""

MAX_FIT_ROWS = 5000
"""At most this many rows are fitted on (the testbed's own detectors use 2000); the rest is held out."""

MIN_ROWS = 400
"""Fewer rows cannot give the detectors a reference and the probes a held-out window of 200 rows."""

CHECK_ROWS = 2000
"""Held-out rows the model predicts while the artifact is built (to find its input and check it works)."""

SPLIT_SEED = 20261129


@dataclass(frozen=True)
class Request:
    """What the user asked for on the command line."""

    model: Path
    reference: Path
    name: str | None = None
    target: str | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()


def inspect_env():
    """The runtime environment models are inspected in: the formats environment (every format library, the
    runtimes' scikit-learn and numpy pins), where the formats experiment computes its in-process answers too."""
    from deployers import formats

    return getattr(formats, "REFERENCE_ENV", None) or formats.KSERVE_ENV


def _runtime(script_args: list[str], envs_dir: Path, say=lambda m: None, what: str = "") -> dict:
    from testbed.backends.local import envs

    python = envs.python_of(envs.ensure(inspect_env(), envs_dir, say))
    proc = subprocess.run([str(python), str(_runtimes_dir() / "model_inspect.py"), *script_args],
                          capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    try:
        out = json.loads(last)
    except json.JSONDecodeError:
        out = None
    if proc.returncode == 3 and out and "error" in out:
        raise UserModelError(what, f"it does not load: {out['error']}")
    if proc.returncode != 0 or out is None:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise UserModelError(what, f"inspecting it in the runtime environment failed (exit {proc.returncode}):\n"
                                   f"{tail}")
    return out


def _runtimes_dir() -> Path:
    from testbed.settings import REPO_ROOT

    return REPO_ROOT / "deployers" / "runtimes"


def default_name(model: Path) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", model.stem.lower()).strip("-")
    stem = re.sub(r"^[^a-z]+", "", stem)[:40].strip("-")
    return stem or "user-model"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UserModelError(name, "--name must be 1-40 lowercase letters, digits and '-', starting with a letter "
                                   "and ending with a letter or digit (it is the model's name in V2 URLs and "
                                   "Kubernetes objects)")
    if name == artifact_mod.MODEL_NAME:
        raise UserModelError(name, f"--name {name} is the testbed's own model's name; pick another")
    return name


def recipe(request: Request, model_sha: str, reference_sha: str, env_digest: str) -> dict:
    # The inspection's code is part of the recipe: what it finds (classes, input kind) is in the artifact.
    code = hashlib.sha256(b"".join((_runtimes_dir() / f).read_bytes() for f in ("model_io.py", "model_inspect.py")))
    return {"format_version": FORMAT_VERSION, "origin": "user", "model_sha256": model_sha, "inspect_code":
            code.hexdigest()[:16],
            "reference_sha256": reference_sha, "name": request.name, "target": request.target,
            "categorical": sorted(request.categorical), "numeric": sorted(request.numeric),
            "reference_share": REFERENCE_SHARE, "max_fit_rows": MAX_FIT_ROWS, "max_rows": tabular.MAX_REFERENCE_ROWS,
            "split_seed": SPLIT_SEED, "inspect_env": env_digest}


def ensure(request: Request, artifacts_dir: Path, envs_dir: Path, say=lambda m: None) -> artifact_mod.Artifact:
    """The artifact for this model + reference (+ options), built once; every check runs before anything is
    written."""
    mf = modelfile.identify(request.model)
    name = check_name(request.name or default_name(request.model))
    request = replace(request, name=name, categorical=tuple(request.categorical), numeric=tuple(request.numeric))
    model_sha = artifact_mod.sha256_file(mf.path)
    if not Path(request.reference).is_file():
        raise UserDataError(request.reference, "no such file (the reference CSV: a header of feature names, and "
                                               "the rows the model was trained on or that production looks like)")
    reference_sha = artifact_mod.sha256_file(Path(request.reference))
    r = recipe(request, model_sha, reference_sha, inspect_env().digest())
    key = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]
    existing = artifacts_dir / f"{name}-{model_sha[:12]}"
    if (existing / "metadata.json").is_file():
        try:
            art = artifact_mod.load(existing)
            if art.metadata.get("recipe_key") == key:
                say(f"  reusing the artifact built from {mf.path.name} and {Path(request.reference).name}")
                return art
        except Exception:  # noqa: BLE001 - damaged or older: rebuilt below
            pass
    return build(request, mf, r, key, artifacts_dir, envs_dir, say)


def build(request: Request, mf: modelfile.ModelFile, r: dict, key: str, artifacts_dir: Path, envs_dir: Path,
          say=lambda m: None) -> artifact_mod.Artifact:
    table = tabular.read_csv(request.reference, max_rows=tabular.MAX_REFERENCE_ROWS, seed=SPLIT_SEED,
                             what="reference")
    say(f"  reference {table.path.name}: {table.rows_read} rows"
        + (f" (a uniform sample of {len(table.rows)} kept)" if len(table.rows) < table.rows_read else "")
        + f", columns {', '.join(table.header)}")
    if request.target is not None and request.target not in table.header:
        raise UserDataError(table.path, f"--target {request.target} is not one of its columns "
                                        f"({', '.join(table.header)})")
    say(f"  inspecting {mf.path.name} ({mf.looks_like}) in the runtime environment "
        f"{inspect_env().name!r}" + (" (it is a pickle: loading it runs code, so it is loaded there, never in the "
                                     "testbed's own process)" if mf.runs_code_when_loaded else "") + " ...")
    described = _runtime(["describe", "--model", str(mf.path), "--format", mf.format], envs_dir, say, str(mf.path))
    columns = match_columns(table, request, described, mf)
    features = tabular.infer_schema(table, columns, request.categorical, request.numeric)
    coded = [f.name for f in features if f.coded]
    if coded and mf.format != modelfile.SKLEARN:
        raise UserModelError(mf.path, f"column(s) {', '.join(coded)} of {table.path.name} hold strings, and a "
                                      f"{mf.format} model takes numbers only: encode them as numbers before "
                                      f"training, or serve a scikit-learn Pipeline whose encoder takes the strings")
    rows = tabular.encode(table, features, "reference")
    if len(rows) < MIN_ROWS:
        raise UserDataError(table.path, f"it has {len(rows)} rows; the testbed needs at least {MIN_ROWS} (half fit "
                                        f"the detectors, half are held out for scenarios)")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(rows))
    n_fit = min(int(len(rows) * REFERENCE_SHARE), MAX_FIT_ROWS)
    fit_idx, hold_idx = order[:n_fit], order[n_fit:]
    target = table.column(request.target) if request.target else None

    artifacts_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=artifacts_dir))
    tmp.chmod(0o755)
    try:
        shutil.copyfile(mf.path, tmp / mf.artifact_name)
        np.save(tmp / "reference.npy", rows[fit_idx])
        np.save(tmp / "holdout.npy", rows[hold_idx])
        probe_rows = rows[hold_idx[:artifact_mod.N_PROBE_ROWS]]
        np.save(tmp / "probe_rows.npy", probe_rows)
        check_idx = hold_idx[:CHECK_ROWS]
        np.save(tmp / "check_rows.npy", rows[check_idx])
        (tmp / "features.json").write_text(json.dumps([f.to_json() for f in features]))
        checked = _runtime(["check", "--model", str(tmp / mf.artifact_name), "--format", mf.format, "--features",
                            str(tmp / "features.json"), "--rows", str(tmp / "check_rows.npy")], envs_dir, say,
                           str(mf.path))
        (tmp / "check_rows.npy").unlink()
        (tmp / "features.json").unlink()
        if checked["input"] is None:
            raise UserModelError(mf.path, explain_check_failure(checked, features, table.path.name))
        predictions = checked["predictions"]
        (tmp / "probe_predictions.json").write_text(json.dumps(
            {"predictions": predictions[:len(probe_rows)], "computed_in": inspect_env().name}) + "\n")
        score = holdout_score(described["task"], predictions, [target[i] for i in check_idx] if target else None)
        files = ("reference.npy", "holdout.npy", "probe_rows.npy", "probe_predictions.json")
        metadata = {
            "format_version": FORMAT_VERSION,
            "origin": "user",
            "name": request.name,
            "model_file": mf.artifact_name,
            "sha256": artifact_mod.sha256_file(tmp / mf.artifact_name),
            "files": {f: artifact_mod.sha256_file(tmp / f) for f in files},
            "format": mf.format,
            "serialization": mf.serialization,
            "framework": described["library"],
            "estimator": described["estimator"],
            "task": described["task"],
            "classes": checked.get("classes") if checked.get("classes") is not None else described["classes"],
            "features": [f.to_json() for f in features],
            "wire_dtype": "FP64",
            "input": checked["input"],
            "reference_rows": int(n_fit),
            "split": {"reference_rows": int(n_fit), "holdout_rows": int(len(hold_idx)), "seed": SPLIT_SEED,
                      "rows_read": table.rows_read, "rows_kept": len(table.rows)},
            "holdout_score": score,
            "source": {"model": str(Path(mf.path).resolve()), "model_looks_like": mf.looks_like,
                       "runs_code_when_loaded": mf.runs_code_when_loaded,
                       "reference": str(Path(request.reference).resolve()), "reference_sha256": r["reference_sha256"],
                       "target": request.target, "declared_categorical": sorted(request.categorical),
                       "declared_numeric": sorted(request.numeric)},
            "inspection": {"environment": inspect_env().name,
                           "notes": list(dict.fromkeys(described["notes"] + checked.get("notes", []))),
                           "model_feature_names": described["feature_names"],
                           "model_n_features": described["n_features"], "has_proba": described["has_proba"],
                           "input_errors": checked["errors"],
                           "predict_seconds_per_row": checked["predict_seconds_per_row"],
                           "xgboost_sklearn_type": described.get("sklearn_estimator_type")},
            "versions": described["versions"],
            "recipe": r,
            "recipe_key": key,
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        final = artifacts_dir / f"{request.name}-{metadata['sha256'][:12]}"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        art = artifact_mod.load(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for note in metadata["inspection"]["notes"]:
        say(f"  note: {note}")
    say(f"  {art.name}: {described['estimator']} ({mf.format}, {described['task']}), {len(features)} features "
        f"({sum(f.kind == tabular.CATEGORICAL for f in features)} categorical), input as {checked['input']}; "
        f"{n_fit} reference rows, {len(hold_idx)} held out"
        + (f"; held-out {score['metric']} {score['value']:.4g} (n={score['n']})" if score else ""))
    return art


def match_columns(table: tabular.RawTable, request: Request, described: dict, mf: modelfile.ModelFile) -> list[str]:
    """The reference's feature columns in the model's order; UserModelError naming what does not match."""
    columns = [h for h in table.header if h != request.target]
    names = described.get("feature_names")
    n = described.get("n_features")
    if names:
        missing, extra = tabular.column_mismatch(names, columns)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"the model's feature(s) {', '.join(missing)} are not columns of {table.path.name}")
            if extra:
                parts.append(f"{table.path.name} has column(s) the model does not take: {', '.join(extra)}")
            hint = ""
            if len(extra) == 1 and not missing and request.target is None:
                hint = f" If {extra[0]!r} is the label, pass --target {extra[0]}."
            raise UserModelError(mf.path, "its features do not match the reference: " + "; ".join(parts) +
                                 f". The model takes {', '.join(names)}.{hint}")
        return list(names)
    if n is not None and n != len(columns):
        hint = " (pass --target COLUMN to leave the label out)" if request.target is None and len(columns) == n + 1 \
            else ""
        raise UserModelError(mf.path, f"it takes {n} features, but {table.path.name} has {len(columns)} feature "
                                      f"columns ({', '.join(columns)}){hint}")
    return columns


def explain_check_failure(checked: dict, features, reference_name: str) -> str:
    coded = checked.get("coded_features") or []
    errors = "; ".join(f"as {k}: {v}" for k, v in checked["errors"].items())
    if coded and any("string" in v.lower() or "convert" in v.lower() for v in checked["errors"].values()):
        return (f"column(s) {', '.join(coded)} of {reference_name} hold strings and the model has no encoder for "
                f"them (predicting the held-out rows failed {errors}): put an encoder in the model (e.g. a Pipeline "
                f"with OneHotEncoder in a ColumnTransformer) or give the columns as numbers")
    return f"it does not predict the reference's rows ({errors}); check that {reference_name} holds the columns the " \
           f"model was trained on, with the same meaning and types"


def holdout_score(task: str, predictions: list, target: list | None) -> dict | None:
    """Accuracy (classification) or R^2 (regression) on the held-out rows the model predicted, if the reference
    has the target column."""
    if target is None:
        return None
    if task == "classification":
        same = [_same_label(p, t) for p, t in zip(predictions, target)]
        return {"metric": "accuracy", "value": float(np.mean(same)), "n": len(same)}
    try:
        y = np.array([float(t) for t in target])
    except ValueError:
        return {"metric": "r2", "value": None, "n": len(target), "note": "the target column is not numeric"}
    p = np.asarray(predictions, dtype=np.float64)
    ss_res, ss_tot = float(np.sum((y - p) ** 2)), float(np.sum((y - y.mean()) ** 2))
    return {"metric": "r2", "value": 1 - ss_res / ss_tot if ss_tot > 0 else None, "n": len(y)}


def _same_label(prediction, target: str) -> bool:
    if str(prediction) == target:
        return True
    try:
        return float(prediction) == float(target)
    except (TypeError, ValueError):
        return False


# --- the model's answers, computed in the runtime environment ------------------------------------------
def predict(art: artifact_mod.Artifact, rows: np.ndarray, envs_dir: Path) -> dict:
    """{"predictions": [...], "outputs": [[...]] (probabilities or values)} of a user's model on rows."""
    with tempfile.TemporaryDirectory(prefix="testbed-predict-") as tmp:
        np.save(Path(tmp) / "rows.npy", np.asarray(rows, dtype=np.float64))
        return _runtime(["predict", "--artifact", str(art.path), "--rows", str(Path(tmp) / "rows.npy")], envs_dir,
                        what=str(art.model_path))


def answers(art: artifact_mod.Artifact, rows: np.ndarray, envs_dir: Path) -> list:
    """The model's own predictions on rows: in this process for the testbed's model, in the runtime environment
    for a user's."""
    if art.is_user:
        return predict(art, rows, envs_dir)["predictions"]
    return art.expected_predictions(rows)


def shapley(art: artifact_mod.Artifact, rows: np.ndarray, background: np.ndarray, envs_dir: Path,
            permutations: int = 0, seed: int = 0) -> dict:
    """Shapley values of a user's model (probes/shapley.py, exact up to MAX_FEATURES features, sampled above),
    computed in the runtime environment."""
    with tempfile.TemporaryDirectory(prefix="testbed-shapley-") as tmp:
        np.save(Path(tmp) / "rows.npy", np.asarray(rows, dtype=np.float64))
        np.save(Path(tmp) / "background.npy", np.asarray(background, dtype=np.float64))
        out = _runtime(["shapley", "--artifact", str(art.path), "--rows", str(Path(tmp) / "rows.npy"),
                        "--background", str(Path(tmp) / "background.npy"), "--permutations", str(permutations),
                        "--seed", str(seed)], envs_dir, what=str(art.model_path))
    for key in ("values", "stderr", "expected_value", "prediction"):
        if out.get(key) is not None:
            out[key] = np.asarray(out[key], dtype=np.float64)
    return out


def serving_plan(art: artifact_mod.Artifact, platforms: list[str], backend: str = "local") -> dict:
    """Per platform: how it would serve the artifact (loader, mechanism, environment) or why it cannot."""
    from deployers import get_platform

    plan = {}
    for name in platforms:
        dep = get_platform(name).deployment_for(backend)
        serving, reason = _serving(name, dep, art)
        plan[name] = {"served": False, "reason": reason} if reason else \
            {"served": True, **serving.describe(art), "environment": serving.env_for(dep.env, art).name}
    served = [n for n, p in plan.items() if p["served"]]
    for p in plan.values():
        if not p["served"]:
            p["reason"] = _what_would_work(p["reason"], served)
    return plan


def _serving(name: str, dep, art: artifact_mod.Artifact):
    """(the platform's ModelServing, why it cannot serve the artifact or None)."""
    serving = getattr(dep, "serving", None)  # a deployment of a backend that serves the testbed's own model only
    if serving is None:
        return None, f"{name} describes no model formats it serves (its module has no SERVING)"
    return serving, serving.refusal(name, art)


def _what_would_work(reason: str, served: list[str]) -> str:
    """A refusal that names no alternative gets the platforms of this testbed that do serve the model."""
    if "What would work" in reason or not served:
        return reason
    return f"{reason}. What would work: {', '.join(served)} serve(s) it on this testbed"


def assign_platforms(ctx) -> dict[str, str]:
    """Ask each platform of `up` whether it serves the artifact (its module's SERVING): those that cannot are
    taken out of ctx.deployments, with the reason; the others get the environment the artifact's format needs.
    Returns {skipped platform: reason}; UserModelError when no platform is left."""
    art = ctx.artifact
    answers = {name: _serving(name, dep, art) for name, dep in ctx.deployments.items()}
    served = [name for name, (_, reason) in answers.items() if not reason]
    skipped = {}
    for name, (serving, reason) in answers.items():
        dep = ctx.deployments[name]
        if reason:
            skipped[name] = reason = _what_would_work(reason, served)
            del ctx.deployments[name]
            ctx.say(f"  skipping {name}: {reason}")
            continue
        dep.env = serving.env_for(dep.env, art)
        support = serving.support(art)
        ctx.say(f"  {name}: {support.loader} ({support.mechanism})")
    if not ctx.deployments:
        raise UserModelError(art.model_path, "no platform of this testbed can serve it:\n" +
                             "\n".join(f"  {reason}" for reason in skipped.values()))
    return skipped
