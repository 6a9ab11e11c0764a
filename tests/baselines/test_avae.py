"""Tests of robust_dae_tf.baselines.avae (the AVAE of Cemgil et al. 2020) against
numpy / scipy: Gauss-Hermite quadrature for the coupling expectations, scipy for
entropies, the closed-form Gaussian KL for the self-consistency term."""

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from robust_dae_tf import models
from robust_dae_tf.baselines import avae
from robust_dae_tf.baselines.avae import AutoencodingVariationalAutoencoder
from robust_dae_tf.baselines.vae import VariationalAutoencoder, build_gaussian_networks
from robust_dae_tf.errors import ConfigError
from tests.helpers import assert_baseline_export_round_trip, digits_arrays, small_config

# Gauss-Hermite (probabilists') nodes: E_{u ~ N(0,1)} f(u) = sum_i W[i] f(U[i]), exact
# for polynomials of degree < 2 * 40 (the integrands below are quadratic in u).
U, W = np.polynomial.hermite_e.hermegauss(40)
W = W / np.sqrt(2 * np.pi)


def _np_gaussian_kl(a, u, b, v):
    """KL(N(a, u) || N(b, v)) element-wise (u, v variances)."""
    return 0.5 * (np.log(v / u) + (u + (a - b) ** 2) / v - 1.0)


def _np_bernoulli_nll(x, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(len(x), -1).sum(1)


def _np_vae_kl(mean, log_var):
    return 0.5 * (mean**2 + np.exp(log_var) - 1.0 - log_var).sum(1)


def _quadrature_coupling_nll(m2, lv2, m, s2, rho):
    """-E_{z ~ N(m, s2), z' ~ N(m2, e^lv2)} sum_d log N(z'; rho z, 1 - rho^2) by 2-D
    quadrature with scipy's log density, per row."""
    sd = np.sqrt(1 - rho**2)
    z = m[..., None, None] + np.sqrt(s2)[..., None, None] * U[:, None]  # [N, D, i, 1]
    z2 = m2[..., None, None] + np.exp(0.5 * lv2)[..., None, None] * U[None, :]  # [N, D, 1, j]
    log_r = scipy.stats.norm.logpdf(z2, loc=rho * z, scale=sd)  # [N, D, i, j]
    return -(log_r * W[:, None] * W[None, :]).sum((-1, -2)).sum(-1)


# ---------------------------------------------------------------- the terms


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.975])
def test_coupling_nll_matches_quadrature_over_both_codes(rho):
    rng = np.random.default_rng(0)
    m2, lv2, m, lv = rng.normal(size=(4, 5, 3))
    got = avae.coupling_nll(m2, lv2, m, np.exp(lv), rho).numpy()
    assert got.shape == (5,)
    np.testing.assert_allclose(got, _quadrature_coupling_nll(m2, lv2, m, np.exp(lv), rho), rtol=1e-10)


def test_coupling_nll_with_a_fixed_code_matches_scipy():
    # source_var = 0: z is a point; only z' is integrated out.
    rng = np.random.default_rng(1)
    m2, lv2, z = rng.normal(size=(3, 4, 6))
    rho = 0.8
    got = avae.coupling_nll(m2, lv2, z, np.zeros_like(z), rho).numpy()
    z2 = m2[..., None] + np.exp(0.5 * lv2)[..., None] * U
    expected = -(scipy.stats.norm.logpdf(z2, rho * z[..., None], np.sqrt(1 - rho**2)) * W).sum(-1).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_gaussian_entropy_matches_scipy():
    log_var = np.random.default_rng(2).normal(size=(4, 7))
    expected = scipy.stats.norm(scale=np.exp(0.5 * log_var)).entropy().sum(1)
    np.testing.assert_allclose(avae.gaussian_entropy(log_var).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("rho", [0.3, 0.975])
def test_self_consistency_is_the_expected_kl_to_the_coupling(rho):
    # coupling_nll - entropy = E_{z ~ N(m, s2)} KL(N(m2, v2) || N(rho z, 1 - rho^2)) >= 0.
    rng = np.random.default_rng(3)
    m2, lv2, m, lv = rng.normal(size=(4, 6, 3))
    got = (avae.coupling_nll(m2, lv2, m, np.exp(lv), rho) - avae.gaussian_entropy(lv2)).numpy()
    z = m[..., None] + np.exp(0.5 * lv)[..., None] * U
    kl = _np_gaussian_kl(m2[..., None], np.exp(lv2)[..., None], rho * z, 1 - rho**2)
    expected = (kl * W).sum(-1).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert (got > 0).all()
    # A re-encoding that IS the coupling of a fixed z costs nothing.
    c = 1 - rho**2
    zero = avae.coupling_nll(rho * m, np.full_like(m, np.log(c)), m, np.zeros_like(m), rho) - avae.gaussian_entropy(
        np.full_like(m, np.log(c))
    )
    np.testing.assert_allclose(zero.numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("rho", [-0.1, 1.0, 1.5, float("nan")])
def test_rho_outside_unit_interval_is_refused(rho):
    with pytest.raises(ConfigError, match="avae.rho"):
        avae.coupling_nll(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), rho)


# ---------------------------------------------------------------- the model


IMAGE_SHAPE = (8, 8, 1)


def _tiny_networks(latent_dim=3, seed=0):
    config = small_config("avae")
    config.model.latent_dim = latent_dim
    config.model.hidden_units = (16,)
    keras.utils.set_random_seed(seed)
    return build_gaussian_networks(config.model, IMAGE_SHAPE)


def _tiny_model(**kwargs):
    posterior, decoder = _tiny_networks()
    return AutoencodingVariationalAutoencoder(posterior, decoder, seed=3, **kwargs)


def _images(n=5, seed=4):
    return np.random.default_rng(seed).uniform(size=(n, *IMAGE_SHAPE)).astype(np.float32)


@pytest.mark.parametrize("coupling_expectation", ["analytic", "sample"])
def test_every_term_matches_numpy(coupling_expectation):
    model = _tiny_model(rho=0.9, self_consistency_weight=1.0, coupling_expectation=coupling_expectation)
    x = _images()
    loss, values = model.compute_terms(tf.constant(x), training=False, step=7, stream=0)
    # The chain, step by step: z ~ q(z|x) (the VAE's seed), x' = decoder mean, z' ~ q(z'|x').
    (seed,) = model.step_seeds(7, 0, 1)
    mean, log_var = (t.numpy().astype(np.float64) for t in model.posterior(x))
    z = model.sample_posterior(mean.astype(np.float32), log_var.astype(np.float32), seed).numpy().astype(np.float64)
    x_rec = model.decoder(z.astype(np.float32)).numpy().astype(np.float64)
    m2, lv2 = (t.numpy().astype(np.float64) for t in model.posterior(x_rec.astype(np.float32)))
    source = (mean, np.exp(log_var)) if coupling_expectation == "analytic" else (z, np.zeros_like(z))
    coupling = _quadrature_coupling_nll(m2, lv2, *source, 0.9).mean()
    entropy = scipy.stats.norm(scale=np.exp(0.5 * lv2)).entropy().sum(1).mean()
    expected = {
        "reconstruction": _np_bernoulli_nll(x, x_rec).mean(),
        "kl": _np_vae_kl(mean, log_var).mean(),
        "coupling_nll": coupling,
        "reencoded_entropy": entropy,
        "self_consistency": coupling - entropy,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(values[name].numpy(), value, rtol=2e-5, atol=2e-5, err_msg=name)
    total = expected["reconstruction"] + expected["kl"] + expected["self_consistency"]
    np.testing.assert_allclose(loss.numpy(), total, rtol=2e-5)
    assert set(values) == set(AutoencodingVariationalAutoencoder.metric_names)


def test_objective_is_the_weighted_sum_of_its_parts():
    model = _tiny_model(self_consistency_weight=2.5)
    loss, v = model.compute_terms(tf.constant(_images()), training=True, step=1, stream=0)
    v = {k: float(t.numpy()) for k, t in v.items()}
    np.testing.assert_allclose(float(loss), v["reconstruction"] + v["kl"] + 2.5 * v["self_consistency"], rtol=1e-6)
    np.testing.assert_allclose(v["loss"], float(loss))
    np.testing.assert_allclose(v["self_consistency"], v["coupling_nll"] - v["reencoded_entropy"], rtol=1e-6)
    assert v["self_consistency"] > 0


def test_zero_weight_is_exactly_the_vae_objective_and_gradient():
    posterior, decoder = _tiny_networks()
    avae_model = AutoencodingVariationalAutoencoder(posterior, decoder, seed=3, self_consistency_weight=0.0)
    vae_model = VariationalAutoencoder(posterior, decoder, seed=3)  # the same networks and seed
    x = tf.constant(_images())

    def loss_and_grads(model):
        with tf.GradientTape() as tape:
            loss, _ = model.compute_terms(x, training=True, step=5, stream=0)
        return loss, tape.gradient(loss, posterior.trainable_variables + decoder.trainable_variables)

    loss_a, grads_a = loss_and_grads(avae_model)
    loss_v, grads_v = loss_and_grads(vae_model)
    assert float(loss_a) == float(loss_v)
    for ga, gv in zip(grads_a, grads_v):
        np.testing.assert_array_equal(ga.numpy(), gv.numpy())
    # ...and a positive weight does change it.
    weighted = AutoencodingVariationalAutoencoder(posterior, decoder, seed=3, self_consistency_weight=1.0)
    assert float(weighted.compute_terms(x, training=True, step=5, stream=0)[0]) > float(loss_v)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_gradients_are_finite_and_stop_gradient_keeps_the_decoder_out(stop_gradient):
    model = _tiny_model(stop_gradient_decoder_sample=stop_gradient)
    x = tf.constant(_images())
    with tf.GradientTape(persistent=True) as tape:
        loss, values = model.compute_terms(x, training=True, step=2, stream=0)
        sc = values["self_consistency"]
    for grad in tape.gradient(loss, model.trainable_variables):
        assert grad is not None and np.isfinite(grad.numpy()).all()
    decoder_grads = tape.gradient(sc, model.decoder.trainable_variables)
    encoder_grads = tape.gradient(sc, model.posterior_network.trainable_variables)
    decoder_norm = sum(float(tf.reduce_sum(tf.abs(g))) for g in decoder_grads if g is not None)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in encoder_grads) > 0
    if stop_gradient:
        assert decoder_norm == 0.0
    else:
        assert decoder_norm > 0.0


def test_decoder_sample_modes():
    p = tf.constant(np.random.default_rng(5).uniform(0.05, 0.95, size=(400, *IMAGE_SHAPE)).astype(np.float32))
    seed = tf.constant([1, 2], tf.int64)
    mean_model = _tiny_model(decoder_sample="mean")
    np.testing.assert_array_equal(mean_model.sample_decoder(p, seed).numpy(), p.numpy())

    bernoulli = _tiny_model(decoder_sample="sample").sample_decoder(p, seed).numpy()
    assert set(np.unique(bernoulli)) == {0.0, 1.0}
    residual = (bernoulli - p.numpy()).mean(0)  # per-pixel mean over 400 draws ~ p
    assert np.abs(residual).max() < 0.1 and abs(residual.mean()) < 0.01

    gaussian = _tiny_model(decoder_sample="sample", reconstruction="gaussian").sample_decoder(p, seed).numpy()
    noise = gaussian - p.numpy()
    assert abs(noise.std() - avae.GAUSSIAN_LIKELIHOOD_STD) < 0.02 and abs(noise.mean()) < 0.02


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"rho": 1.0}, "avae.rho"),
        ({"self_consistency_weight": -1.0}, "avae.self_consistency_weight"),
        ({"decoder_sample": "mode"}, "avae.decoder_sample"),
        ({"coupling_expectation": "mc"}, "avae.coupling_expectation"),
        ({"stop_gradient_decoder_sample": "yes"}, "avae.stop_gradient_decoder_sample"),
    ],
)
def test_bad_settings_name_their_config_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        _tiny_model(**kwargs)


# ---------------------------------------------------------------- build, train, export


def test_build_model_reads_the_avae_section():
    config = small_config("avae")
    config.avae.rho = 0.5
    config.avae.self_consistency_weight = 3.0
    config.avae.decoder_sample = "sample"
    config.avae.coupling_expectation = "sample"
    config.avae.stop_gradient_decoder_sample = False
    model = models.build_model(config, (32, 32, 1))
    assert isinstance(model, AutoencodingVariationalAutoencoder)
    assert (model.rho, model.self_consistency_weight, model.decoder_sample) == (0.5, 3.0, "sample")
    assert model.coupling_expectation == "sample" and model.stop_gradient_decoder_sample is False
    assert model.reconstruction == config.vae.reconstruction
    assert model.loss_weights["rho"] == 0.5
    config.avae.decoder_sample = "median"
    with pytest.raises(ConfigError, match="avae.decoder_sample"):
        models.build_model(config, (32, 32, 1))
    config.model.variant = "vae"
    with pytest.raises(ConfigError):
        avae.build(config, (32, 32, 1))


@pytest.fixture(scope="module")
def trained():
    """An AVAE trained for 3 epochs on 600 embedded digits; (model, eval before, eval after, images)."""
    xtr, _, xte, _ = digits_arrays()
    config = small_config("avae")
    keras.utils.set_random_seed(0)
    model = models.build_model(config, xtr.shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    held_out = xte[:200]
    before = model.evaluate(held_out, batch_size=100, verbose=0, return_dict=True)
    history = model.fit(xtr[:600], batch_size=100, epochs=3, verbose=0, shuffle=False)
    after = model.evaluate(held_out, batch_size=100, verbose=0, return_dict=True)
    return model, before, after, history.history, held_out


def test_trains_on_digits_with_falling_loss(trained):
    _, before, after, history, _ = trained
    assert set(AutoencodingVariationalAutoencoder.metric_names) <= set(history)
    assert all(np.isfinite(v).all() for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert after["loss"] < 0.9 * before["loss"]
    assert after["reconstruction"] < before["reconstruction"]


def test_export_round_trip_encodes_the_posterior_mean(trained, tmp_path):
    model, _, _, _, images = trained
    loaded = assert_baseline_export_round_trip(model, tmp_path / "avae", {"variant": "avae"})
    z = np.random.default_rng(6).normal(size=(4, model.latent_dim)).astype(np.float32)
    np.testing.assert_allclose(loaded.decode(z).numpy(), model.decoder(z).numpy(), rtol=1e-5, atol=1e-5)
    assert loaded.metadata["variant"] == "avae"
