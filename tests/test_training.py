"""Trainer: resume equivalence, NaN guard, checkpoint/config mismatches, logs."""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import training
from robust_dae_tf.errors import CheckpointError, TrainingDivergedError
from tests.helpers import digits_splits, small_config


def _config(**train):
    # 600 training images, batch 100 -> 6 steps per epoch.
    return small_config("robust", epochs=3, checkpoint_every_steps=4, log_every_steps=2, **train)


def _weights(result):
    return [v.numpy() for v in result["model"].trainable_variables]


class KillAt(keras.callbacks.Callback):
    """Simulates the process being killed right after the execution reaching `step`."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) >= self.step:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    # Default steps_per_execution (10) -> 2, the largest divisor of the 6-step epoch.
    workdir = str(tmp_path_factory.mktemp("full"))
    return workdir, training.train(_config(), workdir, digits_splits(), (32, 32, 1))


@pytest.mark.parametrize(
    "per_execution,kill_at,newest",
    [
        (1, 10, 8),  # killed at step 10; checkpoints every 4 steps -> step 8, mid-epoch 1
        (3, 9, 9),  # executions end at 3, 6, 9: step 9 is the first boundary past 8
    ],
)
def test_killed_mid_epoch_and_resumed_run_ends_with_the_same_weights(uninterrupted, tmp_path, per_execution, kill_at, newest):
    _, full = uninterrupted
    workdir = str(tmp_path)
    config = _config(steps_per_execution=per_execution)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, workdir, digits_splits(), (32, 32, 1), extra_callbacks=[KillAt(kill_at)])
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(f"ckpt-{newest}")
    # Resuming with another steps_per_execution is fine: the effective value divides
    # the rest of the interrupted epoch (gcd(10, 6, 6 - 3) = 1 for the second case).
    resumed = training.train(_config(), workdir, digits_splits(), (32, 32, 1))
    assert resumed["steps"] == full["steps"] == 18
    for a, b in zip(_weights(resumed), _weights(full)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The killed session had written epoch 1 (steps 1-6) before dying in epoch 2; the
    # history holds each epoch once, and the epochs run whole match the uninterrupted run.
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert history["epoch"] == full["history"]["epoch"] == [1, 2, 3]
    assert history == resumed["history"]
    for name in ("loss", "val_loss", "val_reconstruction"):
        for epoch in (1, 3):
            np.testing.assert_allclose(history[name][epoch - 1], full["history"][name][epoch - 1], rtol=1e-4)


@pytest.mark.parametrize("name", ["se", "beta_tcvae"])
def test_a_killed_and_resumed_baseline_ends_with_the_same_weights(tmp_path, name):
    # Baselines draw their randomness (posterior samples, PGD starts) from (seed, step)
    # too, and beta-TCVAE gets its dataset size from the trainer on every (re)start.
    config = small_config(name, epochs=2, checkpoint_every_steps=4, steps_per_execution=1)
    full = training.train(config, str(tmp_path / "full"), digits_splits(), (32, 32, 1))
    workdir = str(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        training.train(config, workdir, digits_splits(), (32, 32, 1), extra_callbacks=[KillAt(10)])
    resumed = training.train(config, workdir, digits_splits(), (32, 32, 1))
    assert resumed["steps"] == full["steps"] == 12
    if name == "beta_tcvae":
        assert resumed["model"].dataset_size == 600
    for a, b in zip(_weights(resumed), _weights(full)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_finished_run_is_not_trained_again(uninterrupted):
    workdir, full = uninterrupted
    again = training.train(_config(), workdir, digits_splits(), (32, 32, 1))
    assert again["steps"] == 18
    for a, b in zip(_weights(again), _weights(full)):
        np.testing.assert_array_equal(a, b)


def test_run_directory_holds_config_history_and_tensorboard_logs(uninterrupted):
    workdir, full = uninterrupted
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["model"]["variant"] == "robust" and config["train"]["epochs"] == 3
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert history["epoch"] == [1, 2, 3] and len(history["loss"]) == 3 and len(history["val_reconstruction"]) == 3
    assert history["loss"][-1] < history["loss"][0]
    tags, image_tags, steps = set(), set(), set()
    for path in glob.glob(os.path.join(workdir, "logs", "*", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                (image_tags if "prior" in value.tag or "adversarial" in value.tag or "reconstructions" in value.tag else tags).add(value.tag)
                steps.add(event.step)
    assert {"loss", "reconstruction", "ks", "covariance", "two_sample_ks", "latent_shift"} <= tags
    assert any("adversarial" in t for t in image_tags) and any("prior samples" in t for t in image_tags)
    assert max(steps) == 18  # logs are keyed on the optimizer step


@pytest.mark.parametrize("per_execution,reported_step", [(1, 7), (2, 8)])
def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, per_execution, reported_step):
    workdir = str(tmp_path)
    training.train(small_config("robust", epochs=1, steps_per_execution=per_execution), workdir, digits_splits(), (32, 32, 1))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    good = tf.train.latest_checkpoint(ckpt_dir)
    diverging = small_config("robust", epochs=2, steps_per_execution=per_execution)
    diverging.loss.reconstruction_weight = float("inf")
    # The guard sees the metrics at the end of each execution of `per_execution` steps.
    match = rf"step {reported_step}: .*loss=(inf|nan).*Last finite metrics: .*ckpt-6"
    with pytest.raises(TrainingDivergedError, match=match):
        training.train(diverging, workdir, digits_splits(), (32, 32, 1))
    assert tf.train.latest_checkpoint(ckpt_dir) == good


@pytest.mark.parametrize(
    "requested,epoch,skip,expected", [(10, 600, 0, 10), (10, 15, 0, 5), (10, 6, 3, 1), (4, 600, 300, 4), (7, 6, 0, 1)]
)
def test_effective_steps_per_execution_divides_the_epoch_and_its_rest(requested, epoch, skip, expected):
    k = training.effective_steps_per_execution(requested, epoch, skip)
    assert k == expected and epoch % k == 0 and (epoch - skip) % k == 0


def test_corrupt_checkpoint_is_reported(uninterrupted, tmp_path):
    workdir = str(tmp_path)
    training.train(small_config("gmm_dae", epochs=1), workdir, digits_splits(), (32, 32, 1))
    for path in glob.glob(os.path.join(workdir, "checkpoints", "*.data-*")):
        with open(path, "r+b") as f:
            f.truncate(100)
    with pytest.raises(CheckpointError, match="corrupt or was written by a different model"):
        training.train(small_config("gmm_dae", epochs=2), workdir, digits_splits(), (32, 32, 1))


def test_resuming_with_a_different_architecture_is_refused(uninterrupted):
    workdir, _ = uninterrupted
    other = _config()
    other.model.latent_dim = 12
    with pytest.raises(CheckpointError, match=r"model.latent_dim: 10 -> 12"):
        training.train(other, workdir, digits_splits(), (32, 32, 1))


def test_training_on_two_logical_cpus_runs_under_mirrored_strategy(tmp_path):
    # XLA and steps_per_execution > 1 are requested but not used with two replicas.
    config = small_config("robust", epochs=1, num_cpu_devices=2, jit_compile=True, steps_per_execution=3)
    result = training.train(config, str(tmp_path), digits_splits(), (32, 32, 1))
    assert isinstance(training.make_strategy(2), tf.distribute.MirroredStrategy)
    assert result["steps"] == 6 and np.isfinite(result["final_metrics"]["loss"])
    assert result["model"].jit_compile is False and result["model"].steps_per_execution == 1


@pytest.mark.parametrize("name", ["robust", "lipschitz_vae", "se"])
def test_models_with_loops_train_under_xla(name, tmp_path):
    # The FGSM / PGD / Bjorck loops must compile with XLA (the default, train.jit_compile).
    config = small_config(name, epochs=1, jit_compile=True, steps_per_execution=3)
    config.data.max_train_examples = 300
    result = training.train(config, str(tmp_path), digits_splits(), (32, 32, 1))
    assert result["model"].jit_compile is True and result["model"].steps_per_execution == 3
    assert result["steps"] == 3 and all(np.isfinite(v) for v in result["final_metrics"].values())
