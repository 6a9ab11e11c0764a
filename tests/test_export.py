"""SavedModel export and loading: round trip, gradients through the loaded model, metadata,
safety of export, the op check of untrusted models, corrupt files."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import config_lib, export, model_safety, models
from robust_dae_tf.evaluation import downstream as classifier
from robust_dae_tf.errors import ExportError
from tests.helpers import digits_arrays, small_config
from tests.test_model_safety import save_crafted


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


def test_saved_model_identity_names_the_files_that_determine_the_model(exported, tmp_path):
    """The identity the caches key on: the weights and graph, with `with_metadata` also the
    metadata (the FD's prior, the report's name); None for a directory without saved_model.pb."""
    model, _ = exported
    path = str(tmp_path / "m")
    export.export_saved_model(model, path, {"run": 1})
    plain, full = export.saved_model_identity(path), export.saved_model_identity(path, with_metadata=True)
    assert set(plain) == {"saved_model", "saved_model.pb", os.path.join("variables", "variables.index")}
    assert set(full) == set(plain) | {export.METADATA_FILE} and plain["saved_model"] == os.path.abspath(path)
    with open(os.path.join(path, export.METADATA_FILE), "r+") as f:
        meta = json.load(f)
        f.seek(0)
        json.dump({**meta, "run": 2}, f)
        f.truncate()
    assert export.saved_model_identity(path) == plain
    assert export.saved_model_identity(path, with_metadata=True) != full
    assert export.saved_model_identity(str(tmp_path)) is None and export.saved_model_identity(None) is None


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


# ---- loading untrusted models -----------------------------------------------------------


@pytest.mark.parametrize("variant, architecture",
                         [(v, "fc") for v in config_lib.MODELS] + [("robust", "conv"), ("vae", "conv")])
def test_every_model_the_project_exports_loads_under_the_default(tmp_path, variant, architecture):
    # Every variant and baseline, FC and conv nets (the VAE baselines share vae.py's conv nets,
    # the Lipschitz VAE has FC nets only), and the classifier SavedModel evaluate.py writes.
    config = small_config(variant)
    config.model.architecture, config.model.hidden_units, config.model.conv_filters = architecture, (8,), (4, 8)
    config.loss.weight_estimation_batches = 2
    model = models.build_model(config, (32, 32, 1))
    path = export.export_saved_model(model, str(tmp_path / "m"), {"variant": variant})
    assert model_safety.disallowed_ops(model_safety.read_saved_model_proto(path)) == {}
    loaded = export.load_saved_model(path)
    x = tf.constant(digits_arrays()[2][:2])
    np.testing.assert_allclose(loaded.decode(loaded.encode(x)), model.decode(model.encode(x)), atol=1e-5)
    if (variant, architecture) == ("robust", "fc"):
        mlp = classifier.build_mlp(np.asarray(loaded.encode(x)), 10, hidden_units=(4,))
        classifier_path = classifier.export_classifier(loaded, mlp, str(tmp_path / "classifier"))
        assert model_safety.disallowed_ops(model_safety.read_saved_model_proto(classifier_path)) == {}


@pytest.fixture
def fresh_trust(monkeypatch):
    monkeypatch.setattr(export, "_TRUSTED", set())


def test_a_model_that_writes_a_file_while_loading_is_refused_before_anything_runs(tmp_path, fresh_trust):
    target = tmp_path / "written_at_load.txt"
    path = save_crafted("writes_at_load", tmp_path / "model", target)
    for load in (export.load_saved_model, export.ExportedAutoencoder, export.admit_saved_model):
        with pytest.raises(ExportError, match="WriteFile .*--trust_model"):
            load(path)
        assert not target.exists()
    loaded = export.load_saved_model(path, trust=True)  # what the refusal prevented: the file is written
    assert target.read_text() == "written while the model was loaded"
    assert loaded.encode(tf.zeros([1, 32, 32, 1])).shape == (1, 3)


def test_a_model_that_reads_a_file_in_encode_is_refused_and_runs_when_trusted(tmp_path, fresh_trust):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the model")
    path = save_crafted("reads_in_encode", tmp_path / "model", secret)
    with pytest.raises(ExportError, match="ReadFile"):
        export.load_saved_model(path)
    # --trust_model in a script: admit marks the path trusted, so later plain loads accept it.
    export.admit_saved_model(path, trust=True)
    latents = export.ExportedAutoencoder(os.path.join(str(tmp_path), ".", "model")).encode(tf.zeros([2, 32, 32, 1]))
    np.testing.assert_array_equal(latents, np.full((2, 3), len("not for the model")))
    other = save_crafted("reads_in_encode", tmp_path / "other", secret)
    with pytest.raises(ExportError, match="ReadFile"):  # trust is per directory
        export.load_saved_model(other)


# ---- corrupt or missing files -----------------------------------------------------------


def _corrupt(path, kind):
    pb, meta = os.path.join(path, "saved_model.pb"), os.path.join(path, export.METADATA_FILE)
    if kind == "truncated_pb":
        data = open(pb, "rb").read()
        open(pb, "wb").write(data[: len(data) // 2])
    elif kind == "empty_pb":
        open(pb, "wb").close()
    elif kind == "pb_is_a_directory":
        os.remove(pb)
        os.mkdir(pb)
    elif kind == "bad_json":
        open(meta, "w").write('{"dataset": "dig')
    elif kind == "json_list":
        open(meta, "w").write("[1, 2]")
    elif kind == "binary_json":
        open(meta, "wb").write(b"\xff\xfe\x00garbage")
    elif kind == "no_variables":
        import shutil

        shutil.rmtree(os.path.join(path, "variables"))


@pytest.mark.parametrize("kind, words", [
    ("truncated_pb", r"saved_model.pb is corrupt"),
    ("empty_pb", r"saved_model.pb holds no graph"),
    ("pb_is_a_directory", r"no saved_model.pb"),
    ("bad_json", r"robust_dae_tf.json is not readable JSON"),
    ("json_list", r"robust_dae_tf.json holds a JSON list"),
    ("binary_json", r"robust_dae_tf.json is not readable JSON"),
    ("no_variables", r"cannot load the SavedModel .*model"),
])
def test_a_corrupt_model_raises_one_error_naming_the_file(exported, tmp_path, kind, words):
    import shutil

    path = str(tmp_path / "model")
    shutil.copytree(exported[1], path)
    _corrupt(path, kind)
    with pytest.raises(ExportError, match=words) as err:
        export.load_saved_model(path)
    assert len(str(err.value).splitlines()) == 1 and path in str(err.value)
