"""Exact Shapley values and the value-by-value explanation score. No server."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from probes import explain, shapley
from probes.stats import derive_seed
from testbed.population import FEATURES, INFORMATIVE, Population

SEED = 20261125


def _brute_force(f, x, background):
    """Shapley values by the permutation definition (n! orderings), for a cross-check on few features."""
    n = len(x)
    phi = np.zeros(n)

    def v(S):
        rows = background.copy()
        rows[:, list(S)] = x[list(S)]
        return f(rows).mean()

    for order in itertools.permutations(range(n)):
        seen = []
        for i in order:
            phi[i] += v(seen + [i]) - v(seen)
            seen.append(i)
    return phi / math.factorial(n)


def test_exact_matches_the_permutation_definition_on_a_nonlinear_model():
    rng = np.random.default_rng(derive_seed("shapley-brute"))
    background = rng.normal(size=(6, 4))
    x = rng.normal(size=4)
    f = lambda a: np.c_[np.tanh(a[:, 0] * a[:, 1]) + a[:, 2] ** 2 - 0.3 * a[:, 3]]  # noqa: E731
    got = shapley.exact(f, x[None], background)
    assert got["coalitions"] == 16 and got["evaluations"] == 16 * 6
    assert np.allclose(got["values"][0, 0], _brute_force(lambda a: f(a)[:, 0], x, background), atol=1e-12)
    # Efficiency: the values add up to prediction - expected value.
    assert got["values"][0, 0].sum() == pytest.approx(got["prediction"][0, 0] - got["expected_value"][0])


def test_refuses_too_many_features():
    with pytest.raises(ValueError, match="exact Shapley"):
        shapley.coalitions(13)


@pytest.fixture(scope="module")
def variants():
    models = shapley.variant_models(SEED)
    pop = Population(SEED)
    raw_bg, _ = pop.sample(20, np.random.default_rng(derive_seed("bg")))
    raw_rows, _ = pop.sample(12, np.random.default_rng(derive_seed("rows")))
    out = {}
    for name, v in models.items():
        bg, rows = v["transform"](raw_bg), v["transform"](raw_rows)
        out[name] = {"model": v["model"], "bg": bg, "rows": rows,
                     "truth": shapley.exact(v["model"].predict_proba, rows, bg)}
    return out


def test_exact_values_of_the_reference_model_add_up_and_are_7_features_wide(variants):
    t = variants["reference"]["truth"]
    assert t["coalitions"] == 128 and t["values"].shape == (3, 12, 7)
    assert np.allclose(t["values"].sum(axis=2).T + t["expected_value"], t["prediction"], atol=1e-12)
    # Probabilities sum to one, so the classes' values cancel feature by feature.
    assert np.allclose(t["values"].sum(axis=0), 0.0, atol=1e-12)


def test_exact_values_pass_and_a_fake_explainer_fails_on_every_variant(variants):
    for name, v in variants.items():
        t = v["truth"]
        assert shapley.score(t["values"], t)["verdict"] == "pass"
        fake = shapley.mean_abs_deviation_explainer(v["rows"], v["bg"], 3)
        got = shapley.score(fake, t)
        assert got["verdict"] == "fail", (name, got)
        assert got["scores"]["max_abs_error"] > 0.1 and got["scores"]["sign_agreement"] < 0.8, (name, got["scores"])


def test_the_fake_explainer_passes_the_old_topk_test_on_the_reference_model(variants):
    """Why the score changed: |x - mean| recovers the planted features as well as exact values do."""
    v = variants["reference"]
    fake = shapley.mean_abs_deviation_explainer(v["rows"], v["bg"], 3)
    ranked = explain.ranking(np.abs(fake).mean(axis=(0, 1)), list(FEATURES))
    assert explain.topk_recall(ranked, list(INFORMATIVE)) == 1.0


def test_variants_defeat_shortcuts(variants):
    wide = variants["wide_zero_noise"]
    assert np.all(wide["truth"]["values"][:, :, 5] == 0.0)  # zero coefficient: exactly zero attribution
    fake = shapley.mean_abs_deviation_explainer(wide["rows"], wide["bg"], 3)
    assert np.argmax(np.abs(fake).mean(axis=(0, 1))) == 5  # spread puts the dead feature first
    lean = variants["leans_on_noise"]["truth"]["values"]
    importance = np.abs(lean).mean(axis=(0, 1))
    assert FEATURES[int(np.argmax(importance))] == "x3"  # the model leans on a noise feature


def test_small_errors_within_tolerance_pass_and_a_sign_flip_fails(variants):
    t = variants["reference"]["truth"]
    noisy = t["values"] + np.random.default_rng(derive_seed("noise")).normal(0, 1e-4, t["values"].shape)
    assert shapley.score(noisy, t)["verdict"] == "pass"
    flipped = t["values"].copy()
    flipped[:, :, 0] *= -1
    got = shapley.score(flipped, t)
    assert got["verdict"] == "fail" and got["scores"]["sign_agreement"] < 1.0
    with pytest.raises(ValueError, match="shape"):
        shapley.score(t["values"][:, :3], t)


def test_the_explain_probe_fails_a_fake_explainer_and_passes_exact_values(variants):
    """The probe's own scoring path (explain.exact_score), fed what a platform would return."""
    v = variants["reference"]
    t = v["truth"]
    fake = {"values": shapley.mean_abs_deviation_explainer(v["rows"], v["bg"], 3),
            "prediction": v["model"].predict_proba(v["rows"]), "expected_value": t["expected_value"].tolist()}
    got = explain.exact_score(fake, t)
    assert got["verdict"] == "fail" and got["scores"]["prediction_error"] < 1e-12
    honest = {**fake, "values": t["values"]}
    assert explain.exact_score(honest, t)["verdict"] == "pass"


def test_the_probe_uses_the_explainers_background():
    import sys

    from testbed.settings import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "deployers" / "runtimes"))
    try:
        import explainer_io
    finally:
        sys.path.pop(0)
    assert explain.BACKGROUND_ROWS == explainer_io.CONFIG["background_rows"]
