"""TFX-style pipeline components: each stage declares typed input and output
artifacts that live on disk, so stages can be rerun, cached and chained.

An artifact is a directory with an `artifact.json` marker written LAST:

    {"type": "Examples", "producer": "ExampleGen", "properties": {...}, "created": ...}

A directory without the marker is incomplete and is never consumed. Components:

    ExampleGen  ()                          -> examples: Examples
    Trainer     (examples: Examples)        -> model: Model          (resumable)
    Exporter    (model: Model)              -> saved_model: SavedModel

Later stages (attack evaluation, downstream classifier, FID) are components taking a
`SavedModel` (and `Examples`) artifact and producing report artifacts the same way.
"""

from __future__ import annotations

import logging
import abc
import dataclasses
import datetime
import json
import os
from typing import ClassVar

import tensorflow as tf

from robust_dae_tf import config_lib, data, export, fileio, training
from robust_dae_tf.errors import DataError, UserError

logger = logging.getLogger(__name__)

MARKER = "artifact.json"


@dataclasses.dataclass
class Artifact:
    type_name: str
    uri: str
    properties: dict = dataclasses.field(default_factory=dict)


def write_marker(artifact: Artifact, producer: str) -> None:
    payload = {
        "type": artifact.type_name,
        "producer": producer,
        "properties": artifact.properties,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    fileio.write_json_atomic(os.path.join(artifact.uri, MARKER), payload)


class DamagedMarkerError(UserError):
    """An artifact.json that is not valid JSON or not a marker; `problem` says which."""

    def __init__(self, problem: str, uri: str, type_name: str):
        self.problem = problem
        super().__init__(
            f"{problem}; the {type_name} artifact in {uri} is damaged: delete it and run the stage "
            "that writes it again."
        )


def read_artifact(uri: str, type_name: str) -> Artifact:
    """Loads a complete artifact of `type_name` from `uri`, or raises one clear error."""
    path = os.path.join(uri, MARKER)
    if not os.path.exists(path):
        raise UserError(
            f"{uri} is not a complete {type_name} artifact (no {MARKER}); the stage that writes it "
            "did not finish: run it again."
        )
    try:
        with open(path) as f:
            payload = json.load(f)
    except (OSError, ValueError) as err:  # ValueError: invalid JSON or not UTF-8
        raise DamagedMarkerError(f"{path} cannot be read as JSON ({err})", uri, type_name) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("properties", {}), dict):
        raise DamagedMarkerError(
            f"{path} is not an artifact marker (a JSON object with 'type' and 'properties')", uri, type_name
        )
    if payload.get("type") != type_name:
        raise UserError(f"{uri} holds a {payload.get('type')} artifact, expected {type_name}.")
    return Artifact(type_name, uri, payload.get("properties", {}))


class Component(abc.ABC):
    """A pipeline stage with declared input and output artifact types."""

    inputs: ClassVar[dict] = {}
    outputs: ClassVar[dict] = {}

    @property
    def name(self) -> str:
        return type(self).__name__

    def __call__(self, output_uris: dict, **inputs: Artifact) -> dict:
        for key, type_name in self.inputs.items():
            if key not in inputs:
                raise UserError(f"{self.name} needs input artifact {key!r} ({type_name}).")
            if inputs[key].type_name != type_name:
                raise UserError(f"{self.name}: input {key!r} must be {type_name}, got {inputs[key].type_name}.")
        if set(output_uris) != set(self.outputs):
            raise UserError(f"{self.name} writes outputs {sorted(self.outputs)}, got {sorted(output_uris)}.")
        logger.info("Running %s -> %s", self.name, output_uris)
        return self.run(output_uris, **inputs)

    @abc.abstractmethod
    def run(self, output_uris: dict, **inputs: Artifact) -> dict:
        """Produces the output artifacts (complete, with markers) and returns them."""


class ExampleGen(Component):
    """Loads a dataset (TFDS, local files or the embedded digits), preprocesses it to
    the dataset's image shape and saves train/test splits with `tf.data.Dataset.save`
    (uint8 images, int64 labels). The marker records each split's element count and
    the byte size of every saved file.

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
                if damage is None:
                    logger.info("ExampleGen: reusing %s", uri)
                    return {"examples": cached}
            logger.warning("ExampleGen: the examples cache %s is damaged (%s); rebuilding it.", uri, damage)
        try:
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
            properties = {
                "source": self._source(),
                "image_shape": list(self.spec.image_shape),
                "num_classes": self.spec.num_classes,
                "num_examples": counts,
                "files": files,
            }
            write_marker(Artifact("Examples", tmp, properties), self.name)
        return {"examples": Artifact("Examples", uri, properties)}


_SPLITS = ("train", "test")


def _saved_files(directory: str) -> dict:
    """{path relative to `directory`: size in bytes} of every file under it."""
    sizes = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            sizes[os.path.relpath(path, directory)] = os.path.getsize(path)
    return sizes


def examples_damage(examples: Artifact, count_unrecorded: bool = False) -> str | None:
    """What is wrong with the saved splits of an Examples artifact, or None.

    Compares the byte size of every saved file with the size recorded when it was
    written (one stat per file). An artifact written before sizes were recorded is
    checked by counting its elements when `count_unrecorded` (reads the whole cache),
    and not at all otherwise."""
    recorded = examples.properties.get("files")
    if recorded is None:
        return _count_damage(examples) if count_unrecorded else None
    for split in _SPLITS:
        sizes = recorded.get(split) if isinstance(recorded, dict) else None
        if not isinstance(sizes, dict) or not sizes:
            return f"its marker records no files for the {split} split"
        for name, size in sorted(sizes.items()):
            path = os.path.join(examples.uri, split, name)
            if not os.path.isfile(path):
                return f"{path} is missing"
            if os.path.getsize(path) != size:
                return f"{path} has {os.path.getsize(path)} bytes, {size} were written"
    return None


def _count_damage(examples: Artifact) -> str | None:
    counts = examples.properties.get("num_examples")
    if not isinstance(counts, dict):
        return "its marker records no example counts"
    for split in _SPLITS:
        try:
            ds = tf.data.Dataset.load(os.path.join(examples.uri, split))
            # Not `data.count_examples`: the cardinality comes from the metadata, not the shards.
            found = int(ds.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
        except (tf.errors.OpError, ValueError) as err:
            return f"its {split} split cannot be read: {str(err).strip().splitlines()[0]}"
        if found != counts.get(split):
            return f"its {split} split holds {found} examples, {counts.get(split)} were written"
    return None


def load_examples(examples: Artifact) -> dict:
    """{"train": ds, "test": ds} of an Examples artifact, after checking its file sizes."""
    damage = examples_damage(examples)
    if damage:
        raise DataError(
            f"the examples in {examples.uri} are damaged ({damage}); run the command that wrote them "
            "again (ExampleGen rebuilds a damaged cache) or delete the directory."
        )
    return {split: tf.data.Dataset.load(os.path.join(examples.uri, split)) for split in _SPLITS}


class Trainer(Component):
    """Trains the model of `config` on the examples; the output directory is the run's
    work directory (config, checkpoints, TensorBoard logs, history). Rerunning resumes."""

    inputs = {"examples": "Examples"}
    outputs = {"model": "Model"}

    def __init__(self, config, strategy=None):
        self.config = config
        self.strategy = strategy
        self.result = None

    def run(self, output_uris, examples: Artifact):
        uri = output_uris["model"]
        if examples.properties["source"]["dataset"] != data.get_spec(self.config.dataset).name:
            raise UserError(
                f"examples in {examples.uri} are {examples.properties['source']['dataset']}, "
                f"but the config trains on {self.config.dataset}."
            )
        image_shape = tuple(examples.properties["image_shape"])
        self.result = training.train(self.config, uri, load_examples(examples), image_shape, self.strategy)
        properties = {
            "image_shape": list(image_shape),
            "dataset": self.config.dataset,
            "variant": self.config.model.variant,
            "steps": self.result["steps"],
            "epochs": self.config.train.epochs,
            "final_metrics": self.result["final_metrics"],
            "num_train_examples": self.result["num_train_examples"],
            "examples_uri": os.path.abspath(examples.uri),
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
        uri = output_uris["saved_model"]
        with open(os.path.join(model.uri, "config.json")) as f:
            config = config_lib.from_dict(json.load(f))
        image_shape = tuple(model.properties["image_shape"])
        keras_model = training.compile_model(config, image_shape, tf.distribute.get_strategy())
        checkpoint = tf.train.Checkpoint(model=keras_model, optimizer=keras_model.optimizer)
        manager = tf.train.CheckpointManager(checkpoint, os.path.join(model.uri, "checkpoints"), max_to_keep=None)
        if training.restore_latest(checkpoint, manager) is None:
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
            },
            "run_dir": os.path.abspath(model.uri),
        }
        details = keras_model.export_metadata()  # e.g. the Lipschitz VAE's certificate
        if details:
            metadata["model_details"] = details
        export.export_saved_model(keras_model, uri, metadata, overwrite=self.overwrite)
        artifact = Artifact("SavedModel", uri, {"dataset": config.dataset, "variant": config.model.variant})
        write_marker(artifact, self.name)
        return {"saved_model": artifact}
