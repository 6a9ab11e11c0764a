"""The registry is the only list of model names: a new model is one module (this test
module plays it: `config_sections`, `build` and an `Autoencoder` subclass) plus one
registry entry, and trains, resumes and exports through the unchanged pipeline."""

import json
import os
import sys
import types

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import config_lib, export, models, networks, pipeline
from robust_dae_tf.baselines.vae import StandardNormalPrior
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.models import registry
from tests.helpers import assert_two_replicas_match_one_device, small_config

# -- the toy model's module: everything a new model needs ------------------------------


def config_sections():
    toy = ml_collections.ConfigDict()
    toy.noise = 0.05  # latent noise in training
    toy.norm_weight = 1e-3  # weight of the latent norm penalty
    return {"toy": toy}


class ToyAutoencoder(models.Autoencoder):
    """MSE reconstruction of noisy latents plus a small latent norm penalty."""

    metric_names = ("loss", "reconstruction", "latent_norm")

    def __init__(self, encoder, decoder, *, noise, norm_weight, **kwargs):
        latent_dim = int(decoder.input_shape[-1])
        super().__init__(encoder, decoder, StandardNormalPrior(latent_dim), loss_weights={"norm": norm_weight}, **kwargs)
        self.noise = float(noise)
        self.norm_weight = float(norm_weight)
        self.prepared_with = None

    def prepare(self, num_train_examples):
        self.prepared_with = num_train_examples

    def export_metadata(self):
        return {"model": "toy", "noise": self.noise}

    def compute_terms(self, x, *, training, step, stream):
        (seed,) = self.step_seeds(step, stream, 1)
        z = self.encoder(x, training=training)
        z_dec = z + self.noise * self.global_random(tf.random.stateless_normal, tf.shape(z), seed) if training else z
        reconstruction = tf.reduce_mean(tf.square(x - self.decoder(z_dec, training=training)))
        latent_norm = tf.reduce_mean(tf.square(z))
        loss = reconstruction + self.norm_weight * latent_norm
        return loss, {"loss": loss, "reconstruction": reconstruction, "latent_norm": latent_norm}


def build(config, image_shape):
    encoder, decoder = networks.build_networks(config.model, image_shape)
    return ToyAutoencoder(
        encoder, decoder, noise=config.toy.noise, norm_weight=config.toy.norm_weight, seed=config.train.seed, name="toy"
    )


# -- tests ---------------------------------------------------------------------------------


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "toy", registry.Entry(__name__))  # the one registry line


def _toy_config():
    config = small_config("toy", epochs=1)
    config.model.hidden_units = (32,)
    config.data.max_train_examples = 200
    config.toy.noise = 0.1
    return config


def test_a_registered_module_adds_a_model_its_name_and_its_config_section(toy_registered):
    assert registry.names()[-1] == "toy" and "toy" in config_lib.MODELS and "toy" in config_lib.BASELINES
    assert "toy" not in config_lib.VARIANTS
    config = config_lib.base_config()
    assert config.toy.noise == 0.05 and config.toy.norm_weight == 1e-3
    config.model.variant = "toy"
    config_lib.validate(config)
    assert isinstance(models.build_model(config, (32, 32, 1)), ToyAutoencoder)


def test_the_toy_model_trains_exports_and_resumes_through_the_pipeline(toy_registered, tmp_path):
    config = _toy_config()
    export_dir = str(tmp_path / "saved")
    result = pipeline.run_training_pipeline(config, str(tmp_path / "run"), export_dir)
    model = result["model"]
    assert model.prepared_with == 200 and result["steps"] == 2
    assert set(result["final_metrics"]) == set(ToyAutoencoder.metric_names)
    with open(tmp_path / "run" / "trainer" / "config.json") as f:
        assert json.load(f)["toy"]["noise"] == 0.1
    history = json.loads((tmp_path / "run" / "trainer" / "history.json").read_text())
    assert set(history) >= {"epoch", "loss", "latent_norm", "val_latent_norm"}

    loaded = export.load_saved_model(export_dir)
    assert loaded.metadata["variant"] == "toy"
    assert loaded.metadata["model_details"] == {"model": "toy", "noise": 0.1}
    assert loaded.metadata["loss_weights"] == {"norm": 1e-3}
    assert loaded.metadata["prior"] == {"type": "normal", "latent_dim": 10}
    x = tf.random.uniform([4, 32, 32, 1], seed=1)
    np.testing.assert_allclose(loaded.encode(x), model.encode(x), atol=1e-5)

    config.train.epochs = 2  # the same command with more epochs resumes from the checkpoint
    resumed = pipeline.run_training_pipeline(config, str(tmp_path / "run"), None)
    assert resumed["steps"] == 4
    assert os.path.exists(tmp_path / "run" / "trainer" / "checkpoints" / "ckpt-4.index")


def test_an_unknown_name_is_refused_naming_the_choices():
    config = small_config("toy")
    with pytest.raises(ConfigError, match=r"'toy' is unknown; choose one of gmm_dae, .*, avae \(flag --model\)"):
        models.build_model(config, (32, 32, 1))
    with pytest.raises(ConfigError, match="unknown"):
        registry.build(config, (32, 32, 1))


def test_a_config_section_defined_twice_is_refused(monkeypatch):
    clash = types.ModuleType("toy_clash")
    clash.config_sections = lambda: {"vae": ml_collections.ConfigDict({"beta": 2.0})}
    monkeypatch.setitem(sys.modules, "toy_clash", clash)
    monkeypatch.setitem(registry.MODELS, "toy_clash", registry.Entry("toy_clash"))
    with pytest.raises(ConfigError, match="config section 'vae' is defined twice"):
        config_lib.base_config()


def test_compute_terms_must_report_exactly_the_metric_names(toy_registered):
    model = build(_toy_config(), (32, 32, 1))
    model.compile(optimizer=keras.optimizers.SGD())
    model.compute_terms = lambda x, **kw: (tf.constant(0.0), {"loss": tf.constant(0.0)})
    with pytest.raises(ValueError, match=r"returned \['loss'\], but metric_names is \['loss', 'reconstruction'"):
        model.test_step(tf.zeros([2, 32, 32, 1]))


def test_base_reduces_the_objective_and_metrics_across_replicas(toy_registered):
    """Two replicas compute the same step as one device: the base divides the objective by
    the number of replicas and averages the replica-local metric values."""
    config = _toy_config()
    batches = np.random.default_rng(0).uniform(size=(3, 100, 32, 32, 1)).astype(np.float32)
    assert_two_replicas_match_one_device(lambda: build(config, (32, 32, 1)), batches, 1e-5, 1e-4, 1e-6)
