"""Tests of robust_dae_tf.baselines.vae_losses against independent numpy / scipy formulas."""

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import tensorflow as tf

from robust_dae_tf.baselines import vae_losses
from robust_dae_tf.errors import ConfigError


# ---------------------------------------------------------------- KL and log density


@pytest.mark.parametrize("mean,log_var", [(0.0, 0.0), (1.3, -0.7), (-2.0, 1.1), (0.4, -3.0)])
def test_gaussian_kl_1d_matches_numeric_integration(mean, log_var):
    std = np.exp(0.5 * log_var)
    q = scipy.stats.norm(mean, std)
    p = scipy.stats.norm(0.0, 1.0)
    integrand = lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z))
    expected, _ = scipy.integrate.quad(integrand, mean - 15 * std, mean + 15 * std, limit=200)
    got = vae_losses.gaussian_kl(np.array([[mean]]), np.array([[log_var]]))
    assert got.shape == (1,)
    np.testing.assert_allclose(got.numpy()[0], expected, rtol=1e-6, atol=1e-9)


def test_gaussian_kl_2d_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = np.array([0.7, -1.2])
    log_var = np.array([-0.5, 0.8])
    cov = np.diag(np.exp(log_var))
    q = scipy.stats.multivariate_normal(mean, cov)
    p = scipy.stats.multivariate_normal(np.zeros(2), np.eye(2))
    samples = q.rvs(size=200_000, random_state=rng)
    log_ratio = q.logpdf(samples) - p.logpdf(samples)
    estimate = log_ratio.mean()
    standard_error = log_ratio.std() / np.sqrt(len(log_ratio))
    got = vae_losses.gaussian_kl(mean[None], log_var[None]).numpy()[0]
    assert abs(got - estimate) < 4 * standard_error, (got, estimate, standard_error)


def test_gaussian_kl_batch_matches_matrix_formula():
    # KL(N(m, S) || N(0, I)) = 1/2 (tr S + m^T m - k - log det S) with S = diag(exp(lv)).
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(7, 5))
    log_var = rng.normal(size=(7, 5))
    expected = [
        0.5 * (np.trace(np.diag(np.exp(lv))) + m @ m - 5 - np.linalg.slogdet(np.diag(np.exp(lv)))[1])
        for m, lv in zip(mean, log_var)
    ]
    got = vae_losses.gaussian_kl(mean, log_var)
    assert got.shape == (7,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_gaussian_log_density_matches_scipy_and_broadcasts():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4, 1, 3))
    mean = rng.normal(size=(1, 6, 3))
    log_var = rng.normal(size=(1, 6, 3))
    got = vae_losses.gaussian_log_density(z, mean, log_var)
    expected = scipy.stats.norm.logpdf(z, loc=mean, scale=np.exp(0.5 * log_var))
    assert got.shape == (4, 6, 3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


# ---------------------------------------------------------------- reparameterisation


def test_reparameterize_is_seeded_and_has_the_right_moments():
    mean = tf.fill([200_000, 2], tf.constant(1.5, tf.float64)) * tf.constant([1.0, -1.0], tf.float64)
    log_var = tf.fill([200_000, 2], tf.constant(0.0, tf.float64)) + tf.constant([np.log(0.25), np.log(4.0)], tf.float64)
    seed = tf.constant([3, 7])
    z1 = vae_losses.reparameterize(mean, log_var, seed).numpy()
    z2 = vae_losses.reparameterize(mean, log_var, seed).numpy()
    z3 = vae_losses.reparameterize(mean, log_var, tf.constant([3, 8])).numpy()
    np.testing.assert_array_equal(z1, z2)
    assert not np.allclose(z1, z3)
    # Sample mean within 5 standard errors, sample variance within 2 %.
    standard_errors = np.sqrt(np.array([0.25, 4.0]) / 200_000)
    assert np.all(np.abs(z1.mean(0) - [1.5, -1.5]) < 5 * standard_errors), z1.mean(0)
    np.testing.assert_allclose(z1.var(0), [0.25, 4.0], rtol=0.02)
    # Each column is standard normal after standardisation (Kolmogorov-Smirnov).
    assert scipy.stats.kstest((z1[:, 1] + 1.5) / 2.0, "norm").pvalue > 1e-3


def test_reparameterize_gradients():
    mean = tf.Variable([[0.3, -0.2]], dtype=tf.float64)
    log_var = tf.Variable([[0.4, -1.0]], dtype=tf.float64)
    seed = tf.constant([0, 1])
    eps = tf.random.stateless_normal([1, 2], seed=seed, dtype=tf.float64).numpy()
    with tf.GradientTape(persistent=True) as tape:
        z = vae_losses.reparameterize(mean, log_var, seed)
        total = tf.reduce_sum(z)
    np.testing.assert_allclose(z.numpy(), mean.numpy() + np.exp(0.5 * log_var.numpy()) * eps)
    np.testing.assert_allclose(tape.gradient(total, mean).numpy(), np.ones((1, 2)))
    np.testing.assert_allclose(
        tape.gradient(total, log_var).numpy(), 0.5 * np.exp(0.5 * log_var.numpy()) * eps
    )


@pytest.mark.parametrize("seed", [tf.constant([1, 2, 3]), tf.constant(5), tf.constant([0.5, 1.0])])
def test_reparameterize_rejects_bad_seeds(seed):
    with pytest.raises(ConfigError):
        vae_losses.reparameterize(tf.zeros([2, 2]), tf.zeros([2, 2]), seed)


# ---------------------------------------------------------------- reconstruction


def test_bernoulli_nll_matches_scipy_for_binary_pixels():
    rng = np.random.default_rng(3)
    x = (rng.uniform(size=(5, 4, 4, 1)) > 0.5).astype(np.float64)
    probs = rng.uniform(0.05, 0.95, size=(5, 4, 4, 1))
    expected = -scipy.stats.bernoulli.logpmf(x, probs).reshape(5, -1).sum(1)
    got = vae_losses.reconstruction_nll(x, probs)
    assert got.shape == (5,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_bernoulli_nll_grey_pixels_and_logits_agree():
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(3, 28, 28))
    logits = rng.normal(scale=2.0, size=(3, 28, 28))
    probs = 1.0 / (1.0 + np.exp(-logits))
    expected = -(x * np.log(probs) + (1 - x) * np.log(1 - probs)).reshape(3, -1).sum(1)
    np.testing.assert_allclose(vae_losses.reconstruction_nll(x, probs).numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(
        vae_losses.reconstruction_nll(x, logits, from_logits=True).numpy(), expected, rtol=1e-9
    )


def test_bernoulli_nll_is_finite_at_saturated_probabilities():
    x = np.array([[0.0, 1.0, 1.0]])
    probs = np.array([[1.0, 0.0, 1.0]])
    # Probabilities are clipped to [1e-7, 1 - 1e-7]: two wrong pixels cost -log(1e-7)
    # each, the right one -log(1 - 1e-7).
    expected = -2 * np.log(1e-7) - np.log1p(-1e-7)
    got = vae_losses.reconstruction_nll(x, probs).numpy()
    np.testing.assert_allclose(got, [expected], rtol=1e-9)
    got32 = vae_losses.reconstruction_nll(x.astype(np.float32), probs.astype(np.float32)).numpy()
    assert np.isfinite(got32).all() and got32.dtype == np.float32


def test_gaussian_nll_matches_scipy():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(4, 6, 6, 3))
    x_rec = rng.uniform(size=(4, 6, 6, 3))
    expected = -scipy.stats.norm.logpdf(x, loc=x_rec, scale=0.3).reshape(4, -1).sum(1)
    got = vae_losses.reconstruction_nll(x, x_rec, kind="gaussian", gaussian_std=0.3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "laplace"},
        {"kind": "gaussian", "gaussian_std": 0.0},
        {"kind": "gaussian", "gaussian_std": -1.0},
        {"kind": "gaussian", "from_logits": True},
    ],
)
def test_reconstruction_nll_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        vae_losses.reconstruction_nll(tf.zeros([2, 3]), tf.zeros([2, 3]), **kwargs)


def test_reconstruction_nll_rejects_mismatched_shapes():
    with pytest.raises(ConfigError):
        vae_losses.reconstruction_nll(tf.zeros([2, 3]), tf.zeros([2, 4]))


# ---------------------------------------------------------------- beta-TCVAE


def _numpy_tc_terms(z, mean, log_var, dataset_size, estimator):
    """Direct transcription of Chen et al.'s estimators with explicit weights, no logsumexp."""
    m, d = z.shape
    n = dataset_size
    std = np.exp(0.5 * log_var)
    weights = np.empty((m, m))
    for i in range(m):
        for j in range(m):
            if estimator == "mws":
                weights[i, j] = 1.0 / (n * m)
            elif i == j:
                weights[i, j] = 1.0 / n
            elif j == (i + 1) % m:
                weights[i, j] = (n - m + 1) / (n * (m - 1))
            else:
                weights[i, j] = 1.0 / (m - 1)
    log_qz, log_qz_prod, log_qzx, log_pz = [], [], [], []
    for i in range(m):
        dens = scipy.stats.norm.pdf(z[i][None, :], mean, std)  # [j, d]
        log_qz.append(np.log(np.sum(weights[i] * np.prod(dens, axis=1))))
        log_qz_prod.append(np.sum(np.log(weights[i] @ dens)))
        log_qzx.append(np.sum(scipy.stats.norm.logpdf(z[i], mean[i], std[i])))
        log_pz.append(np.sum(scipy.stats.norm.logpdf(z[i])))
    log_qz, log_qz_prod = np.array(log_qz), np.array(log_qz_prod)
    log_qzx, log_pz = np.array(log_qzx), np.array(log_pz)
    return {
        "mutual_information": np.mean(log_qzx - log_qz),
        "total_correlation": np.mean(log_qz - log_qz_prod),
        "dimension_wise_kl": np.mean(log_qz_prod - log_pz),
    }


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_terms_match_independent_numpy_transcription(estimator):
    rng = np.random.default_rng(6)
    mean = rng.normal(size=(9, 3))
    log_var = rng.normal(scale=0.3, size=(9, 3))
    z = mean + np.exp(0.5 * log_var) * rng.normal(size=(9, 3))
    got = vae_losses.beta_tcvae_terms(z, mean, log_var, dataset_size=50, estimator=estimator)
    expected = _numpy_tc_terms(z, mean, log_var, 50, estimator)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key], rtol=1e-9, err_msg=key)


def test_mss_importance_weights_rows_sum_to_one():
    for m, n in [(2, 2), (5, 5), (7, 1000)]:
        weights = np.exp(vae_losses._mss_log_weights(tf.constant(m), n, tf.float64).numpy())
        np.testing.assert_allclose(weights.sum(axis=1), np.ones(m), rtol=1e-12)
        np.testing.assert_allclose(np.diag(weights), np.full(m, 1.0 / n))


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_terms_sum_to_the_monte_carlo_kl(estimator):
    rng = np.random.default_rng(7)
    mean = rng.normal(size=(32, 4))
    log_var = rng.normal(scale=0.5, size=(32, 4))
    z = mean + np.exp(0.5 * log_var) * rng.normal(size=(32, 4))
    terms = vae_losses.beta_tcvae_terms(z, mean, log_var, dataset_size=60_000, estimator=estimator)
    mc_kl = np.mean(
        scipy.stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)).sum(1)
        - scipy.stats.norm.logpdf(z).sum(1)
    )
    np.testing.assert_allclose(sum(float(v) for v in terms.values()), mc_kl, rtol=1e-9)


def _aggregate_posterior_batch(rho, batch_size, posterior_std, seed):
    """Posterior means mu_n ~ N(0, [[1, rho], [rho, 1]]), q(z|n) = N(mu_n, std^2 I).

    The aggregate posterior of infinitely many such posteriors is
    N(0, Sigma + std^2 I), whose total correlation is -1/2 log det(corr) =
    -1/2 log(1 - rho'^2) with rho' = rho / (1 + std^2).
    """
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, rho], [rho, 1.0]])
    mean = rng.multivariate_normal(np.zeros(2), cov, size=batch_size)
    log_var = np.full_like(mean, 2 * np.log(posterior_std))
    z = mean + posterior_std * rng.normal(size=mean.shape)
    rho_aggregate = rho / (1.0 + posterior_std**2)
    true_tc = -0.5 * np.log(1.0 - rho_aggregate**2)
    return z, mean, log_var, true_tc


# Tolerance for the TC estimates below: batch M = 2000, posterior std h = 0.3 (the
# batch acts as a kernel density estimate of the aggregate posterior with bandwidth h,
# ~100 posterior means inside one bandwidth). The Monte-Carlo standard error of the
# mean of the per-sample log ratio is ~0.5 / sqrt(2000) ~ 0.011, and the Jensen /
# smoothing bias of the log of the kernel sum is O(1 / (M h^2)) ~ 0.005, so 0.05
# (> 4 standard errors + bias) passes reliably while a wrong estimator (e.g. off by a
# log-weight, or MWS without its offset: +7.6 nats) fails by far.
TC_TOLERANCE = 0.05
TC_BATCH = 2000
TC_STD = 0.3


@pytest.mark.parametrize("rho", [0.8, 0.0])
@pytest.mark.parametrize("dataset_size", [TC_BATCH, 50_000])
def test_mss_total_correlation_recovers_known_tc(rho, dataset_size):
    z, mean, log_var, true_tc = _aggregate_posterior_batch(rho, TC_BATCH, TC_STD, seed=10)
    terms = vae_losses.beta_tcvae_terms(z, mean, log_var, dataset_size, estimator="mss")
    assert abs(float(terms["total_correlation"]) - true_tc) < TC_TOLERANCE, (
        float(terms["total_correlation"]),
        true_tc,
    )


@pytest.mark.parametrize("rho", [0.8, 0.0])
@pytest.mark.parametrize("dataset_size", [TC_BATCH, 50_000])
def test_mws_total_correlation_recovers_known_tc_up_to_its_documented_offset(rho, dataset_size):
    # MWS (the paper's estimator, default) subtracts log(N M) where a calibrated density
    # estimate subtracts log M, so in this regime its TC is offset by (D - 1) log N
    # (documented in beta_tcvae_terms); the offset is parameter-independent.
    z, mean, log_var, true_tc = _aggregate_posterior_batch(rho, TC_BATCH, TC_STD, seed=11)
    terms = vae_losses.beta_tcvae_terms(z, mean, log_var, dataset_size)
    offset = (2 - 1) * np.log(dataset_size)
    assert abs(float(terms["total_correlation"]) - offset - true_tc) < TC_TOLERANCE, (
        float(terms["total_correlation"]) - offset,
        true_tc,
    )


def test_tc_correlated_exceeds_independent():
    tc = {}
    for rho in (0.0, 0.9):
        z, mean, log_var, _ = _aggregate_posterior_batch(rho, 500, TC_STD, seed=12)
        tc[rho] = float(vae_losses.beta_tcvae_terms(z, mean, log_var, 500, "mss")["total_correlation"])
    assert tc[0.9] > tc[0.0] + 0.3


def test_tc_terms_are_differentiable():
    rng = np.random.default_rng(13)
    mean = tf.Variable(rng.normal(size=(16, 3)))
    log_var = tf.Variable(rng.normal(scale=0.3, size=(16, 3)))
    for estimator in ("mws", "mss"):
        with tf.GradientTape() as tape:
            z = vae_losses.reparameterize(mean, log_var, tf.constant([1, 2]))
            terms = vae_losses.beta_tcvae_terms(z, mean, log_var, 1000, estimator)
            loss = terms["mutual_information"] + 6.0 * terms["total_correlation"] + terms["dimension_wise_kl"]
        grads = tape.gradient(loss, [mean, log_var])
        assert all(np.isfinite(g.numpy()).all() for g in grads)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dataset_size": 4},  # smaller than the batch of 8
        {"dataset_size": 0},
        {"dataset_size": 100.0},
        {"dataset_size": 100, "estimator": "kde"},
    ],
)
def test_tc_terms_reject_bad_arguments(kwargs):
    z = tf.zeros([8, 2])
    with pytest.raises(ConfigError):
        vae_losses.beta_tcvae_terms(z, z, z, **kwargs)


def test_tc_mss_rejects_a_batch_of_one():
    z = tf.zeros([1, 2])
    with pytest.raises(ConfigError):
        vae_losses.beta_tcvae_terms(z, z, z, 10, "mss")
