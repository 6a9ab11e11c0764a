"""Any autoencoder -> the project's `encode` / `decode` interface.

The attacks, the downstream classifier and the Frechet distance call two functions of a
model: `encode(images) -> latents` and `decode(latents) -> images`. This module turns
every accepted model form into an `Adapter` with exactly those methods (and `metadata`,
`path`), so one evaluation path serves them all. `open_model` detects the form of files
on disk (bin/evaluate.py's --model / --encoder / --decoder), `from_object` wraps models
held in memory (the Python API, `robust_dae_tf.api`).

Forms (`Adapter.form`):

* "export"       a directory written by bin/train.py (`export.export_saved_model`):
                 saved_model.pb + robust_dae_tf.json (dataset, prior, image shape).
* "signatures"   any other SavedModel directory with `encode` and `decode` signatures (or
                 tf.functions) meeting the contract below.
* "keras"        one Keras 3 `.keras` file holding the autoencoder, its encoder and
                 decoder found as (1) attributes `encoder` / `decoder` of the loaded model
                 (a registered subclassed model), else (2) its layers named `encoder` and
                 `decoder` (`model.get_layer("encoder")`: nested sub-models of a functional
                 model).
* "keras_pair"   two `.keras` files, --encoder=enc.keras --decoder=dec.keras.
* "export_pair"  two directories written by Keras' `model.export(dir)` (endpoint `serve`),
                 --encoder=enc_dir --decoder=dec_dir.
* "in_memory"    (API only) a keras.Model with `encoder` / `decoder` attributes or
                 layers, an (encoder, decoder) pair of Keras models or callables.

The contract every form meets (checked by `check_outputs` on probe images, before any
attack runs; one `error:` line each when it does not):

* encode: images float32 `[N, H, W, C]` (NHWC) in the declared pixel range -> latents
  `[N, D]`, a floating dtype (rank 2: flatten structured codes in the model). A
  SavedModel's `encode` returns `{"latents": tensor}` (or the tensor itself).
* decode: latents float32 `[N, D]` -> images of the inputs' shape `[N, H, W, C]`, within
  the declared pixel range (end the decoder with a sigmoid or a clip). A SavedModel's
  `decode` returns `{"images": tensor}` (or the tensor itself).
* both differentiable (the attacks take gradients through them) and deterministic.

Pixel range: the project works in [0, 1] (budgets are L2 norms of perturbations of [0, 1]
pixels, MS-SSIM assumes that range). A model declared with `pixel_range=(lo, hi)` (flag
--pixel_range=lo,hi, e.g. -1,1 or 0,255) is adapted: `Adapter.encode(x)` feeds
`lo + (hi - lo) * x` to the model and `Adapter.decode` returns `(f(z) - lo) / (hi - lo)`,
so the budgets keep their [0, 1] meaning for every model.

Safety: a SavedModel (also a `model.export()` artifact) is parsed and refused when its
graphs hold ops outside `model_safety.ALLOWED_OPS`; a `.keras` file is loaded with
`keras.models.load_model(path, safe_mode=True)` (no Python lambdas deserialised); both
unless `trust=True` (--trust_model), as for the project's exports.

The prior (`resolve_prior`): "standard_normal" = N(0, I) in the latent dimensions, or a
JSON file describing a Gaussian mixture (`PRIOR_JSON_EXAMPLE`):
`{"type": "gmm", "weights": [K], "means": [K x D], "stds": [K]}` (weights >= 0 summing to
1, stds > 0: mode k is N(means[k], stds[k]^2 I); this version needs the same std for every
mode, as the project's `priors.GMMPrior`). It replaces the metadata's prior for the
Frechet distance.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from robust_dae_tf.declared_prior import (  # noqa: F401  (re-exported: the --prior flag's readers)
    PRIOR_JSON_EXAMPLE, STANDARD_NORMAL, describe_prior, read_prior_spec, resolve_prior)
from robust_dae_tf.errors import ConfigError, DataError, ExportError, first_line

# TensorFlow and Keras are imported inside the functions: the pipeline's cheap checks
# (`check_paths`) run before TensorFlow is imported.

FORMS = ("export", "signatures", "keras", "keras_pair", "export_pair", "in_memory")
_RANGE_TOLERANCE = 1e-3  # decoded pixels may exceed the declared range by this fraction of it (rounding)
_PROBE_IMAGES = 8


# ------------------------------------------------------------------ cheap checks (no TensorFlow)


def check_paths(model: str | None, encoder: str | None = None, decoder: str | None = None) -> str:
    """The form the paths name ("saved_model", "keras", "keras_pair" or "export_pair"; a
    SavedModel's form, "export" or "signatures", is decided when it is loaded), after the
    checks that need no TensorFlow: one ConfigError / ExportError naming the flag."""
    if encoder or decoder:
        if model:
            raise ConfigError("pass either --model or --encoder with --decoder, not both.")
        if not (encoder and decoder):
            given, missing = ("--encoder", "--decoder") if encoder else ("--decoder", "--encoder")
            raise ConfigError(f"{given} needs {missing}: pass the encoder and the decoder, each a .keras file or a "
                              "model.export() directory.")
        kinds = {flag: _path_kind(path, flag) for flag, path in (("--encoder", encoder), ("--decoder", decoder))}
        if len(set(kinds.values())) != 1:
            raise ConfigError(f"--encoder and --decoder must be of one kind (both .keras files or both model.export() "
                              f"directories), got {kinds['--encoder']} and {kinds['--decoder']}.")
        return "keras_pair" if kinds["--encoder"] == "keras file" else "export_pair"
    if not model:
        raise ConfigError("pass --model=<SavedModel directory or .keras file> (e.g. saved_models/digits_robust), or "
                          "--encoder=... --decoder=...")
    kind = _path_kind(model, "--model")
    return "keras" if kind == "keras file" else "saved_model"


def _path_kind(path: str, flag: str) -> str:
    if os.path.isfile(path):
        if path.endswith(".keras"):
            return "keras file"
        raise ExportError(f"{flag}={path} is a file but not a Keras 3 .keras file; pass a .keras file or a SavedModel "
                          "directory (saved_model.pb inside).")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "SavedModel directory"
        raise ExportError(f"{flag}={path} is not a SavedModel directory (no saved_model.pb) nor a .keras file; pass "
                          "a directory written by bin/train.py or model.export(), or a .keras file.")
    raise ExportError(f"{flag}={path} does not exist; pass a SavedModel directory or a .keras file.")


def parse_pixel_range(value) -> tuple[float, float]:
    """(lo, hi) from None (= (0, 1)), "lo,hi", or two numbers; ConfigError naming
    --pixel_range unless lo < hi are finite."""
    if value is None or value == "" or value == []:
        return (0.0, 1.0)
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--pixel_range must be two numbers lo,hi (e.g. 0,1 or -1,1 or 0,255), "
                          f"got {value!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"--pixel_range must be finite numbers lo < hi, got {lo:g},{hi:g}.")
    return (lo, hi)


# ------------------------------------------------------------------ the adapter


def _single(outputs, key: str, what: str):
    """The tensor of an endpoint's outputs: the tensor itself, or the value of `key` in a
    one-entry dict; ExportError naming the keys found otherwise."""
    if isinstance(outputs, dict):
        if key in outputs and len(outputs) == 1:
            return outputs[key]
        raise ExportError(f"{what} returns the outputs {sorted(outputs)}; the contract is one output named "
                          f"{key!r} (a dict {{{key!r}: tensor}} or the tensor itself).")
    if isinstance(outputs, (list, tuple)):
        if len(outputs) == 1:
            return outputs[0]
        raise ExportError(f"{what} returns {len(outputs)} outputs; the contract is one tensor ({key!r}).")
    return outputs


class Adapter:
    """A model of any accepted form as the project's autoencoder: `encode(images)` and
    `decode(latents)` on float32 tensors, images in [0, 1] whatever the model's declared
    pixel range (module docstring), plus `reconstruct`, `metadata` (dataset, prior,
    image_shape, ...: what reports and the Frechet distance read), `path` (the SavedModel
    directory, else the first file, e.g. the encoder's; None in memory), `files`, `form` and
    `identity()` (what makes two evaluations of it the same, for the run cache and the reuse
    of finished parts: the digests of ALL its files).

    `_loaded` is a `tf.Module` whose `encode` calls this adapter, tracking the model's
    variables, so `classifier.export_classifier` can write encoder + MLP as a SavedModel."""

    def __init__(self, encode_fn, decode_fn, *, form: str, metadata: dict | None = None, path: str | None = None,
                 pixel_range=(0.0, 1.0), files=(), trackables=(), name: str | None = None):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        self._encode_fn, self._decode_fn = encode_fn, decode_fn
        self.form = form
        self.metadata = dict(metadata or {})
        self.files = [os.path.abspath(f) for f in files]
        self.path = path or (self.files[0] if self.files else None)
        self.name = name
        self.pixel_range = parse_pixel_range(pixel_range)
        lo, hi = self.pixel_range
        self._scaled = (lo, hi) != (0.0, 1.0)
        adapter = self

        class _Module(tf.Module):
            def __init__(self):
                super().__init__(name="adapted_autoencoder")
                self.parts = list(trackables)

            def encode(self, images):
                return {"latents": adapter.encode(images)}

        self._loaded = _Module()

    def encode(self, images):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        x = tf.convert_to_tensor(images, tf.float32)
        if self._scaled:
            lo, hi = self.pixel_range
            x = lo + (hi - lo) * x
        return _single(self._encode_fn(x), "latents", f"{self.describe()}: encode")

    def decode(self, latents):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        y = _single(self._decode_fn(tf.convert_to_tensor(latents, tf.float32)), "images",
                    f"{self.describe()}: decode")
        if self._scaled:
            lo, hi = self.pixel_range
            y = (tf.cast(y, tf.float32) - lo) / (hi - lo)
        return y

    def reconstruct(self, images):
        return self.decode(self.encode(images))

    @property
    def parts(self) -> tuple:
        """What the adapter calls: (encoder, decoder) Keras models for the Keras forms, the
        loaded SavedModel(s) for the SavedModel forms (`attacks.precision` rebuilds from them)."""
        return tuple(self._loaded.parts)

    def describe(self) -> str:
        return self.name or self.path or (self.files[0] if self.files else "the model")

    def identity(self) -> dict | None:
        """Form, files (SHA-256 of each .keras file; of saved_model.pb and the variables
        index of each SavedModel), pixel range and metadata (the prior included). A model in
        memory: the SHA-256 of its variables' values instead of files; None when it has
        neither (plain callables: it cannot be identified)."""
        digests = {}
        if not self.files and not self.path:
            variables = [v for part in self._loaded.parts for v in getattr(part, "variables", [])]
            if not variables:
                return None
            digest = hashlib.sha256()
            for variable in variables:
                digest.update(np.ascontiguousarray(np.asarray(variable)).tobytes())
            digests["variables"] = digest.hexdigest()
        for path in self.files or ([self.path] if self.path else []):
            names = [""] if os.path.isfile(path) else ["saved_model.pb", os.path.join("variables", "variables.index"),
                                                       "robust_dae_tf.json"]
            for name in names:
                full = os.path.join(path, name) if name else path
                if os.path.isfile(full):
                    with open(full, "rb") as f:
                        digests[full] = hashlib.sha256(f.read()).hexdigest()
        return {"form": self.form, "files": digests, "pixel_range": list(self.pixel_range),
                "metadata": json.dumps(self.metadata, sort_keys=True, default=str)}


# ------------------------------------------------------------------ loading each form


def _load_keras_file(path: str, trust: bool, flag: str):
    import keras  # pylint: disable=import-outside-toplevel

    try:
        return keras.models.load_model(path, compile=False, safe_mode=not trust)
    except Exception as err:  # Keras raises many types for corrupt files, unknown classes, unsafe lambdas
        text = first_line(err)
        hint = ""
        if "safe_mode" in text or "lambda" in text.lower():
            hint = (" It holds Python code (a Lambda layer), which safe mode refuses: load it only if you trust its "
                    "source (--trust_model).")
        elif "Could not locate" in text or "custom" in text.lower():
            hint = (" It uses custom classes: register them (keras.saving.register_keras_serializable) and evaluate "
                    "from Python (robust_dae_tf.evaluate), or write the model with model.export(dir).")
        raise ExportError(f"cannot load {flag}={path} as a Keras model: {text}.{hint}") from None


def _sub_models(model, path: str):
    """(encoder, decoder) of a loaded Keras autoencoder (module docstring: attributes, then
    layers named encoder / decoder); ExportError naming what was found otherwise."""
    found = {}
    for part in ("encoder", "decoder"):
        candidate = getattr(model, part, None)
        if candidate is None or not callable(candidate):
            try:
                candidate = model.get_layer(part)
            except (ValueError, AttributeError):
                candidate = None
        found[part] = candidate
    missing = [part for part, value in found.items() if value is None]
    if missing:
        layers = [layer.name for layer in getattr(model, "layers", [])][:12]
        raise ExportError(f"{path} has no recognisable {' and '.join(missing)} (looked for attributes and layers named "
                          f"'encoder' and 'decoder'; its layers are {layers}); name the two sub-models so, or pass "
                          "--encoder=enc.keras --decoder=dec.keras.")
    return found["encoder"], found["decoder"]


def _keras_input_shape(model):
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, list):
        shape = shape[0] if len(shape) == 1 else None
    if not shape or len(shape) != 4 or any(d is None for d in shape[1:]):
        return None
    return tuple(int(d) for d in shape[1:])


def _keras_fn(model):
    return lambda x: model(x, training=False)


def _saved_model(path: str, trust: bool, flag: str):
    """Safety check (unless trusted), then `tf.saved_model.load`; one ExportError otherwise."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    export.admit_saved_model(path, trust=trust)
    try:
        return tf.saved_model.load(path)
    except Exception as err:  # corrupt variables or functions: TensorFlow raises many types
        raise ExportError(f"cannot load the SavedModel {flag}={path}: {first_line(err)}.") from None


def _signature_keys(loaded, name: str):
    signatures = getattr(loaded, "signatures", None) or {}
    if name in signatures:
        return sorted(signatures[name].structured_outputs)
    return None


def _signature_image_shape(loaded, name: str):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    function = (getattr(loaded, "signatures", None) or {}).get(name)
    specs = []
    if function is not None:
        specs = tf.nest.flatten(function.structured_input_signature)
    else:
        fn = getattr(loaded, name, None)
        concrete = getattr(fn, "concrete_functions", None)
        if concrete:
            specs = tf.nest.flatten(concrete[0].structured_input_signature)
    for spec in specs:
        if isinstance(spec, tf.TensorSpec) and spec.shape.rank == 4 and None not in spec.shape[1:]:
            return tuple(int(d) for d in spec.shape[1:])
    return None


def open_saved_model(path: str, trust: bool = False, pixel_range=None):
    """Form "export" or "signatures": the SavedModel at `path` with `encode` / `decode`
    (ExportError when they are missing, e.g. a model.export() artifact with `serve` only,
    or when a signature's outputs are not `latents` / `images`)."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    loaded = _saved_model(path, trust, "--model")
    metadata = export.read_metadata(path)
    missing = [name for name in ("encode", "decode") if not hasattr(loaded, name)]
    if missing:
        signatures = sorted(getattr(loaded, "signatures", None) or {})
        if hasattr(loaded, "serve"):
            raise ExportError(f"--model={path} is a Keras model.export() artifact (endpoint 'serve', signatures "
                              f"{signatures}), one model: pass the encoder and the decoder exported separately, "
                              "--encoder=<encoder export dir> --decoder=<decoder export dir>.")
        raise ExportError(f"the SavedModel --model={path} has no {' / '.join(missing)} endpoint (signatures found: "
                          f"{signatures}); the contract is encode(images) -> {{'latents': [N, D]}} and "
                          "decode(latents) -> {'images': [N, H, W, C]} (README, 'Evaluating your own autoencoder').")
    for name, key in (("encode", "latents"), ("decode", "images")):
        keys = _signature_keys(loaded, name)
        if keys is not None and keys != [key]:
            raise ExportError(f"the SavedModel --model={path}: signature {name!r} returns {keys}; the contract is one "
                              f"output named {key!r}.")
    form = "export" if metadata else "signatures"
    shape = metadata.get("image_shape") or _signature_image_shape(loaded, "encode")
    if shape:
        metadata.setdefault("image_shape", [int(d) for d in shape])
    return Adapter(loaded.encode, loaded.decode, form=form, metadata=metadata, path=os.path.abspath(path),
                   pixel_range=pixel_range if pixel_range is not None else metadata.get("pixel_range", (0.0, 1.0)),
                   trackables=[loaded])


def open_keras_file(path: str, trust: bool = False, pixel_range=None):
    """Form "keras": one .keras autoencoder with encoder and decoder parts."""
    model = _load_keras_file(path, trust, "--model")
    encoder, decoder = _sub_models(model, path)
    return _keras_adapter(encoder, decoder, "keras", [path], pixel_range)


def _keras_adapter(encoder, decoder, form, files, pixel_range, name=None):
    metadata = {}
    shape = _keras_input_shape(encoder)
    if shape:
        metadata["image_shape"] = list(shape)
    return Adapter(_keras_fn(encoder), _keras_fn(decoder), form=form, metadata=metadata, files=files,
                   pixel_range=pixel_range, trackables=[encoder, decoder], name=name or (files[0] if files else None))


def _serve(loaded, path: str, flag: str):
    fn = getattr(loaded, "serve", None)
    if fn is None:
        signatures = sorted(getattr(loaded, "signatures", None) or {})
        raise ExportError(f"{flag}={path} has no 'serve' endpoint (signatures {signatures}); write it with Keras' "
                          "model.export(dir) (format 'tf_saved_model').")
    return fn


def open_pair(encoder: str, decoder: str, trust: bool = False, pixel_range=None):
    """Form "keras_pair" (two .keras files) or "export_pair" (two model.export() dirs)."""
    if os.path.isfile(encoder):
        models = [_load_keras_file(path, trust, flag)
                  for flag, path in (("--encoder", encoder), ("--decoder", decoder))]
        return _keras_adapter(models[0], models[1], "keras_pair", [encoder, decoder], pixel_range)
    loaded = [_saved_model(path, trust, flag) for flag, path in (("--encoder", encoder), ("--decoder", decoder))]
    fns = [_serve(obj, path, flag) for obj, path, flag in zip(loaded, (encoder, decoder), ("--encoder", "--decoder"))]
    metadata = {}
    shape = _signature_image_shape(loaded[0], "serve")
    if shape:
        metadata["image_shape"] = list(shape)
    return Adapter(fns[0], fns[1], form="export_pair", metadata=metadata, files=[encoder, decoder],
                   pixel_range=pixel_range, trackables=loaded, name=encoder)


def open_model(model: str | None = None, encoder: str | None = None, decoder: str | None = None, *,
               trust: bool = False, pixel_range=None) -> Adapter:
    """The `Adapter` of the model the paths name (module docstring), after the safety
    check (unless `trust`) and the endpoint checks; one UserError otherwise."""
    kind = check_paths(model, encoder, decoder)
    if kind in ("keras_pair", "export_pair"):
        return open_pair(encoder, decoder, trust, pixel_range)
    if kind == "keras":
        return open_keras_file(model, trust, pixel_range)
    return open_saved_model(model, trust, pixel_range)


def from_object(model, pixel_range=None, name: str | None = None) -> Adapter:
    """Form "in_memory": an `Adapter` of a model held in Python. Accepted:

    * an `Adapter` or anything with `encode` / `decode` methods (e.g. the project's
      models, `export.ExportedAutoencoder`): used as is (pixel range [0, 1] unless given);
    * a Keras model with `encoder` / `decoder` attributes or layers of those names;
    * a pair (encoder, decoder) of Keras models or callables (tensor in, tensor out).
    """
    if isinstance(model, Adapter):
        return model
    if isinstance(model, (tuple, list)):
        if len(model) != 2 or not all(callable(m) for m in model):
            raise ConfigError("model must be an autoencoder or a pair (encoder, decoder) of callables, got a "
                              f"{type(model).__name__} of {len(model)} items.")
        encoder, decoder = model
    elif hasattr(model, "encode") and hasattr(model, "decode"):
        metadata = dict(getattr(model, "metadata", None) or {})
        return Adapter(model.encode, model.decode, form="in_memory", metadata=metadata,
                       path=getattr(model, "path", None), pixel_range=pixel_range, name=name,
                       trackables=[m for m in (getattr(model, "encoder", None), getattr(model, "decoder", None))
                                   if m is not None])
    else:
        encoder, decoder = _sub_models(model, name or type(model).__name__)
    wrap = (lambda m: _keras_fn(m) if hasattr(m, "trainable_variables") else m)
    metadata = {}
    shape = _keras_input_shape(encoder) if hasattr(encoder, "input_shape") else None
    if shape:
        metadata["image_shape"] = list(shape)
    return Adapter(wrap(encoder), wrap(decoder), form="in_memory", metadata=metadata, pixel_range=pixel_range,
                   name=name or "in-memory model",
                   trackables=[m for m in (encoder, decoder) if hasattr(m, "trainable_variables")])


# ------------------------------------------------------------------ validation


def check_images(images, pixel_range=(0.0, 1.0), what: str = "images") -> np.ndarray:
    """`images` as float32 NHWC scaled from the declared range to [0, 1]; DataError when
    they are not a rank-4 float array of finite values inside `pixel_range`."""
    lo, hi = parse_pixel_range(pixel_range)
    array = np.asarray(images)
    if array.ndim != 4:
        raise DataError(f"{what} must be [N, H, W, C] (NHWC; add a channel axis for grey images), got shape "
                        f"{array.shape}.")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{what} must be numbers, got dtype {array.dtype}.")
    array = array.astype(np.float32)
    if array.shape[0] < 1 or not np.isfinite(array).all():
        raise DataError(f"{what} must be a non-empty array of finite values.")
    if array.min() < lo or array.max() > hi:
        raise DataError(f"{what} have pixels in [{array.min():g}, {array.max():g}], outside the declared pixel range "
                        f"[{lo:g}, {hi:g}]; pass pixel_range= (--pixel_range=lo,hi) of your model, or rescale.")
    return ((array - lo) / (hi - lo)).astype(np.float32) if (lo, hi) != (0.0, 1.0) else array


def _check_latent_dtype(latents: np.ndarray, source: str) -> None:
    if not np.issubdtype(latents.dtype, np.floating):
        raise ExportError(f"{source} encodes images to {latents.dtype} latents; the attacks (gradients through the "
                          "latents) and the paper protocol's decode noise need float latents (cast them in the "
                          "encoder).")


def check_outputs(model, images01: np.ndarray, latents, recon, source: str) -> None:
    """The contract on a probe batch (`images01` in [0, 1]): latents rank 2 and float,
    reconstructions of the inputs' shape, inside the declared range (tolerance 1e-3 of the
    range). One ExportError / DataError naming what was found and what is expected."""
    latents, recon = np.asarray(latents), np.asarray(recon)
    _check_latent_dtype(latents, source)
    if latents.ndim != 2 or latents.shape[0] != images01.shape[0]:
        raise ExportError(f"{source}: encode returns latents of shape {latents.shape} for {images01.shape[0]} "
                          "images; expected rank 2, [N, D] (flatten structured codes inside the encoder).")
    if recon.shape != images01.shape:
        raise ExportError(f"{source}: decode returns images of shape {recon.shape[1:]} for inputs of shape "
                          f"{images01.shape[1:]}; expected the inputs' shape [N, H, W, C].")
    lo, hi = getattr(model, "pixel_range", (0.0, 1.0))
    finite = recon[np.isfinite(recon)]
    if finite.size and (finite.min() < -_RANGE_TOLERANCE or finite.max() > 1 + _RANGE_TOLERANCE):
        low, high = lo + (hi - lo) * float(finite.min()), lo + (hi - lo) * float(finite.max())
        raise DataError(f"{source}: decode returns pixels in [{low:.4g}, {high:.4g}], outside the declared pixel "
                        f"range [{lo:g}, {hi:g}]; end the decoder with a sigmoid (or clip), or declare the model's "
                        "range with --pixel_range=lo,hi (pixel_range=).")


def probe(model, images01: np.ndarray, source: str) -> int:
    """Runs encode / decode on up to 8 of `images01`, checks the contract
    (`check_outputs`, finite values) and returns the latent dimension D."""
    x = np.asarray(images01[:_PROBE_IMAGES], np.float32)
    try:
        latents = np.asarray(model.encode(x))
        _check_latent_dtype(latents, source)
        recon = np.asarray(model.decode(latents))
    except (ExportError, DataError, ConfigError):
        raise
    except Exception as err:  # TensorFlow / Keras raise many types for wrong shapes or dtypes
        raise ExportError(f"{source}: encode/decode failed on {x.shape[1:]} images: {first_line(err)}") from None
    check_outputs(model, x, latents, recon, source)
    if not (np.isfinite(latents).all() and np.isfinite(recon).all()):
        raise DataError(f"{source} returns NaN/Inf latents or reconstructions on the probe images.")
    return int(latents.shape[1])


def set_prior(model, spec, latent_dim: int) -> None:
    """Puts the prior `spec` names (`resolve_prior`) into `model.metadata["prior"]`,
    replacing the metadata's; no-op for spec None."""
    prior = resolve_prior(spec, latent_dim)
    if prior is not None:
        model.metadata["prior"] = prior
        model.metadata["prior_source"] = spec if isinstance(spec, str) else "given"


def report_fields(model, prior_spec=None, dataset: str | None = None) -> dict:
    """What every report records about the model's form and the declarations
    (summary.json key "model_source"): form, files, pixel range, the prior used (and the
    --prior flag that declared it, None: the metadata's), the dataset evaluated on."""
    metadata = getattr(model, "metadata", None) or {}
    return {"form": getattr(model, "form", "export"),
            "files": getattr(model, "files", None) or ([model.path] if getattr(model, "path", None) else []),
            "pixel_range": list(getattr(model, "pixel_range", (0.0, 1.0))),
            "prior": describe_prior(metadata.get("prior")),
            "prior_flag": prior_spec if isinstance(prior_spec, str) else (None if prior_spec is None else "given"),
            "dataset": dataset or metadata.get("dataset")}
