"""A tiny sweep on the embedded digits shared by the sweep tests (local and Ray engines)."""

import os

from robust_dae_tf import config_lib
from robust_dae_tf.pipeline import experiments

# The evaluation of tests/test_regression.py, smaller: 4 images x 1 trial at lambda = 1,
# short attacks without XLA, no downstream classifier, FD on 100 samples.
EVAL = ["num_images=4", "trials=1", "budgets=1", "attack_steps=3", "attack_exploration_starts=1",
        "attack_restarts=1", "attack_xla=false", "pool_size=50", "fid_samples=100", "fd_classifier_epochs=1",
        "skip_classifier=true", "tensorboard=false"]


def tiny_base():
    config = config_lib.base_config()
    config.model.hidden_units = (32,)
    config.loss.weight_estimation_batches = 5
    config.data.max_train_examples = 200
    config.train.epochs = 1
    config.train.verbose = 0
    config.train.jit_compile = False
    config.train.validation_examples = 100
    return config


def tiny_sweep(output, grid=("seed=0,1",), engine="local", base=None, **kwargs):
    """Runs the two-point sweep (two initialisations of the robust model) into `output`;
    returns (result, axes)."""
    base = base or tiny_base()
    axes = experiments.parse_grid(list(grid), base)
    points = experiments.make_points(base, axes)
    settings = experiments.parse_settings(EVAL + [f"feature_cache={os.path.join(os.path.dirname(output), 'fc')}"])
    result = experiments.run_sweep(base, points, output, settings, engine=engine, front_budget=1.0, axes=axes,
                                   axis_flags=[f"--grid={g}" for g in grid], **kwargs)
    return result, axes
