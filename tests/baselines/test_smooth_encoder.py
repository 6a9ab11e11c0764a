"""Tests of the smooth-encoder (SE) baseline, robust_dae_tf.baselines.smooth_encoder."""

import keras
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import tensorflow as tf

from robust_dae_tf import models
from robust_dae_tf.baselines import smooth_encoder, vae
from robust_dae_tf.baselines.smooth_encoder import SmoothEncoder
from robust_dae_tf.errors import ConfigError
from tests.helpers import (
    assert_baseline_export_round_trip,
    assert_two_replicas_match_one_device,
    digits_arrays,
    small_config,
)


def _config(**se):
    config = small_config("se")
    for key, value in se.items():
        config.se[key] = value
    return config


def _build(seed=0, **se):
    keras.utils.set_random_seed(seed)
    return models.build_model(_config(**se), (32, 32, 1))


def _images(n=20, start=0):
    return tf.constant(digits_arrays()[2][start : start + n])


def _posteriors(seed, n=6, d=4):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)), rng.normal(scale=0.8, size=(n, d)),
            rng.normal(size=(n, d)), rng.normal(scale=0.8, size=(n, d)))


# ----------------------------------------------------------------------- selection (PGD)


def _radius_config(threat_model, radius):
    """The se fields that give a selection ball of this norm and radius."""
    key = "epsilon" if threat_model == "linf" else "l2_radius"
    return {"threat_model": threat_model, key: radius}


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.3), ("l2", 2.0)])
def test_selected_inputs_lie_in_the_ball_and_the_pixel_box(norm, epsilon):
    model = _build(**_radius_config(norm, epsilon))
    x = _images()
    x_sel = model.select(x, tf.constant([3, 4], tf.int64)).numpy()
    delta = (x_sel - x.numpy()).reshape(len(x_sel), -1)
    assert x_sel.min() >= 0.0 and x_sel.max() <= 1.0
    norms = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert norms.max() <= epsilon * (1 + 1e-5) + 1e-6
    # Not vacuous: the ascent pushes every image to (nearly) the edge of the ball.
    assert norms.min() > 0.9 * epsilon
    np.testing.assert_allclose(float(model.terms_given_selection(
        x, tf.constant(x_sel), training=False, sample_seed=tf.constant([0, 0]))[1]["perturbation_norm"]),
        norms.mean(), rtol=1e-5)


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 1.0)])
def test_pgd_increases_the_distance_over_the_random_start(norm, epsilon):
    model = _build(**_radius_config(norm, epsilon))
    start_only = SmoothEncoder(model.posterior_network, model.decoder, pgd_steps=0, **_radius_config(norm, epsilon))
    x = _images(40)
    seed = tf.constant([5, 6], tf.int64)

    def distance(x_sel):
        m1, v1 = model.posterior(x)
        m2, v2 = model.posterior(x_sel)
        return model.posterior_distance(m1, v1, m2, v2).numpy()

    at_start = distance(start_only.select(x, seed))  # same seed -> the same random start
    at_pgd = distance(model.select(x, seed))
    assert np.all(at_pgd >= at_start * (1 - 1e-5))  # the best iterate is kept
    assert at_pgd.mean() > 3 * at_start.mean(), (at_start.mean(), at_pgd.mean())


# Recorded with the code before `threat_model` existed (commit 6306a34, se.norm="linf"):
# the default L-inf selection and objective must not move.
PINNED_LINF = {"selected_sum": 1995.21533203125, "loss": 750.9892578125, "reconstruction": 711.6731567382812,
               "kl": 0.48812437057495117, "smoothness": 38.82801818847656, "perturbation_norm": 0.30000004172325134}


def test_default_linf_selection_and_objective_are_pinned():
    model = _build()
    assert model.threat_model == "linf"
    x = _images(6)
    selected = model.select(x, tf.constant([7, 8], tf.int64))
    _, values = model.compute_terms(x, training=False, step=3, stream=0)
    observed = {"selected_sum": float(tf.reduce_sum(selected)), **{k: float(v) for k, v in values.items()}}
    for key, value in PINNED_LINF.items():
        np.testing.assert_allclose(observed[key], value, rtol=1e-5, err_msg=key)


def _pixel_extreme_images(n, seed, shape=(32, 32, 1)):
    """Uniform random images with about a third of the pixels exactly 0 and a third exactly 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, *shape)).astype(np.float32)
    u = rng.uniform(size=x.shape)
    x[u < 1 / 3] = 0.0
    x[u > 2 / 3] = 1.0
    return tf.constant(x)


@pytest.mark.parametrize("n,radius,seed", [(5, 1.0, 0), (3, 4.0, 1), (1, 2.5, 2)])  # (1, ...): a batch of one
def test_l2_selection_stays_in_the_l2_ball_and_the_pixel_box(n, radius, seed):
    model = _build(threat_model="l2", l2_radius=radius)
    x = _pixel_extreme_images(n, seed)
    x_sel = model.select(x, tf.constant([seed, 9], tf.int64)).numpy()
    assert x_sel.shape == tuple(x.shape)
    assert x_sel.min() >= 0.0 and x_sel.max() <= 1.0
    norms = np.linalg.norm((x_sel - x.numpy()).reshape(n, -1), axis=1)
    assert norms.max() <= radius * (1 + 1e-5)
    assert norms.min() > 0.9 * radius  # not vacuous: the ascent reaches the edge of the ball
    # The saturated pixels can only move inwards (the box binds there).
    assert np.all(x_sel[x.numpy() == 0.0] >= 0.0) and np.all(x_sel[x.numpy() == 1.0] <= 1.0)


def _linear_smooth_encoder(a, **se):
    """SE on (4, 4, 1) images whose posterior is N(A x, I): W2^2(q(z|x), q(z|x')) = ||A (x' - x)||^2."""
    d, p = a.shape
    image = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(2 * d, use_bias=False)
    posterior = keras.Model(image, dense(keras.layers.Flatten()(image)))
    dense.set_weights([np.concatenate([a.T, np.zeros((p, d))], axis=1).astype(np.float32)])
    latent = keras.Input((d,))
    decoder = keras.Model(latent, keras.layers.Reshape((4, 4, 1))(keras.layers.Dense(p, activation="sigmoid")(latent)))
    return SmoothEncoder(posterior, decoder, threat_model="l2", **se)


def test_l2_selection_approaches_the_closed_form_optimum_of_a_linear_encoder():
    # max ||A delta|| over ||delta||_2 <= r is r * sigma_1, at delta = +-r v_1 (top right
    # singular vector). x = 0.5 and r = 0.3 keep every |delta_i| < 0.5: the box is inactive.
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    v, _ = np.linalg.qr(rng.normal(size=(16, 3)))
    a = u @ np.diag([3.0, 1.0, 0.5]) @ v.T
    radius = 0.3
    x = tf.fill([4, 4, 4, 1], 0.5)
    optimum = (radius * 3.0) ** 2

    def selected_delta(**se):
        model = _linear_smooth_encoder(a, l2_radius=radius, **se)
        return (model.select(x, tf.constant([1, 2], tf.int64)).numpy() - 0.5).reshape(4, -1)

    # Near the optimum the normalised step acts like a shifted power iteration, whose
    # error shrinks with the total path length relative_step_size * radius: the default
    # rule (2.5) gets close, a longer path (10) reaches the optimum.
    assert np.sum((selected_delta(pgd_steps=20) @ a.T) ** 2, axis=1).min() > 0.95 * optimum
    delta = selected_delta(pgd_steps=50, relative_step_size=10.0)
    np.testing.assert_allclose(np.sum((delta @ a.T) ** 2, axis=1), optimum, rtol=1e-3)
    np.testing.assert_allclose(np.abs(delta @ v[:, 0]), radius, rtol=1e-3)
    # The random starts alone are far from it, so the ascent did the work.
    start_only = _linear_smooth_encoder(a, l2_radius=radius, pgd_steps=0)
    start = (start_only.select(x, tf.constant([1, 2], tf.int64)).numpy() - 0.5).reshape(4, -1)
    assert np.sum((start @ a.T) ** 2, axis=1).max() < 0.8 * optimum


def test_selection_is_seeded_and_the_preview_interface_works():
    model = _build()
    x = _images(8)
    z = model.encode(x)
    a = model.adversarial_examples(x, z, tf.constant([0, 0], tf.int64)).numpy()
    b = model.adversarial_examples(x, z, tf.constant([0, 0], tf.int64)).numpy()
    c = model.adversarial_examples(x, z, tf.constant([0, 1], tf.int64)).numpy()
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert model.is_adversarial


def test_selection_runs_batchnorm_in_inference_mode():
    config = _config()
    config.model.architecture = "conv"
    config.model.conv_filters = (4, 8)
    keras.utils.set_random_seed(0)
    model = models.build_model(config, (32, 32, 1))
    x = _images(8)
    bn = [layer for layer in model.posterior_network.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [layer.moving_mean.numpy().copy() for layer in bn]
    model.select(x, tf.constant([1, 2], tf.int64))
    for layer, value in zip(bn, before):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), value)
    # Sanity: a training-mode pass does move them, so the check above can fail.
    model.compute_terms(x, training=True, step=0, stream=0)
    assert not np.array_equal(bn[0].moving_mean.numpy(), before[0])


# ----------------------------------------------------------------------- distances


def test_gaussian_w2_regulariser_matches_the_numpy_closed_form():
    model = _build()
    m1, lv1, m2, lv2 = _posteriors(0)
    got = model.posterior_distance(m1, lv1, m2, lv2).numpy()
    for i in range(len(m1)):
        s1, s2 = np.diag(np.exp(lv1[i])), np.diag(np.exp(lv2[i]))
        root = scipy.linalg.sqrtm(s1)
        cross = np.real(scipy.linalg.sqrtm(root @ s2 @ root))
        expected = np.sum((m1[i] - m2[i]) ** 2) + np.trace(s1 + s2 - 2 * cross)
        np.testing.assert_allclose(got[i], expected, rtol=1e-10)


def _entropic_ot_numpy(m1, v1, m2, v2, eps):
    """min over Gaussian couplings (correlation r per dimension) of cost + eps KL, by search."""

    def objective(r, a, va, b, vb):
        return (a - b) ** 2 + va + vb - 2 * r * np.sqrt(va * vb) - 0.5 * eps * np.log(1 - r * r)

    total = 0.0
    for args in zip(m1, v1, m2, v2):
        res = scipy.optimize.minimize_scalar(objective, args=args, bounds=(-1 + 1e-15, 1 - 1e-15),
                                             method="bounded", options={"xatol": 1e-14})
        total += res.fun
    return total


def test_entropic_divergence_matches_a_numerical_minimisation_and_its_limits():
    m1, lv1, m2, lv2 = _posteriors(1, n=4, d=3)
    for eps in (0.05, 0.5, 2.0):
        got = smooth_encoder.entropic_gaussian_divergence(m1, lv1, m2, lv2, eps).numpy()
        for i in range(len(m1)):
            v1, v2 = np.exp(lv1[i]), np.exp(lv2[i])
            expected = (_entropic_ot_numpy(m1[i], v1, m2[i], v2, eps)
                        - 0.5 * _entropic_ot_numpy(m1[i], v1, m1[i], v1, eps)
                        - 0.5 * _entropic_ot_numpy(m2[i], v2, m2[i], v2, eps))
            np.testing.assert_allclose(got[i], expected, rtol=1e-6, atol=1e-9)
            assert got[i] > 0
    # Zero for equal posteriors; W2^2 in the zero-entropy limit.
    np.testing.assert_allclose(smooth_encoder.entropic_gaussian_divergence(m1, lv1, m1, lv1, 0.3), 0.0, atol=1e-12)
    w2 = np.sum((m1 - m2) ** 2 + (np.exp(lv1 / 2) - np.exp(lv2 / 2)) ** 2, axis=1)
    np.testing.assert_allclose(smooth_encoder.entropic_gaussian_divergence(m1, lv1, m2, lv2, 1e-7), w2, rtol=1e-5)


def test_sinkhorn_distance_tends_to_the_identity_pairing_of_common_random_numbers():
    m1, lv1, m2, lv2 = _posteriors(2, n=3, d=2)
    k = 12
    noise = np.random.default_rng(3).normal(size=(3, k, 2))
    s1, s2 = np.exp(lv1 / 2), np.exp(lv2 / 2)
    clouds1 = m1[:, None] + s1[:, None] * noise
    clouds2 = m2[:, None] + s2[:, None] * noise
    exact = []
    for a, b in zip(clouds1, clouds2):  # exact discrete OT by assignment
        cost = np.sum((a[:, None] - b[None]) ** 2, axis=2)
        rows, cols = scipy.optimize.linear_sum_assignment(cost)
        np.testing.assert_array_equal(cols, np.arange(k))  # the identity pairing is optimal
        exact.append(cost[rows, cols].mean())
    eps = 0.05
    got = smooth_encoder.sinkhorn_posterior_distance(m1, lv1, m2, lv2, noise, eps, 2000).numpy()
    # W <= <P_eps, C> <= W + eps log K at convergence (wasserstein.sinkhorn_distance);
    # 1e-3 allows for the unconverged row marginals after finitely many sweeps.
    assert np.all(got >= np.array(exact) - 1e-3), (got, exact)
    assert np.all(got <= np.array(exact) + eps * np.log(k)), (got, exact)


def test_every_distance_trains_through_compute_terms():
    x = _images(8)
    for distance in ("entropic", "sinkhorn"):
        model = _build(distance=distance, sinkhorn_samples=4, sinkhorn_iters=10)
        with tf.GradientTape() as tape:
            loss, values = model.compute_terms(x, training=True, step=0, stream=0)
        grads = tape.gradient(loss, model.trainable_variables)
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
        assert float(values["smoothness"]) > 0


# ----------------------------------------------------------------------- objective


def test_objective_is_the_elbo_plus_the_weighted_distance():
    model = _build(weight=2.5, beta=1.5)
    x = _images(30)
    step, stream = 7, 0
    loss, values = model.compute_terms(x, training=True, step=step, stream=stream)
    # Parts computed independently: the ELBO by the VAE base class with the same seed,
    # the distance in numpy from separately computed posteriors of x and the selection.
    elbo, _ = vae.VariationalAutoencoder.compute_terms(model, x, training=True, step=step, stream=stream)
    x_sel = model.select(x, model.selection_seed(step, stream))
    m1, lv1 = (t.numpy().astype(np.float64) for t in model.posterior(x))
    m2, lv2 = (t.numpy().astype(np.float64) for t in model.posterior(x_sel))
    distance = np.mean(np.sum((m1 - m2) ** 2 + (np.exp(lv1 / 2) - np.exp(lv2 / 2)) ** 2, axis=1))
    assert distance > 0.1
    np.testing.assert_allclose(float(values["smoothness"]), distance, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(elbo) + 2.5 * distance, rtol=1e-5)
    np.testing.assert_allclose(float(values["loss"]), float(loss))
    np.testing.assert_allclose(
        float(values["reconstruction"]) + 1.5 * float(values["kl"]), float(elbo), rtol=1e-5)


def test_zero_radius_gives_exactly_the_vae():
    se_model = _build(epsilon=0.0, weight=10.0)
    keras.utils.set_random_seed(1)
    posterior, decoder = vae.build_gaussian_networks(small_config("se").model, (32, 32, 1))
    vae_model = vae.VariationalAutoencoder(posterior, decoder, beta=1.0, seed=0)
    vae_model.set_weights(se_model.get_weights())
    x = _images(50)
    _, values = se_model.compute_terms(x, training=True, step=3, stream=0)
    vae_loss, _ = vae_model.compute_terms(x, training=True, step=3, stream=0)
    assert float(values["smoothness"]) == 0.0 and float(values["perturbation_norm"]) == 0.0
    np.testing.assert_allclose(float(values["loss"]), float(vae_loss), rtol=1e-6)
    # One optimiser step moves both models identically.
    for model in (se_model, vae_model):
        model.compile(optimizer=keras.optimizers.SGD(1e-3))
        model.train_on_batch(x)
    for a, b in zip(se_model.get_weights(), vae_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_no_gradient_flows_through_the_selection():
    # The L2 ascent direction grad / ||grad|| depends on the weights (the sign of the
    # L-inf step would hide a missing stop_gradient), so this can fail.
    model = _build(threat_model="l2", l2_radius=2.0)
    x = _images(10)
    step, stream = 2, 0
    with tf.GradientTape() as tape:
        loss, _ = model.compute_terms(x, training=True, step=step, stream=stream)
    grads = tape.gradient(loss, model.trainable_variables)
    x_sel = tf.constant(model.select(x, model.selection_seed(step, stream)).numpy())
    with tf.GradientTape() as tape:
        fixed_loss, _ = model.terms_given_selection(
            x, x_sel, training=True, sample_seed=model.step_seeds(step, stream, 1)[0])
    fixed_grads = tape.gradient(fixed_loss, model.trainable_variables)
    np.testing.assert_allclose(float(loss), float(fixed_loss), rtol=1e-6)
    for g, f in zip(grads, fixed_grads):
        np.testing.assert_allclose(g.numpy(), f.numpy(), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------- training, export, build


def test_short_training_lowers_the_loss():
    model = _build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    xtr, _, xte, _ = digits_arrays()
    before = model.evaluate(xte[:200], batch_size=100, verbose=0, return_dict=True)
    history = model.fit(xtr[:600], batch_size=100, epochs=3, verbose=0, shuffle=False).history
    after = model.evaluate(xte[:200], batch_size=100, verbose=0, return_dict=True)
    assert set(history) == set(SmoothEncoder.metric_names)
    assert history["loss"][-1] < history["loss"][0]
    for term in ("loss", "reconstruction", "smoothness"):
        assert after[term] < before[term], (term, before[term], after[term])
    np.testing.assert_allclose(after["perturbation_norm"], 0.3, rtol=1e-5)


def test_short_l2_training_lowers_the_loss_and_is_reproducible():
    xtr, _, xte, _ = digits_arrays()

    def train():
        model = _build(seed=4, threat_model="l2", l2_radius=1.0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        before = model.evaluate(xte[:100], batch_size=100, verbose=0, return_dict=True)
        history = model.fit(xtr[:400], batch_size=100, epochs=2, verbose=0, shuffle=False).history
        after = model.evaluate(xte[:100], batch_size=100, verbose=0, return_dict=True)
        return model, before, history, after

    model, before, history, after = train()
    assert history["loss"][-1] < history["loss"][0]
    assert after["loss"] < before["loss"], (before["loss"], after["loss"])
    assert 0.9 < after["perturbation_norm"] <= 1.0 + 1e-5  # L2 norms of the selected perturbations
    again = train()[0]
    for w1, w2 in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(w1, w2)


def test_two_replicas_select_and_step_like_one_device():
    # The random starts are drawn for the global batch and sliced per replica.
    batches = digits_arrays()[0][:200].reshape(2, 100, 32, 32, 1)
    assert_two_replicas_match_one_device(_build, batches, rtol=1e-4, weight_rtol=1e-3, weight_atol=1e-5)


def test_export_round_trip_encodes_the_posterior_mean(tmp_path):
    model = _build()
    path = str(tmp_path / "se")
    loaded = assert_baseline_export_round_trip(model, path, {"dataset": "digits", "variant": "se"})
    assert loaded.metadata["prior"] == {"type": "normal", "latent_dim": 10}


def test_build_model_reads_the_se_config():
    model = models.build_model(
        _config(threat_model="l2", epsilon=0.2, l2_radius=1.5, pgd_steps=3, weight=4.0, beta=2.0,
                relative_step_size=2.0), (32, 32, 1))
    assert isinstance(model, SmoothEncoder) and model.name == "se"
    assert (model.threat_model, model.epsilon, model.l2_radius, model.radius, model.pgd_steps, model.weight,
            model.beta) == ("l2", 0.2, 1.5, 1.5, 3, 4.0, 2.0)
    assert model.step_size == pytest.approx(2.0 * 1.5 / 3)  # from the L2 radius, not epsilon
    assert _build().threat_model == "linf" and _build().radius == 0.3  # the default: L-inf, epsilon
    assert small_config("se").se.l2_radius == 1.0
    assert model.loss_weights == {"beta": 2.0, "smoothness": 4.0}


@pytest.mark.parametrize(
    "field,value",
    [("threat_model", "l1"), ("l2_radius", 0.0), ("l2_radius", -1.0), ("l2_radius", float("inf")),
     ("epsilon", -0.1), ("pgd_steps", -1), ("distance", "kl"), ("weight", float("nan")),
     ("beta", -1.0), ("sinkhorn_samples", 0), ("relative_step_size", -1.0)],
)
def test_bad_se_values_raise_config_errors_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"se.{field}"):
        models.build_model(_config(**{field: value}), (32, 32, 1))


def test_unknown_threat_model_names_the_allowed_values():
    with pytest.raises(ConfigError, match=r"se\.threat_model must be one of linf, l2, got 'l1'"):
        models.build_model(_config(threat_model="l1"), (32, 32, 1))


def test_bad_types_and_entropy_settings_are_refused():
    posterior, decoder = vae.build_gaussian_networks(small_config("se").model, (32, 32, 1))
    for kwargs, field in [({"pgd_steps": 2.5}, "pgd_steps"), ({"random_start": "yes"}, "random_start"),
                          ({"distance": "entropic", "entropy_epsilon": 0.0}, "entropy_epsilon")]:
        with pytest.raises(ConfigError, match=f"se.{field}"):
            SmoothEncoder(posterior, decoder, **kwargs)


@pytest.mark.parametrize("norm,radius_field,expected", [("l2", "l2_radius", 1.5), ("linf", "epsilon", 1.5)])
def test_a_config_saved_with_the_old_se_norm_field_is_read_with_todays_names(norm, radius_field, expected):
    """Runs saved before `se.threat_model` existed recorded `se.norm` with `se.epsilon` as the
    radius of either ball; resuming or exporting them must keep their threat model and radius."""
    from robust_dae_tf import config_lib

    saved = config_lib.base_config().to_dict()
    saved["se"] = {k: v for k, v in saved["se"].items() if k not in ("threat_model", "l2_radius")}
    saved["se"].update(norm=norm, epsilon=1.5)
    config = config_lib.from_dict(saved)
    assert config.se.threat_model == norm and config.se[radius_field] == expected
    assert "norm" not in config.se
