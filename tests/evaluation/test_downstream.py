"""Tests of robust_dae_tf.evaluation.downstream (formerly classifier; downstream classifier of Table 3)."""

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import export, priors
from robust_dae_tf.evaluation import downstream as classifier
from robust_dae_tf.errors import ConfigError, DataError

K = 4  # classes
SHAPE = (16, 16, 1)


class FirstPixels:
    """Fake autoencoder: encode(x) = the first K pixels, so class c <-> bright pixel c."""

    metadata = {"image_shape": list(SHAPE)}

    def encode(self, images):
        images = tf.convert_to_tensor(images, tf.float32)
        return tf.reshape(images, [tf.shape(images)[0], -1])[:, :K]

    def decode(self, latents):
        return tf.zeros([tf.shape(latents)[0], *SHAPE])


def class_images(labels):
    """Image of class c: pixel c (of the flattened image) = 1, the rest 0."""
    x = np.zeros((len(labels), int(np.prod(SHAPE))), np.float32)
    x[np.arange(len(labels)), labels] = 1.0
    return x.reshape(len(labels), *SHAPE)


def identity_mlp():
    """Logits = latents: predicts argmax of the code."""
    inputs = keras.Input((K,))
    dense = keras.layers.Dense(K, use_bias=False, kernel_initializer="identity")
    return keras.Model(inputs, dense(inputs))


def test_mlp_separates_separable_latents():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, 600)
    codes = 10.0 * np.eye(K, 6)[labels] + rng.normal(0, 1.0, (600, 6))
    config = classifier.ClassifierConfig(hidden_units=(32, 32), dropout=0.1, epochs=15, batch_size=64)
    mlp = classifier.train_mlp(codes[:400], labels[:400], K, config)
    assert classifier.accuracy(mlp, codes[400:], labels[400:]) >= 0.98
    # Shuffled labels cannot be learned on held-out data: accuracy near chance.
    assert classifier.accuracy(mlp, codes[400:], rng.permutation(labels[400:])) < 0.5


def test_choose_targets_are_of_another_class():
    labels = np.array([0, 0, 1, 2, 2, 2, 1])
    targets = classifier.choose_targets(labels, np.random.default_rng(0))
    assert np.all(labels[targets] != labels)
    with pytest.raises(DataError, match="2 classes"):
        classifier.choose_targets(np.zeros(5, int), np.random.default_rng(0))


def test_attacked_accuracy_with_stub_attacks():
    labels = np.arange(40) % K
    images = class_images(labels)
    model, mlp = FirstPixels(), identity_mlp()
    assert classifier.accuracy(mlp, classifier.encode_images(model, images), labels) == 1.0
    calls = []

    def no_attack(model_, x, targets, budget, config, seed=0):
        calls.append((budget, config, seed, np.array(targets)))
        return types.SimpleNamespace(adversarial=x.copy(), loss=np.zeros(len(x)))

    def perfect_attack(model_, x, targets, budget, config, seed=0):
        return types.SimpleNamespace(adversarial=np.array(targets), loss=np.zeros(len(x)))

    def half_attack(model_, x, targets, budget, config, seed=0):
        adv = x.copy()
        adv[::2] = targets[::2]
        return types.SimpleNamespace(adversarial=adv, loss=np.ones(len(x)))

    out = classifier.attacked_accuracy(model, mlp, images, labels, budget=1.0, attack_config="cfg", seed=3,
                                       attack_fn=no_attack)
    assert out["accuracy"] == 1.0
    budget, config, seed, targets = calls[0]
    assert (budget, config, seed) == (1.0, "cfg", 3)
    # Targets are test images of a different class (their labels are recoverable from the pixels).
    np.testing.assert_array_equal(targets, images[out["targets"]])
    assert np.all(labels[out["targets"]] != labels)
    # x_adv = x_t: classified as the target's class, which is never the true one.
    assert classifier.attacked_accuracy(model, mlp, images, labels, attack_config="c",
                                        attack_fn=perfect_attack)["accuracy"] == 0.0
    assert classifier.attacked_accuracy(model, mlp, images, labels, attack_config="c",
                                        attack_fn=half_attack)["accuracy"] == 0.5


def _dataset(labels):
    images = (class_images(labels) * 255).astype(np.uint8)
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels.astype(np.int64)})


def test_evaluate_downstream_reports_clean_and_attacked_accuracy():
    rng = np.random.default_rng(1)
    train, test = rng.integers(0, K, 400), rng.integers(0, K, 100)
    seen = []

    def perfect_on_first_20(model_, x, targets, budget, config, seed=0):
        seen.append(len(x))
        adv = x.copy()
        adv[:20] = targets[:20]
        return types.SimpleNamespace(adversarial=adv, loss=np.zeros(len(x)))

    config = classifier.ClassifierConfig(hidden_units=(32,), epochs=30, learning_rate=1e-2, attack_images=50,
                                         attack_trials=2, attack="cfg")
    mlp, report = classifier.evaluate_downstream(FirstPixels(), _dataset(train), _dataset(test), K, config,
                                                 attack_fn=perfect_on_first_20, progress=False)
    assert report["clean_accuracy"] == 1.0
    assert seen == [50, 50] and report["num_attacked"] == 50
    assert report["attacked_accuracy"]["values"] == [30 / 50, 30 / 50]
    assert report["attacked_accuracy"]["mean"] == pytest.approx(0.6) and report["attacked_accuracy"]["std"] == 0
    with pytest.raises(DataError, match="labelled"):
        classifier.evaluate_downstream(FirstPixels(), _dataset(train), _dataset(test), 1, config)
    with pytest.raises(ConfigError, match="dropout"):
        classifier.ClassifierConfig(dropout=1.5).validate()


def _tiny_autoencoder(path):
    keras.utils.set_random_seed(0)
    enc_in = keras.Input(SHAPE)
    encoder = keras.Model(enc_in, keras.layers.Dense(3)(keras.layers.Flatten()(enc_in)))
    dec_in = keras.Input((3,))
    decoder = keras.Model(dec_in, keras.layers.Reshape(SHAPE)(
        keras.layers.Dense(int(np.prod(SHAPE)), activation="sigmoid")(dec_in)))
    prior = priors.GMMPrior(priors.one_hot_centers(3, 3, 10.0)).to_dict()
    export.export_saved_model(types.SimpleNamespace(encoder=encoder, decoder=decoder), path,
                              {"dataset": "toy", "variant": "tiny", "prior": prior})
    return export.ExportedAutoencoder(path)


def test_classifier_saved_model_round_trip(tmp_path):
    model = _tiny_autoencoder(str(tmp_path / "ae"))
    rng = np.random.default_rng(0)
    x = rng.random((64, *SHAPE), dtype=np.float32)
    codes = classifier.encode_images(model, x, batch_size=10)
    labels = (codes[:, 0] > np.median(codes[:, 0])).astype(int)
    mlp = classifier.train_mlp(codes, labels, 2, classifier.ClassifierConfig(hidden_units=(8,), epochs=2))
    out_dir = str(tmp_path / "cls")
    classifier.export_classifier(model, mlp, out_dir, {"note": "test"})
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p]
    loaded = classifier.load_classifier(out_dir)
    got = loaded.classify(x[:7])
    want = mlp(codes[:7]).numpy()
    np.testing.assert_allclose(got["logits"], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], tf.nn.softmax(want).numpy(), rtol=1e-5, atol=1e-6)
    assert loaded.metadata["note"] == "test" and loaded.metadata["num_classes"] == 2
    assert loaded.metadata["image_shape"] == list(SHAPE)
    # The serving signature works on its own (no Python objects of this process).
    signature = tf.saved_model.load(out_dir).signatures["classify"]
    np.testing.assert_allclose(signature(images=tf.constant(x[:7]))["logits"].numpy(), want, rtol=1e-5, atol=1e-5)
    # Re-export over an existing directory replaces it atomically.
    classifier.export_classifier(model, mlp, out_dir, {"note": "again"})
    assert classifier.load_classifier(out_dir).metadata["note"] == "again"


def test_encode_images_rejects_nan():
    class NaNModel(FirstPixels):
        def encode(self, images):
            return tf.fill([tf.shape(images)[0], K], np.nan)

    with pytest.raises(DataError, match="NaN"):
        classifier.encode_images(NaNModel(), np.zeros((3, *SHAPE), np.float32))
