"""The arithmetic an attack searches in (`AttackConfig.precision`).

* "float32" (default): the attack computes with the model as given.
* "bfloat16": the search (every gradient and every loss the optimiser compares) runs on
  a *twin* of the model whose hidden layers compute in bfloat16 (Keras' "mixed_bfloat16"
  dtype policy: bfloat16 compute, float32 variables, the same weights). The last layer
  with weights of the encoder and of the decoder, and the layers after it (the output
  activation), stay in float32, as the project's networks do under mixed precision
  (`networks.py`), so latents and pixels are float32. The images the search finds are then
  scored with the float32 model (`measures.attack_loss`): every reported number is a
  float32 number; only the search ran in bfloat16.
* "auto": bfloat16 where it is allowed and measured faster on the CPU at hand, float32
  elsewhere. Before the first attack of an objective on a model, `measure_speed` times the
  gradient of the attack loss on `AUTO_IMAGES` images, float32 and bfloat16 alternately
  (`AUTO_REPEATS` compiled calls each after one warm-up, the fastest call counts);
  bfloat16 is chosen when it is at least `AUTO_MIN_SPEEDUP` times faster. CPUs without
  bfloat16 arithmetic emulate it, and it is slower there: the measurement, not the CPU's
  name, decides.

Allowed only for attacks whose objective sets `Objective.low_precision_search` (the
latent attack: bfloat16 was measured to keep its loss within 0.5 % of float32 on the
CelebA conv net, not the maximum-damage attack's; docs/attacks.md, "Cost of one gradient
evaluation"); the others run in float32 whatever the setting, and their run log says
so. Every run log records what ran (`search_precision`): "precision" (float32 or
bfloat16), for "auto" also the measurement ("precision_measurement": seconds per call in
both precisions and their ratio).

Which models have a twin (`bfloat16_twin`): those whose encoder and decoder are Keras
functional or Sequential models (.keras files, in-memory Keras models, the project's
models) and the SavedModels bin/train.py exports, which are rebuilt from the config in
their metadata with the SavedModel's variables. Other SavedModels hold float32 graphs
only: one ConfigError that says so.
"""

from __future__ import annotations

import dataclasses
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks.config import AttackConfig
from robust_dae_tf.errors import ConfigError, first_line

POLICY = "mixed_bfloat16"
AUTO_MIN_SPEEDUP = 1.2  # "auto" takes bfloat16 when its gradient call is at least this much faster
AUTO_REPEATS = 3
AUTO_IMAGES = 16

_TWINS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> its bfloat16 twin
_CHOICES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {objective name: log}


# ------------------------------------------------------------------ the twin


def _float32_tail(net) -> set:
    """Names of the layers of `net` that stay in float32: the last layer with weights and
    every layer after it (an output activation)."""
    layers = list(net.layers)
    weighted = [i for i, layer in enumerate(layers) if layer.weights]
    start = weighted[-1] if weighted else len(layers)
    return {layer.name for layer in layers[start:]}


def clone_in_bfloat16(net, what: str = "model"):
    """A copy of the Keras functional or Sequential model `net` with the same weights whose
    layers compute in bfloat16, except the last layer with weights and those after it
    (module docstring). ConfigError when `net` cannot be cloned (a subclassed model)."""
    if not isinstance(net, keras.Model):
        raise ConfigError(f"attack precision bfloat16 needs a Keras {what}, got {type(net).__name__}; use "
                          "precision float32.")
    keep = _float32_tail(net)

    def clone(layer):
        config = layer.get_config()
        if layer.name not in keep:
            config["dtype"] = POLICY
        return layer.__class__.from_config(config)

    try:
        twin = keras.models.clone_model(net, clone_function=clone)
        twin.set_weights(net.get_weights())
    except Exception as err:  # subclassed or nested models: Keras raises many types
        raise ConfigError(f"attack precision bfloat16: cannot rebuild the {what} {net.name!r} with bfloat16 layers "
                          f"({first_line(err)}); it needs a functional or Sequential Keras model. Use precision "
                          "float32.") from err
    hidden = [layer for layer in twin.layers if layer.weights and layer.name not in keep]
    if any(layer.dtype_policy.compute_dtype != "bfloat16" for layer in hidden):
        raise ConfigError(f"attack precision bfloat16: the {what} {net.name!r} holds layers that did not take the "
                          "bfloat16 policy (nested models?); use precision float32.")
    return twin


def _rebuild_export(model, loaded):
    """(encoder, decoder) float32 Keras models of a bin/train.py export: the model of the
    config in its metadata, with the variables of its SavedModel `loaded` (checked name by
    name)."""
    import ml_collections  # pylint: disable=import-outside-toplevel

    from robust_dae_tf import models  # pylint: disable=import-outside-toplevel

    metadata = model.metadata
    net = models.build_model(ml_collections.ConfigDict(metadata["config"]), tuple(metadata["image_shape"]))
    target = list(net.encoder.variables) + list(net.decoder.variables)
    source = list(loaded.variables)
    names = [v.name.split(":")[0] for v in source]
    if len(source) != len(target) or any(n != t.path or tuple(s.shape) != tuple(t.shape)
                                         for n, s, t in zip(names, source, target)):
        raise ConfigError(f"attack precision bfloat16: the variables of {_describe(model)} do not match the model its "
                          "metadata's config builds (exported by another version?); use precision float32.")
    for s, t in zip(source, target):
        t.assign(s)
    return net.encoder, net.decoder


def _keras_parts(model):
    """(encoder, decoder) Keras models of `model`, or None."""
    from robust_dae_tf import adapters, export  # pylint: disable=import-outside-toplevel

    metadata = getattr(model, "metadata", None) or {}
    train_export = isinstance(metadata.get("config"), dict) and "image_shape" in metadata
    if isinstance(model, export.ExportedAutoencoder):
        return _rebuild_export(model, model.saved_model) if train_export else None
    if isinstance(model, adapters.Adapter):
        if model.form == "export" and train_export:
            return _rebuild_export(model, model.parts[0])
        parts = model.parts
        if len(parts) == 2 and all(isinstance(p, keras.Model) for p in parts):
            return parts
        return None
    parts = (getattr(model, "encoder", None), getattr(model, "decoder", None))
    return parts if all(isinstance(p, keras.Model) for p in parts) else None


def _float32_fn(net):
    return lambda x: tf.cast(net(x, training=False), tf.float32)


def bfloat16_twin(model):
    """The model's twin computing in bfloat16 (module docstring), an `adapters.Adapter` with
    the same pixel range and metadata; built once per model, its weights copied again from
    the model's Keras parts on every later call (the model may have been trained since).
    ConfigError for models without one (SavedModels not written by bin/train.py, subclassed
    Keras models)."""
    from robust_dae_tf import adapters, export  # pylint: disable=import-outside-toplevel

    try:
        twin, pairs = _TWINS[model]
    except (KeyError, TypeError):
        pass
    else:
        for source, clone in pairs:  # a Keras model may have been trained since: its current weights
            clone.set_weights(source.get_weights())
        return twin
    parts = _keras_parts(model)
    if parts is None:
        form = getattr(model, "form", type(model).__name__)
        raise ConfigError(f"attack precision bfloat16/auto needs a model whose layers can be rebuilt in bfloat16 (Keras "
                          f"encoder and decoder, or a bin/train.py export); {_describe(model)} ({form}) computes in "
                          "float32 as saved. Use --attack_precision=float32.")
    encoder, decoder = (clone_in_bfloat16(net, what) for net, what in zip(parts, ("encoder", "decoder")))
    # Weights to copy again on the next use: a model's own Keras parts (a rebuilt export's are fixed).
    rebuilt = isinstance(model, export.ExportedAutoencoder) or getattr(model, "form", None) == "export"
    pairs = [] if rebuilt else list(zip(parts, (encoder, decoder)))
    twin = adapters.Adapter(_float32_fn(encoder), _float32_fn(decoder), form=getattr(model, "form", "in_memory"),
                            metadata=getattr(model, "metadata", None), path=getattr(model, "path", None),
                            pixel_range=getattr(model, "pixel_range", (0.0, 1.0)), trackables=[encoder, decoder],
                            name=f"{_describe(model)} (bfloat16)")
    try:
        _TWINS[model] = (twin, pairs)
    except TypeError:  # not weak-referenceable: built again next time
        pass
    return twin


def _describe(model) -> str:
    describe = getattr(model, "describe", None)
    return describe() if callable(describe) else (getattr(model, "path", None) or type(model).__name__)


# ------------------------------------------------------------------ measuring and choosing


def measure_speed(objective, model, twin, images: np.ndarray, reference: np.ndarray,
                  twin_reference: np.ndarray, repeats: int = AUTO_REPEATS) -> dict:
    """Seconds per compiled call of the gradient of `objective`'s loss on (at most
    AUTO_IMAGES of) `images`, with `model` (float32) and `twin` (bfloat16), alternately,
    the fastest of `repeats` calls each after one warm-up; and float32 / bfloat16."""
    x = tf.constant(images[:AUTO_IMAGES], tf.float32)
    calls = {}
    for name, net, ref in (("float32", model, reference), ("bfloat16", twin, twin_reference)):
        ref = tf.constant(ref[:AUTO_IMAGES], tf.float32)

        @tf.function
        def gradient(x_in, net=net, ref=ref):
            with tf.GradientTape() as tape:
                tape.watch(x_in)
                loss = tf.reduce_sum(objective.loss_sq(net, x_in, ref))
            return tape.gradient(loss, x_in)

        gradient(x).numpy()  # warm-up: tracing
        calls[name] = gradient
    best = {name: float("inf") for name in calls}
    for _ in range(int(repeats)):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x).numpy()
            best[name] = min(best[name], time.perf_counter() - start)
    return {"images": int(x.shape[0]), "float32_seconds": best["float32"], "bfloat16_seconds": best["bfloat16"],
            "speedup": best["float32"] / best["bfloat16"]}


def search_precision(objective, model, config: AttackConfig, images: np.ndarray, targets, reference: np.ndarray,
                     measure=measure_speed):
    """(the model the search runs on, its reference, the run log's precision entries) for
    `objective` under `config.precision` (module docstring). `reference` is the float32
    model's; `measure` is `measure_speed` (replaceable in tests)."""
    requested = config.precision
    if requested == "float32":
        return model, reference, {"precision": "float32"}
    if not objective.low_precision_search:
        return model, reference, {"precision": "float32", "precision_note": (
            f"{requested} requested; the {objective.name} attack searches in float32 (bfloat16 is allowed only where "
            "it was measured to keep the attack loss within 0.5 %)")}
    twin = bfloat16_twin(model)
    twin_reference = np.asarray(objective.reference(twin, images, targets), np.float32)
    if requested == "bfloat16":
        return twin, twin_reference, {"precision": "bfloat16"}
    cache = _CHOICES.setdefault(model, {}) if _weakrefable(model) else {}
    if objective.name not in cache:
        measurement = measure(objective, model, twin, images, reference, twin_reference)
        chosen = "bfloat16" if measurement["speedup"] >= AUTO_MIN_SPEEDUP else "float32"
        cache[objective.name] = {"precision": chosen, "precision_measurement": {
            **measurement, "min_speedup": AUTO_MIN_SPEEDUP, "requested": "auto"}}
    log = dict(cache[objective.name])
    if log["precision"] == "bfloat16":
        return twin, twin_reference, log
    return model, reference, log


def _weakrefable(model) -> bool:
    try:
        weakref.ref(model)
        return True
    except TypeError:
        return False


def rescore(result, objective, model, reference: np.ndarray, log: dict):
    """`result` with its loss measured by the float32 `model` at its adversarial images when
    the search ran in bfloat16 (the search's own mean loss kept in the log), and `log` in
    its info."""
    from robust_dae_tf.attacks import measures  # pylint: disable=import-outside-toplevel

    info = {**result.info, **log}
    if log["precision"] == "float32":
        return dataclasses.replace(result, info=info)
    info["search_mean_loss"] = float(np.mean(result.loss))
    loss = measures.attack_loss(model, objective, result.adversarial, reference)
    return dataclasses.replace(result, loss=loss, info=info)
