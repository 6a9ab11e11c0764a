"""Losses against independent numpy/scipy formulas (eqs. 4, 5, 7-10)."""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from robust_dae_tf import losses
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.priors import GMMPrior, one_hot_centers


@pytest.fixture(scope="module")
def prior():
    rng = np.random.default_rng(42)
    return GMMPrior(rng.normal(size=(4, 3)) * 3, std=1.3)


def np_cdf(z, prior):
    centers = prior.centers.numpy().astype(np.float64)
    return np.mean([scipy.stats.norm.cdf((z - c) / prior.std) for c in centers], axis=0)


def np_ks(z, prior):
    n = z.shape[0]
    zs = np.sort(z, axis=0)
    ecdf = np.arange(1, n + 1)[:, None] / n
    return np.mean((np_cdf(zs, prior) - ecdf) ** 2)


def np_cov(z):
    return np.cov(z, rowvar=False, bias=True).reshape(z.shape[1], z.shape[1])


def np_sigma(prior):
    c = prior.centers.numpy().astype(np.float64)
    c = c - c.mean(0)
    return prior.std**2 * np.eye(c.shape[1]) + c.T @ c / c.shape[0]


def t(x):
    return tf.constant(x, tf.float32)


def test_ks_loss_matches_numpy(prior):
    z = np.random.default_rng(0).normal(size=(64, 3)) * 4
    np.testing.assert_allclose(losses.ks_loss(t(z), prior), np_ks(z, prior), rtol=1e-4)


def test_ks_loss_prior_batch_scores_lower_than_shifted():
    prior = GMMPrior(one_hot_centers(10, 10, 10.0), 1.0)
    z = prior.sample(200, seed=tf.constant([0, 1]))
    assert float(losses.ks_loss(z, prior)) < 0.2 * float(losses.ks_loss(z + 3.0, prior))
    assert float(losses.covariance_loss(z, prior)) < 0.2 * float(losses.covariance_loss(2.0 * z, prior))


def test_ks_loss_with_ties_is_order_free(prior):
    z = np.repeat(np.random.default_rng(1).normal(size=(5, 3)), 4, axis=0)  # every value 4 times
    np.testing.assert_allclose(losses.ks_loss(t(z), prior), np_ks(z, prior), rtol=1e-4)
    np.testing.assert_allclose(losses.ks_loss(t(z[::-1]), prior), np_ks(z, prior), rtol=1e-4)


def test_batch_of_one(prior):
    z = np.array([[0.3, -1.0, 2.0]])
    np.testing.assert_allclose(losses.ks_loss(t(z), prior), np.mean((np_cdf(z, prior) - 1.0) ** 2), rtol=1e-5)
    np.testing.assert_allclose(losses.covariance_loss(t(z), prior), np.mean(np_sigma(prior) ** 2), rtol=1e-5)


def test_nan_input_gives_nan(prior):
    z = np.random.default_rng(2).normal(size=(8, 3))
    z[3, 1] = np.nan
    assert np.isnan(losses.ks_loss(t(z), prior))
    assert np.isnan(losses.covariance_loss(t(z), prior))
    assert np.isnan(losses.coupled_covariance_loss(t(z), t(z), prior, 0.5))


def test_covariance_loss_matches_numpy(prior):
    z = np.random.default_rng(3).normal(size=(100, 3)) * 2 + 1
    expected = np.mean((np_cov(z) - np_sigma(prior)) ** 2)
    np.testing.assert_allclose(losses.covariance_loss(t(z), prior), expected, rtol=1e-4)


def test_augmented_ks_is_eq7_average(prior):
    rng = np.random.default_rng(4)
    z, za = rng.normal(size=(32, 3)), rng.normal(size=(32, 3)) * 3
    expected = 0.5 * np_ks(z, prior) + 0.5 * np_ks(za, prior)
    np.testing.assert_allclose(losses.augmented_ks_loss(t(z), t(za), prior), expected, rtol=1e-4)


def test_two_sample_ks_matches_numpy_and_vanishes_for_equal_marginals(prior):
    rng = np.random.default_rng(5)
    z, za = rng.normal(size=(40, 3)) * 3, rng.normal(size=(40, 3)) * 3 + 1
    expected = np.mean((np_cdf(np.sort(z, 0), prior) - np_cdf(np.sort(za, 0), prior)) ** 2)
    np.testing.assert_allclose(losses.two_sample_ks_loss(t(z), t(za), prior), expected, rtol=1e-4)
    assert float(losses.two_sample_ks_loss(t(z), t(z), prior)) == 0.0
    permuted = np.stack([rng.permutation(z[:, d]) for d in range(3)], axis=1)
    assert float(losses.two_sample_ks_loss(t(z), t(permuted), prior)) == 0.0


def test_adversarial_ks_is_eq9(prior):
    rng = np.random.default_rng(6)
    z, za = rng.normal(size=(16, 3)), rng.normal(size=(16, 3)) + 0.5
    two = np.mean((np_cdf(np.sort(z, 0), prior) - np_cdf(np.sort(za, 0), prior)) ** 2)
    aug = 0.5 * np_ks(z, prior) + 0.5 * np_ks(za, prior)
    for w in (1.0, 2.5):
        np.testing.assert_allclose(
            losses.adversarial_ks_loss(t(z), t(za), prior, w), 2 / 3 * aug + w / 3 * two, rtol=1e-4
        )
        # A two-sample term the caller already computed is used as given, not recomputed.
        given = losses.two_sample_ks_loss(t(z), t(za), prior)
        assert float(losses.adversarial_ks_loss(t(z), t(za), prior, w, two_sample=given)) == float(
            losses.adversarial_ks_loss(t(z), t(za), prior, w)
        )
        np.testing.assert_allclose(
            losses.adversarial_ks_loss(t(z), t(za), prior, w, two_sample=t(3.0)),
            2 / 3 * aug + w, rtol=1e-4,
        )


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.3, 1.0])
def test_coupled_covariance_matches_numpy_block_formula(prior, alpha):
    rng = np.random.default_rng(7)
    z = rng.normal(size=(50, 3)) * 2
    za = z + rng.normal(size=(50, 3))
    s = np_sigma(prior)
    target = np.block([[s, alpha * s], [alpha * s, s]])
    joint = np.concatenate([z, za], axis=1)
    expected = np.sum((np_cov(joint) - target) ** 2) / (4 * 3**2)  # the 1/(4 D^2) of eqs. 8 and 10
    np.testing.assert_allclose(losses.coupled_covariance_loss(t(z), t(za), prior, alpha), expected, rtol=1e-4)


def test_ignoring_the_cross_block_matches_numpy_and_is_blind_to_cross_covariance(prior):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(80, 3)) * 2
    s = np_sigma(prior)
    expected = lambda a, b: (np.sum((np_cov(a) - s) ** 2) + np.sum((np_cov(b) - s) ** 2)) / (2 * 3**2)  # noqa: E731
    za = rng.normal(size=(80, 3)) * 2  # independent of z
    got = losses.coupled_covariance_loss(t(z), t(za), prior, 0.7, cross_covariance="ignore")
    np.testing.assert_allclose(got, expected(z, za), rtol=1e-4)
    # Same marginal covariances, full correlation (z_adv = z): the same loss, whereas
    # the eq. 8 target (cross block 0) penalises the correlation.
    np.testing.assert_allclose(
        losses.coupled_covariance_loss(t(z), t(z), prior, 0.0, cross_covariance="ignore"), expected(z, z), rtol=1e-4
    )
    np.testing.assert_allclose(expected(z, z), float(losses.covariance_loss(t(z), prior)), rtol=1e-4)
    zp = prior.sample(300, seed=tf.constant([5, 6])).numpy()  # prior-like: diagonal blocks ~ right
    ignore = float(losses.coupled_covariance_loss(t(zp), t(zp), prior, 0.0, cross_covariance="ignore"))
    assert float(losses.coupled_covariance_loss(t(zp), t(zp), prior, 0.0)) > 5 * ignore
    with pytest.raises(ConfigError, match="loss.cross_covariance"):
        losses.coupled_covariance_loss(t(z), t(z), prior, 0.0, cross_covariance="zero")


def test_full_coupling_with_identical_latents_has_no_coupling_error(prior):
    z = prior.sample(300, seed=tf.constant([8, 8])).numpy()
    # alpha = 1 and z_adv = z: every block has the same error as eq. 5 -> equal losses.
    np.testing.assert_allclose(
        losses.coupled_covariance_loss(t(z), t(z), prior, 1.0), losses.covariance_loss(t(z), prior), rtol=1e-5
    )
    # With alpha = 0 the cross blocks of prior-like latents are pulled to 0: larger loss.
    assert float(losses.coupled_covariance_loss(t(z), t(z), prior, 0.0)) > float(losses.covariance_loss(t(z), prior))


def test_gradients_are_finite_including_ties(prior):
    z = tf.Variable(np.repeat(np.random.default_rng(9).normal(size=(6, 3)), 3, axis=0).astype(np.float32))
    za = tf.Variable(np.random.default_rng(10).normal(size=(18, 3)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        values = [
            losses.ks_loss(z, prior),
            losses.covariance_loss(z, prior),
            losses.adversarial_ks_loss(z, za, prior, 2.0),
            losses.coupled_covariance_loss(z, za, prior, 0.5),
        ]
    for value in values:
        grads = tape.gradient(value, [z, za], unconnected_gradients="zero")
        assert all(np.all(np.isfinite(g.numpy())) for g in grads)
        assert any(np.abs(g.numpy()).sum() > 0 for g in grads)


def test_ks_gradient_matches_finite_differences(prior):
    z0 = np.random.default_rng(11).normal(size=(10, 3)) * 2
    z = tf.Variable(z0.astype(np.float32))
    with tf.GradientTape() as tape:
        value = losses.ks_loss(z, prior)
    grad = tape.gradient(value, z).numpy()
    eps = 1e-4
    i, d = 4, 1
    plus, minus = z0.copy(), z0.copy()
    plus[i, d] += eps
    minus[i, d] -= eps
    numeric = (np_ks(plus, prior) - np_ks(minus, prior)) / (2 * eps)
    np.testing.assert_allclose(grad[i, d], numeric, rtol=2e-2, atol=1e-6)


def test_reconstruction_loss_is_pixel_mse():
    rng = np.random.default_rng(12)
    x, y = rng.random((4, 8, 8, 1)), rng.random((4, 8, 8, 1))
    np.testing.assert_allclose(losses.reconstruction_loss(t(x), t(y)), np.mean((x - y) ** 2), rtol=1e-5)


def test_estimated_weights_normalise_prior_losses_to_one():
    prior = GMMPrior(one_hot_centers(10, 10, 10.0), 1.0)
    weights = losses.estimate_loss_weights(prior, batch_size=100, num_batches=40, seed=3)
    assert weights == losses.estimate_loss_weights(prior, batch_size=100, num_batches=40, seed=3)
    # Fresh prior batches: weighted losses average to ~1.
    ks, cv = [], []
    for i in range(40):
        z = prior.sample(100, seed=tf.constant([99, i]))
        ks.append(weights["ks"] * float(losses.ks_loss(z, prior)))
        cv.append(weights["covariance"] * float(losses.covariance_loss(z, prior)))
    assert 0.75 < np.mean(ks) < 1.33
    assert 0.75 < np.mean(cv) < 1.33
    assert weights["two_sample_ks"] > 0


def np_two_sample(z, za, prior):
    return np.mean((np_cdf(np.sort(z, 0), prior) - np_cdf(np.sort(za, 0), prior)) ** 2)


def np_coupled_covariance(z, za, prior, alpha):
    s = np_sigma(prior)
    target = np.block([[s, alpha * s], [alpha * s, s]])
    return np.mean((np_cov(np.concatenate([z, za], axis=1)) - target) ** 2)


@pytest.fixture(scope="module")
def mnist_prior_pairs():
    """The MNIST prior and the seeded pairs of prior batches both estimators draw."""
    prior = GMMPrior(one_hot_centers(10, 10, 10.0), 1.0)
    pairs = [
        tuple(prior.sample(100, seed=tf.constant([5, 2 * i + j], tf.int32)).numpy().astype(np.float64) for j in (0, 1))
        for i in range(20)
    ]
    return prior, pairs


@pytest.mark.parametrize("alpha", [0.0, 0.9, 1.0])
def test_reference_weights_match_numpy(mnist_prior_pairs, alpha):
    prior, pairs = mnist_prior_pairs
    got = losses.estimate_reference_loss_weights(prior, 100, num_batches=20, coupling=alpha, seed=5)
    expected = {
        "ks": 1 / np.mean([np_ks(np.concatenate([z, za], axis=0), prior) for z, za in pairs]),  # one 2N batch
        "two_sample_ks": 1 / np.mean([np_two_sample(z, za, prior) for z, za in pairs]),
        "covariance": 1 / np.mean([np_coupled_covariance(z, za, prior, alpha) for z, za in pairs]),
    }
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, err_msg=name)


def test_reference_weights_pool_the_ks_batch_and_weaken_the_coupling_with_alpha():
    prior = GMMPrior(one_hot_centers(10, 10, 10.0), 1.0)
    paper = losses.estimate_loss_weights(prior, 100, num_batches=20, seed=1)
    ref = {a: losses.estimate_reference_loss_weights(prior, 100, 20, coupling=a, seed=1) for a in (0.0, 0.9, 1.0)}
    # Pooled 2N batch: the KS loss halves, its weight doubles; the KS and two-sample
    # weights do not depend on alpha, the two-sample weight is the paper's (same draws).
    assert 1.8 < ref[0.0]["ks"] / paper["ks"] < 2.2
    assert ref[0.0]["ks"] == ref[0.9]["ks"] == ref[1.0]["ks"]
    assert ref[0.9]["two_sample_ks"] == paper["two_sample_ks"]
    # Independent prior batches have no cross-covariance: the coupled loss grows with
    # alpha, its weight falls; at alpha 0 it is close to eq. 5's weight, at 0.9 ~6x smaller.
    assert ref[0.0]["covariance"] > ref[0.9]["covariance"] > ref[1.0]["covariance"]
    assert 0.8 < ref[0.0]["covariance"] / paper["covariance"] < 1.2
    assert 4 < paper["covariance"] / ref[0.9]["covariance"] < 8


def test_reference_ks_loss_pools_the_two_batches(prior):
    rng = np.random.default_rng(13)
    z, za = rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) * 2
    np.testing.assert_allclose(
        losses.reference_ks_loss(t(z), t(za), prior), np_ks(np.concatenate([z, za]), prior), rtol=1e-4
    )
