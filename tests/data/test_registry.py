"""A new local data format is one module plus one line in `sources.LOCAL_FORMATS`: this test
module plays the module of a toy format (`detect` and `read`, the interface of
`robust_dae_tf.data.sources.base`), and the unchanged `load_splits`, `describe_split` and
`save_split` read it, preprocess it and check its labels like any other format."""

import pathlib

import numpy as np
import pytest

from robust_dae_tf import data
from robust_dae_tf.data import sources
from robust_dae_tf.data.sources.base import LocalSource, from_arrays
from robust_dae_tf.errors import DataError

# -- the toy format's module: everything a new local format needs --------------------
# train.toy and test.toy: one image per line, "<label> <grey value>", a flat 28x28 image.


def detect(spec, path: pathlib.Path):
    if path.is_dir() and (path / "train.toy").is_file():
        return LocalSource("toy", "toy", path, "toy files: train.toy / test.toy as stored")
    return None


def read(spec, source: pathlib.Path):
    splits = {}
    for split in ("train", "test"):
        path = source / f"{split}.toy"
        rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
        images = np.ones((len(rows), 28, 28, 1), np.uint8) * rows[:, 1, None, None, None].astype(np.uint8)
        splits[split] = from_arrays(spec, images, rows[:, 0], str(path), str(path))
    return splits


# -- the tests -------------------------------------------------------------------------


@pytest.fixture
def toy_dir(tmp_path):
    (tmp_path / "train.toy").write_text("3 10\n7 20\n1 30\n")
    (tmp_path / "test.toy").write_text("9 40\n")
    return tmp_path


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(sources.LOCAL_FORMATS, "toy", __name__)  # the one registry line


def test_a_registered_toy_format_loads_through_the_unchanged_api(toy_dir, registered):
    splits = data.load_splits("mnist", data_dir=str(toy_dir))
    images, labels = data.take_arrays(splits["train"])
    assert images.shape == (3, 32, 32, 1)  # preprocessed like every mnist source: padded to 32x32
    assert labels.tolist() == [3, 7, 1]
    assert [int(image[16, 16, 0]) for image in images] == [10, 20, 30]
    assert int(images[0, 0, 0, 0]) == 0  # the padding
    test_images, test_labels = data.take_arrays(splits["test"])
    assert test_labels.tolist() == [9] and int(test_images[0, 16, 16, 0]) == 40
    assert data.describe_split("mnist", str(toy_dir)) == "toy files: train.toy / test.toy as stored"


def test_the_toy_format_gets_the_shared_checks(toy_dir, registered):
    (toy_dir / "test.toy").write_text("12 40\n")  # mnist has classes 0..9
    with pytest.raises(DataError, match=r"test.toy: labels range over 12..12"):
        data.load_splits("mnist", data_dir=str(toy_dir))
    with pytest.raises(DataError, match="train.toy: images have shape 28x28x1.*expects 32x32x3"):
        data.load_splits("svhn", data_dir=str(toy_dir))


def test_save_split_writes_the_toy_format(toy_dir, registered, tmp_path_factory):
    splits = data.load_splits("mnist", data_dir=str(toy_dir))
    out = str(tmp_path_factory.mktemp("saved") / "train")
    assert data.save_split(splits["train"], out, "mnist", "train", data_dir=str(toy_dir)) == 3


def test_without_its_registry_line_the_format_is_not_found(toy_dir):
    assert "toy" not in sources.LOCAL_FORMATS
    with pytest.raises(DataError, match="holds no supported data"):
        data.load_splits("mnist", data_dir=str(toy_dir))


def test_the_registry_lists_every_local_format_in_detection_order():
    assert list(sources.LOCAL_FORMATS) == ["idx", "svhn_mat", "npz", "image_folders", "celeba"]
    for name in sources.LOCAL_FORMATS:
        module = sources.local_format(name)
        assert callable(module.detect) and callable(module.read)
