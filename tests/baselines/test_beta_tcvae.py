"""beta-TCVAE (Chen et al. 2018): objective assembly against numpy, the KL identity,
dataset-size handling, training, export and building from a config."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp

from robust_dae_tf import models
from robust_dae_tf.baselines import beta_tcvae
from robust_dae_tf.baselines.beta_tcvae import BetaTCVAE
from robust_dae_tf.baselines.vae import VariationalAutoencoder
from robust_dae_tf.errors import ConfigError
from tests.helpers import assert_baseline_export_round_trip, digits_arrays, small_config

LOG_2PI = np.log(2 * np.pi)


def _config(**fields):
    config = small_config("beta_tcvae")
    config.model.hidden_units = (32, 32)
    for key, value in fields.items():
        config.beta_tcvae[key] = value
    return config


def _build(**fields):
    keras.utils.set_random_seed(0)
    return models.build_model(_config(**fields), (32, 32, 1))


def _sample(model, x, step):
    """The posterior parameters and the samples z that `compute_terms` uses at `step`."""
    mean, log_var = model.posterior(x)
    (seed,) = model.step_seeds(step, 0, 1)
    z = model.sample_posterior(mean, log_var, seed)
    return mean.numpy().astype(np.float64), log_var.numpy().astype(np.float64), z


def _numpy_terms(z, mean, log_var, n, estimator):
    """Independent transcription of Chen et al.'s estimators (sec. 4.1 / app. C.2)."""
    m, _ = z.shape
    # l[i, j, d] = log N(z_id; mean_jd, exp(log_var_jd))
    diff = z[:, None, :] - mean[None, :, :]
    l = -0.5 * (LOG_2PI + log_var[None] + diff**2 / np.exp(log_var[None]))
    log_q_cond = np.einsum("iid->i", l)
    log_p = (-0.5 * (LOG_2PI + z**2)).sum(1)
    if estimator == "mws":
        log_w = np.full((m, m), -np.log(n * m))
    else:
        w = np.full((m, m), 1.0 / (m - 1))
        w[np.arange(m), (np.arange(m) + 1) % m] = (n - m + 1) / (n * (m - 1))
        w[np.arange(m), np.arange(m)] = 1.0 / n
        log_w = np.log(w)
    log_qz = logsumexp(log_w + l.sum(2), axis=1)
    log_prod = logsumexp(log_w[:, :, None] + l, axis=1).sum(1)
    return {
        "mutual_information": np.mean(log_q_cond - log_qz),
        "total_correlation": np.mean(log_qz - log_prod),
        "dimension_wise_kl": np.mean(log_prod - log_p),
        "mc_kl": np.mean(log_q_cond - log_p),
    }


def _numpy_bernoulli_nll(x, p):
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    x = x.astype(np.float64)
    return np.mean(-(x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(len(x), -1).sum(1))


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_objective_is_reconstruction_plus_weighted_terms(estimator):
    # Distinct weights so that a swapped or dropped weight changes the objective.
    model = _build(alpha=0.5, beta=6.0, gamma=2.0, estimator=estimator, dataset_size=1500)
    x = digits_arrays()[0][:24]
    loss, values = model.compute_terms(tf.constant(x), training=False, step=3, stream=0)
    mean, log_var, z = _sample(model, x, 3)
    expected = _numpy_terms(z.numpy().astype(np.float64), mean, log_var, 1500, estimator)
    recon = _numpy_bernoulli_nll(x, model.decoder(z).numpy())
    kl = np.mean(0.5 * (np.exp(log_var) + mean**2 - 1 - log_var).sum(1))
    for name in ("mutual_information", "total_correlation", "dimension_wise_kl"):
        np.testing.assert_allclose(values[name], expected[name], rtol=1e-4, atol=1e-3, err_msg=name)
    np.testing.assert_allclose(values["reconstruction"], recon, rtol=1e-5)
    np.testing.assert_allclose(values["kl"], kl, rtol=1e-4, atol=1e-5)
    total = recon + 0.5 * expected["mutual_information"] + 6.0 * expected["total_correlation"] + 2.0 * expected[
        "dimension_wise_kl"
    ]
    np.testing.assert_allclose(loss, total, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(values["loss"], loss)
    assert set(values) == set(BetaTCVAE.metric_names)


def test_unit_weights_give_the_vae_objective_with_a_monte_carlo_kl():
    """alpha = beta = gamma = 1: MI + TC + dimension-wise KL = log q(z|x) - log p(z)
    exactly (per sample), whose expectation is the VAE's analytic KL."""
    model = _build(alpha=1.0, beta=1.0, gamma=1.0, dataset_size=1500)
    vae = VariationalAutoencoder(model.posterior_network, model.decoder, beta=1.0, seed=model.seed)
    x = tf.constant(digits_arrays()[0][:48])
    compute = tf.function(lambda step: model.compute_terms(x, training=False, step=step, stream=0))
    compute_vae = tf.function(lambda step: vae.compute_terms(x, training=False, step=step, stream=0))
    mc_kl, kl = [], []
    for step in range(200):
        loss, values = compute(tf.constant(step))
        vae_loss, vae_values = compute_vae(tf.constant(step))
        # Same seed stream -> same z -> the same reconstruction term as the VAE.
        np.testing.assert_allclose(values["reconstruction"], vae_values["reconstruction"], rtol=1e-6)
        np.testing.assert_allclose(vae_loss, vae_values["reconstruction"] + vae_values["kl"], rtol=1e-6)
        terms_sum = values["mutual_information"] + values["total_correlation"] + values["dimension_wise_kl"]
        np.testing.assert_allclose(loss, values["reconstruction"] + terms_sum, rtol=1e-6)
        if step < 3:  # the sum is the per-sample Monte-Carlo KL (numpy, same z)
            mean, log_var, z = _sample(model, x, step)
            expected = _numpy_terms(z.numpy().astype(np.float64), mean, log_var, 1500, "mws")["mc_kl"]
            np.testing.assert_allclose(terms_sum, expected, rtol=1e-4, atol=1e-3)
        mc_kl.append(float(terms_sum))
        kl.append(float(values["kl"]))
    np.testing.assert_allclose(kl, kl[0], rtol=1e-6)  # analytic KL does not depend on the sample
    standard_error = np.std(mc_kl) / np.sqrt(len(mc_kl))
    assert abs(np.mean(mc_kl) - kl[0]) < 4 * standard_error + 1e-3, (np.mean(mc_kl), kl[0], standard_error)


def test_mws_terms_move_with_the_dataset_size_by_the_documented_offsets():
    x = tf.constant(digits_arrays()[0][:20])
    model = _build(dataset_size=1000)
    _, small = model.compute_terms(x, training=False, step=0, stream=0)
    model.dataset_size = 8000
    _, large = model.compute_terms(x, training=False, step=0, stream=0)
    shift, d = np.log(8.0), model.latent_dim
    np.testing.assert_allclose(large["mutual_information"] - small["mutual_information"], shift, rtol=1e-3)
    np.testing.assert_allclose(large["total_correlation"] - small["total_correlation"], (d - 1) * shift, rtol=1e-3)
    np.testing.assert_allclose(large["dimension_wise_kl"] - small["dimension_wise_kl"], -d * shift, rtol=1e-3)


def test_unset_dataset_size_raises_a_config_error_naming_the_flag():
    model = _build()
    assert model.dataset_size == 0  # the trainer fills it in when it is 0
    x = tf.constant(digits_arrays()[0][:10])
    with pytest.raises(ConfigError, match=r"--config\.beta_tcvae\.dataset_size"):
        model.compute_terms(x, training=True, step=0, stream=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ConfigError, match=r"--config\.beta_tcvae\.dataset_size"):
        model.fit(x, batch_size=10, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("dataset_size", -1, "dataset_size"),
        ("estimator", "kde", "estimator"),
        ("beta", -1.0, "beta"),
        ("alpha", float("nan"), "alpha"),
    ],
)
def test_bad_config_values_raise_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=rf"beta_tcvae\.{match}"):
        models.build_model(_config(**{field: value}), (32, 32, 1))


def test_build_model_makes_a_beta_tcvae_from_the_config():
    config = _config(beta=3.0, estimator="mss", dataset_size=1234)
    model = models.build_model(config, (32, 32, 1))
    assert isinstance(model, BetaTCVAE)
    assert (model.alpha, model.beta, model.gamma, model.estimator, model.dataset_size) == (1.0, 3.0, 1.0, "mss", 1234)
    assert model.loss_weights == {"alpha": 1.0, "beta": 3.0, "gamma": 1.0}
    assert [m.name for m in model.metrics] == list(BetaTCVAE.metric_names)
    with pytest.raises(ConfigError):
        beta_tcvae.build(small_config("vae"), (32, 32, 1))


def test_short_training_lowers_the_loss():
    model = _build(dataset_size=300)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = digits_arrays()[0][:300]
    history = model.fit(x, batch_size=50, epochs=4, verbose=0, shuffle=False).history
    assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]
    assert history["reconstruction"][-1] < history["reconstruction"][0]
    assert all(np.isfinite(v).all() for v in history.values())


def test_export_round_trip(tmp_path):
    model = _build(dataset_size=1500)
    path = str(tmp_path / "model")
    details = model.export_metadata()
    json.dumps(details)  # JSON-serialisable
    loaded = assert_baseline_export_round_trip(model, path, {"variant": "beta_tcvae", "model_details": details})
    assert loaded.metadata["model_details"]["tc_estimator"] == "mws"
