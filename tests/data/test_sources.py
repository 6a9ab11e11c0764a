"""Tests for robust_dae_tf.data: specs, sources (local formats, TFDS, digits), preprocessing, errors and
save_split; the pipelines are in test_batches.py."""

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

ROOT = str(pathlib.Path(__file__).resolve().parents[2])

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


@pytest.fixture
def no_network(monkeypatch):
    """Makes any Python-level network connection fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


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
        [sys.executable, "-c", f"from tests.data.test_sources import save_split_faults_child as f; f({str(tmp_path)!r})"],
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


# ---------------------------------------------------------------- SVHN .mat files


def write_svhn_mat(path: pathlib.Path, count: int, rng: np.random.Generator, **overrides) -> dict:
    """An SVHN cropped-digits .mat like the official ones: X uint8 [32, 32, 3, N],
    y uint8 [N, 1] in 1..10. `overrides` replace (value) or drop (None) X / y."""
    from scipy import io as scipy_io

    arrays = {
        "X": rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8),
        "y": (np.arange(count, dtype=np.uint8) % 10 + 1)[:, None],
    }
    arrays.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(path, {key: value for key, value in arrays.items() if value is not None})
    return arrays


def test_svhn_mat_round_trip_maps_label_10_to_digit_0(tmp_path):
    rng = np.random.default_rng(10)
    written = {split: write_svhn_mat(tmp_path / f"{split}_32x32.mat", count, rng)
               for split, count in (("train", 12), ("test", 5))}
    write_svhn_mat(tmp_path / "extra_32x32.mat", 3, rng)  # not used
    splits = data.load_splits("svhn", data_dir=str(tmp_path))
    for split in ("train", "test"):
        check_split_format(splits[split], data.get_spec("svhn"))
        images, labels = data.take_arrays(splits[split])
        np.testing.assert_array_equal(images, np.transpose(written[split]["X"], (3, 0, 1, 2)))
        np.testing.assert_array_equal(labels, written[split]["y"][:, 0] % 10)
    assert data.take_arrays(splits["train"])[1].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert "train_32x32.mat" in data.describe_split("svhn", str(tmp_path))


def test_svhn_mat_accepts_matlab_double_labels_in_a_row(tmp_path):
    rng = np.random.default_rng(11)
    for split in ("train", "test"):
        write_svhn_mat(tmp_path / f"{split}_32x32.mat", 3, rng, y=np.array([[10.0, 1.0, 5.0]]))
    assert data.take_arrays(data.load_splits("svhn", data_dir=str(tmp_path))["test"])[1].tolist() == [0, 1, 5]


def _svhn_bad_test_file(tmp_path, **overrides):
    write_svhn_mat(tmp_path / "train_32x32.mat", 4, np.random.default_rng(12))
    write_svhn_mat(tmp_path / "test_32x32.mat", 4, np.random.default_rng(13), **overrides)


SVHN_MAT_FAULTS = {  # name: (writes the test file's fault, words of the error)
    "no_X": (lambda d: _svhn_bad_test_file(d, X=None), ["lacks the variable(s) X"]),
    "no_y": (lambda d: _svhn_bad_test_file(d, y=None), ["lacks the variable(s) y"]),
    "X_wrong_shape": (lambda d: _svhn_bad_test_file(d, X=np.zeros((28, 28, 1, 4), np.uint8)),
                      ["X is a uint8 array of shape 28x28x1x4", "[32, 32, 3, N]"]),
    "X_images_first": (lambda d: _svhn_bad_test_file(d, X=np.zeros((4, 32, 32, 3), np.uint8)),
                       ["shape 4x32x32x3"]),
    "X_float": (lambda d: _svhn_bad_test_file(d, X=np.zeros((32, 32, 3, 4), np.float64)),
                ["X is a float64 array", "uint8"]),
    "y_wrong_length": (lambda d: _svhn_bad_test_file(d, y=np.ones((3, 1), np.uint8)),
                       ["y has shape 3x1", "X holds 4 images"]),
    "label_0": (lambda d: _svhn_bad_test_file(d, y=np.array([[0], [1], [2], [3]], np.uint8)),
                ["y holds 0", "1..10", "10 = digit 0"]),
    "label_11": (lambda d: _svhn_bad_test_file(d, y=np.array([[1], [11], [2], [3]], np.uint8)),
                 ["y holds 11"]),
    "label_fraction": (lambda d: _svhn_bad_test_file(d, y=np.array([[1.5], [1], [2], [3]])),
                       ["y holds 1.5"]),
    "not_a_mat": (lambda d: (_svhn_bad_test_file(d), (d / "test_32x32.mat").write_text("<html>moved</html>")),
                  ["Cannot read", "as a MATLAB .mat file"]),
    "random_bytes": (lambda d: (_svhn_bad_test_file(d),
                                (d / "test_32x32.mat").write_bytes(np.random.default_rng(0).bytes(400))),
                     ["Cannot read", "as a MATLAB .mat file"]),
    "truncated": (lambda d: (_svhn_bad_test_file(d), (d / "test_32x32.mat").write_bytes(
                      (d / "train_32x32.mat").read_bytes()[:2000])), ["Cannot read", "as a MATLAB .mat file"]),
}


@pytest.mark.parametrize("fault", sorted(SVHN_MAT_FAULTS))
def test_svhn_mat_faults_name_the_file(tmp_path, fault):
    write, words = SVHN_MAT_FAULTS[fault]
    write(tmp_path)
    with pytest.raises(DataError) as info:
        data.load_splits("svhn", data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "test_32x32.mat") in message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


def test_svhn_mat_missing_test_file_or_mat_file_as_data_dir(tmp_path):
    write_svhn_mat(tmp_path / "train_32x32.mat", 2, np.random.default_rng(14))
    with pytest.raises(DataError, match="lacks test_32x32.mat"):
        data.load_splits("svhn", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="pass the directory holding SVHN's train_32x32.mat"):
        data.load_splits("svhn", data_dir=str(tmp_path / "train_32x32.mat"))


def test_svhn_mat_for_grey_dataset_is_rejected(tmp_path):
    for split in ("train", "test"):
        write_svhn_mat(tmp_path / f"{split}_32x32.mat", 2, np.random.default_rng(15))
    with pytest.raises(DataError, match=r"train_32x32.mat\[X\]: images have shape 32x32x3.*28x28x1"):
        data.load_splits("mnist", data_dir=str(tmp_path))


# ---------------------------------------------------------------- CelebA identity split


def write_celeb_a_identities(root: pathlib.Path, people: list[int], per_person: int = 2) -> dict[str, int]:
    """img_align_celeba/ with `per_person` tiny-but-valid JPEG images of each identity
    (file names interleave identities) and identity_CelebA.txt (CRLF) listing them plus
    images that are not there; returns {file name: identity}."""
    image = tf.io.encode_jpeg(np.full((218, 178, 3), 128, np.uint8)).numpy()
    (root / "img_align_celeba").mkdir(parents=True)
    identities = {}
    for index in range(per_person * len(people)):
        name = f"{index + 1:06d}.jpg"
        (root / "img_align_celeba" / name).write_bytes(image)
        identities[name] = people[index % len(people)]
    listed = {**identities, "999999.jpg": 77}  # a full identity file lists absent images too
    (root / "identity_CelebA.txt").write_bytes(
        "".join(f"{name} {person}\r\n" for name, person in listed.items()).encode()
    )
    return identities


def test_celeb_a_identity_split_holds_out_whole_identities(tmp_path):
    people = list(range(1, 31))
    identities = write_celeb_a_identities(tmp_path, people)
    files = data.split_files("celeb_a", str(tmp_path))
    train = {identities[f.name] for f in files["train"]}
    test = {identities[f.name] for f in files["test"]}
    assert len(test) == 3 and len(train) == 27 and not train & test
    assert len(files["test"]) == 6 and len(files["train"]) == 54
    assert files["test"] == sorted(files["test"]) and files["train"] == sorted(files["train"])
    # The rule of the docstring: the 10% of identities whose SHA-256 digest sorts first.
    import hashlib

    assert test == set(sorted(people, key=lambda p: hashlib.sha256(str(p).encode()).hexdigest())[:3])
    assert data.describe_split("celeb_a", str(tmp_path)) == (
        "identity split: 27 train / 3 test identities (identity_CelebA.txt), 54 / 6 images")
    splits = data.load_splits("celeb_a", data_dir=str(tmp_path / "img_align_celeba"))
    assert data.count_examples(splits["test"]) == 6 and data.count_examples(splits["train"]) == 54


def test_celeb_a_identity_split_is_deterministic_and_ignores_file_names(tmp_path):
    write_celeb_a_identities(tmp_path / "a", [5, 900, 17, 4, 3000])
    write_celeb_a_identities(tmp_path / "b", [3000, 4, 17, 900, 5], per_person=3)
    test_people = []
    for root in ("a", "b"):
        lines = (tmp_path / root / "identity_CelebA.txt").read_text().split()
        identities = dict(zip(lines[::2], map(int, lines[1::2])))
        test_people.append({identities[f.name] for f in data.split_files("celeb_a", str(tmp_path / root))["test"]})
    assert len(test_people[0]) == 1 and test_people[0] == test_people[1]


def test_celeb_a_partition_file_wins_over_identity_file(tmp_path):
    identities = write_celeb_a_identities(tmp_path, [1, 2, 3])
    names = sorted(identities)
    (tmp_path / "list_eval_partition.txt").write_text(
        "".join(f"{name} {0 if i < 4 else 2}\n" for i, name in enumerate(names)))
    files = data.split_files("celeb_a", str(tmp_path))
    assert [f.name for f in files["test"]] == names[4:]
    assert data.describe_split("celeb_a", str(tmp_path)).startswith("official partition (list_eval_partition.txt)")


def test_celeb_a_without_annotations_says_it_holds_out_the_last_tenth(tmp_path, caplog):
    _write_celeb_a(tmp_path, 10)
    assert "last 10% of the sorted file names" in data.describe_split("celeb_a", str(tmp_path))
    with caplog.at_level("WARNING", logger="robust_dae_tf.data"):
        data.load_splits("celeb_a", data_dir=str(tmp_path))
    assert "identities may overlap" in caplog.text


def _identity_file_without(root):
    identities = write_celeb_a_identities(root, [1, 2, 3])
    del identities["000004.jpg"]
    (root / "identity_CelebA.txt").write_text("".join(f"{n} {p}\n" for n, p in identities.items()))


CELEB_A_IDENTITY_FAULTS = {  # name: (writes the folder, words of the error)
    "image_not_listed": (_identity_file_without,
                         ["identity_CelebA.txt lists no identity for", "000004.jpg", "of the 6 images"]),
    "malformed_line": (lambda root: (write_celeb_a_identities(root, [1, 2]), (root / "identity_CelebA.txt").write_text(
        "000001.jpg 1\n000002.jpg two\n")), ["identity_CelebA.txt line 2", "<identity number>", "'000002.jpg two'"]),
    "binary_file": (lambda root: (write_celeb_a_identities(root, [1, 2]), (root / "identity_CelebA.txt").write_bytes(
        b"\xff\xfe\x00garbage")), ["Cannot read", "identity_CelebA.txt"]),
    "one_identity": (lambda root: write_celeb_a_identities(root, [7], per_person=4),
                     ["show 1 identity", "identity_CelebA.txt", "at least 2"]),
}


@pytest.mark.parametrize("fault", sorted(CELEB_A_IDENTITY_FAULTS))
def test_celeb_a_identity_faults_are_one_clear_error(tmp_path, fault):
    write, words = CELEB_A_IDENTITY_FAULTS[fault]
    write(tmp_path)
    for call in (lambda: data.load_splits("celeb_a", data_dir=str(tmp_path)),
                 lambda: data.describe_split("celeb_a", str(tmp_path))):
        with pytest.raises(DataError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message, message
        for word in words:
            assert word in message, (word, message)


def test_describe_split_of_other_sources(tmp_path):
    assert data.describe_split("digits") == "embedded digits: fixed permutation (seed 0), 1500 / 297 images"
    assert data.describe_split("celeba") == "TFDS celeb_a: 'train' / 'test' splits"
    write_mnist_idx(tmp_path, np.random.default_rng(16))
    assert data.describe_split("mnist", str(tmp_path)).startswith("IDX files")


# ---------------------------------------------------------------- CelebA attributes


ATTRIBUTE_NAMES = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive"] + [f"A{i}" for i in range(36)] + ["Young"]


def write_attributes(path: pathlib.Path, rows: dict[str, list[int]], names=ATTRIBUTE_NAMES,
                     count=None, newline="\r\n") -> None:
    """list_attr_celeba.txt in the official layout (count, names with a trailing space,
    right-aligned values)."""
    lines = [str(len(rows) if count is None else count), " ".join(names) + " "]
    lines += [f"{name} " + " ".join(f"{v:2d}" for v in values) for name, values in rows.items()]
    path.write_bytes((newline.join(lines) + newline).encode())


def test_read_celeba_attributes_official_format(tmp_path):
    rng = np.random.default_rng(17)
    rows = {f"{i:06d}.jpg": rng.choice([-1, 1], 40).tolist() for i in range(1, 6)}
    write_attributes(tmp_path / "list_attr_celeba.txt", rows)
    attributes = data.read_celeba_attributes(tmp_path / "list_attr_celeba.txt")
    assert attributes.names == tuple(ATTRIBUTE_NAMES) and len(attributes.names) == 40
    assert attributes.values.dtype == np.int8 and attributes.values.shape == (5, 40)
    mapping = attributes.as_dict()
    for name, values in rows.items():
        np.testing.assert_array_equal(mapping[name], values)
    aligned = attributes.for_files([tmp_path / "000004.jpg", "000002.jpg"])
    np.testing.assert_array_equal(aligned, [rows["000004.jpg"], rows["000002.jpg"]])
    with pytest.raises(DataError, match=r"list_attr_celeba.txt has no attributes for 000009.jpg"):
        attributes.for_files(["000001.jpg", "000009.jpg"])


def test_celeba_attributes_align_with_a_split(tmp_path):
    identities = write_celeb_a_identities(tmp_path, list(range(1, 11)))
    rows = {name: [1 if person % 2 else -1] * 40 for name, person in identities.items()}
    write_attributes(tmp_path / "list_attr_celeba.txt", rows)
    test_files = data.split_files("celeb_a", str(tmp_path))["test"]
    aligned = data.celeba_attributes(str(tmp_path / "img_align_celeba")).for_files(test_files)
    assert aligned.shape == (len(test_files), 40)
    np.testing.assert_array_equal(aligned[:, 0], [1 if identities[f.name] % 2 else -1 for f in test_files])
    with pytest.raises(DataError, match="No list_attr_celeba.txt"):
        data.celeba_attributes(str(tmp_path / "img_align_celeba" / "000001.jpg"))


ROW = "000001.jpg " + " ".join(["-1"] * 40)
ATTRIBUTE_FAULTS = {  # name: (file text, words of the error)
    "no_count_line": ("\n".join([" ".join(ATTRIBUTE_NAMES), ROW]), ["line 1", "number of images"]),
    "empty": ("", ["line 1", "an empty file"]),
    "truncated": ("\n".join(["3", " ".join(ATTRIBUTE_NAMES), ROW]), ["announces 3 images but 1 rows"]),
    "value_0": ("\n".join(["1", " ".join(ATTRIBUTE_NAMES), ROW[:-2] + " 0"]), ["line 3", "-1 or 1"]),
    "short_row": ("\n".join(["1", " ".join(ATTRIBUTE_NAMES), ROW[:-3]]), ["line 3", "40 values"]),
    "duplicate": ("\n".join(["2", " ".join(ATTRIBUTE_NAMES), ROW, ROW]), ["listed twice"]),
}


@pytest.mark.parametrize("fault", sorted(ATTRIBUTE_FAULTS))
def test_read_celeba_attributes_bad_format_names_the_file(tmp_path, fault):
    text, words = ATTRIBUTE_FAULTS[fault]
    (tmp_path / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(DataError) as info:
        data.read_celeba_attributes(tmp_path / "list_attr_celeba.txt")
    message = str(info.value)
    assert str(tmp_path / "list_attr_celeba.txt") in message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


def _attributes_for(root, names, drop=None, bad_row=None):
    rows = {name: [1] * 40 for name in names if name != drop}
    write_attributes(root / "list_attr_celeba.txt", rows)
    if bad_row is not None:
        lines = (root / "list_attr_celeba.txt").read_bytes().split(b"\r\n")
        lines[2 + bad_row] = lines[2 + bad_row].replace(b" 1", b" 2", 1)
        (root / "list_attr_celeba.txt").write_bytes(b"\r\n".join(lines))


CELEB_A_ATTRIBUTE_FAULTS = {  # name: (writes the folder, words of the error)
    "attributes_miss_an_image": (lambda root: _attributes_for(root, write_celeb_a_identities(root, [1, 2, 3]),
                                                              drop="000005.jpg"),
                                 ["list_attr_celeba.txt has no attributes for", "000005.jpg"]),
    "attributes_malformed_row": (lambda root: _attributes_for(root, write_celeb_a_identities(root, [1, 2, 3]),
                                                              bad_row=1),
                                 ["list_attr_celeba.txt line 4", "-1 or 1", "000002.jpg"]),
}


@pytest.mark.parametrize("fault", sorted(CELEB_A_ATTRIBUTE_FAULTS))
def test_celeb_a_split_attribute_faults_are_one_clear_error(tmp_path, fault):
    write, words = CELEB_A_ATTRIBUTE_FAULTS[fault]
    write(tmp_path)
    with pytest.raises(DataError) as info:
        data.celeba_split_attributes("celeb_a", str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "list_attr_celeba.txt") in message, message
    for word in words:
        assert word in message, (word, message)


def test_celeb_a_split_attributes_follow_the_split_order(tmp_path):
    identities = write_celeb_a_identities(tmp_path, list(range(1, 11)))
    rows = {name: np.random.default_rng(int(name[:6])).choice([-1, 1], 40).tolist() for name in identities}
    write_attributes(tmp_path / "list_attr_celeba.txt", rows)
    table, split_rows = data.celeba_split_attributes("celeb_a", str(tmp_path / "img_align_celeba"))
    assert table.names == tuple(ATTRIBUTE_NAMES)
    for split, files in data.split_files("celeb_a", str(tmp_path)).items():
        np.testing.assert_array_equal(split_rows[split], [rows[f.name] for f in files])
    assert data.celeba_split_attributes("celeb_a", str(tmp_path / "none")) is None
    (tmp_path / "list_attr_celeba.txt").unlink()
    assert data.celeba_split_attributes("celeb_a", str(tmp_path)) is None
