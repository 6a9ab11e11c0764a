"""Tests for robust_dae_tf.data: sources, preprocessing, errors and pipelines."""

import gzip
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from robust_dae_tf import data
from robust_dae_tf.errors import ConfigError, DataError

ROOT = str(pathlib.Path(__file__).resolve().parents[1])

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# ---------------------------------------------------------------- helpers


def write_idx(path: pathlib.Path, array: np.ndarray, magic: int | None = None) -> None:
    """Writes an unsigned-byte IDX file (gzipped when the name ends in .gz)."""
    magic = 0x0800 | array.ndim if magic is None else magic
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_mnist_idx(directory: pathlib.Path, rng: np.random.Generator, suffix: str = ".gz") -> dict:
    arrays = {
        "train_images": rng.integers(1, 256, (5, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, (5,), dtype=np.uint8),
        "test_images": rng.integers(1, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, (3,), dtype=np.uint8),
    }
    for key, array in arrays.items():
        write_idx(directory / (IDX_NAMES[key] + suffix), array)
    return arrays


def write_png(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


def assert_padded(padded: np.ndarray, original: np.ndarray) -> None:
    """32x32 images hold the 28x28 originals in the centre and zeros around them."""
    np.testing.assert_array_equal(padded[:, 2:30, 2:30, 0], original)
    border = padded.copy()
    border[:, 2:30, 2:30, :] = 0
    assert not border.any()


def check_split_format(ds: tf.data.Dataset, spec: data.DatasetSpec) -> None:
    assert ds.element_spec["image"].shape == spec.image_shape
    assert ds.element_spec["image"].dtype == tf.uint8
    assert ds.element_spec["label"].shape == ()
    assert ds.element_spec["label"].dtype == tf.int64


def batches_as_arrays(ds: tf.data.Dataset) -> list[np.ndarray]:
    return [batch.numpy() for batch in ds]


@pytest.fixture
def no_network(monkeypatch):
    """Makes any Python-level network connection fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def small_ds() -> tf.data.Dataset:
    """10 distinct 2x2x1 images (pixel value = index) with labels = index."""
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.arange(10, dtype=np.int64)
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


# ---------------------------------------------------------------- specs


def test_get_spec_resolves_aliases():
    assert data.get_spec("svhn") is data.DATASETS["svhn_cropped"]
    assert data.get_spec("CelebA").name == "celeb_a"
    assert data.get_spec("fmnist").tfds_name == "fashion_mnist"
    assert data.get_spec("digits").tfds_name is None
    assert data.get_spec("celeb_a").num_classes == 0


def test_unknown_dataset_is_config_error():
    with pytest.raises(ConfigError, match="--dataset") as info:
        data.get_spec("imagenet")
    assert "mnist" in str(info.value) and "svhn_cropped" in str(info.value)
    with pytest.raises(ConfigError):
        data.load_splits("cifar10")


# ---------------------------------------------------------------- TFDS (mocked)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "svhn_cropped", "celeb_a"])
def test_tfds_splits_match_spec(name):
    spec = data.get_spec(name)
    with tfds.testing.mock_data(num_examples=4):
        splits = data.load_splits(name)
        assert set(splits) == {"train", "test"}
        for ds in splits.values():
            check_split_format(ds, spec)
            images, labels = data.take_arrays(ds)
            assert images.shape == (4, *spec.image_shape)
            if spec.num_classes:
                assert ((labels >= 0) & (labels < spec.num_classes)).all()
            else:
                assert (labels == -1).all()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_tfds_mnist_padding_keeps_pixels(name):
    with tfds.testing.mock_data(num_examples=3):
        raw = next(iter(tfds.load(name, split="test")))
        images, labels = data.take_arrays(data.load_splits(name)["test"], 1)
    assert raw["image"].numpy().any()
    assert_padded(images, raw["image"].numpy()[None, ..., 0])
    assert labels[0] == raw["label"].numpy()


def test_tfds_svhn_is_unchanged():
    with tfds.testing.mock_data(num_examples=3):
        raw = next(iter(tfds.load("svhn_cropped", split="train")))
        images, _ = data.take_arrays(data.load_splits("svhn")["train"], 1)
    np.testing.assert_array_equal(images[0], raw["image"].numpy())


def test_tfds_celeb_a_centre_crop_and_resize_match_pil():
    with tfds.testing.mock_data(num_examples=3):
        raw = next(iter(tfds.load("celeb_a", split="test")))["image"].numpy()
        images, _ = data.take_arrays(data.load_splits("celeba")["test"], 1)
    assert raw.shape == (218, 178, 3)
    top, left = (218 - 140) // 2, (178 - 140) // 2
    crop = Image.fromarray(raw[top : top + 140, left : left + 140])
    expected = np.asarray(crop.resize((64, 64), Image.BILINEAR), dtype=np.int32)
    diff = np.abs(images[0].astype(np.int32) - expected)
    assert diff.max() <= 1 and diff.mean() < 0.5


def test_tfds_offline_without_data_is_data_error(tmp_path, no_network):
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        data.load_splits("mnist", tfds_data_dir=str(tmp_path), download=False)
    message = str(info.value)
    assert "--data_dir" in message and "--dataset=digits" in message
    assert str(tmp_path) in message and "train-images-idx3-ubyte.gz" in message
    assert time.monotonic() - start < 30


# ---------------------------------------------------------------- embedded digits


def test_digits_split_sizes_range_and_labels():
    spec = data.get_spec("digits")
    splits = data.load_splits("digits")
    assert data.count_examples(splits["train"]) == 1500
    assert data.count_examples(splits["test"]) == 297
    for ds in splits.values():
        check_split_format(ds, spec)
    images, labels = data.take_arrays(splits["train"])
    assert images.min() == 0 and images.max() == 255
    assert set(labels.tolist()) == set(range(10))
    assert not images[:, :2].any() and not images[:, :, -2:].any()


def test_digits_are_deterministic():
    first = data.take_arrays(data.load_splits("digits")["test"])
    second = data.take_arrays(data.load_splits("digits")["test"])
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_digits_reject_data_dir(tmp_path):
    with pytest.raises(ConfigError, match="--data_dir"):
        data.load_splits("digits", data_dir=str(tmp_path))


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip_is_pixel_exact(tmp_path, suffix):
    arrays = write_mnist_idx(tmp_path, np.random.default_rng(0), suffix)
    splits = data.load_splits("fashion_mnist", data_dir=str(tmp_path))
    for split in ("train", "test"):
        check_split_format(splits[split], data.get_spec("fashion_mnist"))
        images, labels = data.take_arrays(splits[split])
        assert_padded(images, arrays[f"{split}_images"])
        np.testing.assert_array_equal(labels, arrays[f"{split}_labels"])


def _corrupt_magic(directory):
    write_idx(directory / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8), magic=2049)
    return "train-images-idx3-ubyte.gz"


def _truncate_payload(directory):
    path = directory / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    return path.name


def _truncate_gzip_stream(directory):
    path = directory / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    return path.name


def _count_mismatch(directory):
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.zeros((2,), np.uint8))
    return "t10k-labels-idx1-ubyte.gz"


def _missing_file(directory):
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    return "t10k-labels-idx1-ubyte"


def _label_out_of_range(directory):
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.full((5,), 12, np.uint8))
    return "train-labels-idx1-ubyte.gz"


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_magic,
        _truncate_payload,
        _truncate_gzip_stream,
        _count_mismatch,
        _missing_file,
        _label_out_of_range,
    ],
)
def test_idx_errors_name_the_file(tmp_path, corrupt):
    write_mnist_idx(tmp_path, np.random.default_rng(1))
    file_name = corrupt(tmp_path)
    with pytest.raises(DataError) as info:
        data.load_splits("mnist", data_dir=str(tmp_path))
    assert file_name in str(info.value)


def test_idx_for_rgb_dataset_is_rejected(tmp_path):
    write_mnist_idx(tmp_path, np.random.default_rng(2))
    with pytest.raises(DataError, match="32x32x3"):
        data.load_splits("svhn", data_dir=str(tmp_path))


# ---------------------------------------------------------------- npz


def test_npz_round_trip_float_and_uint8(tmp_path):
    rng = np.random.default_rng(3)
    x_train = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    y_train, y_test = np.array([0, 1, 2, 9]), np.array([3, 4])
    x_test_float = x_test.astype(np.float32) / 255.0
    np.savez(
        tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test_float, y_test=y_test
    )
    for data_dir in (tmp_path, tmp_path / "mnist.npz"):
        splits = data.load_splits("mnist", data_dir=str(data_dir))
        images, labels = data.take_arrays(splits["train"])
        assert_padded(images, x_train)
        np.testing.assert_array_equal(labels, y_train)
        images, labels = data.take_arrays(splits["test"])
        assert_padded(images, x_test[..., 0])
        np.testing.assert_array_equal(labels, y_test)


def test_npz_missing_keys_lists_found_keys(tmp_path):
    path = tmp_path / "svhn.npz"
    np.savez(path, images=np.zeros((2, 32, 32, 3), np.uint8), y_train=np.zeros(2, np.int64))
    with pytest.raises(DataError) as info:
        data.load_splits("svhn", data_dir=str(path))
    message = str(info.value)
    assert "svhn.npz" in message and "x_train" in message and "images" in message


def test_npz_float_out_of_range_is_rejected(tmp_path):
    x = np.full((2, 32, 32, 3), 7.0, np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=[0, 1], x_test=x, y_test=[0, 1])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        data.load_splits("svhn", data_dir=str(tmp_path))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_npz_nan_or_inf_pixels_are_named_not_called_out_of_range(tmp_path, bad):
    x = np.full((2, 28, 28), 0.5, np.float32)
    x_test = x.copy()
    x_test[1, 3, 4] = bad
    np.savez(tmp_path / "d.npz", x_train=x, y_train=[0, 1], x_test=x_test, y_test=[0, 1])
    with pytest.raises(DataError) as info:
        data.load_splits("mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "d.npz[x_test]" in message and "NaN or Inf" in message and "rescale" not in message


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_bytes(np.random.default_rng(0).bytes(300)),
        lambda path: path.write_text("x_train,y_train\n1,2\n"),
        lambda path: np.save(open(path, "wb"), np.zeros((2, 28, 28), np.uint8)),  # an .npy
    ],
    ids=["random_bytes", "text", "npy"],
)
def test_npz_that_is_not_a_zip_file_says_so(tmp_path, write):
    write(tmp_path / "mnist.npz")
    with pytest.raises(DataError) as info:
        data.load_splits("mnist", data_dir=str(tmp_path / "mnist.npz"))
    message = str(info.value)
    assert "mnist.npz is not a valid .npz (zip) file" in message and "pickled" not in message


def test_npz_celeb_a_labels_become_minus_one(tmp_path):
    x = np.random.default_rng(8).integers(0, 256, (2, 218, 178, 3), dtype=np.uint8)
    np.savez(tmp_path / "faces.npz", x_train=x, y_train=[3, 4], x_test=x, y_test=[5, 6])
    images, labels = data.take_arrays(data.load_splits("celeb_a", data_dir=str(tmp_path))["test"])
    assert images.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(labels, [-1, -1])


# ---------------------------------------------------------------- image folders


def write_class_folders(root: pathlib.Path, shape: tuple, rng: np.random.Generator) -> dict:
    """train/<class>/*.png and test/<class>/*.png; returns {split: [(image, label)]}."""
    written = {"train": [], "test": []}
    for label, class_name in enumerate(["cat", "dog", "emu"]):
        for split, count in (("train", 2), ("test", 1)):
            for index in range(count):
                image = rng.integers(1, 256, shape, dtype=np.uint8)
                write_png(root / split / class_name / f"{index}.png", image)
                written[split].append((image, label))
    return written


def test_class_folders_round_trip(tmp_path):
    written = write_class_folders(tmp_path, (28, 28, 1), np.random.default_rng(4))
    splits = data.load_splits("mnist", data_dir=str(tmp_path))
    for split in ("train", "test"):
        check_split_format(splits[split], data.get_spec("mnist"))
        images, labels = data.take_arrays(splits[split])
        assert_padded(images, np.stack([image[..., 0] for image, _ in written[split]]))
        np.testing.assert_array_equal(labels, [label for _, label in written[split]])


def test_class_folders_svhn_round_trip(tmp_path):
    written = write_class_folders(tmp_path, (32, 32, 3), np.random.default_rng(5))
    images, labels = data.take_arrays(data.load_splits("svhn", data_dir=str(tmp_path))["test"])
    np.testing.assert_array_equal(images, np.stack([image for image, _ in written["test"]]))
    np.testing.assert_array_equal(labels, [0, 1, 2])


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        ("mnist", (28, 28, 3), "28x28x1"),
        ("svhn", (32, 32, 1), "32x32x3"),
        ("mnist", (20, 20, 1), "28x28x1"),
    ],
)
def test_class_folders_wrong_shape_is_data_error(tmp_path, name, shape, expected):
    write_class_folders(tmp_path, shape, np.random.default_rng(6))
    with pytest.raises(DataError) as info:
        data.load_splits(name, data_dir=str(tmp_path))
    message = str(info.value)
    assert expected in message and ".png" in message and "x".join(map(str, shape)) in message


def test_class_folders_later_bad_image_fails_naming_file(tmp_path):
    write_class_folders(tmp_path, (28, 28, 1), np.random.default_rng(7))
    write_png(tmp_path / "train" / "emu" / "9.png", np.zeros((28, 28, 3), np.uint8))
    train = data.load_splits("mnist", data_dir=str(tmp_path))["train"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="9.png"):
        data.take_arrays(train)


# Faults of a file after the first one of a split, which `load_splits` decodes lazily.
_LATER_FILE_FAULTS = {
    "corrupt": (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20), "Invalid PNG"),
    "truncated": (lambda path: path.write_bytes(_png_bytes((28, 28, 1))[:60]), "9.png"),
    "empty": (lambda path: path.write_bytes(b""), "9.png"),
    "wrong_size": (lambda path: write_png(path, np.zeros((20, 20, 1), np.uint8)), "20x20x1"),
    "wrong_channels": (lambda path: write_png(path, np.zeros((28, 28, 3), np.uint8)), "28x28x3"),
}


def _png_bytes(shape) -> bytes:
    return tf.io.encode_png(np.full(shape, 7, np.uint8)).numpy()


def save_split_faults_child(root: str) -> None:
    """Runs in a subprocess (a regression would hang in tf.data.Dataset.save): prints one
    line `<case> <split> OK <count>` or `<case> <split> DataError <message>` per case."""
    root = pathlib.Path(root)
    cases = {name: ("mnist", "train", root / name, root / name / "train" / "emu" / "9.png") for name in _LATER_FILE_FAULTS}
    # CelebA's flat folder: the test split is the last tenth of the 20 sorted files.
    cases["celeb_a_corrupt"] = ("celeb_a", "test", root / "celeb", root / "celeb" / "img_align_celeba" / "000020.png")
    cases["good"] = ("mnist", "train", root / "good", None)
    for name, (dataset, split, data_dir, bad) in cases.items():
        if dataset == "celeb_a":
            _write_celeb_a(data_dir / "img_align_celeba", 20)
        else:
            write_class_folders(data_dir, (28, 28, 1), np.random.default_rng(9))
        if bad is not None:
            _LATER_FILE_FAULTS[name.replace("celeb_a_", "")][0](bad)
        try:
            ds = data.load_splits(dataset, data_dir=str(data_dir))[split]
            count = data.save_split(ds, str(root / "saved" / name), dataset, split, str(data_dir))
            print(name, split, "OK", count, flush=True)
        except DataError as err:
            print(name, split, "DataError", str(err).replace("\n", " "), flush=True)


def test_save_split_names_a_later_bad_file_instead_of_hanging(tmp_path):
    """tf.data.Dataset.save waits forever when an element fails; save_split must fail
    at once naming the file (run in a subprocess so a regression cannot hang the suite)."""
    done = subprocess.run(
        [sys.executable, "-c", f"from tests.test_data import save_split_faults_child as f; f({str(tmp_path)!r})"],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert done.returncode == 0 and len(lines) == len(_LATER_FILE_FAULTS) + 2, done.stdout + done.stderr[-3000:]
    for name, (_, words) in _LATER_FILE_FAULTS.items():
        assert f"{name} train DataError" in lines[name] and "emu/9.png" in lines[name], lines[name]
        assert words in lines[name], lines[name]
    assert "DataError" in lines["celeb_a_corrupt"] and "img_align_celeba/000020.png" in lines["celeb_a_corrupt"]
    assert lines["good"] == "good train OK 6"
    np.testing.assert_array_equal(
        data.take_arrays(tf.data.Dataset.load(str(tmp_path / "saved" / "good")))[1], [0, 0, 1, 1, 2, 2]
    )


def _write_celeb_a(image_dir: pathlib.Path, count: int) -> list[str]:
    """Constant-valued 218x178x3 images (value 10 * index), so crops are identifiable."""
    names = [f"{index + 1:06d}.png" for index in range(count)]
    for index, name in enumerate(names):
        write_png(image_dir / name, np.full((218, 178, 3), 10 * index, np.uint8))
    return names


def _image_values(ds: tf.data.Dataset) -> list[int]:
    images, labels = data.take_arrays(ds)
    assert (labels == -1).all()
    assert all((image == image.flat[0]).all() for image in images)
    return [int(image.flat[0]) for image in images]


def test_flat_folder_split_by_partition_file(tmp_path):
    names = _write_celeb_a(tmp_path / "img_align_celeba", 6)
    partitions = [0, 2, 1, 0, 2, 0]
    (tmp_path / "list_eval_partition.txt").write_text(
        "".join(f"{name} {part}\n" for name, part in zip(names, partitions))
    )
    splits = data.load_splits("celeb_a", data_dir=str(tmp_path))
    check_split_format(splits["train"], data.get_spec("celeb_a"))
    assert _image_values(splits["train"]) == [0, 30, 50]
    assert _image_values(splits["test"]) == [10, 40]
    # The partition file also applies when data_dir is the image folder itself.
    splits = data.load_splits("celeb_a", data_dir=str(tmp_path / "img_align_celeba"))
    assert _image_values(splits["test"]) == [10, 40]


def test_flat_folder_without_partition_file_holds_out_last_tenth(tmp_path):
    _write_celeb_a(tmp_path, 10)
    splits = data.load_splits("celeb_a", data_dir=str(tmp_path))
    assert _image_values(splits["train"]) == list(range(0, 90, 10))
    assert _image_values(splits["test"]) == [90]


def test_flat_folder_for_labelled_dataset_is_rejected(tmp_path):
    for index in range(3):
        write_png(tmp_path / f"{index}.png", np.zeros((28, 28, 1), np.uint8))
    with pytest.raises(DataError, match="train/<class_name>"):
        data.load_splits("mnist", data_dir=str(tmp_path))


def test_flat_folder_too_small_for_celeb_a_is_rejected(tmp_path):
    for index in range(3):
        write_png(tmp_path / f"{index}.png", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError, match="140x140"):
        data.load_splits("celeb_a", data_dir=str(tmp_path))


def test_unrecognised_or_missing_data_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing useful")
    with pytest.raises(DataError) as info:
        data.load_splits("mnist", data_dir=str(tmp_path))
    assert "notes.txt" in str(info.value) and "train-images-idx3-ubyte.gz" in str(info.value)
    with pytest.raises(DataError, match="--data_dir"):
        data.load_splits("mnist", data_dir=str(tmp_path / "absent"))


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
