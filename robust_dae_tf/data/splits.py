"""The train and test splits of a dataset: `load_splits` (from the embedded digits, local
files or TFDS), how they were made (`describe_split`), their image files (`split_files`)
and CelebA attributes aligned with them, and `save_split` (ExampleGen's writer)."""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

from robust_dae_tf.data import batches
from robust_dae_tf.data.sources import digits, local_source, load_local
from robust_dae_tf.data.sources import tfds as tfds_source
from robust_dae_tf.data.sources.base import check_image, error_text
from robust_dae_tf.data.sources.celeba import CelebAAttributes, celeba_attribute_file, read_celeba_attributes
from robust_dae_tf.data.specs import DatasetSpec, get_spec
from robust_dae_tf.errors import ConfigError, DataError


def load_splits(
    name: str,
    *,
    data_dir: str | None = None,
    tfds_data_dir: str | None = None,
    download: bool = True,
) -> dict[str, tf.data.Dataset]:
    """Loads {"train", "test"} datasets of preprocessed uint8 images and int64 labels.

    Args:
      name: dataset name or alias (see `get_spec`).
      data_dir: local files to read instead of TFDS (see the module docstring).
      tfds_data_dir: TFDS data directory (None: the TFDS default).
      download: whether TFDS may download and prepare a missing dataset.
    """
    spec = get_spec(name)
    if spec.tfds_name is None:
        if data_dir:
            raise ConfigError(
                f"--data_dir={data_dir} cannot be used with --dataset={spec.name}, which is "
                f"embedded; drop --data_dir or choose the dataset the files contain."
            )
        return digits.read(spec)
    if data_dir:
        return load_local(spec, data_dir)
    return tfds_source.read(spec, tfds_data_dir or None, download)


def describe_split(name: str, data_dir: str | None = None) -> str:
    """How `load_splits(name, data_dir=...)` makes its train and test splits, for the
    run record, e.g. "identity split: 835 train / 93 test identities (identity_CelebA.txt),
    4175 / 465 images". Raises the DataError `load_splits` would for bad local data."""
    spec = get_spec(name)
    if spec.tfds_name is None:
        return digits.describe()
    if data_dir:
        return local_source(spec, data_dir).split
    return tfds_source.describe(spec)


def split_files(name: str, data_dir: str) -> dict[str, list[pathlib.Path]]:
    """{"train": image files, "test": image files} of a local image-folder source, in the
    order of `load_splits`' elements (e.g. to align CelebA attributes with a split)."""
    local = local_source(get_spec(name), data_dir)
    if local.kind != "files":
        raise DataError(f"--data_dir={data_dir} holds {local.kind} arrays, not image files.")
    return {split: paths for split, (paths, _) in local.source.items()}


def celeba_split_attributes(
    name: str, data_dir: str | None
) -> tuple[CelebAAttributes, dict[str, np.ndarray]] | None:
    """(the attributes, {"train": int8 [n_train, 40], "test": ...}) of a local CelebA image
    folder with list_attr_celeba.txt, rows in the order of the split's elements
    (`split_files`); None when there is no attribute file (or the source is not a CelebA
    image folder). DataError naming the file for a malformed file, and naming the file and
    an image for a file that does not cover the images."""
    path = celeba_attribute_file(name, data_dir)
    if path is None:
        return None
    local = local_source(get_spec(name), data_dir)
    if local.kind != "files":
        return None
    attributes = read_celeba_attributes(path)
    return attributes, {split: attributes.for_files(paths) for split, (paths, _) in local.source.items()}


def save_split(
    ds: tf.data.Dataset, path: str, name: str, split: str, data_dir: str | None = None
) -> int:
    """Writes a split of `load_splits` with `tf.data.Dataset.save`; returns its size.

    `Dataset.save` never returns when an element fails (it waits forever in TF 2.21),
    so failing elements are skipped while writing and a shortfall raises a DataError:
    the first failing element is found by reading `ds` again, and for image files
    (`data_dir`) that file is decoded on its own, so the message names it and says
    what is wrong with it.
    """
    spec = get_spec(name)
    try:
        expected = batches.count_examples(ds)  # the cardinality; iterates when it is unknown
    except tf.errors.OpError:
        raise failing_element_error(spec, ds, split, data_dir) from None
    ds.ignore_errors().save(path)
    saved = batches.count_examples(tf.data.Dataset.load(path))
    if saved != expected:
        raise failing_element_error(spec, ds, split, data_dir)
    return saved


def failing_element_error(
    spec: DatasetSpec, ds: tf.data.Dataset, split: str, data_dir: str | None
) -> DataError:
    index, error = 0, None
    try:
        for _ in ds:
            index += 1
    except tf.errors.OpError as err:
        error = err
    where = f"--data_dir={data_dir}" if data_dir else f"TFDS {spec.tfds_name}"
    if error is None:
        return DataError(
            f"the {split} split of --dataset={spec.name} ({where}) yielded fewer elements while "
            f"being saved than it holds; the files changed while reading them: run again."
        )
    if data_dir:
        local = local_source(spec, data_dir)
        if local.kind == "files" and index < len(local.source[split][0]):
            path = local.source[split][0][index]
            check_image(spec, path)  # raises the DataError naming the file
            return DataError(f"Cannot load image {path}: {error_text(error)}. Fix or remove it.")
    return DataError(
        f"element {index} of the {split} split of --dataset={spec.name} ({where}) cannot be "
        f"read: {error_text(error)}. Repair or replace the data."
    )
