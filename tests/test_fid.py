"""Tests of robust_dae_tf.fid: prior sampling, feature extractors and the Frechet score."""

import json
import os
import time

import keras
import tensorflow as tf
import numpy as np
import pytest

from robust_dae_tf import components, fid, priors
from robust_dae_tf.errors import ConfigError, UserError
from robust_dae_tf.metrics.frechet import frechet_distance_from_features
from tests.helpers import digits_arrays


@pytest.fixture(scope="module")
def digits_examples(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("fid_examples") / "examples")
    return components.ExampleGen("digits")({"examples": uri})["examples"]


@pytest.fixture(scope="module")
def digits_float():
    return digits_arrays()


def _total_variance(centers, weights, std):
    """Sigma = std^2 I + sum_k w_k (mu_k - mu_bar)(mu_k - mu_bar)^T, written out term by term."""
    d = centers.shape[1]
    mu_bar = sum(w * c for w, c in zip(weights, centers))
    sigma = std**2 * np.eye(d)
    for w, c in zip(weights, centers):
        sigma += w * np.outer(c - mu_bar, c - mu_bar)
    return mu_bar, sigma


def test_sample_prior_gmm_moments_match_metadata():
    prior = priors.GMMPrior(priors.one_hot_centers(10, 10, 10.0), std=1.5).to_dict()
    z = fid.sample_prior(prior, 100_000, seed=3)
    assert z.shape == (100_000, 10) and z.dtype == np.float32
    mean, cov = _total_variance(np.array(prior["centers"]), prior["weights"], prior["std"])
    np.testing.assert_allclose(z.mean(0), mean, atol=0.08)
    np.testing.assert_allclose(np.cov(z, rowvar=False), cov, atol=0.25)
    # Independent implementation of eq. 5 in priors.py agrees too.
    np.testing.assert_allclose(np.cov(z, rowvar=False), priors.GMMPrior(prior["centers"], 1.5).covariance_numpy(),
                               atol=0.25)


def test_sample_prior_respects_unequal_weights_and_seed():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4, size=(3, 2))
    prior = {"type": "gmm", "centers": centers.tolist(), "std": 0.5, "weights": [0.6, 0.3, 0.1]}
    z = fid.sample_prior(prior, 80_000, seed=1)
    mean, cov = _total_variance(centers, prior["weights"], 0.5)
    np.testing.assert_allclose(z.mean(0), mean, atol=0.06)
    np.testing.assert_allclose(np.cov(z, rowvar=False), cov, atol=0.2)
    m2, c2 = fid.prior_moments(prior)
    np.testing.assert_allclose(m2, mean)
    np.testing.assert_allclose(c2, cov)
    np.testing.assert_array_equal(fid.sample_prior(prior, 5, seed=7), fid.sample_prior(prior, 5, seed=7))
    assert not np.array_equal(fid.sample_prior(prior, 5, seed=7), fid.sample_prior(prior, 5, seed=8))


def test_sample_prior_standard_normal():
    z = fid.sample_prior({"type": "normal", "latent_dim": 4}, 50_000, seed=0)
    assert z.shape == (50_000, 4)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(4), atol=0.03)


@pytest.mark.parametrize("prior, words", [
    ({"type": "flow"}, "unknown prior type 'flow'"),
    ({}, "no prior description"),
    ({"type": "normal"}, "latent_dim"),
    ({"type": "gmm", "centers": [[0, 0], [1, 1]], "weights": [0.9, 0.9]}, "weights"),
])
def test_sample_prior_rejects_bad_descriptions(prior, words):
    with pytest.raises(ConfigError, match=words):
        fid.sample_prior(prior, 3)


class PixelStats(fid.FeatureExtractor):
    """Deterministic toy extractor: per-image mean, std and quadrant means."""

    name = "pixel-stats"
    batch_size = 7

    def _features(self, images):
        x = images.numpy()
        h, w = x.shape[1] // 2, x.shape[2] // 2
        quads = [x[:, :h, :w], x[:, :h, w:], x[:, h:, :w], x[:, h:, w:]]
        feats = [x.mean((1, 2, 3)), x.std((1, 2, 3))] + [q.mean((1, 2, 3)) for q in quads]
        return tf.constant(np.stack(feats, 1))


class DecodeToImages:
    """Fake autoencoder: decode(z) picks images by a hash of z (so samples look like data)."""

    def __init__(self, images, prior, shift=0.0):
        self.images, self.shift = images, shift
        self.metadata = {"prior": prior}
        self.calls = 0

    def decode(self, z):
        self.calls += 1
        idx = (np.abs(np.asarray(z)[:, 0]) * 1000).astype(int) % len(self.images)
        return np.clip(self.images[idx] + self.shift, 0, 1)


def test_frechet_score_plumbing_matches_manual_computation(digits_float):
    _, _, test_x, _ = digits_float
    prior = {"type": "normal", "latent_dim": 3}
    model = DecodeToImages(test_x, prior)
    details = {}
    value = fid.frechet_score(model, test_x, PixelStats(), num_samples=60, seed=5, batch_size=16, details=details)
    z = fid.sample_prior(prior, 60, seed=5)
    decoded = np.concatenate([model.decode(z[i:i + 16]) for i in range(0, 60, 16)])
    want = frechet_distance_from_features(PixelStats()(decoded), PixelStats()(test_x[:60]))
    assert isinstance(value, float)
    np.testing.assert_allclose(value, want, rtol=1e-10)
    assert details["num_generated"] == 60 and details["num_reference"] == 60
    # A brighter generator is further away.
    shifted = fid.frechet_score(DecodeToImages(test_x, prior, 0.3), test_x, PixelStats(), num_samples=60, seed=5)
    assert shifted > value + 0.01


def test_frechet_score_needs_a_prior(digits_float):
    model = DecodeToImages(digits_float[2], None)
    model.metadata = {}
    with pytest.raises(ConfigError, match="no prior"):
        fid.frechet_score(model, digits_float[2], PixelStats(), num_samples=10)


def test_dataset_classifier_features_cached_and_sensitive_to_shift(digits_examples, tmp_path, digits_float):
    uri = str(tmp_path / "fd_digits")
    extractor = fid.DatasetClassifierFeatures.load_or_train(uri, digits_examples, epochs=1, verbose=0)
    assert extractor.name == "FD-digits-classifier"
    marker = components.read_artifact(uri, fid.FEATURE_EXTRACTOR_TYPE)
    assert 0.0 <= marker.properties["test_accuracy"] <= 1.0
    assert marker.properties["task"] == "classifier" and marker.properties["epochs"] == 1
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    stamp = os.path.getmtime(os.path.join(uri, "artifact.json"))
    time.sleep(0.01)
    again = fid.DatasetClassifierFeatures.load_or_train(uri, digits_examples, epochs=1, verbose=0)  # cached
    assert os.path.getmtime(os.path.join(uri, "artifact.json")) == stamp
    with pytest.raises(UserError, match="feature extractor trained with"):
        fid.DatasetClassifierFeatures.load_or_train(uri, digits_examples, epochs=2, verbose=0)

    x = digits_float[2]
    feats = extractor(x)
    assert feats.shape == (len(x), 128) and feats.dtype == np.float64
    np.testing.assert_allclose(again(x), feats, rtol=1e-5, atol=1e-5)
    assert abs(frechet_distance_from_features(feats, extractor(x.copy()))) < 1e-6
    rng = np.random.default_rng(0)
    distances = [frechet_distance_from_features(
        feats, extractor(np.clip(x + s * rng.standard_normal(x.shape).astype(np.float32), 0, 1)))
        for s in (0.05, 0.2, 0.5)]
    assert distances[0] > 1e-4
    assert distances[0] < distances[1] < distances[2]


def test_inception_offline_fails_fast_with_flag_hint(monkeypatch):
    import keras.src.utils.file_utils as file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    start = time.time()
    with pytest.raises(UserError, match=r"--inception_weights=<file \.h5>"):
        fid.InceptionFeatures()
    assert time.time() - start < 60
    with pytest.raises(UserError, match="is not a file"):
        fid.InceptionFeatures("/nonexistent/weights.h5")


def test_inception_features_from_a_local_weights_file(tmp_path):
    path = str(tmp_path / "inception.weights.h5")
    keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                   input_shape=(299, 299, 3)).save_weights(path)
    extractor = fid.InceptionFeatures(path)
    assert extractor.name == "FID-keras-inception"
    assert "not comparable" in json.dumps(extractor.describe())
    rng = np.random.default_rng(0)
    gray = rng.random((2, 32, 32, 1), dtype=np.float32)
    feats = extractor(gray)
    assert feats.shape == (2, 2048) and np.all(np.isfinite(feats))
    # Grayscale is tiled to RGB: the same image as 3 equal channels gives the same features.
    np.testing.assert_allclose(extractor(np.repeat(gray, 3, axis=-1)), feats, rtol=1e-5, atol=1e-5)


def test_resolve_epochs_automatic_and_explicit():
    def examples(n):
        return components.Artifact("Examples", "", {"num_examples": {"train": n, "test": 10}})

    resolve = fid.DatasetClassifierFeatures.resolve_epochs
    assert resolve(None, examples(1500)) == 20  # 12 steps per epoch: capped at 20 epochs
    assert resolve(0, examples(60000)) == 2  # 469 steps per epoch: 2 epochs >= 600 steps
    assert resolve(0, examples(20000)) == 4  # 157 steps per epoch
    assert resolve(3, examples(1500)) == 3
    with pytest.raises(ConfigError, match="epoch"):
        resolve(-1, examples(1500))


def test_unlabelled_dataset_uses_rotation_prediction(tmp_path):
    """celeb_a has no labels (-1): the extractor learns to predict 0/90/180/270 degree rotations."""
    rng = np.random.default_rng(0)
    uri = tmp_path / "examples"
    for split, n in (("train", 64), ("test", 16)):
        images = (rng.random((n, 16, 16, 3)) * 255).astype(np.uint8)
        tf.data.Dataset.from_tensor_slices({"image": images, "label": np.full(n, -1, np.int64)}).save(
            str(uri / split))
    artifact = components.Artifact("Examples", str(uri), {
        "source": {"dataset": "celeb_a", "data_dir": ""}, "image_shape": [16, 16, 3], "num_classes": 0,
        "num_examples": {"train": 64, "test": 16}})
    components.write_marker(artifact, "test")
    extractor = fid.DatasetClassifierFeatures.load_or_train(str(tmp_path / "fd"), artifact, epochs=1, verbose=0)
    assert extractor.name == "FD-celeb_a-rotation"
    assert extractor.properties["task"] == "rotation" and extractor.properties["num_outputs"] == 4
    assert extractor(rng.random((5, 16, 16, 3)).astype(np.float32)).shape == (5, 128)


def test_feature_classifier_cache_is_one_place_per_user(monkeypatch, tmp_path):
    # Independent of the working directory, so every evaluation of a dataset reuses the
    # same extractor (FDs from separately trained extractors are on different scales).
    from robust_dae_tf import evaluation

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = os.path.join(str(tmp_path / "xdg"), "robust_dae_tf", "feature_extractors")
    assert fid.default_feature_cache() == expected
    monkeypatch.chdir(tmp_path)
    assert evaluation.FidEvaluator().feature_cache == expected
    assert evaluation.FidEvaluator(feature_cache="here").feature_cache == "here"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fid.default_feature_cache() == os.path.join(str(tmp_path / "home"), ".cache", "robust_dae_tf",
                                                       "feature_extractors")
