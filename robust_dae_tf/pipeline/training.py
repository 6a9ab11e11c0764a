"""The training pipeline: ExampleGen -> Trainer -> Exporter, as `bin/train.py` runs it.

Each component declares typed input and output artifacts on disk
(`robust_dae_tf.pipeline.artifacts`), so stages can be rerun, cached and chained:

    ExampleGen  ()                          -> examples: Examples
    Trainer     (examples: Examples)        -> model: Model          (resumable)
    Exporter    (model: Model)              -> saved_model: SavedModel

`run_training_pipeline` runs the three:

    <workdir>/examples/   Examples artifact (preprocessed train/test splits)
    <workdir>/trainer/    Model artifact (config.json, checkpoints/, logs/, history.json)
    <export_dir>/         SavedModel artifact (+ robust_dae_tf.json metadata)

It validates the run config once, where the run starts (`config_lib.validate`: the
Trainer and the model builders trust it), and before any work it checks that both
directories can be written and takes their locks (`locking.lock_directory`:
`<workdir>.lock`, `<export_dir>.lock`), so a second run on the same workdir or export
target stops at once with the first one named instead of replacing its files.
In a multi-worker run (`TF_CONFIG`, `robust_dae_tf.multiworker`) only the chief writes
(and locks) these directories; the other workers train in temporary ones.
The evaluation components that consume the SavedModel are in `pipeline.evaluation`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile

import numpy as np

from robust_dae_tf import config_lib, data, fileio, locking, multiworker
from robust_dae_tf.errors import ConfigError, DataError, UserError
from robust_dae_tf.pipeline.artifacts import (ATTRIBUTES_FILE, MARKER, Artifact, Component, DamagedMarkerError,
                                              examples_damage, load_examples, read_artifact, write_marker)

# TensorFlow and the modules that import it (export, fit) are imported inside the functions
# that use them (`data` re-exports lazily): `run_training_pipeline` checks the config and the
# directories, and takes their locks, before TensorFlow is imported.

logger = logging.getLogger(__name__)


class ExampleGen(Component):
    """Loads a dataset (TFDS, local files or the embedded digits), preprocesses it to
    the dataset's image shape and saves train/test splits with `tf.data.Dataset.save`
    (uint8 images, int64 labels). The marker records each split's element count and
    the byte size of every saved file. For a local CelebA folder with
    list_attr_celeba.txt the 40 attributes of each split's images, in element order,
    are saved too (`artifacts.ATTRIBUTES_FILE`, `artifacts.load_attributes`; the FD
    feature net learns them); a file that is malformed or misses an image is refused
    before any image is read.

    Cached: an existing complete artifact for the same source is reused after checking
    those sizes (a truncated shard reads as fewer images without any error). A damaged
    cache (sizes or counts differ, unreadable marker) is rebuilt from the source with a
    warning, or refused naming both problems when the source cannot be read."""

    outputs = {"examples": "Examples"}

    def __init__(self, dataset: str, data_dir: str = "", tfds_data_dir: str = "", download: bool = True):
        self.spec = data.get_spec(dataset)
        self.data_dir = data_dir
        self.tfds_data_dir = tfds_data_dir
        self.download = download

    def _source(self) -> dict:
        return {"dataset": self.spec.name, "data_dir": os.path.abspath(self.data_dir) if self.data_dir else ""}

    @functools.cached_property
    def split(self) -> str:
        """How the source is split into train / test (`data.describe_split`), recorded
        in the artifact: the run record says, e.g., that CelebA was split by identity."""
        return data.describe_split(self.spec.name, self.data_dir or None)

    def _split_changed(self, cached: Artifact) -> str | None:
        """Why an intact cache no longer matches its source's split, or None. A cache
        whose source is gone is kept: there is nothing to compare it with."""
        try:
            current = self.split
        except DataError:
            return None
        recorded = cached.properties.get("split")
        if recorded != current:
            return f"it was split as {recorded or 'an unrecorded rule'}, the data now gives: {current}"
        attribute_file = data.celeba_attribute_file(self.spec.name, self.data_dir or None)
        has = (cached.properties.get("attributes") or {}).get("source")
        if (str(attribute_file) if attribute_file else None) != has:
            return f"its CelebA attributes came from {has or 'no attribute file'}, the data now has {attribute_file}"
        return None

    def run(self, output_uris, **inputs):
        uri = output_uris["examples"]
        damage = None
        if os.path.exists(os.path.join(uri, MARKER)):
            try:
                cached = read_artifact(uri, "Examples")
            except DamagedMarkerError as err:
                damage = err.problem
            else:
                if cached.properties.get("source") != self._source():
                    raise UserError(
                        f"{uri} holds examples of {cached.properties.get('source')}, not {self._source()}; "
                        "use a new --workdir for a different dataset."
                    )
                damage = examples_damage(cached, count_unrecorded=True)
                if damage is None:  # e.g. a CelebA cache split by file name before identity splits
                    damage = self._split_changed(cached)
                if damage is None:
                    logger.info("ExampleGen: reusing %s", uri)
                    return {"examples": cached}
            logger.warning("ExampleGen: the examples cache %s is damaged or out of date (%s); rebuilding it.", uri, damage)
        try:
            # CelebA attributes are read (and checked against the images) before any image is.
            attributes = data.celeba_split_attributes(self.spec.name, self.data_dir or None)
            splits = data.load_splits(
                self.spec.name,
                data_dir=self.data_dir or None,
                tfds_data_dir=self.tfds_data_dir or None,
                download=self.download,
            )
        except DataError as err:
            if damage is None:
                raise
            raise DataError(
                f"the examples cache {uri} is damaged ({damage}) and cannot be rebuilt: {err}"
            ) from err
        counts, files = {}, {}
        # An incomplete directory (no marker) from a killed run is replaced.
        with fileio.atomic_directory(uri, overwrite=True) as tmp:
            for split, ds in splits.items():
                split_dir = os.path.join(tmp, split)
                counts[split] = data.save_split(ds, split_dir, self.spec.name, split, self.data_dir or None)
                if counts[split] == 0:
                    raise DataError(f"the {split} split of {self.spec.name} is empty; check --data_dir.")
                files[split] = _saved_files(split_dir)
            extra = {}
            if attributes is not None:
                table, rows = attributes
                for split, count in counts.items():
                    if len(rows[split]) != count:  # cannot happen unless the folder changed while reading
                        raise DataError(f"{table.path}: {len(rows[split])} attribute rows for the {count} {split} "
                                        "images; the image folder changed while reading it: run again.")
                path = os.path.join(tmp, ATTRIBUTES_FILE)
                with open(path, "wb") as f:
                    np.savez(f, names=np.asarray(table.names), **rows)
                extra["attributes"] = {"file": ATTRIBUTES_FILE, "source": str(table.path), "names": list(table.names),
                                       "bytes": os.path.getsize(path)}
            properties = {
                "source": self._source(),
                "image_shape": list(self.spec.image_shape),
                "num_classes": self.spec.num_classes,
                "num_examples": counts,
                "files": files,
                "split": self.split,
                **extra,
            }
            write_marker(Artifact("Examples", tmp, properties), self.name)
        return {"examples": Artifact("Examples", uri, properties)}


def _saved_files(directory: str) -> dict:
    """{path relative to `directory`: size in bytes} of every file under it."""
    sizes = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            sizes[os.path.relpath(path, directory)] = os.path.getsize(path)
    return sizes


class Trainer(Component):
    """Trains the model of `config` (validated by the caller, `config_lib.validate`) on the
    examples; the output directory is the run's work directory (config, checkpoints,
    TensorBoard logs, history). Rerunning resumes."""

    inputs = {"examples": "Examples"}
    outputs = {"model": "Model"}

    def __init__(self, config, strategy=None):
        self.config = config
        self.strategy = strategy
        self.result = None

    def run(self, output_uris, examples: Artifact):
        from robust_dae_tf import fit  # pylint: disable=import-outside-toplevel

        uri = output_uris["model"]
        if examples.properties["source"]["dataset"] != data.get_spec(self.config.dataset).name:
            raise UserError(
                f"examples in {examples.uri} are {examples.properties['source']['dataset']}, "
                f"but the config trains on {self.config.dataset}."
            )
        image_shape = tuple(examples.properties["image_shape"])
        # The config was validated where the run started (run_training_pipeline).
        self.result = fit.train(self.config, uri, load_examples(examples), image_shape, self.strategy,
                                     validate=False)
        properties = {
            "image_shape": list(image_shape),
            "dataset": self.config.dataset,
            "variant": self.config.model.variant,
            "steps": self.result["steps"],
            "epochs": self.config.train.epochs,
            "final_metrics": self.result["final_metrics"],
            "num_train_examples": self.result["num_train_examples"],
            "examples_uri": os.path.abspath(examples.uri),
            "data_split": examples.properties.get("split", ""),
        }
        artifact = Artifact("Model", uri, properties)
        write_marker(artifact, self.name)
        return {"model": artifact}


class Exporter(Component):
    """Rebuilds the model of a Model artifact from its config and newest checkpoint and
    writes the SavedModel (+ metadata JSON) atomically."""

    inputs = {"model": "Model"}
    outputs = {"saved_model": "SavedModel"}

    def __init__(self, overwrite: bool = False):
        self.overwrite = overwrite

    def run(self, output_uris, model: Artifact):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        from robust_dae_tf import export, fit  # pylint: disable=import-outside-toplevel

        uri = output_uris["saved_model"]
        with open(os.path.join(model.uri, "config.json")) as f:
            config = config_lib.from_dict(json.load(f))
        image_shape = tuple(model.properties["image_shape"])
        # A SavedModel is about the size of its checkpoint: a full disk fails here, before the work.
        size = fileio.checkpoint_bytes(tf.train.latest_checkpoint(os.path.join(model.uri, "checkpoints")))
        if size:
            fileio.check_free_space(os.path.dirname(os.path.abspath(uri)), size, f"the SavedModel {uri}")
        keras_model = fit.compile_model(config, image_shape, tf.distribute.get_strategy())
        checkpoint = tf.train.Checkpoint(model=keras_model, optimizer=keras_model.optimizer)
        manager = tf.train.CheckpointManager(checkpoint, os.path.join(model.uri, "checkpoints"), max_to_keep=None)
        if fit.restore_latest(checkpoint, manager) is None:
            raise UserError(f"{model.uri} has no checkpoint to export; train first.")
        metadata = {
            "dataset": config.dataset,
            "variant": config.model.variant,
            "config": config.to_dict(),
            "prior": keras_model.prior.to_dict(),
            "loss_weights": keras_model.loss_weights,
            "training": {
                "steps": model.properties["steps"],
                "epochs": model.properties["epochs"],
                "final_metrics": model.properties["final_metrics"],
                "num_train_examples": model.properties["num_train_examples"],
                "data_split": model.properties.get("data_split", ""),
            },
            "run_dir": os.path.abspath(model.uri),
        }
        if config.train.get("mixed_precision", False):
            keras_model = _float32_copy(config, image_shape, keras_model)
        details = keras_model.export_metadata()  # e.g. the Lipschitz VAE's certificate
        if details:
            metadata["model_details"] = details
        with fileio.writes_to(uri, size):
            export.export_saved_model(keras_model, uri, metadata, overwrite=self.overwrite)
        artifact = Artifact("SavedModel", uri, {"dataset": config.dataset, "variant": config.model.variant})
        write_marker(artifact, self.name)
        return {"saved_model": artifact}


def _float32_copy(config, image_shape, model):
    """The model of a mixed-precision run rebuilt in float32 with its weights: the
    SavedModel computes in float32 (mixed precision is a training option)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from robust_dae_tf import fit  # pylint: disable=import-outside-toplevel

    float_config = config_lib.from_dict(config.to_dict())
    float_config.train.mixed_precision = False
    copy = fit.compile_model(float_config, image_shape, tf.distribute.get_strategy())
    copy.set_weights(model.get_weights())
    return copy


# ------------------------------------------------------------------ the pipeline


def canonical_dataset(name: str) -> str:
    return data.get_spec(name).name


def _nested(inner: str, outer: str) -> bool:
    inner, outer = os.path.realpath(inner), os.path.realpath(outer)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def run_training_pipeline(config, workdir: str, export_dir: str | None, overwrite: bool = False, strategy=None,
                          worker_timeout: float = multiworker.DEFAULT_WORKER_TIMEOUT) -> dict:
    """Runs the three components; returns the trainer result plus artifact locations.

    The one validation of the run config (`config_lib.validate`) happens here, before
    any directory is touched. In a multi-worker run (`TF_CONFIG`, see `multiworker`)
    the chief runs the pipeline as a single process would; every other worker trains in
    step with it in a temporary directory of its own (examples, checkpoints, logs),
    exports nothing and removes that directory at the end, so it never touches (or
    locks) `workdir` or `export_dir`. Every worker waits at most `worker_timeout` seconds
    for the others to start (`multiworker.awaiting_workers`), after the cheap checks."""
    with config.unlocked():
        config.dataset = canonical_dataset(config.dataset)
    config_lib.resolve_defaults(config)  # e.g. train.jit_compile per architecture, as config.json records it
    config_lib.validate(config)
    cluster = multiworker.cluster_from_env()
    if cluster is None or cluster.is_chief:
        return _run_pipeline(config, workdir, export_dir, overwrite, strategy, cluster, worker_timeout)
    with tempfile.TemporaryDirectory(prefix=f"robust_dae_{cluster.task_type}{cluster.task_index}-") as tmp:
        logger.info("This is %s of %d workers: it trains with the chief and writes only to %s (removed at the end).",
                    cluster.name, cluster.num_workers, tmp)
        result = _run_pipeline(config, os.path.join(tmp, "run"), None, overwrite, strategy, cluster, worker_timeout)
    result.update(workdir=None, model_dir=None)
    return result


def _run_pipeline(config, workdir, export_dir, overwrite, strategy, cluster, worker_timeout) -> dict:
    if export_dir and (_nested(export_dir, workdir) or _nested(workdir, export_dir)):
        raise ConfigError(f"--export_dir={export_dir} and --workdir={workdir} overlap; the export would replace "
                          "run files (or the reverse): give them separate directories.")
    fileio.check_writable(workdir, "--workdir", directory=True)
    if export_dir:
        fileio.check_writable(export_dir, "--export_dir", directory=True)
    with contextlib.ExitStack() as locks:
        locks.enter_context(locking.lock_directory(workdir, "--workdir"))
        if export_dir:
            locks.enter_context(locking.lock_directory(export_dir, "--export_dir"))
            if os.path.exists(export_dir) and not overwrite:
                raise ConfigError(f"export path {export_dir} exists; choose another --export_dir or pass --overwrite.")
        if strategy is None:  # fit.make_strategy's check, before TensorFlow is imported
            multiworker.check_cpu_devices(cluster, config.train.num_cpu_devices)
        from robust_dae_tf import fit  # pylint: disable=import-outside-toplevel

        if cluster is not None and strategy is None:
            # MultiWorkerMirroredStrategy sets up its collectives before TensorFlow runs any op; it
            # waits for every worker, which is announced and bounded.
            with multiworker.awaiting_workers(cluster, worker_timeout):
                strategy = fit.make_strategy(config.train.num_cpu_devices)
        else:
            # Logical CPU devices must be configured before TensorFlow runs any op.
            fit.configure_cpu_devices(config.train.num_cpu_devices)

        examples = ExampleGen(
            config.dataset, config.data.data_dir, config.data.tfds_data_dir, config.data.download
        )({"examples": os.path.join(workdir, "examples")})["examples"]
        trainer = Trainer(config, strategy)
        model = trainer({"model": os.path.join(workdir, "trainer")}, examples=examples)["model"]
        result = dict(trainer.result)
        result.update(workdir=workdir, model_dir=model.uri, export_dir=None,
                      worker=cluster.name if cluster else None)
        if export_dir:
            saved = Exporter(overwrite)({"saved_model": export_dir}, model=model)["saved_model"]
            result["export_dir"] = saved.uri
    return result


def summary(result: dict) -> str:
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result["final_metrics"].items()))
    lines = [
        f"Trained {result['steps']} steps ({result['num_train_examples']} training images).",
        f"Validation: {metrics}",
    ]
    if result.get("model_dir"):
        lines.append(f"Run directory: {result['model_dir']}  (tensorboard --logdir {result['model_dir']}/logs)")
    else:  # a worker other than the chief of a multi-worker run
        lines.append(f"This was {result.get('worker')}: it trained with the chief, which writes the run directory.")
    if result.get("export_dir"):
        lines.append(f"SavedModel: {result['export_dir']}")
    return "\n".join(lines)
