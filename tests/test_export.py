"""SavedModel export: round trip, gradients through the loaded model, metadata, safety."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import export, models
from robust_dae_tf.errors import ExportError
from tests.helpers import digits_arrays, small_config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = models.build_model(small_config("robust"), (32, 32, 1))
    path = str(tmp_path_factory.mktemp("export") / "model")
    export.export_saved_model(model, path, {"dataset": "digits", "variant": "robust", "prior": model.prior.to_dict()})
    return model, path


def test_loaded_model_reproduces_encode_decode_reconstruct(exported):
    model, path = exported
    loaded = export.load_saved_model(path)
    x = tf.constant(digits_arrays()[2][:16])
    z = model.encode(x)
    np.testing.assert_allclose(loaded.encode(x), z, atol=1e-5)
    np.testing.assert_allclose(loaded.decode(z), model.decode(z), atol=1e-6)
    np.testing.assert_allclose(loaded.reconstruct(x), model(x), atol=1e-6)
    # The serving signatures give the same values under their documented output names.
    raw = tf.saved_model.load(path)
    np.testing.assert_allclose(raw.signatures["encode"](images=x)["latents"], z, atol=1e-5)


def test_gradients_through_the_loaded_savedmodel_match_the_model(exported):
    model, path = exported
    loaded = export.load_saved_model(path)
    x = tf.constant(digits_arrays()[2][:8])
    target = tf.constant(np.random.default_rng(0).normal(size=(8, 10)), tf.float32)

    def grad(encode, decode):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            latent_loss = tf.reduce_sum(tf.square(encode(x) - target))
            output_loss = tf.reduce_sum(tf.square(decode(encode(x)) - x))
        return tape.gradient(latent_loss, x).numpy(), tape.gradient(output_loss, x).numpy()

    expected = grad(model.encode, model.decode)
    actual = grad(loaded.encode, loaded.decode)
    for a, e in zip(actual, expected):
        assert np.abs(e).sum() > 0
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6)


def test_metadata_is_written_next_to_the_savedmodel(exported):
    model, path = exported
    meta = json.load(open(os.path.join(path, export.METADATA_FILE)))
    assert meta["dataset"] == "digits" and meta["variant"] == "robust"
    assert meta["image_shape"] == [32, 32, 1] and meta["latent_dim"] == 10
    np.testing.assert_array_equal(meta["prior"]["centers"], 10 * np.eye(10))
    assert meta["robust_dae_tf_version"] and meta["tensorflow_version"] == tf.__version__


def test_existing_export_path_is_refused_and_left_intact(exported):
    model, path = exported
    before = sorted(os.listdir(path))
    with pytest.raises(ExportError, match="--overwrite"):
        export.export_saved_model(model, path, {})
    assert sorted(os.listdir(path)) == before
    assert not [p for p in os.listdir(os.path.dirname(path)) if ".tmp-" in p]


def test_overwrite_replaces_atomically(exported, tmp_path):
    model, _ = exported
    path = str(tmp_path / "m")
    export.export_saved_model(model, path, {"run": 1})
    export.export_saved_model(model, path, {"run": 2}, overwrite=True)
    assert json.load(open(os.path.join(path, export.METADATA_FILE)))["run"] == 2
    assert os.listdir(tmp_path) == ["m"]


def test_loading_something_that_is_not_an_autoencoder_savedmodel(tmp_path):
    with pytest.raises(ExportError, match="saved_model.pb"):
        export.load_saved_model(str(tmp_path))

    class OnlyEncode(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def encode(self, x):
            return x

    tf.saved_model.save(OnlyEncode(), str(tmp_path / "m"))
    with pytest.raises(ExportError, match="no decode endpoint"):
        export.load_saved_model(str(tmp_path / "m"))
