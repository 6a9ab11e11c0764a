"""Tests of robust_dae_tf.evaluation.fidelity (formerly fid): prior sampling, feature extractors and the Frechet score."""

import json
import os
import time

import keras
import tensorflow as tf
import numpy as np
import pytest

from robust_dae_tf import priors
from robust_dae_tf.evaluation import fidelity as fid
from robust_dae_tf.errors import ConfigError, DataError, UserError
from robust_dae_tf.metrics.frechet import frechet_distance_from_features
from tests.helpers import digits_arrays
from tests.metrics.test_frechet import _eig_frechet


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
    result = fid.frechet_score(model, test_x, PixelStats(), num_samples=60, seed=5, batch_size=16)
    value = result.value
    z = fid.sample_prior(prior, 60, seed=5)
    decoded = np.concatenate([model.decode(z[i:i + 16]) for i in range(0, 60, 16)])
    want = frechet_distance_from_features(PixelStats()(decoded), PixelStats()(test_x[:60]))
    assert isinstance(value, float)
    np.testing.assert_allclose(value, want, rtol=1e-10)
    assert result.num_generated == 60 and result.num_reference == 60
    assert result.as_dict() == {"value": value, "num_generated": 60, "num_reference": 60,
                                "extractor": {"name": "pixel-stats"}, "seed": 5}
    # A brighter generator is further away.
    shifted = fid.frechet_score(DecodeToImages(test_x, prior, 0.3), test_x, PixelStats(), num_samples=60, seed=5)
    assert shifted.value > value + 0.01


def test_frechet_score_takes_a_dataset_and_matches_an_independent_computation(digits_float):
    """Dataset in, result out: the reference images stream from a tf.data.Dataset of (uint8 image,
    label) elements, as an Examples split holds them, and the distance equals one computed
    from the same features with numpy (eigendecompositions, tests/metrics/test_frechet.py)."""
    _, _, test_x, test_y = digits_float
    prior = {"type": "normal", "latent_dim": 3}
    model = DecodeToImages(test_x, prior, shift=0.1)
    uint8 = np.round(test_x * 255).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices({"image": uint8, "label": test_y})
    result = fid.frechet_score(model, dataset, PixelStats(), num_samples=50, seed=2, batch_size=16)
    z = fid.sample_prior(prior, 50, seed=2)
    gen = PixelStats()(np.concatenate([model.decode(z[i:i + 16]) for i in range(0, 50, 16)]))
    ref = PixelStats()(uint8[:50].astype(np.float32) / 255.0)
    want = _eig_frechet(gen.mean(0), np.cov(gen, rowvar=False), ref.mean(0), np.cov(ref, rowvar=False))
    np.testing.assert_allclose(result.value, want, rtol=1e-6)
    assert (result.num_generated, result.num_reference, result.seed) == (50, 50, 2)
    # The same images as an array give the same distance.
    assert fid.frechet_score(model, uint8, PixelStats(), num_samples=50, seed=2, batch_size=16).value == \
        pytest.approx(result.value, rel=1e-12)
    with pytest.raises(DataError, match="fewer than 2"):
        fid.frechet_score(model, dataset.take(1), PixelStats(), num_samples=50, seed=2)


def test_frechet_score_needs_a_prior(digits_float):
    model = DecodeToImages(digits_float[2], None)
    model.metadata = {}
    with pytest.raises(ConfigError, match="no prior"):
        fid.frechet_score(model, digits_float[2], PixelStats(), num_samples=10)


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
    resolve = fid.DatasetClassifierFeatures.resolve_epochs
    assert resolve(None, 1500) == 20  # 12 steps per epoch: capped at 20 epochs
    assert resolve(0, 60000) == 2  # 469 steps per epoch: 2 epochs >= 600 steps
    assert resolve(0, 20000) == 4  # 157 steps per epoch
    assert resolve(3, 1500) == 3
    assert resolve(0, 0) == 20  # unknown size: one step per epoch, capped
    with pytest.raises(ConfigError, match="epoch"):
        resolve(-1, 1500)


def test_feature_classifier_cache_is_one_place_per_user(monkeypatch, tmp_path):
    # Independent of the working directory, so every evaluation of a dataset reuses the
    # same extractor (FDs from separately trained extractors are on different scales).
    from robust_dae_tf.pipeline import evaluation

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
