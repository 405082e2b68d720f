import json

import numpy as np
import pytest

from testbed import artifact
from testbed.errors import ArtifactError
from testbed.population import FEATURES, INFORMATIVE, Population


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return artifact.ensure(tmp_path_factory.mktemp("artifacts"), seed=7)


def test_metadata_describes_the_model(built):
    meta = built.metadata
    assert meta["sha256"] == artifact.sha256_file(built.model_path)
    assert built.feature_names == list(FEATURES)
    assert meta["informative_features"] == list(INFORMATIVE)
    assert meta["classes"] == [0, 1, 2]
    assert meta["versions"]["scikit-learn"]
    assert built.reference().shape == (artifact.N_REFERENCE, len(FEATURES))
    assert meta["holdout_accuracy"] > 0.8


def test_same_recipe_is_reused_not_rebuilt(built):
    again = artifact.ensure(built.path.parent, seed=7)
    assert again.path == built.path and again.sha256 == built.sha256


def test_build_is_deterministic(built, tmp_path):
    other = artifact.build(tmp_path, seed=7)
    assert other.sha256 == built.sha256
    assert np.array_equal(other.probe_rows(), built.probe_rows())


def test_a_changed_model_file_is_refused(built, tmp_path):
    copy = artifact.build(tmp_path, seed=7)
    copy.model_path.write_bytes(copy.model_path.read_bytes() + b"tampered")
    with pytest.raises(ArtifactError, match="sha256"):
        artifact.load(copy.path)
    with pytest.raises(ArtifactError, match="sha256"):
        artifact.ensure(tmp_path, seed=7)


def test_missing_or_foreign_metadata_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="metadata.json is missing"):
        artifact.load(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ArtifactError, match="format_version"):
        artifact.load(tmp_path)


def test_population_labels_depend_only_on_informative_features():
    pop = Population(seed=3)
    X, y = pop.sample(4000, np.random.default_rng(0))
    noise = X[:, len(INFORMATIVE):-1]
    # Class-conditional means of noise features are equal (within sampling error) ...
    for k in range(3):
        assert np.all(np.abs(noise[y == k].mean(axis=0)) < 0.1)
    # ... while informative ones separate the classes.
    spread = np.ptp([X[y == k, : len(INFORMATIVE)].mean(axis=0) for k in range(3)], axis=0)
    assert np.all(spread > 0.5)
    assert set(np.unique(X[:, -1])) <= {0.0, 1.0, 2.0, 3.0}
