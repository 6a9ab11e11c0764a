"""What every data source shares: the in-memory and image-file datasets they return, the
`LocalSource` a local format's `detect` finds, and TensorFlow error texts.

A local format is a module of `robust_dae_tf.data.sources` with

    detect(spec, path) -> LocalSource | None   path: the resolved --data_dir (a file or a
                                               directory); None when it does not hold this
                                               format; a DataError when it holds a broken copy
    read(spec, source) -> {"train": ds, "test": ds}   source: `LocalSource.source`

and one line in `robust_dae_tf.data.sources.LOCAL_FORMATS`. `LocalSource.split` describes
how the format made its train and test splits (`describe_split`, the run record).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np
import tensorflow as tf

from robust_dae_tf.data.specs import AUTOTUNE, DatasetSpec, check_shape, expected_shape_text, finish, shape_ok
from robust_dae_tf.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

Splits = dict[str, tf.data.Dataset]
FileSplits = dict[str, tuple[list[pathlib.Path], list[int]]]  # {split: (image files, labels)}


@dataclasses.dataclass(frozen=True)
class LocalSource:
    """Local data found by a format's `detect`: `format`, the name of that format in
    `LOCAL_FORMATS`; `kind`, "npz" (source: the file), "idx" or "mat" (the directory) or
    "files" ({split: (image paths, labels)}); `split`, how train/test were made."""

    format: str
    kind: str
    source: pathlib.Path | FileSplits
    split: str


def from_arrays(
    spec: DatasetSpec,
    images: np.ndarray,
    labels: np.ndarray,
    image_source: str,
    label_source: str,
) -> tf.data.Dataset:
    """A dataset from uint8 [N, H, W, C] images and integer labels [N]."""
    check_shape(
        spec,
        images.shape[1:],
        image_source,
        "Pass files holding that dataset, or choose the matching --dataset.",
    )
    labels = spec_labels(spec, labels, label_source)
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
    return finish(spec, ds)


def spec_labels(spec: DatasetSpec, labels: np.ndarray, source: str) -> np.ndarray:
    """int64 labels; -1 for datasets without classes; range-checked otherwise."""
    if spec.num_classes == 0:
        return np.full(len(labels), -1, np.int64)
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(
            f"{source}: labels range over {labels.min()}..{labels.max()}, but "
            f"--dataset={spec.name} has classes 0..{spec.num_classes - 1}. Pass the "
            f"files of that dataset or choose the matching --dataset."
        )
    return labels


def image_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def decode(path: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(
        tf.io.read_file(path), channels=0, dtype=tf.uint8, expand_animations=False
    )


def check_image(spec: DatasetSpec, path: pathlib.Path) -> None:
    """Decodes one image file eagerly; raises a DataError naming it when it cannot be
    read or decoded or has a shape the dataset cannot use."""
    try:
        shape = tuple(decode(tf.constant(str(path))).shape)
    except tf.errors.OpError as err:
        raise DataError(f"Cannot decode image {path}: {error_text(err)}. Fix or remove it.") from err
    check_shape(
        spec,
        shape,
        f"Image {path}",
        "Convert the images (size and channel count) or choose the matching --dataset.",
    )


def from_files(
    spec: DatasetSpec, paths: list[pathlib.Path], labels: list[int]
) -> tf.data.Dataset:
    """Lazily decoded image files; every image's shape is asserted in-graph (the first
    file is checked eagerly, `save_split` names any later file that fails)."""
    check_image(spec, paths[0])
    expected = expected_shape_text(spec)

    def load(path: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
        image = decode(path)
        shape = tf.shape(image)
        check = tf.debugging.Assert(
            shape_ok(spec, shape),
            [f"--dataset={spec.name} expects images of {expected}; file", path, "has shape", shape],
        )
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        return {"image": image, "label": label}

    ds = tf.data.Dataset.from_tensor_slices(
        ([str(p) for p in paths], np.asarray(labels, np.int64))
    )
    return finish(spec, ds.map(load, num_parallel_calls=AUTOTUNE))


def read_files(spec: DatasetSpec, source: FileSplits) -> Splits:
    """The `read` of the formats whose source is image files per split (`FileSplits`)."""
    return {split: from_files(spec, *files) for split, files in source.items()}


def error_text(error: tf.errors.OpError) -> str:
    """The cause of a TensorFlow error without its function, iterator and op decorations."""
    text = (error.message or type(error).__name__).strip().splitlines()[0]
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"^Error in user-defined function .*?Iterator::\S+: ", "", text)
    return re.sub(r"\s*\[Op:.*$", "", text).rstrip(" .")
