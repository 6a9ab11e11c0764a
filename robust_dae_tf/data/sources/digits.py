"""The embedded digits (`--dataset=digits`, no files, no download): scikit-learn's bundled
8x8 digits scaled to 0..255 and resized to 28x28; a fixed permutation (seed 0) of the 1797
images, the last 297 the test split."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robust_dae_tf.data.sources.base import Splits, from_arrays
from robust_dae_tf.data.specs import DatasetSpec


DIGITS_SIZE, DIGITS_TEST_SIZE = 1797, 297  # scikit-learn's digits
DIGITS_SEED = 0


def read(spec: DatasetSpec) -> Splits:
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    digits = load_digits()
    scaled = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)
    resized = tf.image.resize(scaled, [28, 28], method="bilinear").numpy()
    images = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    order = np.random.default_rng(DIGITS_SEED).permutation(len(images))
    train, test = order[:-DIGITS_TEST_SIZE], order[-DIGITS_TEST_SIZE:]
    source = "embedded scikit-learn digits"
    return {
        "train": from_arrays(spec, images[train], digits.target[train], source, source),
        "test": from_arrays(spec, images[test], digits.target[test], source, source),
    }


def describe() -> str:
    """How the embedded digits are split (`describe_split`)."""
    return (
        f"embedded digits: fixed permutation (seed {DIGITS_SEED}), "
        f"{DIGITS_SIZE - DIGITS_TEST_SIZE} / {DIGITS_TEST_SIZE} images"
    )
