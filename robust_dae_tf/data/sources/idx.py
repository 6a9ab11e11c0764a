"""MNIST's 4 IDX files (optionally .gz) in --data_dir: train-images-idx3-ubyte,
train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte."""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from robust_dae_tf.data.sources.base import LocalSource, Splits, from_arrays
from robust_dae_tf.data.specs import DatasetSpec
from robust_dae_tf.errors import DataError


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(
            f"Cannot read IDX file {path} ({err}); it is truncated or not a valid "
            f"(gzipped) IDX file. Re-download it or fix --data_dir."
        ) from err


def _parse_idx(path: pathlib.Path, magic: int) -> np.ndarray:
    """Parses an unsigned-byte IDX file (images: magic 2051, labels: 2049)."""
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header_len = 4 * (1 + ndim)
    fix = "Re-download the file or fix --data_dir."
    if len(data) < header_len:
        raise DataError(f"IDX file {path} is truncated: {len(data)} bytes, no full header. {fix}")
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise DataError(
            f"IDX file {path} has magic number {found_magic}, expected {magic} "
            f"({'images' if magic == _IDX_IMAGES_MAGIC else 'labels'}). {fix}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_len + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"IDX file {path} is truncated or corrupt: header says shape {dims} "
            f"({expected} bytes), file has {len(data)} bytes. {fix}"
        )
    return np.frombuffer(data, np.uint8, offset=header_len).reshape(dims)


def _idx_path(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _has_idx(directory: pathlib.Path) -> bool:
    stems = [stem for pair in _IDX_FILES.values() for stem in pair]
    return any(_idx_path(directory, stem) for stem in stems)


def detect(spec: DatasetSpec, path: pathlib.Path) -> LocalSource | None:
    """A directory holding any of the IDX files."""
    if path.is_dir() and _has_idx(path):
        return LocalSource("idx", "idx", path, "IDX files: train-* / t10k-* as stored")
    return None


def read(spec: DatasetSpec, directory: pathlib.Path) -> Splits:
    stems = [stem for pair in _IDX_FILES.values() for stem in pair]
    missing = [f"{stem}(.gz)" for stem in stems if _idx_path(directory, stem) is None]
    if missing:
        raise DataError(
            f"--data_dir={directory} holds MNIST-format IDX files but lacks "
            f"{', '.join(missing)}; put all 4 files (train/t10k images and labels) there."
        )
    splits = {}
    for split, (image_stem, label_stem) in _IDX_FILES.items():
        image_path, label_path = _idx_path(directory, image_stem), _idx_path(directory, label_stem)
        images = _parse_idx(image_path, _IDX_IMAGES_MAGIC)
        labels = _parse_idx(label_path, _IDX_LABELS_MAGIC)
        if len(labels) != len(images):
            raise DataError(
                f"IDX file {label_path} has {len(labels)} labels but {image_path} has "
                f"{len(images)} images; the counts must match. Re-download the files."
            )
        splits[split] = from_arrays(
            spec, images[..., None], labels, str(image_path), str(label_path)
        )
    return splits
