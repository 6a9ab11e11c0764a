"""The model contract (`models.base.Autoencoder`), checked on every registered model."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import models
from robust_dae_tf.models import registry
from tests.helpers import digits_arrays, small_config

NAMES = registry.names()
LR = 1e-2


def _build(name):
    config = small_config(name)
    config.model.hidden_units = (32,)
    config.se.pgd_steps = 1
    keras.utils.set_random_seed(0)
    return models.build_model(config, (32, 32, 1))


def _floats(values):
    return {name: float(value) for name, value in values.items()}


def test_the_registry_holds_the_nine_models_of_the_paper_comparison():
    assert NAMES == ("gmm_dae", "augmented", "robust", "vae", "beta_vae", "beta_tcvae", "lipschitz_vae", "se", "avae")
    assert registry.names("ours") == models.VARIANTS


@pytest.fixture(scope="module", params=NAMES)
def model_and_batch(request):
    model = _build(request.param)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR))
    return request.param, model, tf.constant(digits_arrays()[0][:40])


def test_prepare_then_train_step_descends_the_terms_objective_and_reports_its_values(model_and_batch):
    name, model = model_and_batch[:2]
    x = model_and_batch[2]
    assert isinstance(model, models.Autoencoder)
    assert model.metric_names[0] == "loss"
    assert [m.name for m in model.metrics] == list(model.metric_names)
    model.prepare(600)  # the trainer always calls it; only beta-TCVAE uses the number
    if name == "beta_tcvae":
        assert model.dataset_size == 600
    step = model.optimizer.iterations
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        objective, values = model.compute_terms(x, training=True, step=step, stream=0)
    grads = tape.gradient(objective, model.trainable_variables)
    assert set(values) == set(model.metric_names)
    logs = model.train_step(x)
    assert list(logs) == list(model.metric_names)
    np.testing.assert_allclose(list(_floats(logs).values()), [float(values[k]) for k in logs], rtol=1e-6)
    assert int(model.optimizer.iterations) == 1
    moved = 0
    for b, g, v in zip(before, grads, model.trainable_variables):
        if g is not None:
            np.testing.assert_allclose(v.numpy(), b - LR * g.numpy(), rtol=1e-4, atol=1e-6)
            moved += not np.allclose(v.numpy(), b)
    assert moved > 0


def test_test_step_reports_the_same_names_from_the_evaluation_stream(model_and_batch):
    _, model, x = model_and_batch
    model.reset_metrics()
    logs = _floats(model.test_step(x))
    _, values = model.compute_terms(x, training=False, step=0, stream=1)
    assert list(logs) == list(model.metric_names)
    np.testing.assert_allclose(list(logs.values()), [float(values[k]) for k in logs], rtol=1e-6)
    assert all(np.isfinite(list(logs.values())))


def test_step_seeds_depend_only_on_step_and_stream(model_and_batch):
    model = model_and_batch[1]
    seeds = lambda step, stream=0: np.stack([s.numpy() for s in model.step_seeds(step, stream, 3)])  # noqa: E731
    np.testing.assert_array_equal(seeds(5), seeds(5))
    assert len({tuple(row) for row in seeds(5)}) == 3
    assert not np.array_equal(seeds(5), seeds(6))
    assert not np.array_equal(seeds(5), seeds(5, stream=1))


def test_encode_decode_prior_and_metadata(model_and_batch):
    _, model, x = model_and_batch
    z = model.encode(x)
    assert z.shape == (40, 10)
    np.testing.assert_allclose(model.encoder(x), z, atol=1e-5)  # what the SavedModel exports
    assert model.decode(z).shape == x.shape
    np.testing.assert_allclose(model(x), model.decode(z), atol=1e-6)
    prior = model.prior.to_dict()
    assert prior["latent_dim"] == 10 and prior["type"] in ("gmm", "normal")
    assert model.prior.sample_mode(model.prior.num_modes - 1, 2, seed=(0, 0)).shape == (2, 10)
    metadata = model.export_metadata()
    assert isinstance(metadata, dict) and isinstance(model.loss_weights, dict)
    json.dumps({"details": metadata, "loss_weights": model.loss_weights})


def test_adversarial_models_craft_inputs_in_the_pixel_box(model_and_batch):
    name, model, x = model_and_batch
    assert model.is_adversarial == (name in ("augmented", "robust", "se"))
    seed = tf.constant([0, 0], tf.int64)
    if not model.is_adversarial:
        if type(model).adversarial_examples is models.Autoencoder.adversarial_examples:
            with pytest.raises(NotImplementedError):
                model.adversarial_examples(x, model.encode(x), seed)
        return
    x_adv = model.adversarial_examples(x, model.encode(x), seed).numpy()
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not np.allclose(x_adv, x.numpy())
