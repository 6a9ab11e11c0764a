"""Tests of robust_dae_tf.metrics.frechet against independent computations."""

import warnings

import numpy as np
import pytest

from robust_dae_tf.errors import ConfigError, DataError
from robust_dae_tf.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)


def _random_spd(rng, dim):
    m = rng.normal(size=(dim, dim))
    return m @ m.T / dim + 0.1 * np.eye(dim)


def _eig_frechet(mu1, s1, mu2, s2):
    """Tr sqrt(s1 s2) = Tr sqrt(sqrt(s1) s2 sqrt(s1)), via symmetric eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sum(np.sqrt(np.clip(inner, 0, None)))
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert isinstance(got, float)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("dim", [1, 5, 32])
def test_random_spd_against_eigendecomposition(dim):
    rng = np.random.default_rng(dim)
    s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    np.testing.assert_allclose(
        frechet_distance(mu1, s1, mu2, s2), _eig_frechet(mu1, s1, mu2, s2), rtol=1e-8, atol=1e-10
    )


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(200, 16))
    mu, sigma = feature_statistics(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    assert abs(frechet_distance_from_features(feats, feats.copy())) < 1e-8


def test_feature_statistics_and_from_features():
    rng = np.random.default_rng(2)
    f1 = rng.normal(size=(50, 4)).astype(np.float32)
    f2 = rng.normal(loc=1.0, size=(60, 4))
    mu, sigma = feature_statistics(f1)
    assert mu.dtype == sigma.dtype == np.float64
    f64 = f1.astype(np.float64)
    np.testing.assert_allclose(mu, f64.mean(0))
    centred = f64 - f64.mean(0)
    np.testing.assert_allclose(sigma, centred.T @ centred / (50 - 1))  # N - 1
    mu2 = f2.mean(0)
    c2 = f2 - mu2
    want = _eig_frechet(f64.mean(0), centred.T @ centred / 49, mu2, c2.T @ c2 / 59)
    np.testing.assert_allclose(frechet_distance_from_features(f1, f2), want, rtol=1e-8)
    # Single feature column: covariance is [1, 1], not a scalar.
    mu1d, s1d = feature_statistics(f64[:, :1])
    assert s1d.shape == (1, 1)


def test_singular_covariances_use_eps_fallback():
    # sigma1 @ sigma2 == 0 (orthogonal rank-1 covariances): singular product.
    s1 = np.array([[1.0, 1.0], [1.0, 1.0]])
    s2 = np.array([[1.0, -1.0], [-1.0, 1.0]])
    mu = np.zeros(2)
    eps = 1e-6
    with pytest.warns(RuntimeWarning, match="singular"):
        got = frechet_distance(mu, s1, mu, s2, eps=eps)
    assert np.isfinite(got)
    off = eps * np.eye(2)
    np.testing.assert_allclose(got, _eig_frechet(mu, s1 + off, mu, s2 + off) - 4 * eps, rtol=1e-8)
    np.testing.assert_allclose(got, 4.0, atol=1e-2)  # exact value without the offset
    # Rank-deficient sample covariances (fewer samples than features) stay finite.
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = frechet_distance_from_features(rng.normal(size=(4, 10)), rng.normal(size=(4, 10)))
    assert np.isfinite(value)


def test_zero_covariance_is_singular_and_handled():
    mu = np.zeros(3)
    with pytest.warns(RuntimeWarning, match="singular"):
        got = frechet_distance(mu, np.diag([1.0, 0.0, 0.0]), mu, np.zeros((3, 3)))
    np.testing.assert_allclose(got, 1.0, atol=5e-3)


def test_nan_input_is_a_clear_error():
    s = np.eye(3)
    mu = np.zeros(3)
    with pytest.raises(DataError, match="NaN"):
        frechet_distance(np.array([0.0, np.nan, 0.0]), s, mu, s)
    bad = s.copy()
    bad[1, 1] = np.inf
    with pytest.raises(DataError, match="sigma2 contains NaN or Inf"):
        frechet_distance(mu, s, mu, bad)
    feats = np.ones((5, 3))
    feats[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        feature_statistics(feats)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(DataError, match="same length"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(DataError, match=r"sigma2 must be the \[3, 3\] covariance"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(DataError, match="matrix"):
        frechet_distance(np.zeros(3), np.zeros((3, 3, 1)), np.zeros(3), np.eye(3))
    with pytest.raises(DataError, match="same number of features"):
        frechet_distance_from_features(np.ones((5, 3)), np.ones((5, 4)))
    with pytest.raises(DataError, match="2-D"):
        feature_statistics(np.ones(5))
    with pytest.raises(DataError, match="at least 2"):
        feature_statistics(np.ones((1, 5)))
    with pytest.raises(ConfigError, match="eps"):
        frechet_distance(np.zeros(1), np.eye(1), np.zeros(1), np.eye(1), eps=0)


def test_large_imaginary_part_raises():
    # A non-PSD "covariance" whose product has negative eigenvalues -> complex sqrtm.
    s1 = np.diag([1.0, -1.0])
    s2 = np.eye(2)
    with pytest.raises(DataError, match="imaginary"):
        frechet_distance(np.zeros(2), s1, np.zeros(2), s2)
