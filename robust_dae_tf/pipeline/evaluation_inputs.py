"""The inputs of the evaluation components: the SavedModel artifact, loading it (once per
process) and validating it against the examples (endpoints, image shape, finite outputs on
a probe batch), and the identities of model and examples in the components' fingerprints."""

from __future__ import annotations

import os

import numpy as np

from robust_dae_tf import adapters, reporting
from robust_dae_tf.errors import DataError, ExportError, UserError
from robust_dae_tf.pipeline.artifacts import MARKER, Artifact, DamagedMarkerError, load_examples, read_artifact

# TensorFlow and the modules that import it (data, export, evaluation.downstream) are imported
# inside the functions that use them: see the `robust_dae_tf.pipeline.evaluation` docstring.

SAVED_MODEL, EXAMPLES = "SavedModel", "Examples"
_PROBE_IMAGES = 8
_MODEL_CACHE: dict = {}


def saved_model_artifact(path: str) -> Artifact:
    """The SavedModel artifact at `path`: its marker when present (written by the Exporter),
    else any directory with saved_model.pb (e.g. exported by `export.export_saved_model`)."""
    if not path or not os.path.isdir(path):
        raise ExportError(f"--model={path} is not a directory; pass a SavedModel directory written by bin/train.py.")
    if os.path.exists(os.path.join(path, MARKER)):
        try:
            return read_artifact(path, SAVED_MODEL)
        except DamagedMarkerError as err:  # a truncated / hand-edited marker
            raise ExportError(f"{os.path.join(path, MARKER)} is not a valid artifact marker "
                              f"({err.problem.splitlines()[0][:160]}); re-export the model.") from None
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ExportError(f"{path} is not a SavedModel directory (no saved_model.pb); pass the directory written by bin/train.py.")
    return Artifact(SAVED_MODEL, path, {})


def read_model_metadata(path: str) -> dict:
    """The model's metadata (`export.read_metadata`: {} when absent, one error when damaged)."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    return export.read_metadata(path)


def load_model(saved_model: Artifact):
    """Loads (once per process and path) the SavedModel as an `export.ExportedAutoencoder`;
    one ExportError naming the file or directory for missing endpoints, corrupt metadata
    or any failure while loading."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    key = os.path.abspath(saved_model.uri)
    if key not in _MODEL_CACHE:
        read_model_metadata(saved_model.uri)  # names the metadata file when it is corrupt
        try:
            _MODEL_CACHE[key] = export.ExportedAutoencoder(saved_model.uri)
        except UserError:
            raise
        except Exception as err:  # corrupt SavedModel protos, unreadable variables, ...
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise ExportError(f"cannot load the SavedModel {saved_model.uri} ({first}); re-export it "
                              "(bin/train.py --export_dir).") from err
    return _MODEL_CACHE[key]


def model_info(model, saved_model: Artifact) -> dict:
    from robust_dae_tf.evaluation import downstream as classifier_lib  # pylint: disable=import-outside-toplevel

    meta = model.metadata or {}
    fallback = os.path.basename(os.path.normpath(saved_model.uri))
    shape = classifier_lib.image_shape_of(model)
    return {
        "path": os.path.abspath(saved_model.uri),
        "name": reporting.row_name(meta, fallback),
        "dataset": meta.get("dataset"),
        "variant": meta.get("variant"),
        "image_shape": list(shape) if shape else None,
        "prior_type": (meta.get("prior") or {}).get("type"),
    }


def validated_model(saved_model: Artifact, examples: Artifact):
    """The loaded model, after checking its endpoints, image shape and finiteness on test images."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from robust_dae_tf.evaluation import downstream as classifier_lib  # pylint: disable=import-outside-toplevel
    from robust_dae_tf import data, export  # pylint: disable=import-outside-toplevel

    model = load_model(saved_model)
    expected = tuple(int(d) for d in examples.properties["image_shape"])
    dataset = examples.properties.get("source", {}).get("dataset", "the dataset")
    shape = classifier_lib.image_shape_of(model)
    if shape is None:
        raise ExportError(
            f"cannot tell the image shape of {saved_model.uri}: no image_shape in {export.METADATA_FILE} and no "
            "fully defined encode signature."
        )
    if tuple(shape) != expected:
        raise DataError(
            f"the SavedModel {saved_model.uri} takes {tuple(shape)} images but {dataset} images are {expected}; "
            "evaluate it on the dataset it was trained on (--dataset)."
        )
    images, _ = data.take_arrays(load_examples(examples)["test"], _PROBE_IMAGES)
    if len(images) == 0:
        raise DataError(f"the test split of {examples.uri} is empty.")
    x = data.to_float(images)
    try:
        latents = np.asarray(model.encode(x))
        recon = np.asarray(model.decode(latents))
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
        raise ExportError(f"{saved_model.uri}: encode/decode failed on test images: {str(err).splitlines()[0][:200]}") from err
    if not np.issubdtype(latents.dtype, np.floating):
        raise ExportError(f"the SavedModel {saved_model.uri} encodes images to {latents.dtype} latents; the attacks "
                          "(gradients through the latents) and the paper protocol's decode noise need float latents.")
    if not (np.all(np.isfinite(latents)) and np.all(np.isfinite(recon))):
        raise DataError(
            f"the SavedModel {saved_model.uri} returns NaN/Inf latents or reconstructions on test images; "
            "the model diverged or its checkpoint is corrupt."
        )
    if recon.shape[1:] != expected:
        raise ExportError(f"{saved_model.uri}: decode returns {recon.shape[1:]} images, expected {expected}.")
    adapters.check_outputs(model, np.asarray(x), latents, recon, saved_model.uri)  # rank-2 latents, pixel range
    return model


def model_identity(saved_model: Artifact) -> dict | None:
    """The SavedModel in a component's fingerprint: `export.saved_model_identity` (absolute
    path, SHA-256 of saved_model.pb, the variables index and the metadata file); None when
    the directory has no saved_model.pb."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    loaded = _MODEL_CACHE.get(os.path.abspath(saved_model.uri))
    if isinstance(loaded, adapters.Adapter):  # any model form, with its declared prior and pixel range
        return loaded.identity()
    return export.saved_model_identity(saved_model.uri, with_metadata=True)


def examples_identity(examples: Artifact) -> dict:
    """The Examples in a component's fingerprint: absolute uri and marker properties (source,
    split, counts, the byte size of every saved file)."""
    return {"uri": os.path.abspath(examples.uri), "properties": examples.properties}


def _inputs_identity(saved_model: Artifact, examples: Artifact) -> dict | None:
    model = model_identity(saved_model)
    return None if model is None else {"model": model, "examples": examples_identity(examples)}
