"""VAE / beta-VAE (`robust_dae_tf.baselines.vae`): objective, posterior-mean encoder,
N(0, I) prior metadata, training, multi-device equivalence and export."""

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf

from robust_dae_tf import models
from robust_dae_tf.evaluation import fidelity as fid
from robust_dae_tf.baselines import vae
from robust_dae_tf.errors import ConfigError
from tests.helpers import (
    assert_baseline_export_round_trip,
    assert_two_replicas_match_one_device,
    digits_arrays,
    small_config,
)


def _build(name="vae", **vae_fields):
    config = small_config(name)
    for key, value in vae_fields.items():
        config.vae[key] = value
    return models.build_model(config, (32, 32, 1))


def _numpy_objective(model, x, beta, seed):
    """-ELBO from the networks' raw outputs, written independently with numpy/scipy."""
    out = model.posterior_network(x).numpy().astype(np.float64)
    d = model.latent_dim
    mean, log_var = out[:, :d], np.clip(out[:, d:], -12.0, 8.0)
    eps = tf.random.stateless_normal(mean.shape, seed=seed).numpy()
    z = mean + np.exp(0.5 * log_var) * eps
    p = np.clip(model.decoder(tf.constant(z, tf.float32)).numpy().astype(np.float64), 1e-7, 1 - 1e-7)
    xx = x.astype(np.float64)
    nll = -(xx * np.log(p) + (1 - xx) * np.log1p(-p)).reshape(len(x), -1).sum(1)
    kl = 0.5 * (np.exp(log_var) + mean**2 - 1.0 - log_var).sum(1)
    return nll.mean() + beta * kl.mean(), nll.mean(), kl.mean()


@pytest.mark.parametrize("name,beta", [("vae", 1.0), ("beta_vae", 4.0)])
def test_objective_is_the_beta_elbo_computed_independently(name, beta):
    model = _build(name)
    assert model.beta == beta
    x = digits_arrays()[2][:20]
    loss, values = model.compute_terms(tf.constant(x), training=False, step=3, stream=1)
    (seed,) = model.step_seeds(3, 1, 1)
    expected, nll, kl = _numpy_objective(model, x, beta, seed)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(values["reconstruction"]), nll, rtol=1e-5)
    np.testing.assert_allclose(float(values["kl"]), kl, rtol=1e-4)


def test_encode_is_the_posterior_mean_and_the_prior_is_standard_normal():
    model = _build()
    x = tf.constant(digits_arrays()[2][:8])
    mean, log_var = model.posterior(x)
    np.testing.assert_array_equal(model.encode(x), mean)
    np.testing.assert_array_equal(model.encoder(x), mean)
    assert model.prior.to_dict() == {"type": "normal", "latent_dim": 10}
    # The evaluation's FID sampler understands this metadata: N(0, I) draws.
    draws = fid.sample_prior(model.prior.to_dict(), 20000, seed=1)
    np.testing.assert_allclose(draws.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(draws.std(0), 1.0, atol=0.03)


def test_reparameterised_samples_follow_the_posterior():
    model = _build()
    mean = tf.fill([20000, 2], 1.5)
    log_var = tf.fill([20000, 2], np.log(0.25).astype(np.float32))
    z = model.sample_posterior(mean, log_var, tf.constant([4, 5], tf.int64)).numpy()
    np.testing.assert_allclose(z.mean(0), 1.5, atol=0.01)
    np.testing.assert_allclose(z.std(0), 0.5, atol=0.01)
    # Bernoulli NLL with p = sigmoid(0) is log 2 per pixel.
    half = tf.fill([1, 4, 4, 1], 0.5)
    np.testing.assert_allclose(model.reconstruction_nll(half, half), [16 * np.log(2.0)], rtol=1e-6)
    assert np.isclose(scipy.special.expit(0.0), 0.5)


def test_gaussian_likelihood_and_bad_settings():
    model = _build(reconstruction="gaussian")
    x = tf.fill([1, 2, 2, 1], 0.25)
    # sum over 4 pixels of 0.5 (x - r)^2 + 0.5 log(2 pi), std 1
    np.testing.assert_allclose(model.reconstruction_nll(x, tf.zeros_like(x)), [4 * (0.5 * 0.0625 + 0.5 * np.log(2 * np.pi))], rtol=1e-6)
    with pytest.raises(ConfigError, match="reconstruction"):
        _build(reconstruction="poisson")
    with pytest.raises(ConfigError, match="beta"):
        _build("beta_vae", beta=-1.0)
    config = small_config("vae")
    config.model.variant = "robust"
    with pytest.raises(ConfigError, match="vae.build"):
        vae.build(config, (32, 32, 1))


def test_training_lowers_the_loss_and_test_step_is_deterministic():
    x = digits_arrays()[0][:600]
    model = _build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, batch_size=100, epochs=3, verbose=0, shuffle=False)
    assert history.history["loss"][-1] < 0.9 * history.history["loss"][0]
    first = model.evaluate(x[:200], batch_size=100, verbose=0, return_dict=True)
    second = model.evaluate(x[:200], batch_size=100, verbose=0, return_dict=True)
    # Same seed stream (stream 1, step 0) for evaluation: equal up to float summation order.
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-6, err_msg=name)


def test_mirrored_strategy_on_two_cpus_matches_one_device():
    assert_two_replicas_match_one_device(_build, digits_arrays()[0][:300].reshape(3, 100, 32, 32, 1))


def test_export_round_trip_encodes_the_posterior_mean(tmp_path):
    model = _build("beta_vae")
    path = str(tmp_path / "sm")
    loaded = assert_baseline_export_round_trip(model, path, {"variant": "beta_vae"})
    z = tf.random.stateless_normal([4, 10], seed=[1, 2])
    np.testing.assert_allclose(loaded.decode(z), model.decode(z), atol=1e-6)
    assert loaded.metadata["prior"] == {"type": "normal", "latent_dim": 10}
