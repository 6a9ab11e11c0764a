"""Generation fidelity: prior sampling, feature extractors and the Frechet distance.

The paper reports the FID (Heusel et al. 2017) of images decoded from samples of the
GMM prior, computed with pytorch-fid and the Inception "2015-12-05" graph. That graph
is not available here (no package ships it, tensorflow-gan does not import on
TF >= 2.16, and nothing can be downloaded at run time), so two extractors are
offered and every number is labelled with the extractor that produced it:

* `InceptionFeatures`: Keras' `InceptionV3(include_top=False, pooling="avg")` with
  ImageNet weights (2048-d pool features). Keras' ImageNet weights are NOT the FID
  2015 TF graph that pytorch-fid / TTUR use (different training run and resize), so
  the resulting "FID-keras-inception" is internally consistent but NOT comparable
  with published FIDs, including the paper's Table 1. Offline it needs a local
  weights file (`--inception_weights=<file .h5>`, e.g.
  `inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`).
* `DatasetClassifierFeatures`: a small convnet (3 x conv-BN-ReLU-pool, global
  average pooling, dense 128, dense K) trained by this tool on the train split of
  the evaluated dataset (by default enough epochs for >= 600 steps, at least 2 and
  at most 20: 2 epochs of MNIST, 20 of the 1500 embedded digits, which reach ~99%
  test accuracy) and cached as a `FeatureExtractor` artifact with its test
  accuracy. The penultimate layer (the linear 128-d layer before the last ReLU)
  gives the features, and the distance is reported as "FD-<dataset>-classifier":
  a Frechet distance, never called FID. For datasets without class labels (celeb_a, whose
  loader yields label -1) the same net is trained self-supervised on rotation
  prediction (each image rotated by 0/90/180/270 degrees, predict which; Gidaris
  et al. 2018) and the distance is "FD-<dataset>-rotation". This is the simplest
  option that works offline without an autoencoder (faces are upright, so
  predicting the rotation needs face structure), and it keeps the extractor
  independent of the models being compared.

`sample_prior` draws latent codes from the prior stored in a SavedModel's metadata
(GMM or standard normal); `frechet_score` decodes them in batches, extracts features
of the samples and of real test images (streamed, never all images in memory) and
returns the Frechet distance in float64.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket

import numpy as np
import tensorflow as tf

from robust_dae_tf import fileio
from robust_dae_tf.errors import ConfigError, DataError, UserError

INCEPTION_SIZE = 299
FEATURE_EXTRACTOR_TYPE = "FeatureExtractor"
_CLASSIFIER_FILE = "classifier.keras"
_DOWNLOAD_TIMEOUT_S = 20.0
AUTO_MIN_STEPS, AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 600, 2, 20


def default_feature_cache() -> str:
    """Where `DatasetClassifierFeatures` are cached unless told otherwise: one place per
    user, `$XDG_CACHE_HOME/robust_dae_tf/feature_extractors` (default `~/.cache/...`),
    so every evaluation of a dataset, from whatever working directory, uses the same
    trained extractor and its FDs are comparable (two independently trained extractors
    give different FD scales)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "robust_dae_tf", "feature_extractors")


# ----------------------------------------------------------------------------- prior


def sample_prior(metadata_prior: dict, n: int, seed: int = 0) -> np.ndarray:
    """`[n, D]` float32 latent codes drawn from the prior described in SavedModel metadata.

    * ``{"type": "gmm", "centers": [[...] x K], "std": s, "weights": [...]}``: pick
      mode k with probability weights[k] (equal weights when absent), then
      ``mu_k + s * eps``, eps ~ N(0, I).
    * ``{"type": "normal", "latent_dim": D}``: N(0, I) (VAE baselines).

    Deterministic for a given `seed` (NumPy PCG64). Any other type, or an
    inconsistent description, raises `ConfigError`.
    """
    if not isinstance(metadata_prior, dict) or "type" not in metadata_prior:
        raise ConfigError(
            "the SavedModel metadata has no prior description ({'type': 'gmm' | 'normal', ...}); "
            "export the model with robust_dae_tf.export so robust_dae_tf.json holds its prior."
        )
    if int(n) < 0:
        raise ConfigError(f"number of prior samples must be >= 0, got {n}.")
    n = int(n)
    rng = np.random.default_rng(seed)
    kind = str(metadata_prior["type"]).lower()
    if kind == "gmm":
        centers = np.asarray(metadata_prior.get("centers"), np.float64)
        if centers.ndim != 2 or centers.shape[0] < 1:
            raise ConfigError(f"prior centers must be a [K, D] list, got shape {centers.shape}.")
        std = float(metadata_prior.get("std", 1.0))
        if not std > 0:
            raise ConfigError(f"prior std must be > 0, got {std}.")
        num_modes, latent_dim = centers.shape
        weights = np.asarray(metadata_prior.get("weights") or [1.0 / num_modes] * num_modes, np.float64)
        if weights.shape != (num_modes,) or np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, atol=1e-6):
            raise ConfigError(f"prior weights must be {num_modes} non-negative numbers summing to 1, got {weights}.")
        modes = rng.choice(num_modes, size=n, p=weights / weights.sum())
        return (centers[modes] + std * rng.standard_normal((n, latent_dim))).astype(np.float32)
    if kind == "normal":
        latent_dim = metadata_prior.get("latent_dim")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ConfigError(f"a 'normal' prior needs a positive integer latent_dim, got {latent_dim!r}.")
        return rng.standard_normal((n, latent_dim)).astype(np.float32)
    raise ConfigError(
        f"unknown prior type {metadata_prior['type']!r} in the SavedModel metadata; "
        "supported: 'gmm' (centers, std, weights) and 'normal' (latent_dim)."
    )


def prior_moments(metadata_prior: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean `[D]` and covariance `[D, D]` (float64) of the prior (law of total variance)."""
    kind = str(metadata_prior.get("type", "")).lower()
    if kind == "normal":
        d = int(metadata_prior["latent_dim"])
        return np.zeros(d), np.eye(d)
    if kind != "gmm":
        sample_prior(metadata_prior, 0)  # raises the unknown-type error
    centers = np.asarray(metadata_prior["centers"], np.float64)
    k, d = centers.shape
    weights = np.asarray(metadata_prior.get("weights") or [1.0 / k] * k, np.float64)
    mean = weights @ centers
    centered = centers - mean
    cov = float(metadata_prior.get("std", 1.0)) ** 2 * np.eye(d) + (centered * weights[:, None]).T @ centered
    return mean, cov


# ------------------------------------------------------------------- feature extractors


class FeatureExtractor:
    """Maps float images `[N, H, W, C]` in [0, 1] to float64 features `[N, F]`.

    `name` labels the distance it produces ("FID-keras-inception",
    "FD-mnist-classifier", ...); distances with different names are not comparable.
    """

    name: str = "features"
    batch_size: int = 100

    def describe(self) -> dict:
        return {"name": self.name}

    def _features(self, images: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 4:
            raise DataError(f"{self.name}: images must be [N, H, W, C], got shape {images.shape}.")
        if not np.all(np.isfinite(images)):
            raise DataError(f"{self.name}: images contain NaN or Inf (a diverged model?).")
        out = [self._features(tf.constant(images[i : i + self.batch_size])).numpy()
               for i in range(0, len(images), self.batch_size)]
        if not out:
            return np.zeros((0, 0), np.float64)
        return np.concatenate(out).astype(np.float64)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


class InceptionFeatures(FeatureExtractor):
    """2048-d pool features of Keras' ImageNet InceptionV3.

    Images are resized (bilinear) to 299x299, scaled from [0, 1] to [-1, 1] and
    grayscale images are tiled to 3 channels. NOTE: Keras' ImageNet InceptionV3
    weights differ from the FID "2015-12-05" TF Inception graph used by pytorch-fid,
    TTUR and the paper, so these FIDs are NOT comparable with published numbers
    (they are labelled "FID-keras-inception").

    Args:
      weights_path: a local InceptionV3 no-top weights file (.h5). None: let Keras
        use its cache or download "imagenet" weights; offline this fails within
        seconds with a `UserError` asking for `--inception_weights`.
    """

    name = "FID-keras-inception"
    batch_size = 50

    def __init__(self, weights_path: str | None = None, batch_size: int = 50):
        import keras  # pylint: disable=import-outside-toplevel

        self.batch_size = batch_size
        self.weights_path = weights_path
        if weights_path is not None and not os.path.isfile(weights_path):
            raise UserError(
                f"--inception_weights={weights_path} is not a file; pass the Keras InceptionV3 no-top "
                "weights (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5)."
            )
        try:
            with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
                self.model = keras.applications.InceptionV3(
                    include_top=False,
                    pooling="avg",
                    weights=weights_path or "imagenet",
                    input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
                )
        except Exception as err:  # keras raises a bare Exception on download failure
            if weights_path is None:
                raise UserError(
                    "cannot load Keras' ImageNet InceptionV3 weights (download failed: "
                    f"{str(err).splitlines()[0][:160]}); pass a local file with "
                    "--inception_weights=<file .h5>, or use --fid_extractor=classifier."
                ) from err
            raise UserError(
                f"--inception_weights={weights_path} could not be loaded into InceptionV3(include_top=False): "
                f"{str(err).splitlines()[0][:200]}"
            ) from err

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights_path or "keras imagenet",
            "note": "Keras ImageNet InceptionV3, not the FID 2015 graph: not comparable to published FIDs.",
        }

    def _features(self, images):
        if images.shape[-1] == 1:
            images = tf.tile(images, [1, 1, 1, 3])
        images = tf.image.resize(images, [INCEPTION_SIZE, INCEPTION_SIZE], method="bilinear")
        return self.model(images * 2.0 - 1.0, training=False)


def _rotations(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The 4 rotations of a batch (square images) and their labels 0..3."""
    rotated = [tf.image.rot90(images, k) for k in range(4)]
    labels = tf.repeat(tf.range(4, dtype=tf.int64), tf.shape(images)[0])
    return tf.concat(rotated, 0), labels


def _feature_net(image_shape, num_outputs: int, seed: int):
    import keras  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape, name="images")
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # Linear (pre-activation) features: never "dead", so even a briefly trained net gives
    # informative features (a random projection of the pooled conv maps at worst).
    features = keras.layers.Dense(128, name="features")(x)
    x = keras.layers.ReLU()(features)
    x = keras.layers.Dropout(0.3)(x)
    logits = keras.layers.Dense(num_outputs, name="logits")(x)
    model = keras.Model(inputs, logits, name="fd_classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class DatasetClassifierFeatures(FeatureExtractor):
    """Penultimate-layer features of a small convnet trained on the dataset's train split.

    Build with `load_or_train(uri, examples, ...)`: the trained net is cached in `uri`
    as a `FeatureExtractor` artifact (classifier.keras + artifact.json with the task,
    epochs, seed and test accuracy; the marker is written last, the directory renamed
    into place). Distances are named "FD-<dataset>-classifier" (class labels) or
    "FD-<dataset>-rotation" (rotation prediction, for datasets without labels).
    """

    def __init__(self, uri: str):
        import keras  # pylint: disable=import-outside-toplevel

        from robust_dae_tf import components  # pylint: disable=import-outside-toplevel

        artifact = components.read_artifact(uri, FEATURE_EXTRACTOR_TYPE)
        self.uri = uri
        self.properties = artifact.properties
        classifier = keras.models.load_model(os.path.join(uri, _CLASSIFIER_FILE), compile=False)
        self.feature_model = keras.Model(classifier.inputs, classifier.get_layer("features").output)
        self.name = f"FD-{self.properties['dataset']}-{self.properties['task']}"
        self.image_shape = tuple(self.properties["image_shape"])

    def describe(self) -> dict:
        return {"name": self.name, "uri": os.path.abspath(self.uri), **self.properties}

    def _features(self, images):
        if tuple(images.shape[1:]) != self.image_shape:
            raise DataError(f"{self.name} takes {self.image_shape} images, got {tuple(images.shape[1:])}.")
        return self.feature_model(images, training=False)

    @staticmethod
    def resolve_epochs(epochs: int | None, examples, batch_size: int = 128) -> int:
        """`epochs` when >= 1; None or 0: enough for AUTO_MIN_STEPS steps, clipped to [2, 20]."""
        if epochs:
            if int(epochs) < 1:
                raise ConfigError(f"the FD classifier needs >= 1 training epoch (0 = automatic), got {epochs}.")
            return int(epochs)
        num_train = int((examples.properties.get("num_examples") or {}).get("train", 0)) or 1
        steps_per_epoch = max(1, -(-num_train // batch_size))
        return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, -(-AUTO_MIN_STEPS // steps_per_epoch))))

    @classmethod
    def load_or_train(cls, uri: str, examples, epochs: int | None = None, batch_size: int = 128, seed: int = 0,
                      verbose: int = 2) -> "DatasetClassifierFeatures":
        """Loads the cached extractor at `uri`, or trains it on `examples` (an Examples artifact).

        epochs: None or 0 = automatic (`resolve_epochs`)."""
        from robust_dae_tf import components, data  # pylint: disable=import-outside-toplevel

        epochs = cls.resolve_epochs(epochs, examples, batch_size)
        dataset = examples.properties["source"]["dataset"]
        num_classes = int(examples.properties.get("num_classes", 0))
        task = "classifier" if num_classes > 0 else "rotation"
        wanted = {"source": examples.properties["source"], "task": task, "epochs": epochs, "seed": seed}
        if os.path.exists(os.path.join(uri, components.MARKER)):
            cached = components.read_artifact(uri, FEATURE_EXTRACTOR_TYPE)
            if all(cached.properties.get(k) == v for k, v in wanted.items()):
                return cls(uri)
            raise UserError(
                f"{uri} holds a feature extractor trained with "
                f"{ {k: cached.properties.get(k) for k in wanted} }, not {wanted}; "
                "choose another --feature_cache or delete that directory."
            )
        splits = components.load_examples(examples)
        image_shape = tuple(examples.properties["image_shape"])
        if task == "rotation" and image_shape[0] != image_shape[1]:
            raise DataError(f"rotation features need square images, got {image_shape}.")
        outputs = num_classes if task == "classifier" else 4

        def batches(split, shuffle):
            ds = splits[split]
            if shuffle:
                ds = ds.shuffle(10000, seed=seed, reshuffle_each_iteration=True)
            ds = data.evaluation_batches(ds, batch_size)
            if task == "rotation":
                ds = ds.map(lambda x, _: _rotations(x))
            return ds

        model = _feature_net(image_shape, outputs, seed)
        model.fit(batches("train", True), epochs=epochs, verbose=verbose, shuffle=False)
        test_loss, test_accuracy = model.evaluate(batches("test", False), verbose=0)
        properties = {
            **wanted,
            "dataset": dataset,
            "image_shape": list(image_shape),
            "num_outputs": outputs,
            "feature_dim": 128,
            "test_accuracy": float(test_accuracy),
            "test_loss": float(test_loss),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        with fileio.atomic_directory(uri.rstrip(os.sep), overwrite=True) as tmp:
            model.save(os.path.join(tmp, _CLASSIFIER_FILE))
            fileio.write_json_atomic(os.path.join(tmp, "metrics.json"), properties)
            components.write_marker(components.Artifact(FEATURE_EXTRACTOR_TYPE, tmp, properties),
                                    "DatasetClassifierFeatures")
        return cls(uri)


# ------------------------------------------------------------------------ the score


def _generated_features(model, prior: dict, extractor: FeatureExtractor, n: int, seed: int,
                        batch_size: int) -> np.ndarray:
    latents = sample_prior(prior, n, seed)
    feats = []
    for i in range(0, n, batch_size):
        images = np.asarray(model.decode(latents[i : i + batch_size]), np.float32)
        if not np.all(np.isfinite(images)):
            raise DataError(
                "the model's decode() returned NaN or Inf for prior samples; the model diverged or its "
                "prior metadata does not match its latent space."
            )
        feats.append(extractor(np.clip(images, 0.0, 1.0)))
    return np.concatenate(feats)


def _reference_features(examples, extractor: FeatureExtractor, n: int, split: str, batch_size: int):
    from robust_dae_tf import components, data  # pylint: disable=import-outside-toplevel

    if isinstance(examples, np.ndarray):
        images = examples[:n]
        images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        return extractor(images)
    ds = components.load_examples(examples)[split].take(n)
    feats = [extractor(x.numpy()) for x, _ in data.evaluation_batches(ds, batch_size)]
    return np.concatenate(feats)


def frechet_score(model, examples, extractor: FeatureExtractor, num_samples: int = 10000, seed: int = 0,
                  reference_split: str = "test", batch_size: int = 500, details: dict | None = None) -> float:
    """Frechet distance (float64) between decoded prior samples and real images.

    Args:
      model: an `ExportedAutoencoder` (needs `.decode` and `.metadata["prior"]`).
      examples: an Examples artifact (its `reference_split` is streamed) or an image
        array (uint8 0..255 or float in [0, 1]).
      extractor: a `FeatureExtractor`.
      num_samples: number of prior samples; the reference uses the first
        min(num_samples, split size) images of the split.
      details: optional dict that receives num_generated / num_reference / extractor.
    """
    if num_samples < 2:
        raise ConfigError(f"the Frechet distance needs >= 2 samples, got num_samples={num_samples}.")
    prior = (getattr(model, "metadata", None) or {}).get("prior")
    if prior is None:
        raise ConfigError(
            f"{getattr(model, 'path', 'the model')} has no prior in its metadata (robust_dae_tf.json), so "
            "there is nothing to sample; pass --skip_fid or export the model with its prior."
        )
    generated = _generated_features(model, prior, extractor, num_samples, seed, batch_size)
    reference = _reference_features(examples, extractor, num_samples, reference_split, batch_size)
    if len(reference) < 2:
        raise DataError(f"the {reference_split} split has fewer than 2 images; cannot fit a Gaussian.")
    from robust_dae_tf.metrics.frechet import frechet_distance_from_features  # pylint: disable=import-outside-toplevel

    value = float(np.float64(frechet_distance_from_features(generated, reference)))
    if details is not None:
        details.update(num_generated=len(generated), num_reference=len(reference),
                       reference_split=reference_split, extractor=extractor.describe(), seed=seed)
    return value
