"""The tf.data pipelines of `robust_dae_tf.data.batches` (moved from tests/test_data.py)."""

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import data
from robust_dae_tf.errors import ConfigError, DataError


# ---------------------------------------------------------------- helpers


def batches_as_arrays(ds: tf.data.Dataset) -> list[np.ndarray]:
    return [batch.numpy() for batch in ds]


@pytest.fixture
def small_ds() -> tf.data.Dataset:
    """10 distinct 2x2x1 images (pixel value = index) with labels = index."""
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.arange(10, dtype=np.int64)
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


# ---------------------------------------------------------------- pipelines


def test_training_batches_resume_matches_uninterrupted_run(small_ds):
    def run(start_epoch, skip_batches=0):
        return batches_as_arrays(
            data.training_batches(
                small_ds,
                3,
                seed=5,
                start_epoch=start_epoch,
                num_epochs=3,
                skip_batches=skip_batches,
            )
        )

    full = run(0)
    assert len(full) == 9  # 3 epochs x 3 full batches of 3 (drop_remainder)
    assert all(batch.shape == (3, 2, 2, 1) and batch.dtype == np.float32 for batch in full)
    resumed = run(1)
    assert len(resumed) == 6
    for expected, got in zip(full[3:], resumed):
        np.testing.assert_array_equal(expected, got)
    skipped = run(1, skip_batches=2)
    for expected, got in zip(full[5:], skipped):
        np.testing.assert_array_equal(expected, got)
    assert len(skipped) == 4


def test_training_batches_order_depends_on_seed_and_epoch_only(small_ds):
    def first_epochs(seed):
        batches = data.training_batches(small_ds, 10, seed=seed, start_epoch=0, num_epochs=4)
        return np.stack(batches_as_arrays(batches))

    reference = first_epochs(1)
    tf.random.set_seed(123)
    np.testing.assert_array_equal(first_epochs(1), reference)
    tf.random.set_seed(321)
    np.testing.assert_array_equal(first_epochs(1), reference)
    assert not np.array_equal(first_epochs(2), reference)
    values = np.round(reference[:, :, 0, 0, 0] * 255).astype(int)
    for epoch in values:  # every epoch is a permutation of the 10 examples
        assert sorted(epoch.tolist()) == list(range(10))
    assert len({tuple(epoch) for epoch in values}) > 1  # and the order changes


def test_training_batches_without_cache_is_identical(small_ds):
    cached = data.training_batches(small_ds, 4, seed=0, start_epoch=0, num_epochs=2)
    uncached = data.training_batches(small_ds, 4, seed=0, start_epoch=0, num_epochs=2, cache=False)
    for a, b in zip(batches_as_arrays(cached), batches_as_arrays(uncached), strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_batches_rejects_bad_batch_size(small_ds):
    with pytest.raises(ConfigError, match="batch_size"):
        data.training_batches(small_ds, 0, seed=0, start_epoch=0, num_epochs=1)


def test_steps_per_epoch():
    assert data.steps_per_epoch(10, 3) == 3
    with pytest.raises(DataError, match=r"batch_size 64 > 10 examples.*--config.train.batch_size"):
        data.steps_per_epoch(10, 64)
    with pytest.raises(ConfigError):
        data.steps_per_epoch(10, 0)


def test_evaluation_batches_keep_order_and_last_partial_batch(small_ds):
    batches = list(data.evaluation_batches(small_ds, 4))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    images = np.concatenate([images.numpy() for images, _ in batches])
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    assert images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_allclose(images[:, 0, 0, 0], np.arange(10) / 255.0)
    np.testing.assert_array_equal(labels, np.arange(10))


def test_count_examples_and_take_arrays(small_ds):
    assert data.count_examples(small_ds) == 10
    unknown = small_ds.filter(lambda ex: ex["label"] % 2 == 0)
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert data.count_examples(unknown) == 5
    images, labels = data.take_arrays(small_ds, 3)
    assert images.shape == (3, 2, 2, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [0, 1, 2])
    assert data.take_arrays(small_ds)[0].shape[0] == 10
    assert data.take_arrays(small_ds, 0)[0].shape == (0, 2, 2, 1)


def test_to_float_range():
    out = data.to_float(np.array([0, 51, 255], np.uint8))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [0.0, 0.2, 1.0])
