"""Artifacts and the component base of the pipeline layer (TFX-style).

Every stage of a pipeline is a `Component` that declares typed input and output
artifacts. An artifact is a directory with an `artifact.json` marker written LAST:

    {"type": "Examples", "producer": "ExampleGen", "properties": {...}, "created": ...}

A directory without the marker is incomplete and is never consumed (`read_artifact`
refuses it). `write_artifact` fills a temporary sibling directory, writes the marker
and renames it into place (`fileio.atomic_directory`), so a failed or interrupted stage
never leaves a directory that looks complete.

A component that describes what determines its outputs (`Component.fingerprint`: its
inputs' identities and its settings) is not run again for the same description, as TFX
caches an execution: `Component.__call__` returns the outputs already at the output uris
when every one is complete and its marker records the same digest (property
"fingerprint", `fingerprint_digest`), and prints that it reuses them. The digest is added
to a marker only after the stage wrote all its outputs, so an output of an interrupted,
failed or differently configured run never matches.

The Examples artifact (written by `training.ExampleGen`) is read by every later stage:
`load_examples` returns its splits after checking the saved files' sizes
(`examples_damage`); `load_attributes` the CelebA attributes it may hold. TensorFlow is imported only when splits are read, so this module
is cheap to import.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import hashlib
import json
import logging
import os
from typing import ClassVar

import robust_dae_tf
from robust_dae_tf import fileio
from robust_dae_tf.errors import DataError, UserError

logger = logging.getLogger(__name__)

MARKER = "artifact.json"
# Marker property of a component's outputs: the digest of what determined them (`Component.fingerprint`).
FINGERPRINT = "fingerprint"
SPLITS = ("train", "test")
# CelebA attributes of an Examples artifact (ExampleGen, when list_attr_celeba.txt is found):
# int8 [n, 40] -1/+1 per split, rows in the order of the split's elements, and their names.
ATTRIBUTES_FILE = "attributes.npz"


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


def write_artifact(uri: str, type_name: str, producer: str, properties: dict, write_fn) -> Artifact:
    """Runs write_fn(tmp_dir), writes the marker LAST, then renames tmp_dir to `uri`
    (replacing a previous artifact there)."""
    uri = os.path.abspath(uri)
    with fileio.atomic_directory(uri, overwrite=True) as tmp:
        write_fn(tmp)
        write_marker(Artifact(type_name, tmp, properties), producer)
    return Artifact(type_name, uri, properties)


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


def fingerprint_digest(description: dict) -> str:
    """The SHA-256 of the canonical JSON (sorted keys) of a fingerprint description."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(artifact: Artifact, digest: str) -> None:
    """Adds FINGERPRINT = `digest` to the properties of the complete artifact's marker
    (rewritten atomically; type, producer and created stay)."""
    path = os.path.join(artifact.uri, MARKER)
    with open(path) as f:
        payload = json.load(f)
    payload["properties"] = {**payload.get("properties", {}), FINGERPRINT: digest}
    fileio.write_json_atomic(path, payload)
    artifact.properties = {**artifact.properties, FINGERPRINT: digest}


class Component(abc.ABC):
    """A pipeline stage with declared input and output artifact types.

    A subclass whose outputs are determined by its inputs and settings describes them in
    `fingerprint`; calling it again with the same description returns the outputs a
    finished call left at the output uris instead of running (module docstring)."""

    inputs: ClassVar[dict] = {}
    outputs: ClassVar[dict] = {}
    tag: ClassVar[str] = ""  # prefix of the lines it prints ("classifier" -> "[classifier] ..."); default its name

    @property
    def name(self) -> str:
        return type(self).__name__

    def fingerprint(self, **inputs: Artifact) -> dict | None:
        """A JSON-able description of everything that determines the outputs for `inputs`
        (their identities, every setting), or None: never reuse outputs (the default).
        Called before `run` and again after it (the digest recorded is that of the inputs as
        the run left them, e.g. with a feature cache it trained); a UserError counts as None."""
        return None

    def _digest(self, inputs: dict) -> str | None:
        try:
            description = self.fingerprint(**inputs)
        except UserError:  # unreadable inputs: `run` reports them
            return None
        if description is None:
            return None
        return fingerprint_digest({"component": self.name, "version": robust_dae_tf.__version__, **description})

    def finished_outputs(self, output_uris: dict, digest: str) -> dict | None:
        """{key: Artifact} when every output uri holds a complete artifact of its type whose
        marker records `digest`, else None (missing, damaged, of another run)."""
        found = {}
        for key, type_name in self.outputs.items():
            try:
                artifact = read_artifact(os.path.abspath(output_uris[key]), type_name)
            except UserError:  # no marker, a damaged one (DamagedMarkerError), another type
                return None
            if artifact.properties.get(FINGERPRINT) != digest:
                return None
            found[key] = artifact
        return found

    def __call__(self, output_uris: dict, **inputs: Artifact) -> dict:
        for key, type_name in self.inputs.items():
            if key not in inputs:
                raise UserError(f"{self.name} needs input artifact {key!r} ({type_name}).")
            if inputs[key].type_name != type_name:
                raise UserError(f"{self.name}: input {key!r} must be {type_name}, got {inputs[key].type_name}.")
        if set(output_uris) != set(self.outputs):
            raise UserError(f"{self.name} writes outputs {sorted(self.outputs)}, got {sorted(output_uris)}.")
        digest = self._digest(inputs)
        finished = self.finished_outputs(output_uris, digest) if digest else None
        if finished is not None:
            parts = " and ".join(f"{a.type_name} in {a.uri}" for a in finished.values())
            message = f"[{self.tag or self.name}] reusing the finished {parts} (same model, data and settings)"
            logger.info(message)
            if getattr(self, "progress", True):
                print(message, flush=True)
            return finished
        logger.info("Running %s -> %s", self.name, output_uris)
        produced = self.run(output_uris, **inputs)
        digest = digest and self._digest(inputs)
        if digest:
            for key in self.outputs:
                _stamp(produced[key], digest)
        return produced

    @abc.abstractmethod
    def run(self, output_uris: dict, **inputs: Artifact) -> dict:
        """Produces the output artifacts (complete, with markers) and returns them."""


# ------------------------------------------------------------------ the Examples artifact


def examples_damage(examples: Artifact, count_unrecorded: bool = False) -> str | None:
    """What is wrong with the saved splits of an Examples artifact, or None.

    Compares the byte size of every saved file with the size recorded when it was
    written (one stat per file). An artifact written before sizes were recorded is
    checked by counting its elements when `count_unrecorded` (reads the whole cache),
    and not at all otherwise."""
    recorded = examples.properties.get("files")
    if recorded is None:
        return _count_damage(examples) if count_unrecorded else None
    for split in SPLITS:
        sizes = recorded.get(split) if isinstance(recorded, dict) else None
        if not isinstance(sizes, dict) or not sizes:
            return f"its marker records no files for the {split} split"
        for name, size in sorted(sizes.items()):
            path = os.path.join(examples.uri, split, name)
            if not os.path.isfile(path):
                return f"{path} is missing"
            if os.path.getsize(path) != size:
                return f"{path} has {os.path.getsize(path)} bytes, {size} were written"
    attributes = examples.properties.get("attributes")
    if attributes:
        path = os.path.join(examples.uri, str(attributes.get("file", ATTRIBUTES_FILE)))
        if not os.path.isfile(path):
            return f"{path} is missing"
        if os.path.getsize(path) != attributes.get("bytes"):
            return f"{path} has {os.path.getsize(path)} bytes, {attributes.get('bytes')} were written"
    return None


def _count_damage(examples: Artifact) -> str | None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    counts = examples.properties.get("num_examples")
    if not isinstance(counts, dict):
        return "its marker records no example counts"
    for split in SPLITS:
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
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    damage = examples_damage(examples)
    if damage:
        raise DataError(
            f"the examples in {examples.uri} are damaged ({damage}); run the command that wrote them "
            "again (ExampleGen rebuilds a damaged cache) or delete the directory."
        )
    return {split: tf.data.Dataset.load(os.path.join(examples.uri, split)) for split in SPLITS}


def load_attributes(examples: Artifact) -> dict | None:
    """{"names": (40 names), "train": int8 [n, 40], "test": ...} of an Examples artifact that
    holds CelebA attributes (properties "attributes", written by ExampleGen), else None."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    info = examples.properties.get("attributes")
    if not info:
        return None
    damage = examples_damage(examples)
    if damage:
        raise DataError(f"the examples in {examples.uri} are damaged ({damage}); run the command that wrote them "
                        "again (ExampleGen rebuilds a damaged cache) or delete the directory.")
    with np.load(os.path.join(examples.uri, str(info.get("file", ATTRIBUTES_FILE)))) as npz:
        return {"names": tuple(str(n) for n in npz["names"]), **{split: npz[split] for split in SPLITS}}
