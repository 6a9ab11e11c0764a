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
"""

from __future__ import annotations

import datetime
import json
import os

import keras
import tensorflow as tf

import robust_dae_tf
from robust_dae_tf import fileio
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
    """

    def __init__(self, path: str):
        if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ExportError(f"{path} is not a SavedModel directory (no saved_model.pb); pass the directory written by bin/train.py.")
        self.path = path
        self._loaded = tf.saved_model.load(path)
        missing = [name for name in ("encode", "decode") if not hasattr(self._loaded, name)]
        if missing:
            raise ExportError(
                f"SavedModel {path} has no {' / '.join(missing)} endpoint; it needs encode(images) and "
                "decode(latents) (export it with robust_dae_tf.export.export_saved_model)."
            )
        meta_path = os.path.join(path, METADATA_FILE)
        self.metadata = json.load(open(meta_path)) if os.path.exists(meta_path) else {}

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


def load_saved_model(path: str) -> ExportedAutoencoder:
    return ExportedAutoencoder(path)
