"""tf.data pipelines of the splits' elements: shuffled training batches whose order depends
only on (seed, epoch), evaluation batches, counting and taking arrays.

The shuffle order of epoch e depends only on (seed, e), not on `tf.random.set_seed` or on
the epoch a run started at, so a resumed run sees exactly the batches an uninterrupted run
would."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robust_dae_tf.data.specs import AUTOTUNE
from robust_dae_tf.errors import ConfigError, DataError


def to_float(images_uint8: tf.Tensor | np.ndarray) -> tf.Tensor:
    """uint8 images (0..255) -> float32 in [0, 1]."""
    return tf.cast(images_uint8, tf.float32) / 255.0


def _require_positive(value: int, what: str) -> None:
    if value <= 0:
        raise ConfigError(f"{what} must be positive, got {value}.")


def _epoch_shuffle_seed(seed: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    """A shuffle seed that is a fixed function of (seed, epoch)."""
    return tf.random.stateless_uniform(
        [], seed=tf.stack([seed, epoch]), minval=None, maxval=None, dtype=tf.int64
    )


def training_batches(
    ds: tf.data.Dataset,
    batch_size: int,
    *,
    seed: int,
    start_epoch: int,
    num_epochs: int,
    skip_batches: int = 0,
    shuffle_buffer: int = 10000,
    cache: bool = True,
) -> tf.data.Dataset:
    """Shuffled float32 image batches [batch_size, H, W, C] in [0, 1] (no labels).

    Epochs start_epoch..num_epochs-1 are concatenated (drop_remainder=True), then
    the first `skip_batches` batches are skipped (to resume mid-epoch). The order
    of epoch e depends only on (seed, e).
    """
    _require_positive(batch_size, "--config.train.batch_size")
    _require_positive(shuffle_buffer, "shuffle_buffer")
    if start_epoch < 0 or skip_batches < 0:
        raise ConfigError(
            f"start_epoch ({start_epoch}) and skip_batches ({skip_batches}) must be >= 0; "
            f"the checkpoint step is corrupt or negative."
        )
    images = ds.map(lambda ex: ex["image"], num_parallel_calls=AUTOTUNE)
    if cache:
        images = images.cache()
    seed_tensor = tf.constant(seed, tf.int64)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        # Ignore any global seed (tf.random.set_seed) inside this traced function:
        # the shuffle then depends on the explicit op seed alone.
        tf.compat.v1.get_default_graph().seed = None
        shuffled = images.shuffle(
            shuffle_buffer,
            seed=_epoch_shuffle_seed(seed_tensor, epoch),
            reshuffle_each_iteration=False,
        )
        return shuffled.batch(batch_size, drop_remainder=True)

    batches = tf.data.Dataset.range(start_epoch, num_epochs).flat_map(epoch_batches)
    batches = batches.skip(skip_batches).map(to_float, num_parallel_calls=AUTOTUNE)
    return batches.prefetch(AUTOTUNE)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped)."""
    _require_positive(batch_size, "--config.train.batch_size")
    steps = num_examples // batch_size
    if steps == 0:
        raise DataError(
            f"batch_size {batch_size} > {num_examples} examples, so an epoch has no full "
            f"batch; lower --config.train.batch_size."
        )
    return steps


def evaluation_batches(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """(float32 images [B, H, W, C] in [0, 1], int64 labels [B]); keeps the last partial batch."""
    _require_positive(batch_size, "evaluation batch size")
    return (
        ds.batch(batch_size)
        .map(lambda ex: (to_float(ex["image"]), ex["label"]), num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def count_examples(ds: tf.data.Dataset) -> int:
    """Number of elements: the cardinality when known, otherwise by iterating."""
    cardinality = int(ds.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise DataError("The dataset is infinite (it repeats); pass a finite dataset.")
    if cardinality >= 0:
        return cardinality
    return int(ds.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def take_arrays(ds: tf.data.Dataset, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first n (all when None) elements as (uint8 images, int64 labels) arrays."""
    if n is not None:
        if n < 0:
            raise ConfigError(f"The number of examples to take must be >= 0, got {n}.")
        ds = ds.take(n)
    images, labels = [], []
    for batch in ds.batch(1024).as_numpy_iterator():
        images.append(batch["image"])
        labels.append(batch["label"])
    if not images:
        image_shape = tuple(ds.element_spec["image"].shape)
        return np.zeros((0, *image_shape), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)
