import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from robust_dae_tf import config_lib
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.priors import GMMPrior, one_hot_centers, sobol_centers


def test_one_hot_centers_are_scaled_unit_vectors():
    centers = one_hot_centers(10, 10, 10.0)
    np.testing.assert_array_equal(centers, 10.0 * np.eye(10))


def test_one_hot_centers_beyond_latent_dim_use_negative_axes_and_stay_distinct():
    centers = one_hot_centers(6, 4, 2.0)
    np.testing.assert_array_equal(centers[4], [-2.0, 0, 0, 0])
    assert len({tuple(c) for c in centers}) == 6
    with pytest.raises(ConfigError, match="sobol"):
        one_hot_centers(9, 4, 1.0)


@pytest.mark.parametrize("k,d", [(10, 10), (20, 64), (7, 3)])
def test_sobol_centers_reach_min_distance(k, d):
    centers = sobol_centers(k, d, min_distance=6.0, seed=1)
    dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1)[~np.eye(k, dtype=bool)]
    assert centers.shape == (k, d)
    assert dist.min() >= 6.0
    assert dist.min() < 12.0  # doubling stops as soon as the distance is reached


def _scipy_marginal_cdf(z, centers, std):
    # F_GMM,d(z) = mean_k Phi((z - mu_kd) / std), eq. 3 with equal weights.
    return np.mean([scipy.stats.norm.cdf((z - c) / std) for c in centers], axis=0)


def test_marginal_cdf_matches_scipy():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 3)) * 3
    prior = GMMPrior(centers, std=0.7)
    z = rng.normal(size=(50, 3)) * 4
    np.testing.assert_allclose(prior.marginal_cdf(tf.constant(z, tf.float32)), _scipy_marginal_cdf(z, centers, 0.7), atol=1e-6)


def test_marginal_cdf_gradient_is_the_mixture_density_and_tails_saturate():
    centers = np.array([[-3.0, 0.0], [2.0, 5.0]])
    prior = GMMPrior(centers, std=1.5)
    z = tf.constant([[-1.0, 2.0], [0.5, -40.0], [60.0, 7.0]], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        cdf = prior.marginal_cdf(z)
        total = tf.reduce_sum(cdf)
    density = np.mean([scipy.stats.norm.pdf((z.numpy() - c) / 1.5) / 1.5 for c in centers], axis=0)
    np.testing.assert_allclose(tape.gradient(total, z), density, atol=1e-6)
    assert cdf[1, 1] == 0.0 and cdf[2, 0] == 1.0  # far tails are exact, not NaN


def test_marginal_cdf_propagates_nan_per_entry():
    prior = GMMPrior(np.eye(2) * 3.0, std=1.0)
    cdf = prior.marginal_cdf(tf.constant([[np.nan, 0.0]], tf.float32)).numpy()
    assert np.isnan(cdf[0, 0]) and np.isfinite(cdf[0, 1])


def test_covariance_law_of_total_variance_closed_form_and_monte_carlo():
    k, s = 10, 10.0
    prior = GMMPrior(one_hot_centers(k, k, s), std=1.0)
    # For centers s * e_k (K = D): Sigma = I + s^2 (I / K - 11^T / K^2).
    expected = np.eye(k) + s**2 * (np.eye(k) / k - np.ones((k, k)) / k**2)
    np.testing.assert_allclose(prior.covariance_numpy(), expected, atol=1e-12)
    samples = prior.sample(200_000, seed=tf.constant([1, 2])).numpy()
    np.testing.assert_allclose(np.cov(samples, rowvar=False), expected, atol=0.15)
    np.testing.assert_allclose(samples.mean(0), np.full(k, s / k), atol=0.05)


def test_sample_mode_draws_from_one_mode():
    prior = GMMPrior(one_hot_centers(4, 4, 10.0), std=0.5)
    draws = prior.sample_mode(2, 20_000, seed=(3, 4)).numpy()
    np.testing.assert_allclose(draws.mean(0), [0, 0, 10, 0], atol=0.02)
    np.testing.assert_allclose(draws.std(0), 0.5, atol=0.01)
    with pytest.raises(ConfigError):
        prior.sample_mode(4, 1)


def test_from_config_and_to_dict():
    config = config_lib.base_config()
    prior = GMMPrior.from_config(config.prior, config.model.latent_dim)
    meta = prior.to_dict()
    assert meta["num_modes"] == 10 and meta["latent_dim"] == 10 and meta["std"] == 1.0
    np.testing.assert_array_equal(np.array(meta["centers"]), 10 * np.eye(10))
    config.prior.centers = "grid"
    with pytest.raises(ConfigError, match="prior.centers"):
        GMMPrior.from_config(config.prior, 10)


def test_invalid_prior_arguments():
    with pytest.raises(ConfigError):
        GMMPrior(np.zeros((3,)), 1.0)
    with pytest.raises(ConfigError):
        GMMPrior(np.zeros((3, 2)), 0.0)


def test_from_dict_round_trips_and_host_sampling_is_the_numpy_stream():
    """One GMM sampler on the host (`sample_numpy`, used for FD prior samples): mode k with
    probability weights[k], then mu_k + std * eps, from one NumPy PCG64 stream."""
    prior = GMMPrior(one_hot_centers(4, 3, 2.0), std=0.5)
    again = GMMPrior.from_dict(prior.to_dict())
    assert again.to_dict() == prior.to_dict() and again.to_dict()["weights"] == [0.25] * 4
    np.testing.assert_array_equal(again.covariance_numpy(), prior.covariance_numpy())
    centers, weights = np.array([[0.0, 1.0], [3.0, -2.0], [5.0, 5.0]]), [0.6, 0.3, 0.1]
    weighted = GMMPrior.from_dict({"type": "gmm", "centers": centers.tolist(), "std": 0.5, "weights": weights})
    rng = np.random.default_rng(7)
    modes = rng.choice(3, size=1000, p=np.array(weights) / np.sum(weights))
    want = (centers[modes] + 0.5 * rng.standard_normal((1000, 2))).astype(np.float32)
    np.testing.assert_array_equal(weighted.sample_numpy(1000, seed=7), want)
    # The weights reach the statistics too: mean, eq. 5 and the marginal CDF of eq. 3.
    np.testing.assert_allclose(weighted.mean_numpy(), np.array(weights) @ centers)
    centered = centers - np.array(weights) @ centers
    np.testing.assert_allclose(weighted.covariance_numpy(),
                               0.25 * np.eye(2) + sum(w * np.outer(c, c) for w, c in zip(weights, centered)),
                               atol=1e-12)
    z = np.array([[0.3, -1.0], [4.0, 2.0]], np.float32)
    cdf = sum(w * scipy.stats.norm.cdf(z, loc=c, scale=0.5) for w, c in zip(weights, centers))
    np.testing.assert_allclose(weighted.marginal_cdf(z).numpy(), cdf, atol=1e-6)
    with pytest.raises(ConfigError, match="weights must be 3 non-negative numbers summing to 1"):
        GMMPrior(centers, 0.5, weights=[0.9, 0.9, 0.1])
    with pytest.raises(ConfigError, match="not a GMM prior"):
        GMMPrior.from_dict({"type": "normal", "latent_dim": 2})
