"""RegularizedAutoencoder: objective assembly, learning, and multi-device equivalence."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import adversarial, losses, models
from tests.helpers import assert_two_replicas_match_one_device, digits_arrays, small_config


def _build(variant, **overrides):
    config = small_config(variant)
    for key, value in overrides.items():
        section, name = key.split("__")
        config[section][name] = value
    return models.build_model(config, (32, 32, 1))


@pytest.mark.parametrize(
    "variant,cross", [("gmm_dae", "target"), ("augmented", "target"), ("robust", "target"), ("augmented", "ignore")]
)
def test_test_step_reports_the_variant_objective(variant, cross):
    model = _build(variant, adversarial__random_start=False, loss__coupling=0.7, loss__cross_covariance=cross)
    model.compile(optimizer=keras.optimizers.Adam())
    x = tf.constant(digits_arrays()[2][:64])
    logs = model.test_step(x)
    z = model.encoder(x)
    prior, w = model.prior, model.loss_weights
    rec = float(losses.reconstruction_loss(x, model.decoder(z)))
    if variant == "gmm_dae":
        ks, cv = losses.ks_loss(z, prior), losses.covariance_loss(z, prior)
    else:
        x_adv = adversarial.fgsm_latent_adversarial(model.encoder, x, z, 0.3, 0.375, None, training=False)
        za = model.encoder(x_adv)
        alpha = 0.7 if variant == "robust" else 0.0
        cv = losses.coupled_covariance_loss(z, za, prior, alpha, cross)
        if variant == "augmented":
            ks = losses.augmented_ks_loss(z, za, prior)
        else:
            ks = losses.adversarial_ks_loss(z, za, prior, w["two_sample_ks"] / w["ks"])
        np.testing.assert_allclose(logs["two_sample_ks"], losses.two_sample_ks_loss(z, za, prior), rtol=1e-4)
        np.testing.assert_allclose(logs["latent_shift"], np.linalg.norm(za - z, axis=1).mean(), rtol=1e-4)
    np.testing.assert_allclose(logs["reconstruction"], rec, rtol=1e-5)
    np.testing.assert_allclose(logs["ks"], ks, rtol=1e-4)
    np.testing.assert_allclose(logs["covariance"], cv, rtol=1e-4)
    expected_total = 500.0 * rec + w["ks"] * float(ks) + w["covariance"] * float(cv)
    np.testing.assert_allclose(logs["loss"], expected_total, rtol=1e-4)


def test_the_robust_model_applies_eq9_through_losses_adversarial_ks_loss(monkeypatch):
    model = _build("robust")
    calls = []
    original = losses.adversarial_ks_loss

    def spy(z, z_adv, prior, two_sample_weight=1.0, **kwargs):
        calls.append(two_sample_weight)
        return original(z, z_adv, prior, two_sample_weight, **kwargs)

    monkeypatch.setattr(losses, "adversarial_ks_loss", spy)
    model.compute_terms(tf.constant(digits_arrays()[2][:20]), training=False, step=0, stream=1)
    w = model.loss_weights
    assert calls == [w["two_sample_ks"] / w["ks"]]


def test_train_step_descends_the_gradient_of_the_objective():
    model = _build("robust")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-3))
    x = tf.constant(digits_arrays()[0][:100])
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:  # one replica: the step's objective is compute_terms' own
        objective, _ = model.compute_terms(x, training=True, step=model.optimizer.iterations, stream=0)
    grads = tape.gradient(objective, model.trainable_variables)
    model.train_step(x)
    for b, g, v in zip(before, grads, model.trainable_variables):
        np.testing.assert_allclose(v.numpy(), b - 1e-3 * g.numpy(), rtol=1e-4, atol=1e-6)


def test_latent_noise_is_used_in_training_only():
    model = _build("gmm_dae", loss__latent_noise_std=5.0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    x = tf.constant(digits_arrays()[2][:50])
    clean = float(model.test_step(x)["reconstruction"])
    _, noisy = model.compute_terms(x, training=True, step=0, stream=0)
    _, noisy_again = model.compute_terms(x, training=True, step=0, stream=0)
    _, other_step = model.compute_terms(x, training=True, step=1, stream=0)
    assert float(noisy["reconstruction"]) != clean
    assert float(noisy["reconstruction"]) == float(noisy_again["reconstruction"])  # seeded per step
    assert float(noisy["reconstruction"]) != float(other_step["reconstruction"])


@pytest.mark.parametrize("variant", ["gmm_dae", "augmented", "robust"])
def test_short_training_lowers_every_loss_term(variant):
    tf.keras.utils.set_random_seed(0)
    model = _build(variant)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    xtr, _, xte, _ = digits_arrays()
    before = model.evaluate(xte, batch_size=100, verbose=0, return_dict=True)
    model.fit(xtr, batch_size=100, epochs=8, verbose=0, shuffle=True)
    after = model.evaluate(xte, batch_size=100, verbose=0, return_dict=True)
    for term in ("loss", "reconstruction", "ks", "covariance"):
        assert after[term] < before[term], (term, before[term], after[term])
    assert after["reconstruction"] < 0.6 * before["reconstruction"]


@pytest.mark.parametrize("variant", ["gmm_dae", "robust"])
def test_mirrored_strategy_on_two_cpus_matches_one_device(variant):
    batches = digits_arrays()[0][:300].reshape(3, 100, 32, 32, 1)
    assert_two_replicas_match_one_device(lambda: _build(variant), batches)


def test_adversarial_examples_use_the_random_start_and_fill_the_budget():
    model = _build("robust")
    x = tf.constant(digits_arrays()[2][:20])
    seed = tf.constant([0, 0], tf.int64)
    x_adv = model.adversarial_examples(x, model.encode(x), seed).numpy()
    delta = x_adv - x.numpy()
    assert np.abs(delta).max() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    # From delta = 0 the FGSM objective has zero gradient; the random start is what
    # makes the examples move: most free pixels end at the budget.
    free = (x.numpy() > 0.3) & (x.numpy() < 0.7)
    assert np.mean(np.isclose(np.abs(delta[free]), 0.3, atol=1e-5)) > 0.5
    np.testing.assert_array_equal(model.adversarial_examples(x, model.encode(x), seed).numpy(), x_adv)


@pytest.mark.parametrize("variant", ["augmented", "robust"])
def test_reference_weighting_reports_the_reference_objective(variant):
    model = _build(variant, adversarial__random_start=False, loss__coupling=0.7, loss__weighting="reference")
    model.compile(optimizer=keras.optimizers.Adam())
    alpha = 0.7 if variant == "robust" else 0.0
    prior, w = model.prior, model.loss_weights
    assert w == losses.estimate_reference_loss_weights(prior, 100, 10, coupling=alpha, seed=0)
    x = tf.constant(digits_arrays()[2][:64])
    logs = model.test_step(x)
    z = model.encoder(x).numpy()
    za = model.encoder(adversarial.fgsm_latent_adversarial(model.encoder, x, z, 0.3, 0.375, None)).numpy()
    rec = float(losses.reconstruction_loss(x, model.decoder(z)))
    # The reference's total, computed directly: KS of z and z_adv pooled into one 2N
    # batch, the two-sample term with its own weight (robust only), the coupled
    # covariance at alpha; no 2/3 and 1/3.
    ks = float(losses.ks_loss(np.concatenate([z, za], axis=0), prior))
    cv = float(losses.coupled_covariance_loss(z, za, prior, alpha))
    two = float(losses.two_sample_ks_loss(z, za, prior))
    expected_total = 500.0 * rec + w["ks"] * ks + w["covariance"] * cv
    if variant == "robust":
        expected_total += w["two_sample_ks"] * two
    np.testing.assert_allclose(logs["ks"], ks, rtol=1e-4)
    np.testing.assert_allclose(logs["covariance"], cv, rtol=1e-4)
    np.testing.assert_allclose(logs["two_sample_ks"], two, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], expected_total, rtol=1e-4)


def test_gmm_dae_ignores_the_weighting():
    paper, reference = _build("gmm_dae"), _build("gmm_dae", loss__weighting="reference")
    assert paper.loss_weights == reference.loss_weights
    x = tf.constant(digits_arrays()[2][:40])
    reference.set_weights(paper.get_weights())
    _, a = paper.compute_terms(x, training=False, step=0, stream=1)
    _, b = reference.compute_terms(x, training=False, step=0, stream=1)
    assert float(a["loss"]) == float(b["loss"])


def test_unknown_weighting_is_a_config_error():
    from robust_dae_tf.errors import ConfigError

    with pytest.raises(ConfigError, match=r"config\.loss\.weighting: 'ref' is unknown; choose one of paper, reference"):
        _build("robust", loss__weighting="ref")
