"""SavedModel export and loading.

An exported model directory is a TensorFlow SavedModel with three endpoints, each
also a serving signature:

    encode(images)       images `[N, H, W, C]` float32 in [0, 1] -> {"latents": [N, D]}
    decode(latents)      latents `[N, D]` float32 -> {"images": [N, H, W, C] in [0, 1]}
    reconstruct(images)  -> {"reconstructions": decode(encode(images))}

All are differentiable with respect to their inputs, so an attacker that loads only
the SavedModel (`tf.saved_model.load`) can take gradients through them. Next to
`saved_model.pb` lies `robust_dae_tf.json`: dataset, model variant, full config,
prior (centers, std, weights), image shape, training metrics and versions.

Export writes into a temporary sibling directory and renames it into place, so an
interrupted export never leaves a half-written model behind; an existing target is
refused unless `overwrite=True`.

Loading (`load_saved_model`, `ExportedAutoencoder`) first parses `saved_model.pb` and
refuses a model whose graphs hold ops an encoder/decoder does not need (file I/O,
Python callbacks, ...; `robust_dae_tf.model_safety`) unless the caller trusts it
(`trust=True`, `--trust_model`). A missing, corrupt or unloadable model or metadata
file raises one ExportError naming the file.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os

import keras
import tensorflow as tf

import robust_dae_tf
from robust_dae_tf import fileio, model_safety
from robust_dae_tf.errors import ExportError

METADATA_FILE = "robust_dae_tf.json"
ENDPOINTS = ("encode", "decode", "reconstruct")


def export_saved_model(model, export_dir: str, metadata: dict, overwrite: bool = False) -> str:
    """Exports `model` (anything with `encoder`, `decoder`) to `export_dir`."""
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise ExportError(f"export path {export_dir} exists; choose another --export_dir or pass --overwrite.")
    image_shape = tuple(int(d) for d in model.encoder.input_shape[1:])
    latent_dim = int(model.decoder.input_shape[-1])
    encoder, decoder = model.encoder, model.decoder

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.track(decoder)
    image_spec = [tf.TensorSpec((None, *image_shape), tf.float32, name="images")]
    latent_spec = [tf.TensorSpec((None, latent_dim), tf.float32, name="latents")]
    archive.add_endpoint("encode", lambda images: {"latents": encoder(images, training=False)}, image_spec)
    archive.add_endpoint("decode", lambda latents: {"images": decoder(latents, training=False)}, latent_spec)
    archive.add_endpoint(
        "reconstruct",
        lambda images: {"reconstructions": decoder(encoder(images, training=False), training=False)},
        image_spec,
    )

    full_metadata = {
        **metadata,
        "image_shape": list(image_shape),
        "latent_dim": latent_dim,
        "pixel_range": [0.0, 1.0],
        "endpoints": {
            "encode": "images [N,H,W,C] float32 in [0,1] -> {'latents': [N,D]}",
            "decode": "latents [N,D] float32 -> {'images': [N,H,W,C] in [0,1]}",
            "reconstruct": "images -> {'reconstructions': decode(encode(images))}",
        },
        "robust_dae_tf_version": robust_dae_tf.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with fileio.atomic_directory(export_dir, overwrite) as tmp:
        archive.write_out(tmp, verbose=False)
        fileio.write_json_atomic(os.path.join(tmp, METADATA_FILE), full_metadata)
    return export_dir


class ExportedAutoencoder:
    """A loaded SavedModel with `encode`, `decode` and `reconstruct` returning tensors.

    Works for any SavedModel exposing those endpoints (signatures or functions)
    with the input/output names above; metadata is {} when the JSON file is absent.

    Before TensorFlow loads anything, the graphs are checked
    (`robust_dae_tf.model_safety.check_saved_model`): a model holding ops an
    encoder/decoder does not need (file I/O, Python callbacks, ...) is refused with an
    ExportError naming them, unless `trust=True` or `trust_saved_model(path)` was called
    (the `--trust_model` flag). Missing, corrupt or unloadable files raise one
    ExportError naming the file.
    """

    def __init__(self, path: str, trust: bool = False):
        self.path = path
        model_safety.check_saved_model(path, trust=trust or _is_trusted(path))
        self.metadata = read_metadata(path)
        try:
            self._loaded = tf.saved_model.load(path)
        except Exception as err:  # corrupt or missing variables/functions: TensorFlow raises many types
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise ExportError(f"cannot load the SavedModel {path}: {first}; re-export the model.") from err
        missing = [name for name in ("encode", "decode") if not hasattr(self._loaded, name)]
        if missing:
            raise ExportError(
                f"SavedModel {path} has no {' / '.join(missing)} endpoint; it needs encode(images) and "
                "decode(latents) (export it with robust_dae_tf.export.export_saved_model)."
            )

    @property
    def saved_model(self):
        """The loaded SavedModel object (`tf.saved_model.load`)."""
        return self._loaded

    @staticmethod
    def _single(outputs):
        return next(iter(outputs.values())) if isinstance(outputs, dict) else outputs

    def encode(self, images):
        return self._single(self._loaded.encode(tf.convert_to_tensor(images, tf.float32)))

    def decode(self, latents):
        return self._single(self._loaded.decode(tf.convert_to_tensor(latents, tf.float32)))

    def reconstruct(self, images):
        if hasattr(self._loaded, "reconstruct"):
            return self._single(self._loaded.reconstruct(tf.convert_to_tensor(images, tf.float32)))
        return self.decode(self.encode(images))


def load_saved_model(path: str, trust: bool = False) -> ExportedAutoencoder:
    """`ExportedAutoencoder(path, trust)`: refuses a model whose graphs hold ops outside
    `model_safety.ALLOWED_OPS` unless `trust=True` (see the README's trust boundary)."""
    return ExportedAutoencoder(path, trust=trust)


def read_metadata(path: str) -> dict:
    """`<path>/robust_dae_tf.json` as a dict ({} when absent); ExportError naming the file
    when it is unreadable or not a JSON object."""
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.exists(meta_path):
        return {}
    try:
        with open(meta_path) as f:
            metadata = json.load(f)
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise ExportError(f"{meta_path} is not readable JSON ({err}); re-export the model or delete the file.") from err
    if not isinstance(metadata, dict):
        raise ExportError(f"{meta_path} holds a JSON {type(metadata).__name__}, not an object; re-export the model.")
    return metadata


def saved_model_identity(path: str, with_metadata: bool = False) -> dict | None:
    """What identifies the SavedModel directory `path` for a cache (the robustness run
    cache, the reuse of finished evaluation components): its absolute path and the SHA-256
    of saved_model.pb and variables/variables.index (which holds a checksum of every
    variable), with `with_metadata` also of `METADATA_FILE` (the prior, the display name).
    A model re-exported at the same path with other weights is another model. None when
    `path` has no saved_model.pb or a file cannot be read."""
    if not isinstance(path, str) or not os.path.isfile(os.path.join(path, "saved_model.pb")):
        return None
    identity = {"saved_model": os.path.abspath(path)}
    names = ["saved_model.pb", os.path.join("variables", "variables.index")] + ([METADATA_FILE] if with_metadata else [])
    try:
        for name in names:
            if os.path.isfile(os.path.join(path, name)):
                with open(os.path.join(path, name), "rb") as f:
                    identity[name] = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    return identity


_TRUSTED: set = set()


def trust_saved_model(path: str) -> None:
    """Marks the SavedModel directory `path` as trusted by the user for this process, so
    every later load of it (`ExportedAutoencoder(path)`, e.g. inside the evaluation
    components) skips the op check, as `--trust_model` asks."""
    _TRUSTED.add(os.path.realpath(path))


def _is_trusted(path: str) -> bool:
    return os.path.realpath(path) in _TRUSTED


def admit_saved_model(path: str, trust: bool = False) -> None:
    """Checks `path` as `ExportedAutoencoder(path, trust)` would, without loading it: the
    early refusal of scripts (before any data is read or output written). `trust=True`
    (their `--trust_model`) also marks `path` trusted for this process (`trust_saved_model`),
    so the components that load it later accept it."""
    if trust:
        trust_saved_model(path)
    model_safety.check_saved_model(path, trust=trust or _is_trusted(path))
