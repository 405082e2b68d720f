"""Explainability: explanations requested through each platform's own explainer path, scored
against the features that matter by construction.

The reference model is trained on data where only x0, x1, x2 carry the label (testbed/population.py,
artifact metadata "informative_features"). Every platform serves the same explainer (alibi
KernelShap over predict_proba with one configuration, deployers/runtimes/explainer_io.py); what
differs is the path, which each platform's module describes (PLATFORM.explain):
KServe's V1 explain route calling our Model.explain, MLServer's alibi-explain
runtime calling the model's V2 route (what Seldon Core v2 runs for a Model's `explainer`), and a
Ray Serve deployment of our own.

Each platform's values are scored value by value against exact interventional Shapley values
(probes/shapley.py: 128 coalitions over the explainer's own background rows, the artifact's model, i.e. the
served model's probabilities, checked against the prediction the platform's explanation reports): max absolute
error, sign and rank agreement, additivity. Top-k recall of the planted features is kept as a secondary
number only: an explainer that ignores the model (|x - mean|) scores 1.0 on it. Scoring is pure.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np

from deployers import get_platform
from probes import shapley
from probes.context import ProbeContext
from probes.stats import derive_seed
from testbed import v2
from testbed.endpoint import Endpoint
from testbed.platforms import ExplainPath
from testbed.results import Result

PROBE = "explain"
MIN_TOPK_RECALL = 1.0
"""Reported only (no longer the verdict): the top-k features of the aggregated attributions (k = number of
planted features) must be exactly the planted ones."""

BACKGROUND_ROWS = 20
"""The explainer's background: the first rows of the artifact's reference sample (explainer_io.CONFIG)."""


def path_of(platform: str) -> ExplainPath | None:
    """The platform's explanation route (its module's PLATFORM.explain); None when it serves none."""
    return get_platform(platform).explain


# --- pure scoring ------------------------------------------------------------------------------
def attributions(explanation: dict, n_features: int) -> np.ndarray:
    """Per-row attribution magnitude, shape (n_rows, n_features): mean |SHAP value| over classes."""
    try:
        values = np.asarray(explanation["data"]["shap_values"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"explanation has no numeric data.shap_values ({exc!r})") from None
    if values.ndim == 2:  # a single output
        values = values[None]
    if values.ndim != 3 or values.shape[2] != n_features:
        raise ValueError(f"shap_values of shape {list(values.shape)}, expected [classes, rows, {n_features}]")
    return np.abs(values).mean(axis=0)


def shap_values(explanation: dict, n_features: int) -> np.ndarray:
    """The explanation's values as (classes, rows, features)."""
    values = np.asarray(explanation["data"]["shap_values"], dtype=np.float64)
    return values[None] if values.ndim == 2 else values


def reported_prediction(explanation: dict, n_rows: int):
    """The model output the explainer itself saw for the explained rows (alibi: data.raw.raw_prediction), as
    (rows, outputs): a regression model's one output comes back as a flat list of values, one per row."""
    raw = ((explanation.get("data") or {}).get("raw") or {}).get("raw_prediction")
    if raw is None:
        return None
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size % n_rows:
        raise ValueError(f"the explainer reported {raw.size} predictions for {n_rows} rows")
    return raw.reshape(n_rows, -1)


def ranking(importance: np.ndarray, feature_names: list[str]) -> list[str]:
    """Features by decreasing importance; ties keep the model's feature order (a stable sort)."""
    order = np.argsort(-np.asarray(importance, dtype=np.float64), kind="stable")
    return [feature_names[i] for i in order]


def topk_recall(ranked: list[str], planted: list[str], k: int | None = None) -> float:
    """Share of the planted features found among the first k ranked (k defaults to how many were planted)."""
    if not planted:
        raise ValueError("no planted features to recover")
    k = len(planted) if k is None else k
    return len(set(ranked[:k]) & set(planted)) / len(planted)


def score(row_attributions: np.ndarray, feature_names: list[str], planted: list[str],
          latencies_s: list[float], rows_per_request: int) -> dict:
    """Top-k recall of the aggregated and of each row's attributions, and explanation latency."""
    row_attributions = np.asarray(row_attributions, dtype=np.float64)
    if row_attributions.ndim != 2 or len(row_attributions) == 0:
        raise ValueError("no explained rows to score")
    global_importance = row_attributions.mean(axis=0)
    ranked = ranking(global_importance, feature_names)
    per_row = [topk_recall(ranking(r, feature_names), planted) for r in row_attributions]
    lat = np.asarray(latencies_s, dtype=np.float64)
    scores = {
        "topk_recall": topk_recall(ranked, planted),
        "k": len(planted),
        "row_topk_recall_mean": float(np.mean(per_row)),
        "row_topk_recall_min": float(np.min(per_row)),
        "rows_explained": int(len(row_attributions)),
        "latency_p50_s": float(np.median(lat)) if lat.size else None,
        "latency_max_s": float(lat.max()) if lat.size else None,
        "latency_per_row_ms": float(np.median(lat) / rows_per_request * 1000) if lat.size else None,
    }
    return {"scores": scores, "ranking": ranked,
            "importance": {f: float(v) for f, v in zip(feature_names, global_importance)},
            "verdict": "pass" if scores["topk_recall"] >= MIN_TOPK_RECALL else "fail"}


# --- I/O -----------------------------------------------------------------------------------------
def request_body(path: ExplainPath, rows: np.ndarray) -> dict:
    if path.request == "v1-instances":
        return {"instances": np.asarray(rows, dtype=np.float64).tolist()}
    if path.request == "platform-json":
        return path.encode(np.asarray(rows, dtype=np.float64))
    return v2.request_body(rows)


def parse_response(path: ExplainPath, body: dict) -> dict:
    if path.response == "platform-json":
        try:
            return path.decode(body)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"explanation answer the platform's decoder cannot read ({exc!r}): "
                             f"{str(body)[:200]}") from None
    if path.response == "v2-bytes":
        try:
            return json.loads(body["outputs"][0]["data"][0])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"V2 explanation response without a JSON document in outputs[0].data[0] ({exc!r}): "
                             f"{str(body)[:200]}") from None
    return body


def explain_once(client: httpx.Client, endpoint: Endpoint, path: ExplainPath, rows: np.ndarray) -> tuple[dict, float]:
    started = time.monotonic()
    resp = client.post(endpoint.explain_url, json=request_body(path, rows))
    elapsed = time.monotonic() - started
    if resp.status_code != 200:
        raise ValueError(f"HTTP {resp.status_code} from {endpoint.explain_url}: {resp.text[:300]}")
    return parse_response(path, resp.json()), elapsed


def probe_one(endpoint: Endpoint, path: ExplainPath, batches: list[np.ndarray], n_features: int,
              ready_timeout_s: float = 120.0, timeout_s: float = 120.0) -> dict:
    """Warm up (retrying while the explainer loads), then explain each batch; raw data for `score`."""
    with httpx.Client(timeout=timeout_s) as client:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                _, first_s = explain_once(client, endpoint, path, batches[0])
                break
            except (httpx.HTTPError, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise ValueError(f"explainer did not answer within {ready_timeout_s:.0f}s: {exc}") from None
                time.sleep(1.0)
        rows, values, reported, expected, latencies, docs = [], [], [], [], [], []
        for batch in batches:
            doc, elapsed = explain_once(client, endpoint, path, batch)
            rows.append(attributions(doc, n_features))
            values.append(shap_values(doc, n_features))
            reported.append(reported_prediction(doc, len(batch)))
            expected.append(doc.get("data", {}).get("expected_value"))
            latencies.append(elapsed)
            docs.append({"meta": doc.get("meta"), "expected_value": doc.get("data", {}).get("expected_value")})
    pred = None if any(r is None for r in reported) else np.vstack(reported)
    return {"row_attributions": np.vstack(rows), "values": np.concatenate(values, axis=1), "prediction": pred,
            "expected_value": expected[0], "latencies_s": latencies, "first_call_s": first_s, "docs": docs}


def exact_score(raw: dict, truth: dict) -> dict:
    """Pure: the platform's values against the Shapley values of the model over the same background (`truth`:
    probes/shapley.py exact, or permutation-sampled with their error bound), plus how far the prediction the
    platform's explainer reported is from the model's own output."""
    ev = raw["expected_value"]
    scored = shapley.score(raw["values"], truth, expected_value=None if ev is None else np.asarray(ev, dtype=float),
                           prediction=raw["prediction"])
    if raw["prediction"] is not None:
        scored["scores"]["prediction_error"] = float(np.max(np.abs(raw["prediction"] - truth["prediction"])))
    scored["scores"]["coalitions"] = truth.get("coalitions")
    scored["exact_values"] = np.asarray(truth["values"])
    return scored


def ground_truth(ctx: ProbeContext, rows: np.ndarray, background: np.ndarray) -> tuple[dict, str]:
    """(truth, description): exact Shapley values of the served model over the background for the testbed's
    model (in this process) and for a user's with up to shapley.MAX_FEATURES features (computed in its runtime
    environment); above that, permutation-sampled values with their standard errors."""
    n = rows.shape[1]
    if not ctx.artifact.is_user:
        return (shapley.exact(ctx.artifact.load_model().predict_proba, rows, background),
                f"exact interventional Shapley values, 2^{n} coalitions over the explainer's background (reference "
                f"rows 0..{len(background) - 1}), the artifact's predict_proba")
    from testbed import usermodel
    from testbed.settings import Settings

    truth = usermodel.shapley(ctx.artifact, rows, background, Settings(backend=ctx.backend).envs_dir,
                              seed=derive_seed(ctx.seed, ctx.repeat, "shapley"))
    output = "class probabilities" if ctx.artifact.task == "classification" else "regression value"
    if truth["method"] == "exact":
        how = f"exact interventional Shapley values, 2^{n} coalitions"
    else:
        how = (f"interventional Shapley values estimated from {truth['permutations']} (permutation, background row) "
               f"samples per row ({n} features > {shapley.MAX_FEATURES}: exact values would need 2^{n} coalitions); "
               f"each value's error bound is {shapley.Z_BOUND} standard errors and is added to the tolerance")
    return truth, (f"{how} over the explainer's background (reference rows 0..{len(background) - 1}), the user's "
                   f"model's {output}, computed in its runtime environment in {truth['seconds']:.1f} s")


def run(ctx: ProbeContext) -> list[Result]:
    rows_per_request = int(ctx.options.get("explain_rows_per_request", 5))
    n_requests = int(ctx.options.get("explain_requests", 4))
    features = ctx.artifact.feature_names
    # A user's model has no planted features: its explanations are scored against Shapley values only.
    planted = list(ctx.artifact.metadata.get("informative_features") or [])
    X, _ = ctx.artifact.data_source().sample(rows_per_request * n_requests,
                                             np.random.default_rng(derive_seed(ctx.seed, ctx.repeat, "explain")))
    background = ctx.artifact.reference()[:BACKGROUND_ROWS]
    truth, truth_text = ground_truth(ctx, X, background)
    batches = [X[i * rows_per_request:(i + 1) * rows_per_request] for i in range(n_requests)]
    results = []
    for platform, endpoint in ctx.endpoints.items():
        path = path_of(platform)
        base = dict(probe=PROBE, platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
                    run_id=ctx.run_id, repeat=ctx.repeat)
        evidence = {"explain_url": endpoint.explain_url, "seed": ctx.seed, "planted": planted,
                    "rows_per_request": rows_per_request, "requests": n_requests,
                    "route": path.route if path else None,
                    "methods_offered": path.methods_offered if path else None,
                    "versions": ctx.versions.get(platform, {})}
        if path is None or not endpoint.explain_url:
            results.append(Result(**base, verdict="unsupported", mechanism="none",
                                  evidence={**evidence, "reason": endpoint.explain_unavailable or
                                            "the endpoint has no explain_url"}))
            continue
        try:
            raw = probe_one(endpoint, path, batches, len(features))
            scored = score(raw["row_attributions"], features, planted, raw["latencies_s"], rows_per_request) \
                if planted else None
            exact = exact_score(raw, truth)
        except (httpx.HTTPError, ValueError) as exc:
            results.append(Result(**base, verdict="error", mechanism=path.mechanism,
                                  evidence={**evidence, "error": str(exc)[:500]}))
            continue
        meta = (raw["docs"][0] or {}).get("meta") or {}
        topk = {**scored["scores"], "topk_verdict": scored["verdict"]} if scored else \
            {"topk_verdict": "not applicable (a user's model has no planted features)"}
        lat = np.asarray(raw["latencies_s"], dtype=np.float64)
        results.append(Result(
            **base, verdict=exact["verdict"], mechanism=path.mechanism,
            scores={**exact["scores"], **topk, "first_call_s": raw["first_call_s"],
                    **({} if scored else {"latency_p50_s": float(np.percentile(lat, 50)),
                                          "rows_per_request": rows_per_request})},
            measurements={"ranking": scored["ranking"] if scored else None,
                          "importance": scored["importance"] if scored else None,
                          "latencies_s": raw["latencies_s"],
                          "row_attributions": raw["row_attributions"].round(6).tolist(),
                          "values": raw["values"].round(8).tolist(),
                          "exact_values": exact["exact_values"].round(8).tolist()},
            evidence={**evidence, "method": meta.get("name"), "explainer_params": meta.get("params"),
                      "min_topk_recall": MIN_TOPK_RECALL, "background_rows": BACKGROUND_ROWS,
                      "ground_truth": truth_text,
                      "tolerance": shapley.TOLERANCE}))
    return results
