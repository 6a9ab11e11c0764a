"""SVHN's official cropped-digit files train_32x32.mat and test_32x32.mat (MATLAB v5, read
with scipy.io.loadmat); extra_32x32.mat is not used."""

from __future__ import annotations

import pathlib

import numpy as np

from robust_dae_tf.data.sources.base import LocalSource, Splits, from_arrays
from robust_dae_tf.data.specs import DatasetSpec
from robust_dae_tf.errors import DataError


_SVHN_MAT_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _has_svhn_mat(directory: pathlib.Path) -> bool:
    return any((directory / name).is_file() for name in _SVHN_MAT_FILES.values())


def detect(spec: DatasetSpec, path: pathlib.Path) -> LocalSource | None:
    """A directory holding either .mat file; a DataError for a .mat file as --data_dir."""
    if path.is_file() and path.suffix == ".mat":
        raise DataError(
            f"--data_dir={path} is a .mat file; pass the directory holding SVHN's "
            f"train_32x32.mat and test_32x32.mat."
        )
    if path.is_dir() and _has_svhn_mat(path):
        return LocalSource(
            "svhn_mat", "mat", path, "SVHN's train_32x32.mat / test_32x32.mat (extra_32x32.mat unused)"
        )
    return None


def _read_svhn_mat(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 32, 32, 3], int64 labels 0..9 [N]) of an official SVHN
    cropped-digits file: X uint8 [32, 32, 3, N], y [N, 1] with 1..10 (10 = digit 0)."""
    from scipy import io as scipy_io  # pylint: disable=import-outside-toplevel

    fix = (
        "expected SVHN's official cropped-digits file (MATLAB v5 .mat with X uint8 "
        "[32, 32, 3, N] and y [N, 1] holding 1..10); re-download it from "
        "http://ufldl.stanford.edu/housenumbers/"
    )
    try:
        contents = scipy_io.loadmat(str(path), variable_names=("X", "y"))
    except Exception as err:  # pylint: disable=broad-except  # loadmat raises ValueError,
        # MatReadError, OSError, IndexError, NotImplementedError (v7.3), ... on bad files.
        cause = (str(err).splitlines() or [""])[0][:120] or type(err).__name__
        raise DataError(f"Cannot read {path} as a MATLAB .mat file ({cause}); {fix}.") from err
    missing = [key for key in ("X", "y") if key not in contents]
    if missing:
        raise DataError(f"{path} lacks the variable(s) {', '.join(missing)}; {fix}.")
    images, labels = contents["X"], contents["y"]
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
        found = "x".join(str(d) for d in images.shape)
        raise DataError(f"{path}: X is a {images.dtype} array of shape {found}; {fix}.")
    count = images.shape[3]
    if count == 0:
        raise DataError(f"{path}: X holds no images; {fix}.")
    if labels.ndim > 2 or (labels.ndim == 2 and 1 not in labels.shape) or labels.size != count:
        found = "x".join(str(d) for d in labels.shape)
        raise DataError(
            f"{path}: y has shape {found}, but X holds {count} images: one label per image "
            f"is needed; {fix}."
        )
    labels = labels.reshape(-1)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise DataError(f"{path}: y is a {labels.dtype} array, not numbers; {fix}.")
    bad = labels[(labels < 1) | (labels > 10) | (labels != np.round(labels))]
    if bad.size:
        raise DataError(
            f"{path}: y holds {bad[0]} ({bad.size} bad of {labels.size}), but SVHN labels are "
            f"the integers 1..10 (10 = digit 0); {fix}."
        )
    return np.transpose(images, (3, 0, 1, 2)), labels.astype(np.int64) % 10


def read(spec: DatasetSpec, directory: pathlib.Path) -> Splits:
    missing = [name for name in _SVHN_MAT_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"--data_dir={directory} holds SVHN .mat files but lacks {', '.join(missing)}; put "
            f"both train_32x32.mat and test_32x32.mat there (extra_32x32.mat is not used)."
        )
    splits = {}
    for split, name in _SVHN_MAT_FILES.items():
        path = directory / name
        images, labels = _read_svhn_mat(path)
        splits[split] = from_arrays(spec, images, labels, f"{path}[X]", f"{path}[y]")
    return splits
