"""Image folders train/<class>/* and test/<class>/* (label = index of the class name in the
sorted training class names), decoded lazily inside tf.data."""

from __future__ import annotations

import pathlib

from robust_dae_tf.data.sources.base import FileSplits, LocalSource, image_files
from robust_dae_tf.data.sources.base import read_files as read  # noqa: F401  (this format's `read`)
from robust_dae_tf.data.specs import DatasetSpec
from robust_dae_tf.errors import DataError


def detect(spec: DatasetSpec, path: pathlib.Path) -> LocalSource | None:
    """A directory with train/ and test/ sub-folders."""
    if path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir():
        files = _class_folder_files(spec, path)
        return LocalSource("image_folders", "files", files, "image folders train/ / test/ as stored")
    return None


def _class_files(split_dir: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    return {d.name: image_files(d) for d in sorted(split_dir.iterdir()) if d.is_dir()}


def _class_folder_files(spec: DatasetSpec, directory: pathlib.Path) -> FileSplits:
    """{split: (image paths, labels)} of train/<class>/* and test/<class>/*."""
    per_split = {split: _class_files(directory / split) for split in ("train", "test")}
    class_names = sorted(per_split["train"])
    unknown = sorted(set(per_split["test"]) - set(class_names))
    if unknown:
        raise DataError(
            f"{directory / 'test'} has class folders {', '.join(unknown)} that "
            f"{directory / 'train'} lacks; both splits must use the same class names."
        )
    if spec.num_classes and len(class_names) > spec.num_classes:
        raise DataError(
            f"{directory / 'train'} has {len(class_names)} class folders, but "
            f"--dataset={spec.name} has {spec.num_classes} classes; choose the matching "
            f"--dataset or merge the folders."
        )
    splits = {}
    for split, classes in per_split.items():
        paths, labels = [], []
        for name, files in classes.items():
            label = class_names.index(name) if spec.num_classes else -1
            paths += files
            labels += [label] * len(files)
        if not paths:
            raise DataError(
                f"{directory / split} has no images in class sub-folders; expected "
                f"{directory / split}/<class_name>/*.png (or .jpg)."
            )
        splits[split] = (paths, labels)
    return splits
