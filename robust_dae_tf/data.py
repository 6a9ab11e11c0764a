"""Datasets and tf.data pipelines.

Conventions
-----------
* `load_splits` returns ``{"train": ds, "test": ds}``. Every element is a dict
  ``{"image": tf.uint8 [H, W, C] with values 0..255, "label": tf.int64 scalar}``,
  already preprocessed to ``get_spec(name).image_shape``. Datasets without class
  labels (celeb_a) use label -1.
* `to_float` turns uint8 images into float32 in [0, 1] (x / 255).
  `training_batches` and `evaluation_batches` yield float images.

Preprocessing (one map function per dataset, applied to every source)
------------------------------------------------------------------
* mnist, fashion_mnist, digits: 28x28x1 is zero-padded by 2 pixels on every side
  to 32x32x1; the original pixels are unchanged. The reference implementation
  brought these sets to 32 px because the paper's MS-SSIM metric needs images of
  at least 32 px. Images that are already 32x32x1 pass unchanged.
* digits (the embedded default, no download): scikit-learn's bundled 8x8 digits
  (values 0..16) are scaled to 0..255, bilinearly resized to 28x28 and then
  padded like MNIST. Split: a fixed permutation (seed 0) of the 1797 images;
  the last 297 are the test split, the first 1500 the training split.
* svhn_cropped: 32x32x3, unchanged.
* celeb_a: centre crop 140x140, bilinear antialiased resize to 64x64, rounded
  back to uint8. Any 3-channel image of at least 140x140 is accepted (TFDS and
  img_align_celeba images are 218x178).
Any other image shape is rejected with a `DataError` naming expected vs found
(image files past the first one of a split: see below).

Sources of `load_splits`
------------------------
1. ``name == "digits"``: the embedded scikit-learn digits.
2. ``data_dir`` given: local files, detected in this order:
   a. the 4 MNIST IDX files (optionally .gz) in the directory;
   b. SVHN's official cropped-digit files ``train_32x32.mat`` and
      ``test_32x32.mat`` (MATLAB v5, read with scipy.io.loadmat: X uint8
      [32, 32, 3, N], y [N, 1] with labels 1..10 where 10 means digit 0, mapped
      to 0 like TFDS). ``extra_32x32.mat`` is not used (the TFDS path uses only
      "train" and "test" too). Missing X or y, another X shape or dtype, a y of
      another length or with labels outside 1..10, and a file that is not a v5
      .mat are DataErrors naming the file;
   c. a Keras-style .npz (the file, or the only .npz in the directory) with
      keys x_train, y_train, x_test, y_test;
   d. image folders ``train/<class>/*`` and ``test/<class>/*`` (label = index of
      the class name in the sorted training class names);
   e. a flat folder of images (directly in data_dir or in ``img_align_celeba/``),
      only for datasets without class labels (celeb_a). CelebA's annotation files
      are looked for in the image folder and its parents up to data_dir's parent.
      The split, first rule that applies (`describe_split` states which one was
      used; `load_splits` logs it):
      - ``list_eval_partition.txt`` (or .csv): partition 0 = train, 2 = test, and
        1 (validation) is ignored, like the TFDS path that uses only "train" and
        "test";
      - else ``identity_CelebA.txt``: a split by identity, so test identities
        are unseen in training. Of the identities of the images present, the
        max(1, round(10%)) (halves up) whose SHA-256 hex digest of the decimal
        identity number sorts first are the test identities; all their images are
        the test split. Deterministic, independent of file order and library
        versions. Needs an identity for every image and at least 2 identities;
      - else (neither file) the last 10% of the sorted file names are the test
        split (a warning says so: identities may then appear in both splits).
   `read_celeba_attributes` / `celeba_attributes` read list_attr_celeba.txt
   (40 attributes, -1/+1); `split_files` gives the image files of each split in
   the order of the split's elements, to align attributes with them, and
   `celeba_split_attributes` gives the aligned rows (ExampleGen stores them).
   Image files are decoded lazily inside tf.data. The first image of each split
   is checked eagerly; a later image with a different shape fails the pipeline
   with a TensorFlow assertion naming the file. `save_split` (ExampleGen's
   writer) turns any later file that cannot be decoded or has the wrong shape
   into a DataError naming it.
3. otherwise TFDS (``tfds.load``); a dataset that is neither prepared nor
   downloadable raises a `DataError` explaining the alternatives.

Training order
--------------
The shuffle order of epoch e depends only on (seed, e), not on
`tf.random.set_seed` or on the epoch a run started at, so a resumed run sees
exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import logging
import dataclasses
import gzip
import hashlib
import pathlib
import re
import zipfile
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from robust_dae_tf.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A supported dataset.

    Attributes:
      name: canonical name (a key of `DATASETS`).
      image_shape: (H, W, C) of the images after preprocessing.
      num_classes: number of class labels; 0 when there are none (celeb_a).
      tfds_name: TFDS name, or None for the embedded set.
    """

    name: str
    image_shape: tuple
    num_classes: int
    tfds_name: str | None


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", (32, 32, 1), 10, "mnist"),
    "fashion_mnist": DatasetSpec("fashion_mnist", (32, 32, 1), 10, "fashion_mnist"),
    "svhn_cropped": DatasetSpec("svhn_cropped", (32, 32, 3), 10, "svhn_cropped"),
    "celeb_a": DatasetSpec("celeb_a", (64, 64, 3), 0, "celeb_a"),
    "digits": DatasetSpec("digits", (32, 32, 1), 10, None),
}
ALIASES = {"svhn": "svhn_cropped", "celeba": "celeb_a", "fmnist": "fashion_mnist"}

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

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")
_IDENTITY_FILES = ("identity_CelebA.txt",)
_ATTRIBUTE_FILES = ("list_attr_celeba.txt",)
_SVHN_MAT_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
_DIGITS_SIZE, _DIGITS_TEST_SIZE = 1797, 297  # scikit-learn's digits
_DIGITS_SEED = 0

_Splits = dict[str, tf.data.Dataset]
_FileSplits = dict[str, tuple[list[pathlib.Path], list[int]]]  # {split: (image files, labels)}


def get_spec(name: str) -> DatasetSpec:
    """Returns the spec of a dataset name or alias (case-insensitive)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        aliases = ", ".join(f"{a}={c}" for a, c in sorted(ALIASES.items()))
        raise ConfigError(
            f"Unknown dataset {name!r} for --dataset; expected one of "
            f"{', '.join(sorted(DATASETS))} (aliases: {aliases})."
        )
    return DATASETS[key]


# --------------------------------------------------------------------------
# Preprocessing


def _shape_ok(spec: DatasetSpec, shape: Sequence) -> bool | tf.Tensor:
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


def _expected_shape_text(spec: DatasetSpec) -> str:
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


def _check_shape(spec: DatasetSpec, shape: Sequence, source: str, fix: str) -> None:
    """Raises DataError when a fully known source image shape does not fit."""
    if any(dim is None for dim in shape) or bool(_shape_ok(spec, shape)):
        return
    found = "x".join(str(d) for d in shape)
    raise DataError(
        f"{source}: images have shape {found}, but --dataset={spec.name} expects "
        f"{_expected_shape_text(spec)}. {fix}"
    )


def _preprocess(spec: DatasetSpec, image: tf.Tensor) -> tf.Tensor:
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


def _finish(spec: DatasetSpec, ds: tf.data.Dataset) -> tf.data.Dataset:
    """Maps {"image": raw uint8, "label": int64} elements to the spec."""
    return ds.map(
        lambda ex: {"image": _preprocess(spec, ex["image"]), "label": ex["label"]},
        num_parallel_calls=_AUTOTUNE,
    )


# --------------------------------------------------------------------------
# In-memory sources: embedded digits, IDX, npz


def _from_arrays(
    spec: DatasetSpec,
    images: np.ndarray,
    labels: np.ndarray,
    image_source: str,
    label_source: str,
) -> tf.data.Dataset:
    """A dataset from uint8 [N, H, W, C] images and integer labels [N]."""
    _check_shape(
        spec,
        images.shape[1:],
        image_source,
        "Pass files holding that dataset, or choose the matching --dataset.",
    )
    labels = _spec_labels(spec, labels, label_source)
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
    return _finish(spec, ds)


def _spec_labels(spec: DatasetSpec, labels: np.ndarray, source: str) -> np.ndarray:
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


def _load_digits(spec: DatasetSpec) -> _Splits:
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    digits = load_digits()
    scaled = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)
    resized = tf.image.resize(scaled, [28, 28], method="bilinear").numpy()
    images = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    order = np.random.default_rng(_DIGITS_SEED).permutation(len(images))
    train, test = order[:-_DIGITS_TEST_SIZE], order[-_DIGITS_TEST_SIZE:]
    source = "embedded scikit-learn digits"
    return {
        "train": _from_arrays(spec, images[train], digits.target[train], source, source),
        "test": _from_arrays(spec, images[test], digits.target[test], source, source),
    }


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


def _load_idx(spec: DatasetSpec, directory: pathlib.Path) -> _Splits:
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
        splits[split] = _from_arrays(
            spec, images[..., None], labels, str(image_path), str(label_path)
        )
    return splits


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


def _load_npz(spec: DatasetSpec, path: pathlib.Path) -> _Splits:
    try:
        with open(path, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
    except OSError as err:
        raise DataError(f"Cannot read {path} ({err}); fix --data_dir.") from err
    if not is_zip:  # np.load would call it pickled data, or return the array of an .npy
        raise DataError(
            f"{path} is not a valid .npz (zip) file; save the arrays with numpy.savez "
            f"(keys {', '.join(_NPZ_KEYS)}) or fix --data_dir."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in _NPZ_KEYS if key not in npz.files]
            if missing:
                raise DataError(
                    f"{path} lacks keys {', '.join(missing)} (found: "
                    f"{', '.join(npz.files) or 'none'}); expected {', '.join(_NPZ_KEYS)} "
                    f"like Keras' mnist.npz. Re-save it with these keys."
                )
            arrays = {key: npz[key] for key in _NPZ_KEYS}
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
        splits[split] = _from_arrays(spec, images, labels, source, f"{path}[y_{split}]")
    return splits


# --------------------------------------------------------------------------
# SVHN's official .mat files


def _has_svhn_mat(directory: pathlib.Path) -> bool:
    return any((directory / name).is_file() for name in _SVHN_MAT_FILES.values())


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


def _load_svhn_mat(spec: DatasetSpec, directory: pathlib.Path) -> _Splits:
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
        splits[split] = _from_arrays(spec, images, labels, f"{path}[X]", f"{path}[y]")
    return splits


# --------------------------------------------------------------------------
# Image folders


def _image_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
    )


def _decode(path: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(
        tf.io.read_file(path), channels=0, dtype=tf.uint8, expand_animations=False
    )


def _check_image(spec: DatasetSpec, path: pathlib.Path) -> None:
    """Decodes one image file eagerly; raises a DataError naming it when it cannot be
    read or decoded or has a shape the dataset cannot use."""
    try:
        shape = tuple(_decode(tf.constant(str(path))).shape)
    except tf.errors.OpError as err:
        raise DataError(f"Cannot decode image {path}: {_error_text(err)}. Fix or remove it.") from err
    _check_shape(
        spec,
        shape,
        f"Image {path}",
        "Convert the images (size and channel count) or choose the matching --dataset.",
    )


def _from_files(
    spec: DatasetSpec, paths: list[pathlib.Path], labels: list[int]
) -> tf.data.Dataset:
    """Lazily decoded image files; every image's shape is asserted in-graph (the first
    file is checked eagerly, `save_split` names any later file that fails)."""
    _check_image(spec, paths[0])
    expected = _expected_shape_text(spec)

    def load(path: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
        image = _decode(path)
        shape = tf.shape(image)
        check = tf.debugging.Assert(
            _shape_ok(spec, shape),
            [f"--dataset={spec.name} expects images of {expected}; file", path, "has shape", shape],
        )
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        return {"image": image, "label": label}

    ds = tf.data.Dataset.from_tensor_slices(
        ([str(p) for p in paths], np.asarray(labels, np.int64))
    )
    return _finish(spec, ds.map(load, num_parallel_calls=_AUTOTUNE))


def _class_files(split_dir: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    return {d.name: _image_files(d) for d in sorted(split_dir.iterdir()) if d.is_dir()}


def _class_folder_files(spec: DatasetSpec, directory: pathlib.Path) -> _FileSplits:
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


def _flat_image_dir(directory: pathlib.Path) -> pathlib.Path:
    """The folder holding the images: data_dir or nested img_align_celeba/."""
    while (directory / "img_align_celeba").is_dir():
        directory = directory / "img_align_celeba"
    return directory


def _find_annotation(
    image_dir: pathlib.Path, data_dir: pathlib.Path, names: Sequence[str]
) -> pathlib.Path | None:
    """The first of `names` in the image folder or one of its parents up to data_dir's parent."""
    folders = [image_dir, *image_dir.parents]
    for folder in folders[: folders.index(data_dir) + 2]:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _annotation_lines(path: pathlib.Path, fix: str) -> list[str]:
    """The lines of a text annotation file (LF or CRLF); DataError when it is unreadable."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read {path} as a text file ({err}); {fix}") from err


def _read_partition(path: pathlib.Path) -> dict[str, int]:
    """CelebA's file -> partition map (0 train, 1 validation, 2 test)."""
    fix = "use CelebA's original list_eval_partition file or remove it."
    partition = {}
    for number, line in enumerate(_annotation_lines(path, fix), start=1):
        fields = line.replace(",", " ").split()
        if not fields or (number == 1 and fields[-1] == "partition"):
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(
                f"{path} line {number}: expected '<file name> <0|1|2>', found {line!r}; {fix}"
            )
        partition[fields[0]] = int(fields[1])
    return partition


def _read_identities(path: pathlib.Path) -> dict[str, int]:
    """CelebA's file -> identity map (identity_CelebA.txt: `<file> <identity number>` lines)."""
    fix = "use CelebA's original identity_CelebA.txt or remove it."
    identities = {}
    for number, line in enumerate(_annotation_lines(path, fix), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(
                f"{path} line {number}: expected '<image file> <identity number>', found "
                f"{line.strip()[:100]!r}; {fix}"
            )
        identities[fields[0]] = int(fields[1])
    return identities


def _test_identities(identities: Sequence[int]) -> set[int]:
    """The held-out identities: max(1, round(10%)) of them (halves round up), those whose
    SHA-256 digest of the decimal identity number sorts first. Depends on nothing but the
    set of identities (no RNG, file order or library version)."""
    ranked = sorted(set(identities), key=lambda i: hashlib.sha256(str(i).encode()).hexdigest())
    return set(ranked[: max(1, (len(ranked) + 5) // 10)])


def _split_flat(
    image_dir: pathlib.Path, files: list[pathlib.Path], data_dir: pathlib.Path
) -> tuple[dict[str, list[pathlib.Path]], str]:
    """({"train": files, "test": files}, description of how they were split)."""
    partition_file = _find_annotation(image_dir, data_dir, _PARTITION_FILES)
    if partition_file is not None:
        partition = _read_partition(partition_file)
        unlisted = [f for f in files if f.name not in partition]
        if unlisted:
            raise DataError(
                f"{unlisted[0]} (and {len(unlisted) - 1} more) is not listed in "
                f"{partition_file}; remove the extra images or the partition file."
            )
        splits = {
            "train": [f for f in files if partition[f.name] == 0],
            "test": [f for f in files if partition[f.name] == 2],
        }
        for split, paths in splits.items():
            if not paths:
                raise DataError(
                    f"No {split} images in {image_dir} according to {partition_file}; "
                    f"check that the partition file belongs to these images."
                )
        return splits, (
            f"official partition ({partition_file.name}): {len(splits['train'])} train (0) / "
            f"{len(splits['test'])} test (2) images, validation (1) unused"
        )
    identity_file = _find_annotation(image_dir, data_dir, _IDENTITY_FILES)
    if identity_file is not None:
        identities = _read_identities(identity_file)
        unlisted = [f for f in files if f.name not in identities]
        if unlisted:
            raise DataError(
                f"{identity_file} lists no identity for {unlisted[0]} (nor for "
                f"{len(unlisted) - 1} more of the {len(files)} images); use the identity file "
                f"of these images or remove it."
            )
        people = {identities[f.name] for f in files}
        if len(people) < 2:
            raise DataError(
                f"The {len(files)} images in {image_dir} show {len(people)} identity according "
                f"to {identity_file}; an identity split needs at least 2: add images of other "
                f"identities."
            )
        test_people = _test_identities(sorted(people))
        splits = {
            "train": [f for f in files if identities[f.name] not in test_people],
            "test": [f for f in files if identities[f.name] in test_people],
        }
        return splits, (
            f"identity split: {len(people) - len(test_people)} train / {len(test_people)} test "
            f"identities ({identity_file.name}), {len(splits['train'])} / {len(splits['test'])} "
            f"images"
        )
    num_test = max(1, len(files) // 10)
    splits = {"train": files[:-num_test], "test": files[-num_test:]}
    return splits, (
        f"last 10% of the sorted file names as test (no {_PARTITION_FILES[0]} or "
        f"{_IDENTITY_FILES[0]} found; identities may overlap), {len(files) - num_test} / "
        f"{num_test} images"
    )


def _flat_folder_files(spec: DatasetSpec, data_dir: pathlib.Path) -> tuple[_FileSplits, str]:
    """({split: (image paths, labels -1)}, split description) of a flat image folder."""
    image_dir = _flat_image_dir(data_dir)
    if spec.num_classes:
        raise DataError(
            f"--data_dir={image_dir} is a flat image folder without labels, but "
            f"--dataset={spec.name} has {spec.num_classes} classes; arrange the images as "
            f"train/<class_name>/* and test/<class_name>/*."
        )
    files = _image_files(image_dir)
    if len(files) < 2:
        raise DataError(
            f"--data_dir={image_dir} holds {len(files)} image(s); at least 2 are needed "
            f"to make train and test splits."
        )
    splits, description = _split_flat(image_dir, files, data_dir)
    return {split: (paths, [-1] * len(paths)) for split, paths in splits.items()}, description


# --------------------------------------------------------------------------
# CelebA attributes


@dataclasses.dataclass(frozen=True)
class CelebAAttributes:
    """CelebA's binary attributes (list_attr_celeba.txt).

    Attributes:
      path: the file they were read from.
      names: the attribute names in file order (40 in CelebA: 5_o_Clock_Shadow ... Young).
      files: the image file names, in file order.
      values: int8 [len(files), len(names)] of -1 / +1.
    """

    path: pathlib.Path
    names: tuple[str, ...]
    files: tuple[str, ...]
    values: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """{image file name: int8 [len(names)]}."""
        return dict(zip(self.files, self.values))

    def for_files(self, files: Sequence[str | pathlib.Path]) -> np.ndarray:
        """int8 [len(files), len(names)] rows for image files (names or paths; only the
        base name is looked up), e.g. a split of `split_files`, in that order."""
        row = {name: index for index, name in enumerate(self.files)}
        names = [pathlib.Path(f).name for f in files]
        missing = [name for name in names if name not in row]
        if missing:
            raise DataError(
                f"{self.path} has no attributes for {missing[0]} (nor for {len(missing) - 1} "
                f"more of the {len(names)} images); use the attribute file of these images."
            )
        return self.values[[row[name] for name in names]].reshape(len(names), len(self.names))


def read_celeba_attributes(path: str | pathlib.Path) -> CelebAAttributes:
    """Reads CelebA's list_attr_celeba.txt: a count line, a line of attribute names, then
    one row `<file> v_1 ... v_n` per image with values -1 or 1 (LF or CRLF line ends).
    Raises a DataError naming the file (and line) when it does not have this format."""
    path = pathlib.Path(path)
    fix = "use CelebA's original list_attr_celeba.txt (count line, names line, -1/1 rows)."
    lines = [line for line in _annotation_lines(path, fix) if line.strip()]
    if len(lines) < 2 or not lines[0].strip().isdigit():
        found = repr(lines[0].strip()[:60]) if lines else "an empty file"
        raise DataError(f"{path} line 1: expected the number of images, found {found}; {fix}")
    count, names = int(lines[0]), tuple(lines[1].split())
    rows = lines[2:]
    if len(rows) != count:
        raise DataError(
            f"{path}: line 1 announces {count} images but {len(rows)} rows follow (truncated "
            f"or edited); {fix}"
        )
    files, values = [], []
    for number, row in enumerate(rows, start=3):
        fields = row.split()
        if len(fields) != len(names) + 1 or not all(v in ("1", "-1") for v in fields[1:]):
            raise DataError(
                f"{path} line {number}: expected '<image file>' and {len(names)} values -1 or 1, "
                f"found {row.strip()[:100]!r}; {fix}"
            )
        files.append(fields[0])
        values.append(fields[1:])
    if not names or len(set(files)) != len(files):
        problem = "no attribute names on line 2" if not names else "an image listed twice"
        raise DataError(f"{path} has {problem}; {fix}")
    array = np.asarray(values, dtype=np.int8).reshape(len(files), len(names))
    return CelebAAttributes(path, names, tuple(files), array)


def celeba_attributes(data_dir: str) -> CelebAAttributes:
    """The attributes of a local CelebA folder: list_attr_celeba.txt found like the
    partition file (the image folder or one of its parents up to data_dir's parent)."""
    root = pathlib.Path(data_dir).expanduser().resolve()
    image_dir = _flat_image_dir(root) if root.is_dir() else root
    path = _find_annotation(image_dir, root, _ATTRIBUTE_FILES) if root.is_dir() else None
    if path is None:
        raise DataError(
            f"No {_ATTRIBUTE_FILES[0]} in {image_dir} or its parents up to {root.parent}; "
            f"put CelebA's attribute file next to img_align_celeba/."
        )
    return read_celeba_attributes(path)


def celeba_attribute_file(name: str, data_dir: str | None) -> pathlib.Path | None:
    """The list_attr_celeba.txt that belongs to a local CelebA image folder (found like the
    partition file), or None: no such file, not CelebA, not local image files."""
    if get_spec(name).name != "celeb_a" or not data_dir:
        return None
    root = pathlib.Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        return None
    return _find_annotation(_flat_image_dir(root), root, _ATTRIBUTE_FILES)


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
    local = _local_source(get_spec(name), data_dir)
    if local.kind != "files":
        return None
    attributes = read_celeba_attributes(path)
    return attributes, {split: attributes.for_files(paths) for split, (paths, _) in local.source.items()}


# --------------------------------------------------------------------------
# Source detection


def _no_data_error(directory: pathlib.Path) -> DataError:
    entries = sorted(p.name for p in directory.iterdir())[:10]
    return DataError(
        f"--data_dir={directory} holds no supported data (found: "
        f"{', '.join(entries) or 'nothing'}). Expected one of: the 4 MNIST IDX files "
        f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz; SVHN's train_32x32.mat and test_32x32.mat; one .npz with "
        f"keys {', '.join(_NPZ_KEYS)}; image folders train/<class_name>/*.png and "
        f"test/<class_name>/*.png; or a flat image folder such as CelebA's img_align_celeba/."
    )


@dataclasses.dataclass(frozen=True)
class _LocalSource:
    """Local data: kind "npz" (source: the file), "idx" or "mat" (the directory) or
    "files" ({split: (image paths, labels)}), and how train/test were made."""

    kind: str
    source: pathlib.Path | _FileSplits
    split: str


def _local_source(spec: DatasetSpec, data_dir: str) -> _LocalSource:
    """Detects the kind of local data (see the module docstring for the order)."""
    path = pathlib.Path(data_dir).expanduser().resolve()
    if path.is_file() and path.suffix == ".npz":
        return _LocalSource("npz", path, f"{path.name}: x_train / x_test as stored")
    if path.is_file() and path.suffix == ".mat":
        raise DataError(
            f"--data_dir={data_dir} is a .mat file; pass the directory holding SVHN's "
            f"train_32x32.mat and test_32x32.mat."
        )
    if not path.is_dir():
        raise DataError(
            f"--data_dir={data_dir} is neither a directory nor an .npz file; "
            f"point it at the local copy of the {spec.name} data."
        )
    if _has_idx(path):
        return _LocalSource("idx", path, "IDX files: train-* / t10k-* as stored")
    if _has_svhn_mat(path):
        return _LocalSource(
            "mat", path, "SVHN's train_32x32.mat / test_32x32.mat (extra_32x32.mat unused)"
        )
    npz_files = sorted(path.glob("*.npz"))
    if len(npz_files) > 1:
        raise DataError(
            f"--data_dir={path} holds several .npz files ({', '.join(p.name for p in npz_files)}); "
            f"pass the one to use as --data_dir=<file.npz>."
        )
    if npz_files:
        return _LocalSource("npz", npz_files[0], f"{npz_files[0].name}: x_train / x_test as stored")
    if (path / "train").is_dir() and (path / "test").is_dir():
        files = _class_folder_files(spec, path)
        return _LocalSource("files", files, "image folders train/ / test/ as stored")
    image_dir = _flat_image_dir(path)
    if _image_files(image_dir):
        return _LocalSource("files", *_flat_folder_files(spec, path))
    if image_dir != path:  # the expected layout, without its images
        found = sorted(p.name for p in image_dir.iterdir())[:5]
        raise DataError(
            f"{image_dir} holds no images (found: {', '.join(found) or 'nothing'}); put the dataset's image files "
            f"({', '.join(_IMAGE_SUFFIXES)}) in it, e.g. by unpacking CelebA's img_align_celeba.zip into {path}."
        )
    raise _no_data_error(path)


def _load_local(spec: DatasetSpec, data_dir: str) -> _Splits:
    local = _local_source(spec, data_dir)
    log = logger.warning if local.split.startswith("last 10%") else logger.info
    log("%s from --data_dir=%s, split: %s", spec.name, data_dir, local.split)
    if local.kind == "npz":
        return _load_npz(spec, local.source)
    if local.kind == "idx":
        return _load_idx(spec, local.source)
    if local.kind == "mat":
        return _load_svhn_mat(spec, local.source)
    return {split: _from_files(spec, *files) for split, files in local.source.items()}


def split_files(name: str, data_dir: str) -> dict[str, list[pathlib.Path]]:
    """{"train": image files, "test": image files} of a local image-folder source, in the
    order of `load_splits`' elements (e.g. to align CelebA attributes with a split)."""
    local = _local_source(get_spec(name), data_dir)
    if local.kind != "files":
        raise DataError(f"--data_dir={data_dir} holds {local.kind} arrays, not image files.")
    return {split: paths for split, (paths, _) in local.source.items()}


def describe_split(name: str, data_dir: str | None = None) -> str:
    """How `load_splits(name, data_dir=...)` makes its train and test splits, for the
    run record, e.g. "identity split: 835 train / 93 test identities (identity_CelebA.txt),
    4175 / 465 images". Raises the DataError `load_splits` would for bad local data."""
    spec = get_spec(name)
    if spec.tfds_name is None:
        return (
            f"embedded digits: fixed permutation (seed {_DIGITS_SEED}), "
            f"{_DIGITS_SIZE - _DIGITS_TEST_SIZE} / {_DIGITS_TEST_SIZE} images"
        )
    if data_dir:
        return _local_source(spec, data_dir).split
    return f"TFDS {spec.tfds_name}: 'train' / 'test' splits"


# --------------------------------------------------------------------------
# TFDS

_MNIST_FORMAT_HINT = (
    "a directory with the 4 MNIST IDX files train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, "
    "or a Keras-style .npz with x_train, y_train, x_test, y_test"
)
_LOCAL_FORMAT_HINTS = {
    "mnist": _MNIST_FORMAT_HINT,
    "fashion_mnist": _MNIST_FORMAT_HINT,
    "svhn_cropped": "a directory with SVHN's train_32x32.mat and test_32x32.mat, an .npz "
    "with x_train, y_train, x_test, y_test (32x32x3 uint8), or image folders "
    "train/<class>/*.png and test/<class>/*.png",
    "celeb_a": "CelebA's img_align_celeba/ folder of JPEGs, with list_eval_partition.txt "
    "or identity_CelebA.txt next to it",
}


def _load_tfds(spec: DatasetSpec, tfds_data_dir: str | None, download: bool) -> _Splits:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    if download and not tfds.builder(spec.tfds_name, data_dir=tfds_data_dir).is_prepared():
        logger.warning(
            "%s is not prepared in the TFDS data dir; TFDS will now download it. Without network "
            "access this fails only after TFDS's retries (minutes): pass --data_dir with local files "
            "(%s) or --config.data.download=False to fail at once.",
            spec.tfds_name,
            _LOCAL_FORMAT_HINTS[spec.name],
        )
    try:
        train, test = tfds.load(
            spec.tfds_name, split=["train", "test"], data_dir=tfds_data_dir, download=download
        )
    except Exception as err:  # TFDS raises many types (AssertionError, OSError, ...).
        where = tfds_data_dir or tfds.core.constants.DATA_DIR
        cause = str(err).splitlines()[0] if str(err) else ""
        raise DataError(
            f"Dataset {spec.tfds_name} is not in the TFDS data dir {where} and could not be "
            f"downloaded ({type(err).__name__}: {cause}). Either run once with network "
            f"access (TFDS then downloads and prepares it), or pass --data_dir pointing to "
            f"local files ({_LOCAL_FORMAT_HINTS[spec.name]}), or use --dataset=digits for "
            f"the embedded data."
        ) from err
    splits = {}
    for split, ds in (("train", train), ("test", test)):
        _check_shape(
            spec,
            tuple(ds.element_spec["image"].shape),
            f"TFDS {spec.tfds_name}",
            "This TFDS version changed the dataset; pass --data_dir with local files instead.",
        )
        splits[split] = _finish(spec, ds.map(_tfds_example, num_parallel_calls=_AUTOTUNE))
    return splits


def _tfds_example(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    label = example.get("label", tf.constant(-1, tf.int64))
    return {"image": example["image"], "label": tf.cast(label, tf.int64)}


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
        return _load_digits(spec)
    if data_dir:
        return _load_local(spec, data_dir)
    return _load_tfds(spec, tfds_data_dir or None, download)


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
        expected = count_examples(ds)  # the cardinality; iterates when it is unknown
    except tf.errors.OpError:
        raise failing_element_error(spec, ds, split, data_dir) from None
    ds.ignore_errors().save(path)
    saved = count_examples(tf.data.Dataset.load(path))
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
        local = _local_source(spec, data_dir)
        if local.kind == "files" and index < len(local.source[split][0]):
            path = local.source[split][0][index]
            _check_image(spec, path)  # raises the DataError naming the file
            return DataError(f"Cannot load image {path}: {_error_text(error)}. Fix or remove it.")
    return DataError(
        f"element {index} of the {split} split of --dataset={spec.name} ({where}) cannot be "
        f"read: {_error_text(error)}. Repair or replace the data."
    )


def _error_text(error: tf.errors.OpError) -> str:
    """The cause of a TensorFlow error without its function, iterator and op decorations."""
    text = (error.message or type(error).__name__).strip().splitlines()[0]
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"^Error in user-defined function .*?Iterator::\S+: ", "", text)
    return re.sub(r"\s*\[Op:.*$", "", text).rstrip(" .")


# --------------------------------------------------------------------------
# Pipelines


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
    images = ds.map(lambda ex: ex["image"], num_parallel_calls=_AUTOTUNE)
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
    batches = batches.skip(skip_batches).map(to_float, num_parallel_calls=_AUTOTUNE)
    return batches.prefetch(_AUTOTUNE)


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
        .map(lambda ex: (to_float(ex["image"]), ex["label"]), num_parallel_calls=_AUTOTUNE)
        .prefetch(_AUTOTUNE)
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
