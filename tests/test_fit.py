"""Trainer: resume equivalence, NaN guard, checkpoint/config mismatches, logs."""

import glob
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import fit as training
from robust_dae_tf.errors import CheckpointError, ConfigError, TrainingDivergedError
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
    # Every epoch, also epoch 2 that the resume continued mid-way (its means cover all its
    # steps: the trackers' state is restored with the checkpoint), every metric.
    assert sorted(history) == sorted(full["history"])
    for name in history:
        np.testing.assert_allclose(history[name], full["history"][name], rtol=1e-5, err_msg=name)


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


class StepsRun(keras.callbacks.Callback):
    """Records the optimizer step at the end of every execution of this session."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(int(self.model.optimizer.iterations))


def _one_epoch_run(workdir, **train):
    # 6 steps, one per execution; checkpoints at steps 4 and 6.
    config = small_config("gmm_dae", **{"epochs": 1, "steps_per_execution": 1, "checkpoint_every_steps": 4, **train})
    return training.train(config, workdir, digits_splits(), (32, 32, 1))


def _checkpoint_files(workdir):
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_damaged_state_file_is_rebuilt_and_the_run_resumes_from_the_newest_checkpoint(tmp_path, caplog, damage):
    workdir = str(tmp_path)
    _one_epoch_run(workdir)
    state = os.path.join(workdir, "checkpoints", "checkpoint")
    text = open(state).read()
    open(state, "w").write(text[:20] if damage == "truncate" else "")
    history_before = json.load(open(os.path.join(workdir, "history.json")))
    seen = StepsRun()
    config = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=4, keep_checkpoints=2)
    with caplog.at_level("WARNING", logger="robust_dae_tf.fit"):
        result = training.train(config, workdir, digits_splits(), (32, 32, 1), extra_callbacks=[seen])
    assert seen.steps == [7, 8, 9, 10, 11, 12]  # resumed at step 6, not restarted at 0
    assert "unreadable" in caplog.text and "ckpt-4, ckpt-6" in caplog.text
    assert result["steps"] == 12
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert history["epoch"] == [1, 2] and history["loss"][0] == history_before["loss"][0]
    # The rebuilt state lists the older files too, so keep_checkpoints=2 deletes them: no orphans.
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-12")
    assert [f for f in _checkpoint_files(workdir) if f.endswith(".index")] == ["ckpt-12.index", "ckpt-8.index"]


def test_a_state_file_without_checkpoint_files_is_refused(tmp_path):
    workdir = str(tmp_path)
    _one_epoch_run(workdir)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*")):
        os.remove(path)
    with pytest.raises(CheckpointError, match=r"names .*ckpt-6 but .* holds no checkpoint files.*delete"):
        _one_epoch_run(workdir, epochs=2)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_corrupt_or_deleted_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    # The advice for a corrupt checkpoint is "delete it": both must lead to ckpt-4, with a warning.
    workdir = str(tmp_path)
    _one_epoch_run(workdir)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "ckpt-6.*")):
        if damage == "delete":
            os.remove(path)
        elif ".data-" in path:
            with open(path, "r+b") as f:
                f.truncate(100)
    seen = StepsRun()
    config = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=4)
    with caplog.at_level("WARNING", logger="robust_dae_tf.fit"):
        result = training.train(config, workdir, digits_splits(), (32, 32, 1), extra_callbacks=[seen])
    assert seen.steps[0] == 5 and result["steps"] == 12
    assert "ckpt-4" in caplog.text and ("not usable" if damage == "truncate" else "newest checkpoint on disk") in caplog.text
    if damage == "truncate":  # kept aside for inspection, never resumed from again
        assert {"ckpt-6.index.corrupt", "ckpt-6.data-00000-of-00001.corrupt"} <= set(_checkpoint_files(workdir))


def test_a_resumed_run_uses_the_learning_rate_its_config_records(tmp_path, caplog):
    workdir = str(tmp_path)
    first = _one_epoch_run(workdir, learning_rate=1e-3)
    np.testing.assert_allclose(float(first["model"].optimizer.learning_rate), 1e-3, rtol=1e-6)
    config = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=4, learning_rate=2e-4)
    with caplog.at_level("WARNING", logger="robust_dae_tf.fit"):
        resumed = training.train(config, workdir, digits_splits(), (32, 32, 1))
    assert resumed["steps"] == 12
    np.testing.assert_allclose(float(resumed["model"].optimizer.learning_rate), 2e-4, rtol=1e-6)
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["learning_rate"] == 2e-4
    assert "Learning rate changed on resume: 0.0002" in caplog.text
    # ... and the checkpoints written since hold it.
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "learning_rate" in n]
    assert names and all(np.isclose(reader.get_tensor(n), 2e-4) for n in names)


class PoisonAdam(keras.callbacks.Callback):
    """Makes the next Adam update non-finite (a negative second moment: sqrt -> NaN)
    while the loss of that step, computed before the update, stays finite."""

    def on_train_begin(self, logs=None):
        velocity = next(v for v in self.model.optimizer.variables if "velocity" in v.path)
        velocity.assign(-np.ones(velocity.shape, np.float32))


def _all_finite(checkpoint_path):
    reader = tf.train.load_checkpoint(checkpoint_path)
    tensors = [reader.get_tensor(name) for name in reader.get_variable_to_shape_map()]
    return all(np.all(np.isfinite(t)) for t in tensors if np.asarray(t).dtype.kind == "f")


def test_a_diverged_update_is_never_checkpointed_and_a_resume_with_a_lower_rate_trains_on(tmp_path):
    workdir = str(tmp_path)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    _one_epoch_run(workdir)
    good = tf.train.latest_checkpoint(ckpt_dir)
    diverging = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=1)
    with pytest.raises(TrainingDivergedError, match=r"step 7: the update left non-finite values .*ckpt-6\) is kept"):
        training.train(diverging, workdir, digits_splits(), (32, 32, 1), extra_callbacks=[PoisonAdam()])
    assert tf.train.latest_checkpoint(ckpt_dir) == good and good.endswith("ckpt-6")
    assert all(_all_finite(os.path.join(ckpt_dir, name[: -len(".index")]))
               for name in os.listdir(ckpt_dir) if name.endswith(".index"))
    lower = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=1, learning_rate=5e-4)
    result = training.train(lower, workdir, digits_splits(), (32, 32, 1))
    assert result["steps"] == 12 and all(np.isfinite(v) for v in result["final_metrics"].values())


def test_a_non_finite_checkpoint_is_rolled_back_on_resume(tmp_path, caplog):
    # E.g. written by an earlier version, whose guard kept such checkpoints as "good".
    workdir = str(tmp_path)
    model = _one_epoch_run(workdir)["model"]
    model.trainable_variables[0].assign(np.full(model.trainable_variables[0].shape, np.nan, np.float32))
    model.optimizer.iterations.assign(7)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    tf.train.CheckpointManager(checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=3).save(checkpoint_number=7)
    seen = StepsRun()
    config = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=4)
    with caplog.at_level("WARNING", logger="robust_dae_tf.fit"):
        result = training.train(config, workdir, digits_splits(), (32, 32, 1), extra_callbacks=[seen])
    assert "non-finite values" in caplog.text and "ckpt-7" in caplog.text
    assert seen.steps[0] == 7 and result["steps"] == 12  # resumed from ckpt-6
    assert all(np.isfinite(v) for v in result["final_metrics"].values())
    assert "ckpt-7.index.nonfinite" in _checkpoint_files(workdir)


@pytest.mark.parametrize("field,value,message", [("keep_checkpoints", 0, "keep_checkpoints: must be >= 1"),
                                                 ("learning_rate", float("inf"), "learning_rate: must be a finite")])
def test_impossible_checkpoint_and_rate_settings_are_refused(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        training.train(small_config("gmm_dae", **{field: value}), str(tmp_path), digits_splits(), (32, 32, 1))
    assert not os.path.exists(tmp_path / "checkpoints")


class HugeUpdateAt(keras.callbacks.Callback):
    """Makes the update of `step` huge (learning rate 1e30 for that one step): the weights it
    leaves are finite, so they are checkpointed, but the next step's loss is not finite."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) + 1 == self.step:
            self.rate = float(self.model.optimizer.learning_rate.numpy())
            self.model.optimizer.learning_rate = 1e30

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            self.model.optimizer.learning_rate = self.rate


def test_a_checkpoint_followed_at_once_by_a_divergence_is_set_aside_and_the_advice_works(tmp_path):
    """The checkpoint of the huge update (step 8) holds finite but diverged weights; the one
    before (step 7) is the last good one, and the advised command trains on from it."""
    workdir = str(tmp_path)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    config = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=1)
    with pytest.raises(TrainingDivergedError) as err:
        training.train(config, workdir, digits_splits(), (32, 32, 1), extra_callbacks=[HugeUpdateAt(8)])
    message = str(err.value)
    assert re.search(r"step 9: .*ckpt-8 was followed at once .*ckpt-8\.\*\.diverged.*\(.*ckpt-7\) is kept: run "
                     r"the same command with a lower --config.train.learning_rate \(e.g. 0.0001", message), message
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("ckpt-7")
    assert os.path.exists(os.path.join(ckpt_dir, "ckpt-8.index.diverged"))
    lower = small_config("gmm_dae", epochs=2, steps_per_execution=1, checkpoint_every_steps=1, learning_rate=1e-4)
    result = training.train(lower, workdir, digits_splits(), (32, 32, 1))
    assert result["steps"] == 12 and all(np.isfinite(v) for v in result["final_metrics"].values())
