"""Small shared fixtures: a fast config and the embedded digits data."""

import functools

import numpy as np

from robust_dae_tf import config_lib, data


def small_config(variant="robust", **train):
    """MNIST-like settings with small nets so tests run in seconds."""
    config = config_lib.base_config()
    config.model.variant = variant
    config.model.hidden_units = (64, 64)
    config.loss.weight_estimation_batches = 10
    config.train.batch_size = 100
    config.train.learning_rate = 1e-3
    config.train.validation_examples = 100
    config.train.verbose = 0
    config.train.jit_compile = False  # XLA compilation would dominate these tiny runs
    config.data.max_train_examples = 600
    for key, value in train.items():
        config.train[key] = value
    return config


@functools.lru_cache(maxsize=1)
def digits_arrays():
    """(train images float32 [1500,32,32,1] in [0,1], train labels, test images, test labels)."""
    splits = data.load_splits("digits")
    xtr, ytr = data.take_arrays(splits["train"])
    xte, yte = data.take_arrays(splits["test"])
    return (xtr.astype(np.float32) / 255, ytr, xte.astype(np.float32) / 255, yte)


def digits_splits():
    return data.load_splits("digits")


def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole test process.

    Separate MirroredStrategy objects in one process can collide on collective
    instance keys (all_gather fails with "Collective instance ... expected type"),
    so tests share this one, as a training process does."""
    import tensorflow as tf

    from robust_dae_tf import fit

    assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest splits the CPU into two logical devices"
    return fit.make_strategy(2)


def assert_baseline_export_round_trip(model, path, metadata=None):
    """Exports a VAE-family `model`, reloads it and checks that the SavedModel's encode
    is the posterior mean, decode and reconstruct match the in-memory model, and the
    metadata carries the N(0, I) prior. Returns the loaded model for extra checks."""
    import numpy as np
    import tensorflow as tf

    from robust_dae_tf import export

    metadata = {"prior": model.prior.to_dict(), **(metadata or {})}
    export.export_saved_model(model, str(path), metadata)
    loaded = export.load_saved_model(str(path))
    x = tf.constant(digits_arrays()[2][:12])
    mean = model.posterior(x)[0]
    np.testing.assert_allclose(model.encode(x), mean, atol=1e-6)
    np.testing.assert_allclose(loaded.encode(x), mean, atol=1e-5)
    np.testing.assert_allclose(loaded.decode(mean), model.decode(mean), atol=1e-5)
    np.testing.assert_allclose(loaded.reconstruct(x), model(x), atol=1e-5)
    assert loaded.metadata["prior"] == {"type": "normal", "latent_dim": model.latent_dim}
    return loaded


TINY_LATENT_DIM = 3


def export_tiny_autoencoder(path, shape=(32, 32, 1), nan=False, run_dir=None, seed=0):
    """An untrained dense autoencoder exported like bin/train.py does (digits metadata,
    a 3-component GMM prior in TINY_LATENT_DIM dimensions); `nan` makes the encoder
    return NaN. Returns `path`."""
    import types

    import keras

    from robust_dae_tf import export, priors

    keras.utils.set_random_seed(seed)
    enc_in = keras.Input(shape)
    encoder = keras.Model(enc_in, keras.layers.Dense(TINY_LATENT_DIM)(keras.layers.Flatten()(enc_in)))
    dec_in = keras.Input((TINY_LATENT_DIM,))
    decoder = keras.Model(dec_in, keras.layers.Reshape(shape)(
        keras.layers.Dense(int(np.prod(shape)), activation="sigmoid")(dec_in)))
    if nan:
        kernel = encoder.layers[-1].kernel
        kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    metadata = {"dataset": "digits", "variant": "tiny",
                "prior": priors.GMMPrior(priors.one_hot_centers(3, TINY_LATENT_DIM, 1.0)).to_dict()}
    if run_dir:
        metadata["run_dir"] = run_dir
    export.export_saved_model(types.SimpleNamespace(encoder=encoder, decoder=decoder), path, metadata)
    return path


def assert_two_replicas_match_one_device(build, batches, rtol=2e-4, weight_rtol=2e-3, weight_atol=2e-5):
    """Trains `build()` (an uncompiled model) for one epoch over `batches`
    `[steps, batch, H, W, C]` with Adam on one device and, from the same initial weights,
    under the two-CPU MirroredStrategy; asserts that every metric and weight agree and
    that the weights moved (so the comparison is not vacuous)."""
    import keras
    import numpy as np
    import tensorflow as tf

    def train(model):
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(tf.data.Dataset.from_tensor_slices(batches), epochs=1, verbose=0)
        return [v.numpy() for v in model.trainable_variables], history.history

    single = build()
    initial = single.get_weights()
    weights_single, hist_single = train(single)
    with two_cpu_strategy().scope():
        mirrored = build()
        mirrored.set_weights(initial)
        weights_mirrored, hist_mirrored = train(mirrored)
    assert set(hist_mirrored) == set(hist_single) == set(single.metric_names)
    for name in hist_single:
        np.testing.assert_allclose(hist_mirrored[name], hist_single[name], rtol=rtol, err_msg=name)
    for a, b in zip(weights_mirrored, weights_single):
        np.testing.assert_allclose(a, b, rtol=weight_rtol, atol=weight_atol)
    assert not np.allclose(weights_single[0], initial[0])


class Killed(Exception):
    """Stands for the process being killed in an attack run (`count_attack_runs`)."""


def count_attack_runs(monkeypatch, fail_after=None):
    """Records every `attacks.run_validated` call (the attack runs of `robustness.evaluate_robustness`)
    as (objective name, budget) in the returned list; with `fail_after=k` the (k+1)-th call raises
    `Killed`, as if the process were killed in that run."""
    from robust_dae_tf import attacks

    real = getattr(attacks.run_validated, "counted", attacks.run_validated)  # not a counter of an earlier call
    calls = []

    def run_validated(objective, model, images, budget, *args, **kwargs):
        if fail_after is not None and len(calls) == fail_after:
            raise Killed(f"killed in attack run {len(calls) + 1}")
        calls.append((attacks.objective(objective).name, float(budget)))
        return real(objective, model, images, budget, *args, **kwargs)

    run_validated.counted = real
    monkeypatch.setattr(attacks, "run_validated", run_validated)
    return calls
