"""A Keras-style .npz (the file as --data_dir, or the only .npz in the directory) with keys
x_train, y_train, x_test, y_test."""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from robust_dae_tf.data.sources.base import LocalSource, Splits, from_arrays
from robust_dae_tf.data.specs import DatasetSpec
from robust_dae_tf.errors import DataError


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def detect(spec: DatasetSpec, path: pathlib.Path) -> LocalSource | None:
    """An .npz file, or a directory holding exactly one (a DataError for several)."""
    if path.is_file() and path.suffix == ".npz":
        return LocalSource("npz", "npz", path, f"{path.name}: x_train / x_test as stored")
    if not path.is_dir():
        return None
    npz_files = sorted(path.glob("*.npz"))
    if len(npz_files) > 1:
        raise DataError(
            f"--data_dir={path} holds several .npz files ({', '.join(p.name for p in npz_files)}); "
            f"pass the one to use as --data_dir=<file.npz>."
        )
    if npz_files:
        return LocalSource("npz", "npz", npz_files[0], f"{npz_files[0].name}: x_train / x_test as stored")
    return None


def _npz_images(images: np.ndarray, source: str) -> np.ndarray:
    """uint8 [N, H, W, C] from uint8/integer 0..255 or float [0, 1] arrays."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(
            f"{source}: images have shape {images.shape}; expected [N, H, W] or "
            f"[N, H, W, C]. Save the arrays in that layout."
        )
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        bad = int(np.count_nonzero(~np.isfinite(images)))
        raise DataError(
            f"{source}: the images contain NaN or Inf pixels ({bad} of {images.size}); "
            f"replace or drop those images before saving."
        )
    if np.issubdtype(images.dtype, np.floating) and np.all((images >= 0) & (images <= 1)):
        return np.round(images * 255.0).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer) and np.all((images >= 0) & (images <= 255)):
        return images.astype(np.uint8)
    raise DataError(
        f"{source}: images of dtype {images.dtype} must be uint8 0..255 or float "
        f"in [0, 1]; rescale them before saving."
    )


def read(spec: DatasetSpec, path: pathlib.Path) -> Splits:
    try:
        with open(path, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
    except OSError as err:
        raise DataError(f"Cannot read {path} ({err}); fix --data_dir.") from err
    if not is_zip:  # np.load would call it pickled data, or return the array of an .npy
        raise DataError(
            f"{path} is not a valid .npz (zip) file; save the arrays with numpy.savez "
            f"(keys {', '.join(NPZ_KEYS)}) or fix --data_dir."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise DataError(
                    f"{path} lacks keys {', '.join(missing)} (found: "
                    f"{', '.join(npz.files) or 'none'}); expected {', '.join(NPZ_KEYS)} "
                    f"like Keras' mnist.npz. Re-save it with these keys."
                )
            arrays = {key: npz[key] for key in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"Cannot read {path} as an .npz file ({err}); fix --data_dir.") from err
    splits = {}
    for split in ("train", "test"):
        source = f"{path}[x_{split}]"
        images = _npz_images(arrays[f"x_{split}"], source)
        labels = arrays[f"y_{split}"].reshape(-1)
        if len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{path}: y_{split} must hold one integer label per image "
                f"({len(images)}); found {labels.dtype} array of {len(labels)}."
            )
        splits[split] = from_arrays(spec, images, labels, source, f"{path}[y_{split}]")
    return splits
