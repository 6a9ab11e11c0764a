"""Keras callbacks of the trainer: checkpoints, the NaN guard, the epoch history and
TensorBoard logging.

All three key their output on the optimizer's step counter (`optimizer.iterations`),
which is checkpointed, so logs and checkpoints of a resumed run continue where the
killed one stopped instead of restarting at step 0.

With `compile(steps_per_execution=k)` Keras calls the batch hooks once per k steps,
so "every N steps" means "whenever the step counter has crossed a multiple of N since
the last call" (`crossed_multiple`): with k dividing N that is exactly every N steps,
otherwise the first execution boundary after each multiple.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from robust_dae_tf import fileio
from robust_dae_tf.errors import TrainingDivergedError


def _as_floats(logs) -> dict:
    return {name: float(value) for name, value in (logs or {}).items()}


def crossed_multiple(previous_step: int, step: int, every: int) -> bool:
    """True when a multiple of `every` lies in (previous_step, step]."""
    return step // every > previous_step // every


def _step(model) -> int:
    return int(model.optimizer.iterations.numpy())


def _previous(last_step, step) -> int:
    """The step of the previous call (`step - 1` when no train_begin/earlier call was seen)."""
    return step - 1 if last_step is None else last_step


def nonfinite_variables(variables) -> list[str]:
    """Paths (names) of the floating-point variables that hold a NaN or an Inf."""
    return [
        getattr(v, "path", None) or v.name
        for v in variables
        if tf.as_dtype(v.dtype).is_floating and not bool(tf.reduce_all(tf.math.is_finite(v)))
    ]


def _diverged(step: int, problem: str, checkpoint_dir: str) -> TrainingDivergedError:
    """The error of a divergence at `step`; `training.train` rewrites its advice
    (`training.diverged_training`) from `step` and `problem`, which it carries."""
    latest = tf.train.latest_checkpoint(checkpoint_dir) or "none yet"
    err = TrainingDivergedError(
        f"training diverged at step {step}: {problem}. The last good checkpoint ({latest}) is kept; lower "
        "--config.train.learning_rate or the loss weights and run the same command again to resume from it."
    )
    err.step, err.problem = step, problem
    return err


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first NaN / Inf metric with a message naming the step
    (the end of the first execution whose metrics are not finite) and the last finite
    metrics. It runs before the checkpoint callback, so the
    diverged weights are never saved and the last good checkpoint stays.

    The metrics of a step are computed before its update, so an update that makes the
    weights non-finite shows here only one execution later; `CheckpointEvery` refuses
    to save such weights in between."""

    def __init__(self, checkpoint_dir: str):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.last_finite = {}
        self.last_finite_step = None  # step of the last execution with finite metrics (this session)

    def on_train_batch_end(self, batch, logs=None):
        values = _as_floats(logs)
        if all(math.isfinite(v) for v in values.values()):
            self.last_finite = values
            self.last_finite_step = _step(self.model)
            return
        bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
        last = ", ".join(f"{k}={v:.5g}" for k, v in self.last_finite.items()) or "none"
        raise _diverged(_step(self.model), f"{bad}. Last finite metrics: {last}", self.checkpoint_dir)


class CheckpointEvery(keras.callbacks.Callback):
    """Saves `manager`'s checkpoint every `every_steps` steps and at each epoch end.

    Only finite weights are saved: when a model or optimizer variable holds a NaN or
    an Inf (the last update diverged although its loss, computed before the update,
    was finite), training stops with TrainingDivergedError and the previous checkpoint
    stays the newest, so a resume with a lower learning rate starts from good weights."""

    def __init__(self, manager: tf.train.CheckpointManager, every_steps: int):
        super().__init__()
        self.manager = manager
        self.every_steps = every_steps
        self._last_step = None

    def _save(self):
        step = _step(self.model)
        if self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
            return
        bad = nonfinite_variables([*self.model.variables, *self.model.optimizer.variables])
        if bad:
            names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise _diverged(step, f"the update left non-finite values in {names} (not checkpointed)",
                            self.manager.directory)
        with fileio.writes_to(self.manager.directory, fileio.checkpoint_bytes(self.manager.latest_checkpoint)):
            self.manager.save(checkpoint_number=step)

    def on_train_begin(self, logs=None):
        self._last_step = _step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if crossed_multiple(_previous(self._last_step, step), step, self.every_steps):
            self._save()
        self._last_step = step

    def on_epoch_end(self, epoch, logs=None):
        self._save()


class ResumeEpochMetrics(keras.callbacks.Callback):
    """Puts back, once, the metric trackers' totals and counts restored with a mid-epoch
    checkpoint (`training.metric_state`) after Keras reset them at the start of the epoch
    the resume continues: the epoch's means then cover all its steps, as in an
    uninterrupted run."""

    def __init__(self, metrics):
        super().__init__()
        self.values = [(v, v.numpy()) for m in metrics for v in m.variables]

    def on_epoch_begin(self, epoch, logs=None):
        for variable, value in self.values:
            variable.assign(value)
        self.values = []


class EpochHistory(keras.callbacks.Callback):
    """Per-epoch metrics of every session of a run, kept in a JSON file and rewritten
    (atomically) at the end of each epoch: {"epoch": [1, 2, ...], "<metric>": [...]}.

    Entries are keyed by their 1-based epoch number, so the file of a killed and
    resumed run stays aligned. The trainer runs it before the epoch-end checkpoint:
    every epoch whose end state was checkpointed has its entry, and an epoch whose
    checkpoint was lost (killed in between) is run again after the resume and its entry
    replaced, not duplicated. An epoch finished after a mid-epoch resume reports the
    metrics of all its steps, as an uninterrupted run does: the trackers' state is
    checkpointed and put back (`ResumeEpochMetrics`).

    Files of earlier versions have no "epoch" list; their entries are taken as epochs
    1, 2, ... (which is what they were unless a session had been killed). A file that is
    not a JSON object of lists (hand-edited, truncated by a full disk) is moved aside to
    `<path>.unreadable` with a warning and a new history is started, so training resumes.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.history = {}
        if os.path.exists(path):
            self.history = self._load(path)
            if self.history and "epoch" not in self.history:
                length = max((len(v) for v in self.history.values()), default=0)
                self.history = {"epoch": list(range(1, length + 1)),
                                **{k: v + [math.nan] * (length - len(v)) for k, v in self.history.items()}}

    @staticmethod
    def _load(path: str) -> dict:
        try:
            with open(path) as f:
                history = json.load(f)
            lists = isinstance(history, dict) and all(isinstance(v, list) for v in history.values())
            if lists and len({len(v) for v in history.values()} if "epoch" in history else {0}) <= 1:
                return history
            problem = "not a JSON object of per-epoch lists of equal length"
        except (OSError, ValueError) as err:
            problem = str(err)
        aside, k = f"{path}.unreadable", 1
        while os.path.exists(aside):  # keep earlier ones too
            aside, k = f"{path}.unreadable.{k}", k + 1
        os.replace(path, aside)
        logging.getLogger(__name__).warning(
            "%s is unreadable (%s); moved it to %s and starting a new history.", path, problem, aside)
        return {}

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        rows = [i for i, e in enumerate(self.history.get("epoch", [])) if e < number]
        history = {name: [values[i] for i in rows] for name, values in self.history.items()}
        values = {"epoch": number, **_as_floats(logs)}
        for name in sorted(set(history) | set(values)):  # NaN where a metric is missing
            history.setdefault(name, [math.nan] * len(rows)).append(values.get(name, math.nan))
        self.history = history
        fileio.write_json_atomic(self.path, history)


def image_grid(rows) -> np.ndarray:
    """Tiles a list of `[N, H, W, C]` arrays (one per row block) into one `[1, H', W', C]`
    image: row r holds the images of rows[r] side by side, 1-pixel white borders."""
    rows = [np.clip(np.asarray(r, np.float32), 0.0, 1.0) for r in rows]
    n = max(r.shape[0] for r in rows)
    h, w, c = rows[0].shape[1:]
    grid = np.ones((len(rows) * (h + 1) + 1, n * (w + 1) + 1, c), np.float32)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid[1 + i * (h + 1) : 1 + i * (h + 1) + h, 1 + j * (w + 1) : 1 + j * (w + 1) + w] = image
    return grid[None]


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes every loss term (train every `every_steps` steps, validation each epoch),
    throughput, and image grids: reconstructions, adversarial examples (x, x_adv,
    reconstruction of x_adv) and samples from each prior mode."""

    def __init__(self, logdir: str, preview_images: np.ndarray, every_steps: int, images_every_epochs: int,
                 batch_size: int, samples_per_mode: int = 8):
        super().__init__()
        self.train_writer = tf.summary.create_file_writer(f"{logdir}/train")
        self.val_writer = tf.summary.create_file_writer(f"{logdir}/validation")
        self.preview = np.asarray(preview_images, np.float32)
        self.every_steps = every_steps
        self.images_every_epochs = images_every_epochs
        self.batch_size = batch_size
        self.samples_per_mode = samples_per_mode
        self._tick = None  # (time, step) of the last scalar write
        self._last_step = None

    def on_train_begin(self, logs=None):
        self._last_step = _step(self.model)
        self._tick = None

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        previous, self._last_step = _previous(self._last_step, step), step
        if not crossed_multiple(previous, step, self.every_steps):
            return
        now = time.perf_counter()
        with self.train_writer.as_default(step=step):
            for name, value in _as_floats(logs).items():
                tf.summary.scalar(name, value)
            if self._tick is not None:
                then, then_step = self._tick
                tf.summary.scalar("images_per_second", (step - then_step) * self.batch_size / (now - then))
        self._tick = (now, step)

    def on_epoch_end(self, epoch, logs=None):
        step = _step(self.model)
        values = _as_floats(logs)
        with self.val_writer.as_default(step=step):
            for name, value in values.items():
                if name.startswith("val_"):
                    tf.summary.scalar(name[4:], value)
        if (epoch + 1) % self.images_every_epochs == 0:
            self.write_images(step)
        self.train_writer.flush()
        self.val_writer.flush()

    def write_images(self, step: int):
        model = self.model
        x = tf.constant(self.preview)
        z = model.encode(x)
        rows = [self.preview, model.decode(z).numpy()]
        with self.train_writer.as_default(step=step):
            tf.summary.image("reconstructions (top: x, bottom: f(g(x)))", image_grid(rows))
            if model.is_adversarial:
                x_adv = model.adversarial_examples(x, z, tf.constant([0, 0], tf.int64))
                adv_rows = [self.preview, x_adv.numpy(), model.decode(model.encode(x_adv)).numpy()]
                tf.summary.image("adversarial (x, x_adv, f(g(x_adv)))", image_grid(adv_rows))
            prior = model.prior
            modes = [
                model.decode(prior.sample_mode(k, self.samples_per_mode, seed=(0, k))).numpy()
                for k in range(prior.num_modes)
            ]
            tf.summary.image("prior samples (one row per mode)", image_grid(modes))
