"""`train.mixed_precision` on CPU: Keras "mixed_float16" (float16 compute in the hidden
layers, float32 variables, dynamic loss scaling), with latents, decoder outputs and
every loss term in float32 (fit.precision_policy, networks, models/base.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import config_lib, fit
from robust_dae_tf.errors import ConfigError
from tests.helpers import digits_arrays, small_config

SHAPE = (32, 32, 1)


def _model(variant, mixed):
    config = small_config(variant, mixed_precision=mixed)
    config.model.hidden_units = (32, 32)
    return fit.compile_model(config, SHAPE, tf.distribute.get_strategy())


@pytest.mark.parametrize("variant", ["robust", "gmm_dae", "vae"])
def test_loss_terms_at_init_agree_with_float32_and_stay_float32(variant):
    x = tf.constant(digits_arrays()[0][:100])
    full, mixed = _model(variant, False), _model(variant, True)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert mixed.encoder.layers[1].compute_dtype == "float16" and full.encoder.layers[1].compute_dtype == "float32"
    for a, b in zip(full.get_weights(), mixed.get_weights()):  # same seeded initial weights, float32 variables
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert mixed.encode(x).dtype == tf.float32 and mixed(x).dtype == tf.float32
    objective_full, terms_full = full.compute_terms(x, training=False, step=0, stream=1)
    objective_mixed, terms_mixed = mixed.compute_terms(x, training=False, step=0, stream=1)
    assert objective_mixed.dtype == tf.float32
    assert set(terms_mixed) == set(terms_full)
    for name, value in terms_mixed.items():
        assert value.dtype == tf.float32, name
        # float16 keeps ~3 significant digits per op; through a few layers the terms
        # agree to 1 % (measured: <= 0.11 %, the two-sample KS term), far inside one training step's change.
        np.testing.assert_allclose(float(value), float(terms_full[name]), rtol=1e-2, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(float(objective_mixed), float(objective_full), rtol=1e-2)


def test_training_a_few_steps_is_finite_and_counts_every_step():
    model = _model("robust", True)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    initial = model.get_weights()
    x = digits_arrays()[0][:600]
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(100), epochs=2, verbose=0)
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not np.allclose(model.get_weights()[0], initial[0])
    # The initial loss scale (2**15) overflows float16 gradients here, so some steps are
    # skipped (the scale halves); they still count, so the step counter is the batch count.
    assert float(model.optimizer.dynamic_scale.numpy()) < 2.0**15
    assert int(model.optimizer.iterations.numpy()) == 12


def test_a_mixed_precision_run_trains_resumes_and_exports_float32(tmp_path):
    from robust_dae_tf import export, pipeline

    config = small_config("gmm_dae", mixed_precision=True, epochs=1)
    config.model.hidden_units = (32,)
    config.data.max_train_examples = 200
    pipeline.run_training_pipeline(config, str(tmp_path / "run"), None)
    config.train.epochs = 2
    result = pipeline.run_training_pipeline(config, str(tmp_path / "run"), str(tmp_path / "saved"))
    assert result["steps"] == 4 and all(np.isfinite(v) for v in result["final_metrics"].values())
    loaded = export.load_saved_model(str(tmp_path / "saved"))
    assert loaded.metadata["config"]["train"]["mixed_precision"] is True
    x = tf.constant(digits_arrays()[2][:4])
    assert loaded.encode(x).dtype == tf.float32
    np.testing.assert_allclose(loaded.reconstruct(x), result["model"](x), atol=2e-2)


@pytest.mark.parametrize("value", ["yes", 1])
def test_mixed_precision_must_be_a_bool(value):
    config = small_config()
    with config.ignore_type():  # e.g. a hand-edited config.json; the command line checks types itself
        config.train.mixed_precision = value
    with pytest.raises(ConfigError, match="train.mixed_precision"):
        config_lib.validate(config)


def test_mixed_precision_trains_on_two_replicas(tmp_path):
    # MirroredStrategy over the two logical CPUs (conftest) with loss scaling: every replica's
    # scaled gradients are unscaled and summed, overflow steps are skipped on all replicas alike.
    from tests.helpers import digits_splits

    config = small_config("robust", epochs=1, num_cpu_devices=2, mixed_precision=True)
    config.model.hidden_units = (32, 32)
    result = fit.train(config, str(tmp_path), digits_splits(), SHAPE)
    model = result["model"]
    assert isinstance(model.distribute_strategy, tf.distribute.MirroredStrategy)
    assert model.distribute_strategy.num_replicas_in_sync == 2
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.encoder.layers[1].compute_dtype == "float16"
    assert result["steps"] == 6 and all(np.isfinite(v) for v in result["final_metrics"].values())
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in model.get_weights())
    x = tf.constant(digits_arrays()[2][:4])
    assert model.encode(x).dtype == tf.float32
