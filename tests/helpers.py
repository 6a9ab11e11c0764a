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

    from robust_dae_tf import training

    assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest splits the CPU into two logical devices"
    return training.make_strategy(2)
