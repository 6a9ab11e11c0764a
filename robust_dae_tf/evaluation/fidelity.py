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
  test accuracy; `train_feature_classifier`), which the pipeline caches as a
  `FeatureExtractor` artifact with its test accuracy. The penultimate layer (the linear 128-d layer before the last ReLU)
  gives the features, and the distance is reported as "FD-<dataset>-classifier":
  a Frechet distance, never called FID. For datasets without class labels (celeb_a, whose
  loader yields label -1) the same net is trained self-supervised on rotation
  prediction (each image rotated by 0/90/180/270 degrees, predict which; Gidaris
  et al. 2018) and the distance is "FD-<dataset>-rotation". When CelebA's 40 binary
  attributes are known (a local folder with list_attr_celeba.txt: ExampleGen stores
  them with the examples) the net instead learns them (40 sigmoid outputs, binary
  cross-entropy, train split only; its test mean attribute accuracy is recorded) and
  the distance is "FD-celeb_a-attributes". Rotation prediction is the simplest
  option that works offline without an autoencoder (faces are upright, so
  predicting the rotation needs face structure), and it keeps the extractor
  independent of the models being compared.

`sample_prior` draws latent codes from the prior stored in a SavedModel's metadata
(GMM, `priors.GMMPrior.sample_numpy`, or standard normal); `frechet_score` decodes them
in batches, extracts features of the samples and of real images (a `tf.data.Dataset`,
streamed, never all images in memory, or an array) and returns a `FrechetResult` (the
distance in float64 and what it was computed from).

This module reads and writes no files: the pipeline's `FidEvaluator`
(`robust_dae_tf.pipeline.evaluation`) loads the examples, caches the trained feature
classifier as an artifact and writes the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket

import numpy as np
import tensorflow as tf

from robust_dae_tf import priors
from robust_dae_tf.errors import ConfigError, DataError, UserError

INCEPTION_SIZE = 299
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
    kind = str(metadata_prior["type"]).lower()
    if kind == "gmm":
        return priors.GMMPrior.from_dict(metadata_prior).sample_numpy(n, seed)
    if kind == "normal":
        latent_dim = metadata_prior.get("latent_dim")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ConfigError(f"a 'normal' prior needs a positive integer latent_dim, got {latent_dim!r}.")
        return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
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
    prior = priors.GMMPrior.from_dict(metadata_prior)
    return prior.mean_numpy(), prior.covariance_numpy()


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


def _feature_net(image_shape, num_outputs: int, seed: int, multi_label: bool = False):
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
    if multi_label:  # independent sigmoids; "accuracy" = mean accuracy over the outputs
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    else:
        loss, metrics = keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, metrics=metrics)
    return model


class DatasetClassifierFeatures(FeatureExtractor):
    """Penultimate-layer features of a small convnet trained on the dataset's train split
    (`train_feature_classifier`).

    Distances are named "FD-<dataset>-classifier" (class labels),
    "FD-<dataset>-attributes" (binary attributes, CelebA) or "FD-<dataset>-rotation"
    (rotation prediction, for datasets without labels or attributes).

    Args:
      classifier: the trained net (`_feature_net`: a "features" layer before the logits).
      properties: what it was trained on and how well: dataset, task, image_shape, epochs,
        seed, test_accuracy, ... (`describe` reports them).
      uri: where it is cached, if it is (the pipeline's FidEvaluator caches it).
    """

    def __init__(self, classifier, properties: dict, uri: str | None = None):
        import keras  # pylint: disable=import-outside-toplevel

        self.uri = uri
        self.properties = properties
        self.feature_model = keras.Model(classifier.inputs, classifier.get_layer("features").output)
        self.name = f"FD-{self.properties['dataset']}-{self.properties['task']}"
        self.image_shape = tuple(self.properties["image_shape"])

    def describe(self) -> dict:
        where = {"uri": os.path.abspath(self.uri)} if self.uri else {}
        return {"name": self.name, **where, **self.properties}

    def _features(self, images):
        if tuple(images.shape[1:]) != self.image_shape:
            raise DataError(f"{self.name} takes {self.image_shape} images, got {tuple(images.shape[1:])}.")
        return self.feature_model(images, training=False)

    @staticmethod
    def resolve_epochs(epochs: int | None, num_train: int, batch_size: int = 128) -> int:
        """`epochs` when >= 1; None or 0: enough for AUTO_MIN_STEPS steps over `num_train`
        training images, clipped to [2, 20]."""
        if epochs:
            if int(epochs) < 1:
                raise ConfigError(f"the FD classifier needs >= 1 training epoch (0 = automatic), got {epochs}.")
            return int(epochs)
        steps_per_epoch = max(1, -(-(int(num_train) or 1) // batch_size))
        return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, -(-AUTO_MIN_STEPS // steps_per_epoch))))


def feature_task(num_classes: int, has_attributes: bool = False) -> str:
    """"classifier" for a labelled dataset; without labels "attributes" when binary
    attributes are given (CelebA's list_attr_celeba.txt), else "rotation" (self-supervised)."""
    if int(num_classes) > 0:
        return "classifier"
    return "attributes" if has_attributes else "rotation"


def feature_training_data(splits: dict, split: str, task: str, batch_size: int = 128, shuffle: bool = False,
                          seed: int = 0, attributes: dict | None = None) -> tf.data.Dataset:
    """The (float images, targets) batches the feature net of `task` is trained (split
    "train", shuffled) and tested ("test") on: class labels; rotations 0..3 of each
    image; or, for "attributes", float32 [n, A] in {0, 1} ((v + 1) / 2 of the -1/+1
    rows `attributes[split]`, aligned with the split's elements)."""
    from robust_dae_tf import data  # pylint: disable=import-outside-toplevel

    ds = splits[split]
    if task == "attributes":
        rows = np.asarray(attributes[split])
        count = data.count_examples(ds)
        if rows.shape[0] != count:
            raise DataError(f"{rows.shape[0]} attribute rows for the {count} {split} images; rebuild the examples.")
        targets = tf.data.Dataset.from_tensor_slices(((rows.astype(np.float32) + 1.0) / 2.0))
        ds = tf.data.Dataset.zip(ds, targets).map(lambda element, target: {**element, "label": target})
    if shuffle:
        ds = ds.shuffle(10000, seed=seed, reshuffle_each_iteration=True)
    ds = data.evaluation_batches(ds, batch_size)
    if task == "rotation":
        ds = ds.map(lambda x, _: _rotations(x))
    return ds


def train_feature_classifier(splits: dict, image_shape, num_classes: int, epochs: int, batch_size: int = 128,
                             seed: int = 0, verbose: int = 2, attributes: dict | None = None):
    """Trains the feature net of `DatasetClassifierFeatures` on splits {"train": ds, "test": ds}
    (elements (uint8 image, label), as an Examples artifact holds them) for `epochs` epochs;
    with `attributes` ({"train": [n, A] -1/+1 rows, "test": ...}, `artifacts.load_attributes`)
    and no class labels, on the A attributes (sigmoid outputs, binary cross-entropy).

    Returns (the Keras classifier, {"task", "num_outputs", "feature_dim", "test_accuracy",
    "test_loss"}; for attributes also "majority_accuracy", the test accuracy of predicting
    each attribute's most frequent train value). test_accuracy is the mean attribute
    accuracy for attributes. Deterministic for a given `seed`."""
    task = feature_task(num_classes, attributes is not None)
    image_shape = tuple(image_shape)
    if task == "rotation" and image_shape[0] != image_shape[1]:
        raise DataError(f"rotation features need square images, got {image_shape}.")
    outputs = {"classifier": int(num_classes), "rotation": 4}.get(task) or int(np.shape(attributes["train"])[1])

    def batches(split, shuffle):
        return feature_training_data(splits, split, task, batch_size, shuffle, seed, attributes)

    # Seeds Keras first: the shuffle below depends on it.
    model = _feature_net(image_shape, outputs, seed, multi_label=task == "attributes")
    model.fit(batches("train", True), epochs=epochs, verbose=verbose, shuffle=False)
    test_loss, test_accuracy = model.evaluate(batches("test", False), verbose=0)
    metrics = {"task": task, "num_outputs": outputs, "feature_dim": 128, "test_accuracy": float(test_accuracy),
               "test_loss": float(test_loss)}
    if task == "attributes":
        majority = np.where(np.mean(attributes["train"] > 0, axis=0) >= 0.5, 1, -1)
        metrics["majority_accuracy"] = float(np.mean(np.asarray(attributes["test"]) == majority))
    return model, metrics


# ------------------------------------------------------------------------ the score


@dataclasses.dataclass(frozen=True)
class FrechetResult:
    """A Frechet distance and what it was computed from (`extractor`: its `describe()`)."""

    value: float
    num_generated: int
    num_reference: int
    extractor: dict
    seed: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


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


def _reference_features(reference, extractor: FeatureExtractor, n: int, batch_size: int):
    from robust_dae_tf import data  # pylint: disable=import-outside-toplevel

    if isinstance(reference, np.ndarray):
        images = reference[:n]
        images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        return extractor(images)
    feats = [extractor(x.numpy()) for x, _ in data.evaluation_batches(reference.take(n), batch_size)]
    return np.concatenate(feats)


def frechet_score(model, reference, extractor: FeatureExtractor, num_samples: int = 10000, seed: int = 0,
                  batch_size: int = 500) -> FrechetResult:
    """Frechet distance (float64) between decoded prior samples and real images.

    Args:
      model: an `ExportedAutoencoder` (needs `.decode` and `.metadata["prior"]`).
      reference: the real images: a `tf.data.Dataset` of (uint8 image, label) elements
        (e.g. an Examples split; streamed) or an image array (uint8 0..255 or float in
        [0, 1]); its first min(num_samples, size) images are used.
      extractor: a `FeatureExtractor`.
      num_samples: number of prior samples (drawn with `seed`, `sample_prior`).
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
    real = _reference_features(reference, extractor, num_samples, batch_size)
    if len(real) < 2:
        raise DataError("the reference images are fewer than 2; cannot fit a Gaussian.")
    from robust_dae_tf.metrics.frechet import frechet_distance_from_features  # pylint: disable=import-outside-toplevel

    value = float(np.float64(frechet_distance_from_features(generated, real)))
    return FrechetResult(value=value, num_generated=len(generated), num_reference=len(real),
                         extractor=extractor.describe(), seed=seed)
