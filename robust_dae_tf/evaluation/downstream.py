"""Downstream classifier on frozen latent codes (paper Table 3).

An MLP is trained with Keras on the latent codes `model.encode(x)` of the train split
(the autoencoder is frozen: codes are computed once, in batches, and cached as a
NumPy array). It is evaluated on the test split:

* clean accuracy: argmax MLP(encode(x)) == y over the whole test split;
* accuracy under attack (lambda = 1 in the paper): for N test images x (default 1000,
  fewer when the split is smaller) the latent-space attack of eq. 12
  (`attacks.latent_attack`) moves encode(x + delta) towards the code of a target test
  image x_t of a DIFFERENT class (drawn at random among the test images); the
  accuracy is that of MLP(encode(x_adv)) with respect to the TRUE label of x. With
  `trials > 1` the targets and attack starts are redrawn per trial and the mean and
  std over trials are reported.

The MLP starts with a `Normalization` layer adapted to the train codes (latent scales
differ by orders of magnitude between models: GMM centers at 10 e_k vs N(0, I) for
VAEs), then Dense+ReLU hidden layers (default 256, 256; optional dropout) and a
linear output (logits).

`export_classifier` composes the loaded autoencoder SavedModel's `encode` with the
MLP into one SavedModel (keras.export.ExportArchive) with the endpoint/signature

    classify(images [N, H, W, C] float32 in [0, 1]) -> {"logits": [N, K], "probabilities": [N, K]}

written to a temporary directory and renamed into place, with
`robust_dae_tf_classifier.json` (source model, accuracies, MLP settings) beside it.
"""

from __future__ import annotations

import datetime
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from robust_dae_tf import fileio
from robust_dae_tf.errors import DataError, ExportError
from robust_dae_tf.evaluation.settings import ClassifierConfig  # defined without TensorFlow

CLASSIFIER_METADATA_FILE = "robust_dae_tf_classifier.json"


# ------------------------------------------------------------------------ codes


def encode_images(model, images, batch_size: int = 500) -> np.ndarray:
    """`[N, D]` float32 latent codes of float images, computed in batches; NaN -> DataError."""
    images = np.asarray(images, np.float32)
    codes = [np.asarray(model.encode(tf.constant(images[i : i + batch_size])), np.float32)
             for i in range(0, len(images), batch_size)]
    if not codes:
        raise DataError("no images to encode.")
    codes = np.concatenate(codes)
    if not np.all(np.isfinite(codes)):
        raise DataError(
            f"the model's encode() returned NaN or Inf for {int((~np.isfinite(codes).all(1)).sum())} images; "
            "the SavedModel is diverged or corrupt."
        )
    return codes


def encode_dataset(model, ds: tf.data.Dataset, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(codes [N, D], labels [N]) of an Examples split (uint8 images), encoded batch by batch."""
    from robust_dae_tf import data  # pylint: disable=import-outside-toplevel

    codes, labels = [], []
    for images, batch_labels in data.evaluation_batches(ds, batch_size):
        codes.append(encode_images(model, images.numpy(), batch_size))
        labels.append(batch_labels.numpy())
    if not codes:
        raise DataError("the split to encode is empty.")
    return np.concatenate(codes), np.concatenate(labels).astype(np.int64)


# ------------------------------------------------------------------------ the MLP


def build_mlp(train_codes: np.ndarray, num_classes: int, hidden_units=(256, 256), dropout: float = 0.0,
              learning_rate: float = 1e-3, seed: int = 0) -> keras.Model:
    """Normalization (adapted to `train_codes`) -> [Dense+ReLU (+Dropout)] * L -> Dense(K) logits."""
    keras.utils.set_random_seed(seed)
    latent_dim = int(train_codes.shape[1])
    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(train_codes.astype(np.float32))
    inputs = keras.Input((latent_dim,), name="latents")
    x = norm(inputs)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(int(units), activation="relu", name=f"hidden_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    mlp = keras.Model(inputs, logits, name="latent_mlp")
    mlp.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return mlp


def train_mlp(codes: np.ndarray, labels: np.ndarray, num_classes: int, config: ClassifierConfig = ClassifierConfig(),
              verbose: int = 0) -> keras.Model:
    """Trains the MLP on (codes, labels); returns the Keras model."""
    config.validate()
    labels = np.asarray(labels, np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}.")
    mlp = build_mlp(codes, num_classes, config.hidden_units, config.dropout, config.learning_rate, config.seed)
    mlp.fit(codes.astype(np.float32), labels, batch_size=config.batch_size, epochs=config.epochs,
            shuffle=True, verbose=verbose)
    return mlp


def predict(mlp: keras.Model, codes: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Predicted class indices [N]."""
    logits = [np.asarray(mlp(codes[i : i + batch_size], training=False)) for i in range(0, len(codes), batch_size)]
    return np.argmax(np.concatenate(logits), axis=1)


def accuracy(mlp: keras.Model, codes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of `codes` classified as `labels`."""
    return float(np.mean(predict(mlp, codes) == np.asarray(labels)))


# ------------------------------------------------------------------------ under attack


def choose_targets(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each i an index j with labels[j] != labels[i], uniformly among those."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataError("targets of a different class need at least 2 classes among the attacked images.")
    out = np.empty(len(labels), np.int64)
    for c in classes:
        mine = np.flatnonzero(labels == c)
        others = np.flatnonzero(labels != c)
        out[mine] = others[rng.integers(0, len(others), size=len(mine))]
    return out


def attacked_accuracy(model, mlp: keras.Model, images: np.ndarray, labels: np.ndarray, budget: float = 1.0,
                      attack_config=None, seed: int = 0, attack_fn=None, batch_size: int = 500) -> dict:
    """Accuracy of MLP(encode(x_adv)) w.r.t. the true labels under the latent attack.

    Targets x_t are drawn (seeded) among `images` with a different label.
    `attack_fn` defaults to `attacks.latent_attack` (same signature; tests pass stubs).
    Returns {"accuracy", "targets" (indices), "predictions", "attack_loss_mean"}.
    """
    if attack_fn is None or attack_config is None:
        from robust_dae_tf import attacks  # pylint: disable=import-outside-toplevel

        attack_fn = attack_fn or attacks.latent_attack
        attack_config = attack_config or attacks.AttackConfig()
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    targets = choose_targets(labels, np.random.default_rng(seed))
    result = attack_fn(model, images, images[targets], budget, attack_config, seed=seed)
    adversarial = np.asarray(result.adversarial, np.float32)
    if adversarial.shape != images.shape:
        raise DataError(f"the attack returned images of shape {adversarial.shape}, expected {images.shape}.")
    predictions = predict(mlp, encode_images(model, adversarial, batch_size))
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "targets": targets,
        "predictions": predictions,
        "attack_loss_mean": float(np.mean(result.loss)),
    }


def evaluate_downstream(model, train_ds: tf.data.Dataset, test_ds: tf.data.Dataset, num_classes: int,
                        config: ClassifierConfig = ClassifierConfig(), attack_fn=None, progress: bool = True):
    """Trains the MLP on train codes and evaluates it (Table 3). Returns (mlp, report dict)."""
    config.validate()
    if num_classes < 2:
        raise DataError("the downstream classifier needs a labelled dataset (>= 2 classes); celeb_a has none.")
    start = time.time()
    log = print if progress else (lambda *a, **k: None)
    train_codes, train_labels = encode_dataset(model, train_ds, config.encode_batch_size)
    test_codes, test_labels = encode_dataset(model, test_ds, config.encode_batch_size)
    log(f"[classifier] encoded {len(train_codes)} train / {len(test_codes)} test images; training the MLP")
    mlp = train_mlp(train_codes, train_labels, num_classes, config, verbose=0)
    train_acc = accuracy(mlp, train_codes, train_labels)
    clean_acc = accuracy(mlp, test_codes, test_labels)
    log(f"[classifier] clean test accuracy {100 * clean_acc:.2f}% (train {100 * train_acc:.2f}%)")

    from robust_dae_tf import data  # pylint: disable=import-outside-toplevel

    n_attack = len(test_codes) if config.attack_images <= 0 else min(config.attack_images, len(test_codes))
    images, labels = data.take_arrays(test_ds)
    rng = np.random.default_rng(config.seed)
    accs, losses = [], []
    for trial in range(config.attack_trials):
        idx = np.sort(rng.choice(len(images), size=n_attack, replace=False))
        x = images[idx].astype(np.float32) / 255.0
        out = attacked_accuracy(model, mlp, x, labels[idx], config.attack_budget, config.attack,
                                seed=config.seed + trial, attack_fn=attack_fn, batch_size=config.encode_batch_size)
        accs.append(out["accuracy"])
        losses.append(out["attack_loss_mean"])
        log(f"[classifier] trial {trial + 1}/{config.attack_trials}: accuracy under the latent attack "
            f"(lambda={config.attack_budget:g}, {n_attack} images) {100 * out['accuracy']:.2f}%")
    report = {
        "clean_accuracy": clean_acc,
        "train_accuracy": train_acc,
        "attacked_accuracy": {"mean": float(np.mean(accs)), "std": float(np.std(accs)),
                              "values": [float(a) for a in accs]},
        "attack_loss": {"mean": float(np.mean(losses)), "std": float(np.std(losses))},
        "budget": float(config.attack_budget),
        "num_classes": int(num_classes),
        "num_train": int(len(train_codes)),
        "num_test": int(len(test_codes)),
        "num_attacked": int(n_attack),
        "latent_dim": int(train_codes.shape[1]),
        "config": config.to_dict(),
        "timing": {"seconds": time.time() - start},
    }
    return mlp, report


# ------------------------------------------------------------------------ export


def export_classifier(model, mlp: keras.Model, export_dir: str, metadata: dict | None = None,
                      overwrite: bool = True) -> str:
    """Writes the SavedModel `classify(images) -> {"logits", "probabilities"}` = MLP(model.encode(images)).

    `model` is an `ExportedAutoencoder`; its loaded SavedModel object is tracked by the
    archive, so the result is self-contained. Written atomically (temp dir + rename).
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise ExportError(f"{export_dir} exists; choose another directory or allow overwriting.")
    loaded = getattr(model, "_loaded", None)
    if loaded is None:
        raise ExportError("export_classifier needs an ExportedAutoencoder (a loaded SavedModel).")
    image_shape = image_shape_of(model)
    if image_shape is None:
        raise ExportError(f"cannot determine the image shape of {getattr(model, 'path', 'the model')}.")

    def classify(images):
        outputs = loaded.encode(images)
        latents = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
        logits = mlp(latents, training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(mlp)
    archive.track(loaded)
    archive.add_endpoint("classify", classify, [tf.TensorSpec((None, *image_shape), tf.float32, name="images")])
    full_metadata = {
        **(metadata or {}),
        "source_model": os.path.abspath(getattr(model, "path", "")),
        "image_shape": list(image_shape),
        "num_classes": int(mlp.output_shape[-1]),
        "endpoints": {"classify": "images [N,H,W,C] float32 in [0,1] -> {'logits': [N,K], 'probabilities': [N,K]}"},
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with fileio.atomic_directory(export_dir, overwrite=True) as tmp:
        archive.write_out(tmp, verbose=False)
        fileio.write_json_atomic(os.path.join(tmp, CLASSIFIER_METADATA_FILE), full_metadata)
    return export_dir


class LoadedClassifier:
    """A classifier SavedModel: `classify(images) -> {"logits", "probabilities"}` as NumPy arrays."""

    def __init__(self, path: str):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ExportError(f"{path} is not a SavedModel directory (no saved_model.pb).")
        self.path = path
        self._loaded = tf.saved_model.load(path)
        if not hasattr(self._loaded, "classify"):
            raise ExportError(f"SavedModel {path} has no classify endpoint.")
        meta = os.path.join(path, CLASSIFIER_METADATA_FILE)
        self.metadata = json.load(open(meta)) if os.path.exists(meta) else {}

    def classify(self, images) -> dict:
        out = self._loaded.classify(tf.convert_to_tensor(np.asarray(images, np.float32)))
        return {k: np.asarray(v) for k, v in out.items()}


def load_classifier(path: str) -> LoadedClassifier:
    return LoadedClassifier(path)


def image_shape_of(model) -> tuple | None:
    """(H, W, C) of an ExportedAutoencoder: metadata image_shape, else the encode signature."""
    meta = getattr(model, "metadata", None) or {}
    if meta.get("image_shape"):
        return tuple(int(d) for d in meta["image_shape"])
    loaded = getattr(model, "_loaded", None)
    if loaded is None:
        return None
    specs = []
    signature = getattr(loaded, "signatures", {}).get("encode") if hasattr(loaded, "signatures") else None
    if signature is not None:
        specs = list(tf.nest.flatten(signature.structured_input_signature))
    elif hasattr(loaded.encode, "concrete_functions") and loaded.encode.concrete_functions:
        specs = list(tf.nest.flatten(loaded.encode.concrete_functions[0].structured_input_signature))
    for spec in specs:
        if isinstance(spec, tf.TensorSpec) and spec.shape.rank == 4 and None not in spec.shape[1:]:
            return tuple(int(d) for d in spec.shape[1:])
    return None
