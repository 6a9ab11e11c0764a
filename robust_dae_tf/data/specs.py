"""The supported datasets (`DatasetSpec`, `get_spec`: defined in `catalog`, without
TensorFlow, and re-exported here) and how each one's source images are brought to its
`image_shape` (the preprocessing rules of the `robust_dae_tf.data` docstring), shared by
every source."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from robust_dae_tf.data.catalog import ALIASES, DATASETS, DatasetSpec, get_spec  # noqa: F401
from robust_dae_tf.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE


# How each dataset's source images are brought to `image_shape`.
_PAD, _EXACT, _CROP_RESIZE = "pad", "exact", "crop_resize"
_RULES = {
    "mnist": _PAD,
    "fashion_mnist": _PAD,
    "digits": _PAD,
    "svhn_cropped": _EXACT,
    "celeb_a": _CROP_RESIZE,
}
_CELEBA_CROP = 140


def shape_ok(spec: DatasetSpec, shape: Sequence) -> bool | tf.Tensor:
    """Whether a source image shape can be preprocessed to the spec.

    Works on Python ints (eager checks) and on a shape tensor (inside tf.data).
    """
    height, width, channels = shape[0], shape[1], shape[2]
    target_h, target_w, target_c = spec.image_shape
    rule = _RULES[spec.name]
    if rule == _PAD:
        size_ok = ((height == 28) & (width == 28)) | (
            (height == target_h) & (width == target_w)
        )
    elif rule == _EXACT:
        size_ok = (height == target_h) & (width == target_w)
    else:
        size_ok = (height >= _CELEBA_CROP) & (width >= _CELEBA_CROP)
    return size_ok & (channels == target_c)


def expected_shape_text(spec: DatasetSpec) -> str:
    target_h, target_w, target_c = spec.image_shape
    rule = _RULES[spec.name]
    if rule == _PAD:
        return f"28x28x{target_c} (zero-padded to 32x32) or {target_h}x{target_w}x{target_c}"
    if rule == _EXACT:
        return f"{target_h}x{target_w}x{target_c}"
    return (
        f"at least {_CELEBA_CROP}x{_CELEBA_CROP}x{target_c} (centre-cropped to "
        f"{_CELEBA_CROP}x{_CELEBA_CROP}, resized to {target_h}x{target_w})"
    )


def check_shape(spec: DatasetSpec, shape: Sequence, source: str, fix: str) -> None:
    """Raises DataError when a fully known source image shape does not fit."""
    if any(dim is None for dim in shape) or bool(shape_ok(spec, shape)):
        return
    found = "x".join(str(d) for d in shape)
    raise DataError(
        f"{source}: images have shape {found}, but --dataset={spec.name} expects "
        f"{expected_shape_text(spec)}. {fix}"
    )


def preprocess(spec: DatasetSpec, image: tf.Tensor) -> tf.Tensor:
    """Brings one uint8 [h, w, c] image (shape already checked) to the spec."""
    target_h, target_w, _ = spec.image_shape
    shape = tf.shape(image)
    rule = _RULES[spec.name]
    if rule == _PAD:
        image = tf.image.pad_to_bounding_box(
            image, (target_h - shape[0]) // 2, (target_w - shape[1]) // 2, target_h, target_w
        )
    elif rule == _CROP_RESIZE:
        crop = tf.image.crop_to_bounding_box(
            image,
            (shape[0] - _CELEBA_CROP) // 2,
            (shape[1] - _CELEBA_CROP) // 2,
            _CELEBA_CROP,
            _CELEBA_CROP,
        )
        resized = tf.image.resize(crop, [target_h, target_w], method="bilinear", antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    return tf.ensure_shape(image, spec.image_shape)


def finish(spec: DatasetSpec, ds: tf.data.Dataset) -> tf.data.Dataset:
    """Maps {"image": raw uint8, "label": int64} elements to the spec."""
    return ds.map(
        lambda ex: {"image": preprocess(spec, ex["image"]), "label": ex["label"]},
        num_parallel_calls=AUTOTUNE,
    )
