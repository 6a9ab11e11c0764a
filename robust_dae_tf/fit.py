"""Training: distribution strategy, resumable checkpoints and the Keras fit loop.

`train()` trains the model a config names (a `RegularizedAutoencoder` or a baseline)
into a work directory:

    <workdir>/config.json        the resolved run config (written once the checkpoint is restored)
    <workdir>/checkpoints/       tf.train.CheckpointManager files (model + optimizer)
    <workdir>/logs/              TensorBoard event files (train/ and validation/)
    <workdir>/history.json       per-epoch metrics of all sessions of this run, keyed by
                                 epoch ("epoch" list), written at every epoch end

Checkpoints are written every `train.checkpoint_every_steps` steps and at every epoch
end. Running the same command again resumes from the newest checkpoint: the step
counter restores the epoch and the position inside it, the data order of each epoch
depends only on (seed, epoch), and every random draw on (seed, step), so a killed and
resumed run ends with the same weights as an uninterrupted one and loses at most
the steps since the last checkpoint. `open_checkpoints` picks the checkpoint from the
files on disk (a damaged state file is rebuilt; a corrupt or non-finite newest
checkpoint is set aside and the previous one used), and the optimizer then gets the
config's learning rate (`set_learning_rate`), which config.json records.

Keras runs `train.steps_per_execution` steps per call into the compiled graph. The
value actually used divides the epoch length (and the rest of an interrupted epoch),
`effective_steps_per_execution`, so epochs, checkpoints and resumes stay aligned.
Under MirroredStrategy with more than one replica it is 1 (see `train`).

With `TF_CONFIG` (several machines, `multiworker`) `make_strategy` gives
MultiWorkerMirroredStrategy; after the chief restores its newest checkpoint `train`
sends that state to every worker (`multiworker.broadcast_from_chief`), and each worker
reads its rows of every global batch (`multiworker.shard_by_data`).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import logging
import math
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

from robust_dae_tf import callbacks as callbacks_lib
from robust_dae_tf import config_lib, data, fileio, models, multiworker
from robust_dae_tf.errors import CheckpointError, ConfigError, Interrupted, Terminated, TrainingDivergedError

logger = logging.getLogger(__name__)


def configure_cpu_devices(count: int) -> None:
    """Splits the CPU into `count` logical devices (for MirroredStrategy on CPU).

    Must run before TensorFlow initialises its devices; if they are already
    initialised with a different split, raises ConfigError."""
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as err:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != count:
            raise ConfigError(
                f"train.num_cpu_devices={count} but TensorFlow already started with {existing} CPU "
                "device(s); set it before any TensorFlow work (e.g. only on the command line)."
            ) from err


@functools.lru_cache(maxsize=None)
def _mirrored_strategy(devices: tuple) -> tf.distribute.MirroredStrategy:
    # One strategy per device set and process: separate MirroredStrategy objects can
    # collide on collective instance keys (all_gather then fails at run time).
    return tf.distribute.MirroredStrategy(list(devices))


@functools.lru_cache(maxsize=None)
def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    # One per process, created before TensorFlow runs any op (collectives are set up then).
    return tf.distribute.MultiWorkerMirroredStrategy()


def make_strategy(num_cpu_devices: int = 1) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when `TF_CONFIG` names a cluster (`multiworker`; each
    worker uses its GPUs, or one CPU device), else MirroredStrategy over all GPUs when
    there are several, over `num_cpu_devices` logical CPUs when > 1, else the default
    (single-device) strategy."""
    cluster = multiworker.cluster_from_env()
    multiworker.check_cpu_devices(cluster, num_cpu_devices)
    if cluster is not None:
        return _multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return _mirrored_strategy(tuple(d.name for d in gpus))
    if num_cpu_devices > 1:
        configure_cpu_devices(num_cpu_devices)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:num_cpu_devices]
        return _mirrored_strategy(tuple(devices))
    return tf.distribute.get_strategy()


def check_run_config(config, workdir: str) -> None:
    """Refuses a config whose architecture differs from the one recorded in
    `<workdir>/config.json` (the checkpoints were written with it); writes nothing."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                saved = config_lib.from_dict(json.load(f))
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path} is not a valid run config ({err}); remove the file or use a new --workdir.") from err
        diffs = config_lib.architecture_differences(saved, config)
        if diffs:
            raise CheckpointError(
                f"{workdir} holds a run with a different model ({'; '.join(diffs)}); "
                "use a new --workdir or the same settings to resume."
            )


def record_run_config(config, workdir: str) -> None:
    """Writes `<workdir>/config.json`, the run record. `train` calls it only after the
    checkpoint was restored, so a run that fails on the restore (another model) leaves
    the record of the run that wrote the checkpoints."""
    os.makedirs(workdir, exist_ok=True)
    fileio.write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())


CHECKPOINT_NAME = "ckpt"  # tf.train.CheckpointManager's file prefix: ckpt-<step>.index, ckpt-<step>.data-*
STATE_FILE = "checkpoint"  # the manager's state file (newest checkpoint and the ones it keeps)


def checkpoint_steps(directory: str) -> list[int]:
    """Steps of the checkpoints in `directory` whose index file exists, ascending."""
    pattern = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index")
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(int(m.group(1)) for m in map(pattern.fullmatch, names) if m)


def _read_state(directory: str) -> tuple[object, str | None]:
    """(CheckpointState or None, problem or None) of the state file in `directory`."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return None, None
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception as err:  # noqa: BLE001 - an empty file raises ValueError, others may differ
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    if state is None or not state.model_checkpoint_path:
        return None, "it is truncated or not a checkpoint state"
    return state, None


def _write_state(directory: str, steps: list[int]) -> None:
    """Rewrites the state file for the checkpoints of `steps` (the last is the newest),
    as CheckpointManager writes it: relative names, and each file's time so that the
    manager deletes the oldest ones beyond `train.keep_checkpoints` again."""
    names = [f"{CHECKPOINT_NAME}-{step}" for step in steps]
    times = [os.path.getmtime(os.path.join(directory, f"{name}.index")) for name in names]
    lines = [f"model_checkpoint_path: {json.dumps(names[-1])}"]
    lines += [f"all_model_checkpoint_paths: {json.dumps(name)}" for name in names]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
    lines.append(f"last_preserved_timestamp: {min(times) - 1.0!r}")
    fileio.write_text_atomic(os.path.join(directory, STATE_FILE), "\n".join(lines) + "\n")


def _checkpointed_variables(checkpoint: tf.train.Checkpoint) -> list:
    return [v for name in ("model", "optimizer") if hasattr(checkpoint, name) for v in getattr(checkpoint, name).variables]


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"


class _UnrestoredValuesFilter(logging.Filter):
    """Drops TensorFlow's warnings about the values of a checkpoint that were not restored."""

    PHRASES = ("deleted with unrestored values", "could not be found in the restored object",
               "Unresolved object in checkpoint")

    def filter(self, record):
        return not any(phrase in record.getMessage() for phrase in self.PHRASES)


def _hide_unrestored_value_warnings() -> None:
    """After a checkpoint was rejected (reported in its own words): TensorFlow lists every
    value of it that was not restored when the objects are deleted, i.e. after our error
    line, at exit. `Checkpoint.restore` raises before it returns the status whose
    `expect_partial()` would silence them, so they are filtered from TensorFlow's logger."""
    tf_logger = tf.get_logger()
    if not any(isinstance(f, _UnrestoredValuesFilter) for f in tf_logger.filters):
        tf_logger.addFilter(_UnrestoredValuesFilter())


def metric_state(model) -> tf.train.Checkpoint:
    """The variables of the model's metric trackers (the totals and counts behind the
    running means of the epoch), saved with every checkpoint: a run resumed mid-epoch
    continues that epoch's means (`ResumeEpochMetrics`), so its history, TensorBoard curve
    and epoch line equal an uninterrupted run's."""
    return tf.train.Checkpoint(**{
        f"{re.sub(r'[^0-9A-Za-z_]', '_', m.name)}_{i}": tf.train.Checkpoint(
            **{f"v{j}": v for j, v in enumerate(m.variables)})
        for i, m in enumerate(model.metrics)})


def open_checkpoints(checkpoint: tf.train.Checkpoint, directory: str, max_to_keep: int | None = None,
                     optional: dict | None = None):
    """Restores the newest good checkpoint of `directory` into `checkpoint` and returns
    (its CheckpointManager, the restored path or None for a new run).

    `optional` ({name: trackable}, e.g. {"metrics": metric_state(model)}) is saved with
    `checkpoint` by the returned manager and restored when the checkpoint holds it
    (checkpoints of earlier versions do not; the objects then keep their values).

    The checkpoint files on disk decide, not only the state file: a truncated, empty or
    stale state file is rewritten from the `ckpt-<step>.index` files with a warning.
    A checkpoint is good when it restores completely and every model and optimizer
    variable in it is finite. A bad newest checkpoint is moved aside (its files get the
    suffix `.corrupt` or `.nonfinite`) with a warning and the previous good one is used;
    when none is good, or a state file is left without any checkpoint, raises
    CheckpointError (a run never silently restarts from step 0)."""
    state, state_problem = _read_state(directory)
    steps = checkpoint_steps(directory)
    state_file = os.path.join(directory, STATE_FILE)
    saved = checkpoint
    if optional:  # the same names as `checkpoint` at the root (model, optimizer) plus the optional ones
        saved = tf.train.Checkpoint(**{name: getattr(checkpoint, name) for name in ("model", "optimizer")
                                       if hasattr(checkpoint, name)}, **optional)
    if not steps:
        if state is None and state_problem is None:
            return tf.train.CheckpointManager(saved, directory, max_to_keep=max_to_keep), None
        named = f"names {state.model_checkpoint_path}" if state else f"is unreadable ({state_problem})"
        raise CheckpointError(
            f"{state_file} {named} but {directory} holds no checkpoint files ({CHECKPOINT_NAME}-<step>.index); "
            f"delete {directory} to start the run over, or use a new --workdir."
        )
    variables = _checkpointed_variables(checkpoint)
    rejected = []  # (step, suffix, reason), newest first
    restored_step = None
    for step in reversed(steps):
        path = os.path.join(directory, f"{CHECKPOINT_NAME}-{step}")
        try:
            # expect_partial: the optional objects in the file are read below, not warned about.
            checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
        except Exception as err:  # noqa: BLE001 - any failure to read the user's file is reported
            _hide_unrestored_value_warnings()
            rejected.append((step, "corrupt", _first_line(err)))
            continue
        bad = callbacks_lib.nonfinite_variables(variables)
        if bad:
            rejected.append((step, "nonfinite", f"non-finite values in {', '.join(bad[:3])}"))
            continue
        restored_step = step
        break
    if restored_step is None:
        step, kind, reason = rejected[0]
        what = "is corrupt or was written by a different model" if kind == "corrupt" else "holds a diverged model"
        others = "no earlier checkpoint is usable either" if len(steps) > 1 else "there is no earlier checkpoint"
        raise CheckpointError(
            f"checkpoint {os.path.join(directory, f'{CHECKPOINT_NAME}-{step}')} {what} ({reason}); {others}: "
            f"delete {directory} to start the run over, or use a new --workdir."
        )
    restored = os.path.join(directory, f"{CHECKPOINT_NAME}-{restored_step}")
    if optional:
        tf.train.Checkpoint(**optional).read(restored).expect_partial()
    for step, suffix, reason in rejected:
        prefix = os.path.join(directory, f"{CHECKPOINT_NAME}-{step}")
        for name in glob.glob(glob.escape(prefix) + ".*"):
            if not name.endswith((".corrupt", ".nonfinite")):
                os.replace(name, f"{name}.{suffix}")
        logger.warning("Checkpoint %s is not usable (%s); moved its files to %s.*.%s and resuming from %s instead.",
                       prefix, reason, prefix, suffix, restored)
    kept = [step for step in steps if step <= restored_step]
    listed = [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []
    if state_problem:
        logger.warning("The checkpoint state file %s is unreadable (%s); rebuilt it from the checkpoint files %s.",
                       state_file, state_problem, ", ".join(f"{CHECKPOINT_NAME}-{s}" for s in kept))
    elif state and os.path.basename(state.model_checkpoint_path) != os.path.basename(restored) and not rejected:
        logger.warning("The checkpoint state file %s names %s, but the newest checkpoint on disk is %s; using it.",
                       state_file, state.model_checkpoint_path, restored)
    if state_problem or rejected or state is None or sorted(listed) != sorted(f"{CHECKPOINT_NAME}-{s}" for s in kept) \
            or os.path.basename(state.model_checkpoint_path) != os.path.basename(restored):
        _write_state(directory, kept)
    return tf.train.CheckpointManager(saved, directory, max_to_keep=max_to_keep), restored


def restore_latest(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager) -> str | None:
    """Restores the newest good checkpoint of `manager`'s directory into `checkpoint`
    (see `open_checkpoints`; the files decide, not the manager's view); None when there is none."""
    return open_checkpoints(checkpoint, manager.directory)[1]


def set_learning_rate(model, learning_rate: float, restored: str | None) -> None:
    """Sets the optimizer's learning rate to the config's value. A restored checkpoint
    brings back the rate it was written with; the run uses (and config.json records)
    the configured one, so a resume with another --config.train.learning_rate uses it."""
    previous = float(model.optimizer.learning_rate.numpy())
    model.optimizer.learning_rate = learning_rate
    if restored and not math.isclose(previous, learning_rate, rel_tol=1e-6):
        logger.warning("Learning rate changed on resume: %g (config.train.learning_rate; the checkpoint had %g).",
                       learning_rate, previous)


def use_xla(config, strategy) -> bool:
    """`train.jit_compile` (unset: per architecture, `config_lib.training_jit_compile`),
    except with several replicas: Keras' XLA-compiled step under MirroredStrategy fails
    on logical CPU devices (the optimizer's step counter is read across devices inside
    the cluster), so multi-replica runs use plain graphs."""
    jit = config_lib.training_jit_compile(config)
    if jit and strategy.num_replicas_in_sync > 1:
        logger.info("jit_compile is not used with %d replicas.", strategy.num_replicas_in_sync)
        return False
    return jit


MIXED_PRECISION_POLICY = "mixed_float16"


@contextlib.contextmanager
def precision_policy(config):
    """Keras' global dtype policy for building the model of `config`: "mixed_float16"
    with `train.mixed_precision` (float16 compute, float32 variables; Keras then wraps the
    optimizer in a dynamic LossScaleOptimizer), else unchanged. The previous policy is
    restored afterwards; a built model keeps its layers' policies."""
    if not config.train.get("mixed_precision", False):
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICY)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def compile_model(config, image_shape, strategy, steps_per_execution: int = 1):
    """Builds and compiles the model; weights are initialised from `train.seed`, so two
    runs of the same config start from the same weights. With `train.mixed_precision`
    the model is built under the "mixed_float16" policy (`precision_policy`)."""
    keras.utils.set_random_seed(config.train.seed)
    with strategy.scope(), precision_policy(config):
        model = models.build_model(config, image_shape)
        model.compile(
            optimizer=keras.optimizers.Adam(config.train.learning_rate),
            jit_compile=use_xla(config, strategy),
            steps_per_execution=steps_per_execution,
        )
        model.optimizer.build(model.trainable_variables)
    return model


def stopped_training(err: KeyboardInterrupt, manager: tf.train.CheckpointManager, model) -> Interrupted:
    """The `Interrupted` for Ctrl-C or SIGTERM (`Terminated`) during `model.fit`, saying
    what was saved. SIGTERM, what a scheduler sends before it kills the job, first
    checkpoints the partial epoch (the weights and step counter are consistent between
    executions, where Python receives the signal); Ctrl-C keeps the newest checkpoint."""
    step = int(model.optimizer.iterations.numpy())
    terminated = isinstance(err, Terminated)
    latest = manager.latest_checkpoint
    if terminated and step and not (latest and latest.endswith(f"-{step}")):
        if not callbacks_lib.nonfinite_variables([*model.variables, *model.optimizer.variables]):
            with fileio.writes_to(manager.directory, fileio.checkpoint_bytes(latest)):
                latest = manager.save(checkpoint_number=step)
            return Interrupted(f"saved the partial epoch as checkpoint {latest} (step {step}); run the same "
                               "command to resume from it", terminated=True)
    if latest:
        kept = int(latest.rsplit("-", 1)[1])
        lost = f" (steps {kept + 1}-{step} are run again)" if step > kept else ""
        return Interrupted(f"stopped at step {step}; the newest checkpoint {latest} (step {kept}) is kept{lost}; "
                           "run the same command to resume from it", terminated=terminated)
    return Interrupted(f"stopped at step {step}, before the first checkpoint; the same command starts the "
                       "run again", terminated=terminated)


def diverged_training(err: TrainingDivergedError, directory: str, last_finite_step: int | None,
                      learning_rate: float) -> TrainingDivergedError:
    """The error of a divergence (`err`, raised by the NaN guard or the checkpoint callback),
    after making sure the newest checkpoint in `directory` is one a resume can train on.

    A huge update can leave finite but diverged weights, which a checkpoint then keeps:
    resuming from them diverges again at once, whatever the learning rate. So a newest
    checkpoint that was not followed by a single finite execution in this session (the
    divergence came right after it was written or restored) is set aside (its files get
    the suffix `.diverged`) when an earlier one exists, which becomes the newest. The
    advice names that checkpoint, a lower learning rate to resume with, and, when no
    earlier checkpoint was left to fall back to, starting over in a new --workdir."""
    step = getattr(err, "step", None)
    problem = getattr(err, "problem", None)
    if step is None or problem is None:
        return err
    steps = checkpoint_steps(directory)
    suspect = bool(steps) and (last_finite_step is None or last_finite_step <= steps[-1])
    note = ""
    if suspect and len(steps) > 1:
        prefix = os.path.join(directory, f"{CHECKPOINT_NAME}-{steps[-1]}")
        for name in glob.glob(glob.escape(prefix) + ".*"):
            if not name.endswith((".corrupt", ".nonfinite", ".diverged")):
                os.replace(name, f"{name}.diverged")
        steps = steps[:-1]
        _write_state(directory, steps)
        note = (f" Checkpoint {prefix} was followed at once by this divergence, so its weights may have diverged "
                f"already: moved its files to {prefix}.*.diverged.")
    lower = f"a lower --config.train.learning_rate (e.g. {learning_rate / 10:g}, a tenth of {learning_rate:g})"
    if not steps:
        advice = f"There is no checkpoint yet: run the same command with {lower} to start over"
    else:
        latest = os.path.join(directory, f"{CHECKPOINT_NAME}-{steps[-1]}")
        advice = f"The last good checkpoint ({latest}) is kept: run the same command with {lower} to resume from it"
        if suspect:  # nothing earlier to fall back to
            advice += ("; if it diverges again at once, its weights have diverged too: start over with that rate in a "
                       "new --workdir")
    return TrainingDivergedError(f"training diverged at step {step}: {problem}.{note} {advice}.")


def effective_steps_per_execution(requested: int, steps_per_epoch: int, skip_batches: int = 0) -> int:
    """The largest k <= `requested` dividing both the epoch length and the steps left
    in an interrupted epoch: Keras always runs whole executions of k steps, so a k
    that does not divide them would run past the epoch's end."""
    k = math.gcd(int(requested), int(steps_per_epoch))
    if skip_batches:
        k = math.gcd(k, int(steps_per_epoch) - int(skip_batches))
    return max(k, 1)


def train(config, workdir: str, splits: dict, image_shape, strategy=None, extra_callbacks=(),
          validate: bool = True) -> dict:
    """Trains (or resumes) a model; returns {"model", "history", "final_metrics", "steps"}.

    Args:
      config: run config (see `config_lib.base_config`).
      workdir: run directory (created; reused to resume).
      splits: {"train": ds, "test": ds} as returned by `data.load_splits`.
      image_shape: (H, W, C).
      strategy: a tf.distribute strategy; default from `make_strategy`.
      extra_callbacks: Keras callbacks run after the built-in ones.
      validate: check the config first (`config_lib.validate`, before anything is written);
        the training pipeline, which validated it where the run started, passes False.
    """
    config_lib.resolve_defaults(config)
    if validate:
        config_lib.validate(config)
    check_run_config(config, workdir)
    strategy = strategy or make_strategy(config.train.num_cpu_devices)
    model = compile_model(config, image_shape, strategy)

    checkpoint_dir = os.path.join(workdir, "checkpoints")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    multi_worker = multiworker.is_multi_worker(strategy)
    # The metric trackers' state goes with the checkpoints, except across several workers (the
    # chief's restore of it fails there; an epoch resumed mid-way then reports the steps since the resume).
    optional = None if multi_worker else {"metrics": metric_state(model)}
    manager, restored = open_checkpoints(checkpoint, checkpoint_dir, config.train.keep_checkpoints, optional=optional)
    if multi_worker:
        # Only the chief's workdir holds the run's checkpoints (other workers train in a
        # temporary one): every worker continues from the chief's state.
        multiworker.broadcast_from_chief(strategy, _checkpointed_variables(checkpoint))
    set_learning_rate(model, config.train.learning_rate, restored)
    record_run_config(config, workdir)  # after the restore: a failed one leaves the record as it was

    train_ds = splits["train"]
    if config.data.max_train_examples:
        train_ds = train_ds.take(config.data.max_train_examples)
    num_train = data.count_examples(train_ds)
    batch_size = config.train.batch_size
    steps = data.steps_per_epoch(num_train, batch_size)
    step = int(model.optimizer.iterations.numpy())
    start_epoch, skip = divmod(step, steps)
    epochs = config.train.epochs
    if restored:
        logger.info("Resuming from %s (step %d, epoch %d + %d steps), learning rate %g.",
                    restored, step, start_epoch, skip, float(model.optimizer.learning_rate.numpy()))
    model.prepare(num_train)  # e.g. beta-TCVAE's estimator needs N
    per_execution = effective_steps_per_execution(config.train.steps_per_execution, steps, skip)
    if per_execution > 1 and strategy.num_replicas_in_sync > 1:
        # Keras' multi-step loop (a while_loop of tf.conds) fails to run the models'
        # cross-replica all_gather under MirroredStrategy ("You must feed a value for
        # placeholder tensor ... while/cond/Placeholder"), so replicas run one step per call.
        logger.info("steps_per_execution=%d is not supported with %d replicas; using 1.",
                    per_execution, strategy.num_replicas_in_sync)
        per_execution = 1
    if per_execution != 1:
        with strategy.scope():  # same optimizer object: its restored state is kept
            model.compile(
                optimizer=model.optimizer, jit_compile=use_xla(config, strategy), steps_per_execution=per_execution
            )
    history = callbacks_lib.EpochHistory(os.path.join(workdir, "history.json"))

    val_examples = config.train.validation_examples
    val_ds = splits["test"].take(val_examples) if val_examples else splits["test"]
    val_batches = data.evaluation_batches(val_ds, batch_size).map(lambda x, y: x)
    if multi_worker:
        val_batches = multiworker.shard_by_data(val_batches)
    preview, _ = data.take_arrays(splits["test"], 8)
    guard = callbacks_lib.NonFiniteGuard(checkpoint_dir)
    callbacks = [
        # Keras resets the trackers when an epoch begins; an epoch resumed mid-way gets back its means so far.
        *([callbacks_lib.ResumeEpochMetrics(model.metrics)] if skip and optional else []),
        guard,
        history,  # before the checkpoint: see EpochHistory
        callbacks_lib.CheckpointEvery(manager, config.train.checkpoint_every_steps),
        callbacks_lib.TensorBoardLogger(
            os.path.join(workdir, "logs"),
            data.to_float(preview).numpy(),
            config.train.log_every_steps,
            config.train.images_every_epochs,
            batch_size,
        ),
        *extra_callbacks,
    ]

    def fit(first_epoch, last_epoch, steps_in_first, skip_batches):
        batches = data.training_batches(
            train_ds, batch_size, seed=config.train.seed, start_epoch=first_epoch, num_epochs=last_epoch,
            skip_batches=skip_batches, shuffle_buffer=config.data.shuffle_buffer,
        )
        batches = batches.repeat()
        model.fit(
            multiworker.shard_by_data(batches) if multi_worker else batches,
            initial_epoch=first_epoch,
            epochs=last_epoch,
            steps_per_epoch=steps_in_first,
            validation_data=val_batches,
            callbacks=callbacks,
            verbose=config.train.verbose,
            shuffle=False,  # the per-epoch order comes from data.training_batches
        )

    started = time.perf_counter()
    if start_epoch < epochs:
        try:
            if skip:  # finish the interrupted epoch first, then continue with whole epochs
                fit(start_epoch, start_epoch + 1, steps - skip, skip)
                start_epoch += 1
            if start_epoch < epochs:
                fit(start_epoch, epochs, steps, 0)
        except KeyboardInterrupt as err:
            raise stopped_training(err, manager, model) from None
        except TrainingDivergedError as err:
            raise diverged_training(err, checkpoint_dir, guard.last_finite_step, config.train.learning_rate) from None
    else:
        logger.info("Run in %s already finished %d epochs; nothing to train.", workdir, epochs)
    elapsed = time.perf_counter() - started

    final = model.evaluate(val_batches, verbose=0, return_dict=True)
    final = {k: float(v) for k, v in final.items()}
    if not all(np.isfinite(v) for v in final.values()):
        raise CheckpointError(f"the trained model gives non-finite validation metrics {final}; do not export it.")
    return {
        "model": model,
        "history": history.history,
        "final_metrics": final,
        "steps": int(model.optimizer.iterations.numpy()),
        "steps_per_epoch": steps,
        "train_seconds_this_session": elapsed,
        "num_train_examples": num_train,
    }
