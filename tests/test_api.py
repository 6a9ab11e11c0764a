"""The Python API (robust_dae_tf.evaluate / attack / build_model) on models written in plain
Keras, with values checked against closed-form optima of the identity autoencoder, and the
.keras round trip of the project's models."""

import doctest

import keras
import numpy as np
import pytest

import robust_dae_tf
from robust_dae_tf import api
from robust_dae_tf.evaluation import robustness
from robust_dae_tf.errors import ConfigError, DataError, ExportError

SHAPE = (16, 16, 1)
FAST = dict(attack_steps=30, attack_restarts=1, attack_exploration_starts=1)


def identity_pair():
    encoder = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten()])
    decoder = keras.Sequential([keras.Input((256,)), keras.layers.Reshape(SHAPE)])
    return encoder, decoder


def images(n=8, lo=0.2, hi=0.8, seed=0):
    return np.random.default_rng(seed).uniform(lo, hi, (n, *SHAPE)).astype(np.float32)


def test_evaluate_identity_meets_the_known_optima():
    x = images()
    labels = np.array([0, 1] * 4)
    result = robust_dae_tf.evaluate(identity_pair(), images=x, labels=labels, budgets=(0.5, 1.0), num_images=3,
                                    trials=2, **FAST)
    for budget in ("0.5", "1.0"):
        damage = result.per_image["max_damage"][budget]
        assert damage["attack_loss"].shape == (6,)
        np.testing.assert_allclose(damage["attack_loss"], float(budget), atol=2e-3)  # ||x_a - x|| = lambda
        # Latent attack: ||x_a - x_t|| = ||x - x_t|| - lambda at the optimum (targets of the other class).
        protocol = robustness.Protocol(num_images=3, trials=2, budgets=(0.5, 1.0), seed=0)
        _, sources, targets = robustness.select_trials(labels, protocol)
        optimum = np.linalg.norm((x[sources.reshape(-1)] - x[targets.reshape(-1)]).reshape(6, -1), axis=1)
        optimum -= float(budget)
        latent = result.per_image["latent"][budget]["attack_loss"]
        assert np.all(latent >= optimum - 1e-3)
        np.testing.assert_allclose(latent, optimum, atol=0.02)
    # The cell is the mean over trials of per-trial means (here: the mean of all six).
    assert result.mean("max_damage", 1.0, "attack_loss") == pytest.approx(
        result.per_image["max_damage"]["1.0"]["attack_loss"].mean())
    assert "Latent: MS-SSIM" in result.table and result.row["model_source"]["form"] == "in_memory"


def test_evaluate_writes_the_cli_report_and_figures(tmp_path):
    result = robust_dae_tf.evaluate(identity_pair(), images=images(), budgets=(1.0,), num_images=2,
                                    output=str(tmp_path / "out"), figures=True, prior="standard_normal", **FAST)
    assert set(result.figures) == {"per_image_latent", "per_image_max_damage"}
    for name in ("summary.json", "table1.md", "report.md", "per_image.npz", "figures/per_image_latent.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert result.row["model_source"]["prior"] == "standard_normal (D=256)"


def test_pixel_range_keeps_budgets_in_unit_pixels():
    """A model working on [0, 255] pixels: the budget is still an L2 norm in [0, 1] units, so
    the identity's maximum damage (measured on [0, 1] reconstructions) equals it; the
    adversarial images come back in [0, 255]."""
    x255 = images() * 255
    result = robust_dae_tf.evaluate(identity_pair(), images=x255, budgets=(1.0,), num_images=2,
                                    pixel_range=(0, 255), **FAST)
    np.testing.assert_allclose(result.per_image["max_damage"]["1.0"]["attack_loss"], 1.0, atol=2e-3)
    adv = robust_dae_tf.attack(identity_pair(), x255[:2], budget=1.0, pixel_range=(0, 255), steps=30, restarts=1,
                               exploration_starts=1)
    np.testing.assert_allclose(np.linalg.norm((adv.adversarial - x255[:2]).reshape(2, -1), axis=1), 255.0, rtol=2e-3)


def test_attack_latent_needs_targets_and_reaches_the_optimum():
    x, t = images(2, seed=1), images(2, seed=2)
    with pytest.raises(ConfigError, match="needs targets="):
        robust_dae_tf.attack(identity_pair(), x, kind="latent")
    result = robust_dae_tf.attack(identity_pair(), x, budget=1.0, kind="latent", targets=t, steps=50, restarts=1,
                                  exploration_starts=1)
    optimum = np.linalg.norm((x - t).reshape(2, -1), axis=1) - 1.0
    np.testing.assert_allclose(result.loss, optimum, atol=0.02)


@pytest.mark.parametrize("case", ["range", "rank", "labels", "int_latents", "no_parts"])
def test_bad_input_is_one_error_before_any_attack(monkeypatch, case):
    from tests.helpers import count_attack_runs

    calls = count_attack_runs(monkeypatch)
    encoder, decoder = identity_pair()
    model, x, kwargs = (encoder, decoder), images(), {}
    if case == "range":
        x, error, pattern = x * 2, DataError, r"pixels in \[0\.4\d*, 1\.5\d*\], outside the declared pixel range"
    elif case == "rank":
        x, error, pattern = x[..., 0], DataError, r"images must be \[N, H, W, C\]"
    elif case == "labels":
        kwargs, error, pattern = {"labels": np.zeros(3, int)}, DataError, r"one label per image"
    elif case == "int_latents":
        model = (lambda t: keras.ops.cast(keras.ops.reshape(t, (-1, 256)) * 255, "int32"), decoder)
        error, pattern = ExportError, r"encodes images to int32 latents"
    else:
        model, error, pattern = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten()]), ExportError, \
            r"no recognisable encoder and decoder"
    with pytest.raises(error, match=pattern) as info:
        robust_dae_tf.evaluate(model, images=x, budgets=(1.0,), num_images=2, **kwargs, **FAST)
    assert "\n" not in str(info.value) and calls == []


def test_our_models_round_trip_through_keras_files(tmp_path):
    model = robust_dae_tf.build_model("robust", (32, 32, 1), {"model.hidden_units": (16,),
                                                              "loss.weight_estimation_batches": 2,
                                                              "train.jit_compile": False})
    x = np.random.default_rng(0).uniform(size=(200, 32, 32, 1)).astype(np.float32)
    model.fit(x, batch_size=100, epochs=1, verbose=0)
    model.save(str(tmp_path / "robust.keras"))
    reloaded = keras.models.load_model(str(tmp_path / "robust.keras"))
    assert type(reloaded) is type(model)
    np.testing.assert_array_equal(np.asarray(reloaded.encode(x[:4])), np.asarray(model.encode(x[:4])))
    assert int(reloaded.optimizer.iterations) == int(model.optimizer.iterations) == 2  # optimizer state restored
    moments = [v for v in reloaded.optimizer.variables if "momentum" in v.path]
    assert moments and any(np.abs(np.asarray(v)).max() > 0 for v in moments)
    reloaded.fit(x, batch_size=100, epochs=1, verbose=0)  # trains on
    assert int(reloaded.optimizer.iterations) == 4


def test_build_model_rejects_unknown_overrides_and_unbuilt_models_say_how_to_save():
    with pytest.raises(ConfigError, match=r"'model.no_such_field': unknown field"):
        robust_dae_tf.build_model("robust", (32, 32, 1), {"model.no_such_field": 1})
    from robust_dae_tf import config_lib, models

    config = config_lib.base_config()
    model = models.registry.build(config, (32, 32, 1))  # not through models.build_model: config unknown
    with pytest.raises(NotImplementedError, match="build it with robust_dae_tf.build_model"):
        model.get_config()


def test_docstring_examples_run():
    failures, tried = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert tried >= 10 and failures == 0


def test_the_package_exports_the_api_lazily():
    """`import robust_dae_tf` stays free of TensorFlow (the scripts' cheap checks run first);
    `robust_dae_tf.evaluate` imports the API on first use; other names still fail."""
    import os
    import subprocess
    import sys

    probe = ("import sys, robust_dae_tf\n"
             "assert 'tensorflow' not in sys.modules\n"
             "assert robust_dae_tf.evaluate.__module__ == 'robust_dae_tf.api'\n"
             "try:\n    robust_dae_tf.no_such_name\nexcept AttributeError as err:\n    print('ok', err)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok module 'robust_dae_tf' has no attribute 'no_such_name'")


def test_local_gain_of_known_maps_and_pixel_ranges():
    """Identity autoencoder: gain 1 for maximum damage in any pixel range (changes are in
    [0, 1] units on both sides); an encoder that doubles its input: latent gain 2."""
    encoder = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten()])
    decoder = keras.Sequential([keras.Input((256,)), keras.layers.Reshape((16, 16, 1))])
    x = np.random.default_rng(0).uniform(0.2, 0.8, (3, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(robust_dae_tf.local_gain((encoder, decoder), x), 1.0, rtol=1e-4)
    np.testing.assert_allclose(robust_dae_tf.local_gain((encoder, decoder), 2 * x - 1, pixel_range=(-1, 1)), 1.0,
                               rtol=1e-4)
    doubling = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Rescaling(2.0)])
    halving = keras.Sequential([keras.Input((256,)), keras.layers.Rescaling(0.5), keras.layers.Reshape((16, 16, 1))])
    np.testing.assert_allclose(robust_dae_tf.local_gain((doubling, halving), x, kind="latent"), 2.0, rtol=1e-4)
    with pytest.raises(ConfigError, match="nope"):
        robust_dae_tf.local_gain((encoder, decoder), x, kind="nope")


def test_evaluate_reports_the_local_gain_at_the_attacked_images(tmp_path):
    """A doubling encoder and halving decoder: latent gain 2, maximum-damage gain 1 at every
    image, in the report, the per-image values of every budget and report.md's sentence."""
    doubling = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Rescaling(2.0)])
    halving = keras.Sequential([keras.Input((256,)), keras.layers.Rescaling(0.5), keras.layers.Reshape(SHAPE)])
    result = robust_dae_tf.evaluate((doubling, halving), images=images(), budgets=(0.5, 1.0), num_images=3, trials=2,
                                    local_gain=True, output=str(tmp_path / "out"), **FAST)
    for attack, expected in (("latent", 2.0), ("max_damage", 1.0)):
        summary = result.report["local_gain"][attack]
        assert summary["mean"] == pytest.approx(expected, rel=1e-4) and summary["median"] == pytest.approx(
            expected, rel=1e-4)
        assert summary["std"] < 1e-4 and summary["images"] == 6 and summary["non_finite_images"] == 0
        for budget in ("0.5", "1.0"):
            np.testing.assert_allclose(result.per_image[attack][budget]["local_gain"], expected, rtol=1e-4)
    report_md = (tmp_path / "out" / "report.md").read_text()
    assert "Local gain at the attacked images" in report_md and "latent mean 2, median 2" in report_md
    plain = robust_dae_tf.evaluate((doubling, halving), images=images(), budgets=(0.5,), num_images=2, **FAST)
    assert "local_gain" not in plain.report and "local_gain" not in plain.per_image["latent"]["0.5"]
