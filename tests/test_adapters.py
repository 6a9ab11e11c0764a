"""Models the project did not train (robust_dae_tf.adapters), evaluated end to end by the
pipeline bin/evaluate.py runs: the four forms, written here in plain Keras / TensorFlow
(not with the project's builders), and one `error:` per bad input before any attack.

The identity autoencoder (latents = the pixels, decode = reshape) has attack optima known
in closed form: maximum damage ||x_a - x|| reaches the budget, and the latent attack
||x_a - x_t|| cannot go below ||x - x_t|| - lambda (triangle inequality), reached by the
step of length lambda from x towards x_t.
"""

import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import adapters
from robust_dae_tf.reporting import per_image
from robust_dae_tf.evaluation import robustness
from robust_dae_tf.errors import ConfigError, DataError, ExportError, UserError
from robust_dae_tf.pipeline import evaluation
from robust_dae_tf.pipeline.training import ExampleGen
from tests.helpers import count_attack_runs
from tests.scripts import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (32, 32, 1)
LATENT = 4
TINY = dict(dataset="digits", num_images=3, trials=1, budgets=(1.0,), attack_steps=20, attack_restarts=1,
            attack_exploration_starts=1,
            attack_xla=False, pool_size=50, skip_classifier=True, skip_fid=True, tensorboard=False)


class Identity(tf.Module):
    """Form (b): a tf.Module SavedModel with encode / decode signatures; latents = pixels."""

    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
    def encode(self, images):
        return {"latents": tf.reshape(images, [-1, int(np.prod(SHAPE))])}

    @tf.function(input_signature=[tf.TensorSpec([None, int(np.prod(SHAPE))], tf.float32)])
    def decode(self, latents):
        return {"images": tf.reshape(latents, [-1, *SHAPE])}


def save_module(module, path, names=("encode", "decode")):
    tf.saved_model.save(module, path, signatures={name: getattr(module, name) for name in names})
    return path


def keras_parts(seed=0, latent=LATENT, decoder_activation="sigmoid"):
    keras.utils.set_random_seed(seed)
    x = keras.Input(SHAPE)
    encoder = keras.Model(x, keras.layers.Dense(latent)(keras.layers.Flatten()(x)), name="encoder")
    z = keras.Input((latent,))
    decoder = keras.Model(z, keras.layers.Reshape(SHAPE)(
        keras.layers.Dense(int(np.prod(SHAPE)), activation=decoder_activation)(z)), name="decoder")
    return encoder, decoder


def keras_autoencoder(**kwargs):
    encoder, decoder = keras_parts(**kwargs)
    x = keras.Input(SHAPE)
    return keras.Model(x, decoder(encoder(x)), name="autoencoder")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    examples = ExampleGen("digits")({"examples": str(root / "examples")})["examples"]
    paths = {"identity": save_module(Identity(), str(root / "identity_sm"))}
    keras_autoencoder().save(str(root / "ae.keras"))
    encoder, decoder = keras_parts(seed=1)
    encoder.save(str(root / "enc.keras"))
    decoder.save(str(root / "dec.keras"))
    encoder.export(str(root / "enc_export"), verbose=False)
    decoder.export(str(root / "dec_export"), verbose=False)
    paths.update(keras=str(root / "ae.keras"), enc=str(root / "enc.keras"), dec=str(root / "dec.keras"),
                 enc_export=str(root / "enc_export"), dec_export=str(root / "dec_export"))
    return types.SimpleNamespace(root=root, examples=examples, paths=paths)


def run(model, out, encoder=None, decoder=None, **fields):
    settings = evaluation.EvaluationSettings(examples=fields.pop("examples"), encoder=encoder, decoder=decoder,
                                             **{**TINY, **fields})
    return evaluation.run_evaluation_pipeline(model, str(out), settings)


def test_identity_saved_model_with_signatures_meets_the_known_optima(setup, tmp_path):
    """Form (b), values checked per image against the closed-form optima of the identity model."""
    result = run(setup.paths["identity"], tmp_path / "out", examples=setup.examples.uri, prior="standard_normal")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model_source"]["form"] == "signatures"
    assert summary["model_source"]["prior"] == "standard_normal (D=1024)"
    assert summary["model_source"]["prior_flag"] == "standard_normal"
    assert summary["model_source"]["dataset"] == "digits"
    assert summary["model_source"]["files"] == [os.path.abspath(setup.paths["identity"])]
    values = per_image.load(os.path.join(result["artifacts"]["robustness"].uri, per_image.FILE))
    damage, latent = values["max_damage"]["1.0"], values["latent"]["1.0"]
    assert values["trial"].tolist() == [0, 0, 0]
    # Maximum damage of the identity: ||x_a - x|| = ||x_a - x||, at most and (here) exactly the budget.
    np.testing.assert_allclose(damage["attack_loss"], 1.0, atol=2e-3)
    np.testing.assert_allclose(damage["l2_input_adv"], damage["attack_loss"], atol=1e-4)
    # Latent attack: ||x_a - x_t|| >= ||x - x_t|| - 1, with equality at the optimum.
    images, labels = evaluation.robustness_pool(setup.examples, 50, 0)
    protocol = robustness.Protocol(num_images=3, trials=1, budgets=(1.0,), seed=0)
    _, sources, targets = robustness.select_trials(labels, protocol)
    x, x_t = images[sources.reshape(-1)], images[targets.reshape(-1)]
    optimum = np.linalg.norm((x - x_t).reshape(3, -1), axis=1) - 1.0
    assert np.all(latent["attack_loss"] >= optimum - 1e-3)
    np.testing.assert_allclose(latent["attack_loss"], optimum, atol=0.05)
    np.testing.assert_allclose(latent["l2_target_adv_rec"], latent["attack_loss"], atol=1e-3)
    # The cells are the means of the per-image values, and the report shows their distribution.
    cell = summary["robustness"]["max_damage"]["1.0"]["attack_loss"]["mean"]
    assert cell == pytest.approx(damage["attack_loss"].mean())
    assert os.path.isfile(tmp_path / "out" / "figures" / "per_image_max_damage.png")
    assert "per_image_latent.png" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("form", ["keras", "keras_pair", "export_pair"])
def test_keras_forms_end_to_end(setup, tmp_path, monkeypatch, form):
    """Forms (c) and (d): one .keras autoencoder, a .keras pair, a model.export() pair."""
    paths = setup.paths
    model, encoder, decoder = {"keras": (paths["keras"], None, None),
                               "keras_pair": (None, paths["enc"], paths["dec"]),
                               "export_pair": (None, paths["enc_export"], paths["dec_export"])}[form]
    calls = count_attack_runs(monkeypatch)
    run(model, tmp_path / "out", encoder, decoder, examples=setup.examples.uri)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model_source"]["form"] == form
    assert summary["model_source"]["prior"] is None
    assert sorted(calls) == [("latent", 1.0), ("max_damage", 1.0)]
    loss = summary["robustness"]["max_damage"]["1.0"]["l2_input_adv"]["mean"]
    assert 0 < loss <= 1.0 + 1e-4  # the perturbation stays in the budget


def test_keras_pair_and_its_export_give_the_same_model(setup):
    """The .keras pair and the model.export() pair of the same weights encode alike."""
    x = np.random.default_rng(0).uniform(size=(4, *SHAPE)).astype(np.float32)
    a = adapters.open_model(encoder=setup.paths["enc"], decoder=setup.paths["dec"])
    b = adapters.open_model(encoder=setup.paths["enc_export"], decoder=setup.paths["dec_export"])
    np.testing.assert_allclose(np.asarray(a.encode(x)), np.asarray(b.encode(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(a.reconstruct(x)), np.asarray(b.reconstruct(x)), rtol=1e-5, atol=1e-5)


def test_pixel_range_is_adapted(setup):
    """A model declared in [-1, 1] sees 2x - 1 and its outputs are mapped back to [0, 1]."""
    encoder = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten()])
    decoder = keras.Sequential([keras.Input((1024,)), keras.layers.Reshape(SHAPE)])
    model = adapters.from_object((encoder, decoder), pixel_range=(-1, 1))
    x = np.full((1, *SHAPE), 0.25, np.float32)
    np.testing.assert_allclose(np.asarray(model.encode(x)), -0.5)
    np.testing.assert_allclose(np.asarray(model.reconstruct(x)), 0.25, atol=1e-6)


def test_declared_gmm_prior(tmp_path):
    path = tmp_path / "prior.json"
    path.write_text(json.dumps({"type": "gmm", "weights": [0.25, 0.75], "means": [[0, 0, 0, 0], [1, 1, 1, 1]],
                                "stds": [0.5, 0.5]}))
    prior = adapters.resolve_prior(str(path), LATENT)
    assert prior["centers"] == [[0, 0, 0, 0], [1, 1, 1, 1]] and prior["std"] == 0.5 and prior["weights"] == [0.25, 0.75]
    from robust_dae_tf.evaluation import fidelity as fid

    samples = fid.sample_prior(prior, 20000, 0)
    np.testing.assert_allclose(samples.mean(0), 0.75, atol=0.02)  # sum_k w_k mu_k


# ------------------------------------------------------------------ bad input: one error each, no attack


def _bad_prior(tmp_path, **spec):
    path = tmp_path / "bad_prior.json"
    path.write_text(json.dumps({"type": "gmm", "weights": [1.0], "means": [[0.0] * LATENT], "stds": [1.0], **spec}))
    return str(path)


class Renamed(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
    def enc(self, images):
        return {"latents": tf.reshape(images, [-1, 1024])}

    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.float32)])
    def dec(self, latents):
        return {"images": tf.reshape(latents, [-1, *SHAPE])}


class WrongKeys(Identity):
    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
    def encode(self, images):
        return {"z": tf.reshape(images, [-1, 1024])}


class Rank3(Identity):
    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
    def encode(self, images):
        return {"latents": tf.reshape(images, [-1, 32, 32])}

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32], tf.float32)])
    def decode(self, latents):
        return {"images": tf.reshape(latents, [-1, *SHAPE])}


class IntLatents(Identity):
    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
    def encode(self, images):
        return {"latents": tf.cast(tf.reshape(images, [-1, 1024]) * 255, tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.int32)])
    def decode(self, latents):
        return {"images": tf.reshape(tf.cast(latents, tf.float32) / 255, [-1, *SHAPE])}


class Cropping(Identity):
    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.float32)])
    def decode(self, latents):
        return {"images": tf.reshape(latents, [-1, *SHAPE])[:, :28, :28]}


class Unbounded(Identity):
    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.float32)])
    def decode(self, latents):
        return {"images": tf.reshape(3.0 * latents - 1.0, [-1, *SHAPE])}


def _no_parts(path):
    x = keras.Input(SHAPE)
    keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(x))).save(path)
    return path


def _lambda_model(path):
    encoder, decoder = keras_parts()
    x = keras.Input(SHAPE)
    keras.Model(x, decoder(encoder(keras.layers.Lambda(lambda t: t * 1.0)(x)))).save(path)
    return path


BAD = {
    "no_parts": (lambda root: dict(model=_no_parts(str(root / "plain.keras"))), ExportError,
                 r"no recognisable encoder and decoder .* layers named 'encoder' and 'decoder'"),
    "lambda_unsafe": (lambda root: dict(model=_lambda_model(str(root / "lambda.keras"))), ExportError,
                      r"cannot load --model=.*lambda.keras as a Keras model.*--trust_model"),
    "renamed_signatures": (lambda root: dict(model=save_module(Renamed(), str(root / "renamed"), ("enc", "dec"))),
                           ExportError, r"has no encode / decode endpoint \(signatures found: \['dec', 'enc'\]\)"),
    "wrong_keys": (lambda root: dict(model=save_module(WrongKeys(), str(root / "keys"))), ExportError,
                   r"signature 'encode' returns \['z'\]; the contract is one output named 'latents'"),
    "rank3": (lambda root: dict(model=save_module(Rank3(), str(root / "rank3"))), ExportError,
              r"latents of shape \(8, 32, 32\) .* expected rank 2"),
    "int_latents": (lambda root: dict(model=save_module(IntLatents(), str(root / "int"))), ExportError,
                    r"encodes images to int32 latents"),
    "other_shape": (lambda root: dict(model=save_module(Cropping(), str(root / "crop"))), ExportError,
                    r"decode returns images of shape \(28, 28, 1\) for inputs of shape \(32, 32, 1\)"),
    "out_of_range": (lambda root: dict(model=save_module(Unbounded(), str(root / "unbounded"))), DataError,
                     r"decode returns pixels in \[-1, 1\.9\d*\], outside the declared pixel range \[0, 1\]"),
    "export_as_model": (lambda root: dict(model=str(root / "enc_export")), ExportError,
                        r"is a Keras model.export\(\) artifact .* --encoder=.* --decoder="),
    "prior_dimension": (lambda root: dict(model=str(root / "ae.keras"), prior=_bad_prior(root, means=[[0.0] * 7])),
                        ConfigError, r"prior's means are 7-dimensional but the model's latents have 4 dimensions"),
    "prior_weights": (lambda root: dict(model=str(root / "ae.keras"), prior=_bad_prior(root, weights=[0.5])),
                      ConfigError, r"weights must be >= 0 and sum to 1"),
    "prior_stds": (lambda root: dict(model=str(root / "ae.keras"), prior=_bad_prior(root, stds=[0.0])),
                   ConfigError, r"stds must be > 0"),
    "half_pair": (lambda root: dict(model=None, encoder=str(root / "enc.keras")), ConfigError,
                  r"--encoder needs --decoder"),
    "mixed_pair": (lambda root: dict(model=None, encoder=str(root / "enc.keras"), decoder=str(root / "dec_export")),
                   ConfigError, r"must be of one kind"),
    "pixel_range": (lambda root: dict(model=str(root / "ae.keras"), pixel_range="1,0"), ConfigError,
                    r"--pixel_range must be finite numbers lo < hi"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_error_before_any_attack(setup, tmp_path, monkeypatch, case):
    build, error, pattern = BAD[case]
    fields = build(setup.root)
    model = fields.pop("model")
    calls = count_attack_runs(monkeypatch)
    with pytest.raises(error, match=pattern) as info:
        run(model, tmp_path / "out", fields.pop("encoder", None), fields.pop("decoder", None),
            examples=setup.examples.uri, **fields)
    assert "\n" not in str(info.value)
    assert calls == []
    assert not os.path.exists(tmp_path / "out" / "summary.json")


def test_lambda_keras_file_loads_with_trust(setup, tmp_path):
    path = _lambda_model(str(tmp_path / "lambda.keras"))
    with pytest.raises(ExportError, match="safe mode refuses"):
        adapters.open_model(path)
    model = adapters.open_model(path, trust=True)
    assert np.asarray(model.encode(np.zeros((1, *SHAPE), np.float32))).shape == (1, LATENT)


def test_bin_evaluate_prints_one_error_line(setup, tmp_path):
    """The CLI: a .keras file without encoder / decoder parts is one `error:` line, status 1."""
    path = _no_parts(str(tmp_path / "plain.keras"))
    proc = run_script("evaluate.py", f"--model={path}", f"--examples={setup.examples.uri}",
                      f"--output={tmp_path / 'out'}", "--skip_fid", env={"PYTHONPATH": ROOT})
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no recognisable encoder and decoder" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_user_error_base():
    assert issubclass(ExportError, UserError) and issubclass(DataError, UserError)


def test_classifier_and_fd_run_on_an_adapted_keras_model(setup, tmp_path):
    """Table 3 (the classifier SavedModel exports encoder + MLP through the adapter) and the
    FD from a declared prior, on the .keras pair."""
    from robust_dae_tf.evaluation import downstream as classifier
    from robust_dae_tf.evaluation import fidelity as fid
    from robust_dae_tf.pipeline.artifacts import Artifact

    class MeanPixels(fid.FeatureExtractor):
        name = "mean-pixels"

        def _features(self, images):
            return tf.stack([tf.reduce_mean(images, [1, 2, 3]), tf.math.reduce_std(images, [1, 2, 3])], 1)

    model = adapters.open_model(encoder=setup.paths["enc"], decoder=setup.paths["dec"])
    adapters.set_prior(model, "standard_normal", LATENT)
    evaluation._MODEL_CACHE[os.path.abspath(setup.paths["enc"])] = model
    saved = Artifact(evaluation.SAVED_MODEL, setup.paths["enc"], {})
    config = classifier.ClassifierConfig(hidden_units=(8,), epochs=1, attack_images=10)
    out = evaluation.ClassifierEvaluator(config, progress=False)(
        {"report": str(tmp_path / "cls"), "classifier": str(tmp_path / "cls_model")}, saved_model=saved,
        examples=setup.examples)
    report = evaluation.read_report(out["report"])
    assert 0.0 <= report["clean_accuracy"] <= 1.0
    exported = tf.saved_model.load(str(tmp_path / "cls_model"))  # encoder + MLP, self-contained
    x = np.zeros((2, *SHAPE), np.float32)
    np.testing.assert_allclose(np.asarray(exported.classify(x)["probabilities"]).sum(1), 1.0, rtol=1e-5)
    fd = evaluation.FidEvaluator(MeanPixels(), num_samples=50, progress=False)(
        {"report": str(tmp_path / "fid")}, saved_model=saved, examples=setup.examples)
    assert np.isfinite(evaluation.read_report(fd["report"])["value"])


class Bare(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
    def encode(self, images):
        return tf.reshape(images, [-1, 1024])

    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.float32)])
    def decode(self, latents):
        return tf.reshape(latents, [-1, *SHAPE])


def test_bare_tensor_outputs_only_from_plain_tf_functions(tmp_path):
    """The documented rule: a saved tf.function may return the bare tensor; a signature's
    output is named (TensorFlow calls a bare one 'output_0'), so it must be 'latents'."""
    tf.saved_model.save(Bare(), str(tmp_path / "functions"))
    model = adapters.open_model(str(tmp_path / "functions"))
    x = np.random.default_rng(0).uniform(size=(2, *SHAPE)).astype(np.float32)
    assert adapters.probe(model, x, "functions") == 1024
    np.testing.assert_allclose(np.asarray(model.reconstruct(x)), x)
    assert model.metadata["image_shape"] == list(SHAPE) and model.form == "signatures"
    with pytest.raises(ExportError, match=r"signature 'encode' returns \['output_0'\]"):
        adapters.open_model(save_module(Bare(), str(tmp_path / "signatures")))


def test_identity_tells_models_apart():
    """What the run cache and the reuse of finished parts key on: other weights, other pixel
    range or other files are another model; plain callables cannot be identified (None)."""
    a = adapters.from_object(keras_parts(seed=0))
    b = adapters.from_object(keras_parts(seed=1))
    assert a.identity() == adapters.from_object(keras_parts(seed=0)).identity()
    assert a.identity() != b.identity()
    assert a.identity() != adapters.from_object(keras_parts(seed=0), pixel_range=(-1, 1)).identity()
    assert adapters.from_object((lambda x: x, lambda z: z)).identity() is None
