"""Lipschitz-VAE (Barrett et al. 2022): Lipschitz bounds of its three networks, the
bounded encoder std, the certificate against an independent solution of the margin
inequality, training, export and building from a config."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import models
from robust_dae_tf.baselines import lipschitz_vae
from robust_dae_tf.baselines.lipschitz_vae import LipschitzVAE
from robust_dae_tf.errors import ConfigError
from tests.helpers import assert_baseline_export_round_trip, digits_arrays, small_config

# Distinct constants so that a mixed-up network / constant pairing is caught.
CONSTANTS = {"encoder_mean_lipschitz": 3.0, "encoder_std_lipschitz": 5.0, "decoder_lipschitz": 6.0}


def _config(**fields):
    config = small_config("lipschitz_vae")
    config.model.hidden_units = (32, 32)
    for key, value in {**CONSTANTS, **fields}.items():
        config.lipschitz_vae[key] = value
    return config


def _build(**fields):
    keras.utils.set_random_seed(0)
    return models.build_model(_config(**fields), (32, 32, 1))


@pytest.fixture(scope="module")
def trained():
    """A model trained for a few epochs (weights far from their orthogonal init) and its history."""
    model = _build(std_norm_r=8.0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(digits_arrays()[0][:300], batch_size=50, epochs=5, verbose=0, shuffle=False).history
    return model, history


def _pairs():
    """Input pairs at several distances: digits vs digits, digits vs small / large
    perturbations of themselves, and noise images outside [0, 1]."""
    rng = np.random.default_rng(0)
    x = digits_arrays()[2][:40].astype(np.float32)
    a = [x[:20], x, x, rng.normal(size=(20, 32, 32, 1)).astype(np.float32) * 3]
    b = [x[20:40], x + 1e-3 * rng.normal(size=x.shape), x + 0.3 * rng.normal(size=x.shape), rng.uniform(size=(20, 32, 32, 1))]
    return np.concatenate(a).astype(np.float32), np.concatenate(b).astype(np.float32)


def _check_bound(f, a, b, constant):
    fa, fb = f(tf.constant(a)).numpy(), f(tf.constant(b)).numpy()
    out = np.linalg.norm((fa - fb).reshape(len(a), -1), axis=1)
    inp = np.linalg.norm((a - b).reshape(len(a), -1), axis=1)
    assert np.all(out <= constant * inp * (1 + 1e-4) + 1e-6), np.max(out / inp)
    return np.max(out / inp)


def _jacobian_singular_values(network, x):
    """Singular values of the Jacobian at x: row i of J is the gradient of output i,
    taken at the i-th of out_dim copies of x in one backward pass (rows are independent)."""
    out_dim = int(np.prod(network.output_shape[1:]))
    copies = tf.constant(np.repeat(x[None], out_dim, axis=0))
    with tf.GradientTape() as tape:
        tape.watch(copies)
        y = tf.reshape(network(copies), [out_dim, out_dim])
        diagonal = tf.reduce_sum(tf.linalg.diag_part(y))
    jac = tf.reshape(tape.gradient(diagonal, copies), [out_dim, -1]).numpy()
    return np.linalg.svd(jac, compute_uv=False)


def _pre_sigmoid(network):
    return keras.Model(network.input, network.get_layer("bjorck_out").output)


@pytest.mark.parametrize("which", ["init", "trained"])
def test_networks_satisfy_their_lipschitz_bounds(which, trained):
    model = _build(std_norm_r=8.0) if which == "init" else trained[0]
    c = model.lipschitz_constants
    np.testing.assert_allclose([c["encoder_mean"], c["encoder_std"], c["decoder"]], [3.0, 5.0 / 4, 6.0 / 4], rtol=1e-6)
    a, b = _pairs()
    _check_bound(model.encoder, a, b, c["encoder_mean"])
    _check_bound(model.posterior_std, a, b, c["encoder_std"])
    rng = np.random.default_rng(1)
    za = rng.normal(size=(60, model.latent_dim)).astype(np.float32)
    zb = np.concatenate([za[:20] + 1e-3 * rng.normal(size=(20, 10)), za[20:40] + rng.normal(size=(20, 10)), za[::-1][:20]])
    _check_bound(model.decoder, za, zb.astype(np.float32), c["decoder"])
    # The linear stacks are scaled isometries (orthonormal kernels, permutations): every
    # singular value of their Jacobian is the configured constant, which fails if the
    # constant were spread over the layers wrongly.
    x = digits_arrays()[2][0]
    s_mean = _jacobian_singular_values(model.encoder, x)
    s_std = _jacobian_singular_values(_pre_sigmoid(model.std_network), x)
    s_dec = _jacobian_singular_values(_pre_sigmoid(model.decoder), za[0])
    for s, constant in ((s_mean, 3.0), (s_std, 5.0), (s_dec[: model.latent_dim], 6.0)):
        np.testing.assert_allclose(s, constant, rtol=2e-3)


def test_encoder_std_stays_inside_its_bounds(trained):
    model = trained[0]
    a, b = _pairs()
    x = np.concatenate([a, b, 50 * np.random.default_rng(2).normal(size=(20, 32, 32, 1)).astype(np.float32)])
    std = model.posterior_std(tf.constant(x)).numpy()
    norms = np.linalg.norm(std, axis=1)
    # Clip radius r_s / (sqrt(8) M_g) with the sigmoid-including decoder constant 6 / 4.
    max_norm = 8.0 / (math.sqrt(8.0) * 6.0 / 4) * (1 - 1e-4)
    assert model.std_max_norm == pytest.approx(max_norm, rel=1e-9)
    # sigma in (0, 1); far outside the data the float32 sigmoid saturates at 0 or 1.
    assert np.all(std >= 0) and np.all(std <= 1)
    assert np.all(std[: len(a)] > 0)
    assert np.all(norms <= max_norm * (1 + 1e-6)), norms.max()
    assert np.any(norms > 0.99 * max_norm)  # the large inputs reach the clip
    # The posterior the loss uses is this std (log_var = 2 log sigma) and the mean network.
    mean, log_var = model.posterior(tf.constant(x))
    assert np.all(np.isfinite(log_var.numpy()))
    np.testing.assert_allclose(np.exp(0.5 * log_var.numpy()), std, rtol=1e-5, atol=1e-29)
    np.testing.assert_allclose(mean, model.encoder(tf.constant(x)), atol=1e-6)
    # Without the clip: only the sigmoid bound.
    unclipped = _build()
    assert unclipped.std_max_norm is None and unclipped.max_std_norm() == pytest.approx(math.sqrt(10))
    std = unclipped.posterior_std(tf.constant(x)).numpy()
    assert np.all(std >= 0) and np.all(std <= 1) and np.all(std[: len(a)] > 0)


def _numpy_radius(r, m_g, m_mu, m_sigma, s, p=0.5):
    """Largest root of (M_mu^2 + M_sigma^2) R^2 + 4 M_sigma s R + 4 s^2 - (1 - p) r^2 / M_g^2 (0 if none > 0)."""
    roots = np.roots([m_mu**2 + m_sigma**2, 4 * m_sigma * s, 4 * s**2 - (1 - p) * r**2 / m_g**2])
    real = roots[np.abs(roots.imag) < 1e-9].real
    return max(real.max(), 0.0) if real.size else 0.0


@pytest.mark.parametrize("which", ["unclipped_init", "clipped_trained"])
def test_certificate_solves_the_margin_inequality_with_the_certified_constants(which, trained):
    model = _build() if which == "unclipped_init" else trained[0]
    x = digits_arrays()[2][:8]
    cert = model.certificate(x)
    json.dumps(cert)
    assert cert["certified_lipschitz"] == pytest.approx({"encoder_mean": 3.0, "encoder_std": 1.25, "decoder": 1.5})
    assert cert["network_lipschitz"] == {"encoder_mean": 3.0, "encoder_std": 5.0, "decoder": 6.0}
    s = np.linalg.norm(model.posterior_std(tf.constant(x)).numpy().astype(np.float64), axis=1)
    expected = [_numpy_radius(8.0, 1.5, 3.0, 1.25, v) for v in s]
    np.testing.assert_allclose(cert["radii"], expected, rtol=1e-3, atol=1e-7)
    assert min(cert["radii"]) > 0
    assert cert["mean_path_radius"] == pytest.approx(8.0 / (3.0 * 1.5))
    # Data-independent radius at the largest possible ||sigma||: sqrt(D) without the clip
    # (nothing certified at r = 8), the clip radius with it (positive by construction:
    # the clip is the largest ||sigma|| with R > 0, so R there is tiny).
    worst = _numpy_radius(8.0, 1.5, 3.0, 1.25, model.max_std_norm())
    assert cert["worst_case_radius"] == pytest.approx(worst, rel=1e-6, abs=1e-12)
    assert worst <= min(cert["radii"]) * (1 + 1e-3)
    assert (worst > 0) == (which == "clipped_trained")
    # The reported metric is the batch mean of the same radii.
    logs = model.test_step(tf.constant(x))
    np.testing.assert_allclose(logs["certified_radius"], np.mean(expected), rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(logs["std_norm"], np.mean(s), rtol=1e-5)


def test_short_training_lowers_the_loss(trained):
    _, history = trained
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    assert history["reconstruction"][-1] < history["reconstruction"][0]
    assert all(np.isfinite(v).all() for v in history.values())


def test_objective_is_the_negative_elbo():
    model = _build()
    x = tf.constant(digits_arrays()[0][:16])
    loss, values = model.compute_terms(x, training=False, step=5, stream=0)
    mean, log_var = model.posterior(x)
    (seed,) = model.step_seeds(5, 0, 1)
    z = model.sample_posterior(mean, log_var, seed)
    p = np.clip(model.decoder(z).numpy().astype(np.float64), 1e-7, 1 - 1e-7)
    xn = x.numpy().astype(np.float64)
    recon = np.mean(-(xn * np.log(p) + (1 - xn) * np.log1p(-p)).reshape(16, -1).sum(1))
    m, lv = mean.numpy().astype(np.float64), log_var.numpy().astype(np.float64)
    kl = np.mean(0.5 * (np.exp(lv) + m**2 - 1 - lv).sum(1))
    np.testing.assert_allclose(values["reconstruction"], recon, rtol=1e-5)
    np.testing.assert_allclose(values["kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(loss, recon + kl, rtol=1e-5)


def test_export_round_trip(tmp_path, trained):
    model = trained[0]
    path = str(tmp_path / "model")
    details = model.export_metadata()
    json.dumps(details)
    loaded = assert_baseline_export_round_trip(model, path, {"variant": "lipschitz_vae", "model_details": details})
    assert loaded.metadata["model_details"]["certificate"]["std_clipped"] is True


def test_build_model_makes_fc_lipschitz_nets_for_every_architecture():
    config = _config()
    config.model.architecture = "conv"  # ignored: FC Lipschitz nets for every dataset
    model = models.build_model(config, (32, 32, 3))
    assert isinstance(model, LipschitzVAE)
    assert model.encoder is model.mean_network and model.encoder.input_shape == (None, 32, 32, 3)
    assert model.decoder.output_shape == (None, 32, 32, 3)
    assert [m.name for m in model.metrics] == list(LipschitzVAE.metric_names)
    assert model.loss_weights == {"beta": 1.0}
    # The mean network is shared, not duplicated: each variable appears once.
    variables = model.trainable_variables
    assert len({id(v) for v in variables}) == len(variables) == 3 * 3 * 2


def test_training_and_inference_use_their_own_bjorck_iterations():
    model = models.build_model(_config(bjorck_iters=2, bjorck_inference_iters=9), (32, 32, 1))
    layer = model.decoder.get_layer("bjorck_out")
    assert (layer.iters, layer.inference_iters) == (2, 9)
    w = layer.orthonormal_kernel(training=False).numpy()
    w_train = layer.orthonormal_kernel(training=True).numpy()
    # Both spectral norms are <= 1 (the certificate holds in either mode).
    assert np.linalg.norm(w, 2) <= 1 + 1e-5 and np.linalg.norm(w_train, 2) <= 1 + 1e-5


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("decoder_lipschitz", 0.0, "lipschitz_vae.decoder_lipschitz"),
        ("group_size", 3, "group_size"),
        ("bjorck_iters", 0, "lipschitz_vae.bjorck_iters"),
        ("bjorck_inference_iters", 0, "lipschitz_vae.bjorck_inference_iters"),
        ("std_norm_r", -1.0, "lipschitz_vae.std_norm_r"),
        ("certificate_p", 1.0, "lipschitz_vae.certificate_p"),
    ],
)
def test_bad_config_values_raise_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        models.build_model(_config(**{field: value}), (32, 32, 1))
    with pytest.raises(ConfigError):
        lipschitz_vae.build(small_config("vae"), (32, 32, 1))
