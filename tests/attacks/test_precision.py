"""Tests for the search precision of the attacks (robust_dae_tf.attacks.precision,
AttackConfig.precision): the bfloat16 twin (hidden layers in bfloat16, the output layers and
the weights as in float32), rebuilt from a bin/train.py export or cloned from Keras models,
refused for models without layers to rebuild; the runner scoring what the bfloat16 search found
with the float32 model (against a numpy forward pass), maximum damage left in float32, "auto"
deciding by the measured speed, and the run cache keeping float32 runs resumable."""

import dataclasses

import keras
import numpy as np
import pytest

from robust_dae_tf import adapters, attacks, export, models
from robust_dae_tf.attacks import AttackConfig, precision
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.evaluation import robustness
from tests.attacks.toy_models import MLPModel, make_mlp_images
from tests.helpers import export_tiny_autoencoder, small_config

APGD = dict(method="apgd", gradient_evaluations=60)


def _numpy_encode(encoder, images):
    """The MLP encoder of toy_models (Flatten, Dense tanh, Dense) in float64 numpy."""
    (w1, b1), (w2, b2) = [(layer.kernel.numpy(), layer.bias.numpy()) for layer in encoder.layers if layer.weights]
    h = np.tanh(images.reshape(len(images), -1).astype(np.float64) @ w1 + b1)
    return h @ w2 + b2


@pytest.fixture(scope="module")
def mlp_adapter():
    model = MLPModel(seed=5)
    return adapters.from_object((model.encoder, model.decoder), name="mlp")


def test_config_checks_the_precision():
    assert AttackConfig().precision == "float32"
    with pytest.raises(ConfigError, match="precision 'half' is unknown"):
        AttackConfig(precision="half")
    for method in ("lbfgsb", "paper"):
        with pytest.raises(ConfigError, match=f"not '{method}'"):
            AttackConfig(method=method, precision="bfloat16")
    for method in ("pgd", "apgd", "ensemble"):
        assert AttackConfig(method=method, precision="auto").precision == "auto"


def test_twin_computes_hidden_layers_in_bfloat16_with_the_same_weights(mlp_adapter):
    encoder, decoder = mlp_adapter.parts
    twin = precision.bfloat16_twin(mlp_adapter)
    assert precision.bfloat16_twin(mlp_adapter) is twin  # built once per model
    t_encoder, t_decoder = twin.parts
    for original, clone in ((encoder, t_encoder), (decoder, t_decoder)):
        weighted = [layer for layer in clone.layers if layer.weights]
        assert [layer.dtype_policy.compute_dtype for layer in weighted] == ["bfloat16", "float32"]
        assert all(layer.dtype_policy.variable_dtype == "float32" for layer in clone.layers)
        for a, b in zip(original.get_weights(), clone.get_weights()):
            np.testing.assert_array_equal(a, b)
    # The decoder's Reshape after its last Dense stays float32 too (the float32 tail).
    assert t_decoder.layers[-1].dtype_policy.compute_dtype == "float32"
    x = make_mlp_images()
    z32, z16 = _numpy_encode(encoder, x), twin.encode(x).numpy()
    assert z16.dtype == np.float32
    scale = np.abs(z32).max()
    assert 0 < np.abs(z16 - z32).max() < 0.02 * scale  # bfloat16 arithmetic: close, not equal
    np.testing.assert_allclose(mlp_adapter.encode(x).numpy(), z32, rtol=1e-5, atol=1e-5)


def test_twin_of_a_train_export_is_rebuilt_from_its_config_and_variables(tmp_path):
    config = small_config("gmm_dae")
    model = models.build_model(config, (32, 32, 1))
    keras.utils.set_random_seed(3)
    for variable in model.encoder.variables + model.decoder.variables:  # weights unlike a fresh build's
        variable.assign(variable + np.random.default_rng(0).normal(0, 0.05, variable.shape).astype(np.float32))
    path = export.export_saved_model(model, str(tmp_path / "export"), {"config": config.to_dict(),
                                                                        "dataset": "digits"})
    adapter = adapters.open_model(path)
    assert adapter.form == "export"
    twin = precision.bfloat16_twin(adapter)
    t_encoder, t_decoder = twin.parts
    for original, clone in ((model.encoder, t_encoder), (model.decoder, t_decoder)):
        for a, b in zip(original.get_weights(), clone.get_weights()):
            np.testing.assert_array_equal(a, b)  # the SavedModel's variables, not the config's fresh ones
        assert any(layer.weights and layer.dtype_policy.compute_dtype == "bfloat16" for layer in clone.layers)
    x = np.random.default_rng(1).uniform(0, 1, (5, 32, 32, 1)).astype(np.float32)
    z32 = adapter.encode(x).numpy()
    z16 = twin.encode(x).numpy()
    assert 0 < np.abs(z16 - z32).max() < 0.03 * np.abs(z32).max()
    # The same model loaded as bin/check_attacks.py does (export.ExportedAutoencoder).
    loaded_twin = precision.bfloat16_twin(export.load_saved_model(path))
    np.testing.assert_array_equal(loaded_twin.encode(x).numpy(), z16)


def test_models_without_layers_to_rebuild_are_refused(tmp_path):
    path = export_tiny_autoencoder(str(tmp_path / "tiny"), shape=(8, 8, 1))  # metadata without a config
    with pytest.raises(ConfigError, match="computes in float32 as saved"):
        precision.bfloat16_twin(adapters.open_model(path))
    with pytest.raises(ConfigError, match="computes in float32 as saved"):
        precision.bfloat16_twin(export.load_saved_model(path))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (-1, 64)))

    encoder = Subclassed()
    encoder(np.zeros((1, 8, 8, 1), np.float32))
    decoder = MLPModel().decoder
    with pytest.raises(ConfigError, match="functional or Sequential"):
        precision.bfloat16_twin(adapters.from_object((encoder, decoder)))
    with pytest.raises(ConfigError, match="computes in float32"):  # plain callables
        precision.bfloat16_twin(adapters.from_object((lambda x: x, lambda z: z)))


def test_latent_search_in_bfloat16_is_scored_in_float32(mlp_adapter):
    x = make_mlp_images()
    targets = x[::-1].copy()
    config = AttackConfig(**APGD, precision="bfloat16")
    result = attacks.run("latent", mlp_adapter, x, 0.5, config, targets=targets, seed=2)
    assert result.info["precision"] == "bfloat16"
    encoder = mlp_adapter.parts[0]
    expected = np.linalg.norm(_numpy_encode(encoder, result.adversarial) - _numpy_encode(encoder, targets), axis=1)
    np.testing.assert_allclose(result.loss, expected, rtol=1e-4)  # float32 scores, not the search's own
    assert result.info["search_mean_loss"] != pytest.approx(float(np.mean(result.loss)), rel=1e-6)
    assert result.info["search_mean_loss"] == pytest.approx(float(np.mean(result.loss)), rel=0.05)
    delta = (result.adversarial - x).reshape(len(x), -1)
    assert np.all(np.linalg.norm(delta, axis=1) <= 0.5 + 1e-4)
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    # As strong as the float32 search (the latent attack was measured within 0.5 % on CelebA; here a toy).
    float32 = attacks.run("latent", mlp_adapter, x, 0.5, AttackConfig(**APGD), targets=targets, seed=2)
    assert float32.info["precision"] == "float32"
    assert np.mean(result.loss) <= np.mean(float32.loss) * 1.05


def test_maximum_damage_stays_in_float32(mlp_adapter):
    x = make_mlp_images()
    asked = attacks.run("max_damage", mlp_adapter, x, 0.5, AttackConfig(**APGD, precision="bfloat16"), seed=1)
    plain = attacks.run("max_damage", mlp_adapter, x, 0.5, AttackConfig(**APGD), seed=1)
    np.testing.assert_array_equal(asked.adversarial, plain.adversarial)  # the float32 model searched
    assert asked.info["precision"] == "float32" and "bfloat16 requested" in asked.info["precision_note"]
    assert "precision_note" not in plain.info


@pytest.mark.parametrize("speedup, chosen", [(2.0, "bfloat16"), (precision.AUTO_MIN_SPEEDUP, "bfloat16"),
                                             (1.1, "float32"), (0.5, "float32")])
def test_auto_follows_the_measured_speed(speedup, chosen):
    model = adapters.from_object((MLPModel(seed=7).encoder, MLPModel(seed=7).decoder))
    calls = []

    def measure(objective, float_model, twin, images, reference, twin_reference):
        calls.append((objective.name, float_model is model, twin is precision.bfloat16_twin(model)))
        return {"images": len(images), "float32_seconds": 1.0, "bfloat16_seconds": 1.0 / speedup,
                "speedup": speedup}

    x = make_mlp_images()
    objective = attacks.objective("latent")
    reference = np.asarray(objective.reference(model, x, x[::-1]))
    config = AttackConfig(**APGD, precision="auto")
    for _ in range(2):
        search_model, _, log = precision.search_precision(objective, model, config, x, x[::-1], reference, measure)
    assert calls == [("latent", True, True)]  # measured once per model and attack
    assert log["precision"] == chosen and log["precision_measurement"]["speedup"] == speedup
    assert (search_model is model) == (chosen == "float32")


def test_measure_speed_times_both_precisions(mlp_adapter):
    x = np.concatenate([make_mlp_images()] * 4)  # 24 images: measured on AUTO_IMAGES of them
    objective = attacks.objective("latent")
    twin = precision.bfloat16_twin(mlp_adapter)
    ref = np.asarray(objective.reference(mlp_adapter, x, x[::-1]))
    ref16 = np.asarray(objective.reference(twin, x, x[::-1]))
    m = precision.measure_speed(objective, mlp_adapter, twin, x, ref, ref16, repeats=2)
    assert m["images"] == precision.AUTO_IMAGES
    assert m["float32_seconds"] > 0 and m["bfloat16_seconds"] > 0
    assert m["speedup"] == pytest.approx(m["float32_seconds"] / m["bfloat16_seconds"])


def test_run_cache_fingerprint_keeps_float32_runs_and_separates_bfloat16():
    objective = attacks.objective("latent")
    attack = dataclasses.asdict(AttackConfig())
    old = {k: v for k, v in attack.items() if k != "precision"}  # a run cached before the field existed
    base = {"model": "m"}
    assert robustness._run_fingerprint(base, objective, 1.0, attack, 3) == robustness._run_fingerprint(
        base, objective, 1.0, old, 3)
    bf16 = dataclasses.asdict(AttackConfig(precision="bfloat16"))
    assert robustness._run_fingerprint(base, objective, 1.0, bf16, 3) != robustness._run_fingerprint(
        base, objective, 1.0, attack, 3)


def test_evaluation_records_the_precision_of_each_run():
    keras.utils.set_random_seed(4)
    encoder = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(12, activation="tanh"), keras.layers.Dense(3)])
    decoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(12, activation="tanh"),
                                keras.layers.Dense(256, activation="sigmoid"), keras.layers.Reshape((16, 16, 1))])
    model = adapters.from_object((encoder, decoder))
    x = np.random.default_rng(2).uniform(0, 1, (8, 16, 16, 1)).astype(np.float32)
    protocol = robustness.Protocol(num_images=4, trials=1, budgets=(0.5,),
                                   attack=AttackConfig(**APGD, precision="bfloat16"))
    values = {}
    report = robustness.evaluate_robustness(model, x, np.arange(8) % 3, protocol, progress=False,
                                            per_image_out=values)
    assert report["protocol"]["attack"]["precision"] == "bfloat16"
    assert report["attack_runs"]["latent"]["0.5"]["precision"] == "bfloat16"
    assert report["attack_runs"]["max_damage"]["0.5"]["precision"] == "float32"
    assert np.all(np.isfinite(values["latent"]["0.5"]["attack_loss"]))


def test_config_record_leaves_precision_out_at_float32():
    from robust_dae_tf.attacks import config as attack_config

    plain = attack_config.config_record(AttackConfig(method="ensemble"))
    assert "precision" not in plain  # cells written before the field existed are reused
    assert plain == {k: v for k, v in dataclasses.asdict(AttackConfig(method="ensemble")).items() if k != "precision"}
    assert attack_config.config_record(AttackConfig(method="ensemble", precision="bfloat16"))["precision"] == "bfloat16"


def test_twin_follows_a_model_trained_after_it_was_built():
    model = MLPModel(seed=8)
    twin = precision.bfloat16_twin(model)  # the project's models: objects with Keras encoder / decoder
    kernel = model.encoder.layers[-1].kernel
    kernel.assign(kernel.numpy() + 1.0)  # "trained" since
    again = precision.bfloat16_twin(model)
    assert again is twin
    np.testing.assert_array_equal(again.parts[0].layers[-1].kernel.numpy(), kernel.numpy())
    x = make_mlp_images()
    assert np.abs(again.encode(x).numpy() - _numpy_encode(model.encoder, x)).max() < 0.02 * np.abs(
        _numpy_encode(model.encoder, x)).max()


def test_finished_evaluation_parts_keep_their_fingerprint(monkeypatch):
    """The evaluation components' fingerprints leave precision out at float32 (parts finished
    before the field existed are reused) and hold it otherwise."""
    from robust_dae_tf.evaluation import downstream
    from robust_dae_tf.pipeline import evaluators

    from robust_dae_tf.attacks import config as attack_config

    plain = attack_config.config_record(AttackConfig())
    assert "precision" not in plain and plain["towards_starts"] == 0  # the earlier fields stay recorded
    assert "gradient_evaluations" in plain and "ensemble_members" in plain  # added before these caches existed
    assert attack_config.config_record(AttackConfig(precision="auto"))["precision"] == "auto"
    assert attack_config.config_record(None) is None
    with pytest.raises(ValueError, match="seed"):
        attack_config.config_record(AttackConfig(), added_since=("seed",))
    monkeypatch.setattr(evaluators, "_inputs_identity", lambda *args: {"model": "m"})  # no artifacts needed
    for precision_name, recorded in (("bfloat16", True), ("float32", False)):
        config = downstream.ClassifierConfig(attack=AttackConfig(precision=precision_name))
        fingerprint = evaluators.ClassifierEvaluator(config).fingerprint(None, None)
        assert ("precision" in fingerprint["config"]["attack"]) == recorded
