"""User faults of the data, end to end through `bin/train.py`: image folders, .npz files,
SVHN's .mat files, CelebA's annotation files and the examples cache. Each ends in one clear
`error:` line naming the file (or a rebuilt cache), exit status 1, no traceback, no hang,
nothing half-written kept (shared helpers: tests/scripts.py).
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf.pipeline.training import ExampleGen
from tests.data.test_sources import (CELEB_A_ATTRIBUTE_FAULTS, CELEB_A_IDENTITY_FAULTS, SVHN_MAT_FAULTS,
                                     write_class_folders, write_png)
from tests.scripts import HANG_TIMEOUT, assert_one_error_line, run_script

# 3 classes x 2 training images (+ 1 test image each): 2 steps of 3 images.
TINY_MNIST = ["--dataset=mnist", "--noexport", "--epochs=1", "--config.train.batch_size=3",
              "--config.data.max_train_examples=6", "--config.model.hidden_units=(32,)",
              "--config.train.verbose=0", "--config.loss.weight_estimation_batches=5"]


def _folders_with_later_file(root, write_bad):
    write_class_folders(root, (28, 28, 1), np.random.default_rng(0))
    write_bad(root / "train" / "emu" / "9.png")  # sorted after the classes' first files
    return root


def _npz(root, x_train):
    x = np.zeros((3, 28, 28), np.float32)
    np.savez(root / "d.npz", x_train=x_train, y_train=[0, 1, 2], x_test=x, y_test=[0, 1, 2])
    return root / "d.npz"


def _nan_pixels():
    x = np.full((3, 28, 28), 0.5, np.float32)
    x[2, 5, 5] = np.nan
    return x


def _random_bytes_npz(root):
    (root / "d.npz").write_bytes(np.random.default_rng(0).bytes(500))
    return root / "d.npz"


def _empty_celeba_folder(root):
    (root / "img_align_celeba").mkdir()
    (root / "img_align_celeba" / "readme.txt").write_text("images go here")
    return root


DATA_CASES = {  # name: (writes the data under a directory and returns --data_dir, words of the error)
    "corrupt_image_after_first": (
        lambda root: _folders_with_later_file(root, lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 30)),
        ["train/emu/9.png", "cannot decode"]),
    "wrong_size_image_after_first": (
        lambda root: _folders_with_later_file(root, lambda p: write_png(p, np.zeros((20, 20, 1), np.uint8))),
        ["train/emu/9.png", "20x20x1", "28x28x1"]),
    "nan_pixels_npz": (lambda root: _npz(root, _nan_pixels()), ["d.npz[x_train]", "NaN or Inf"]),
    "not_a_zip_npz": (_random_bytes_npz, ["d.npz", "not a valid .npz (zip) file"]),
    # The folder layout the "no supported data" message names, but empty: say so, naming the folder.
    "empty_img_align_celeba": (_empty_celeba_folder, ["img_align_celeba holds no images", "readme.txt", ".jpg"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_ends_in_one_line_and_leaves_nothing(tmp_path, case):
    write, words = DATA_CASES[case]
    (tmp_path / "data").mkdir()
    data_dir = write(tmp_path / "data")
    workdir = tmp_path / "run"
    done = run_script("train.py", *TINY_MNIST, f"--data_dir={data_dir}", f"--workdir={workdir}",
                      timeout=HANG_TIMEOUT)
    last = assert_one_error_line(done, *words)
    assert "rescale" not in last and "pickled" not in last, last
    assert not (workdir / "examples").exists() and not glob.glob(str(workdir / "*.tmp-*"))


def _damage_examples(uri, damage):
    if damage == "truncated_shard":
        (shard,) = glob.glob(os.path.join(uri, "train", "*", "*.shard", "*.snapshot"))
        with open(shard, "r+b") as f:
            f.truncate(os.path.getsize(shard) // 3)
        return shard
    marker = os.path.join(uri, "artifact.json")
    with open(marker, "w") as f:
        f.write("{not json")
    return marker


def _cached_examples(tmp_path, damage):
    """A damaged examples cache of a tiny image folder in <tmp_path>/run/examples, as a
    killed or disk-full run leaves it; returns (data_dir, workdir, examples uri, damaged file)."""
    data_dir = tmp_path / "data"
    write_class_folders(data_dir, (32, 32, 1), np.random.default_rng(1))
    uri = str(tmp_path / "run" / "examples")
    ExampleGen("mnist", str(data_dir))({"examples": uri})
    return data_dir, tmp_path / "run", uri, _damage_examples(uri, damage)


@pytest.mark.parametrize("damage", ["truncated_shard", "corrupt_marker"])
def test_damaged_data_cache_is_rebuilt_on_rerun(tmp_path, damage):
    data_dir, workdir, uri, damaged = _cached_examples(tmp_path, damage)
    done = run_script("train.py", *TINY_MNIST, f"--data_dir={data_dir}", f"--workdir={workdir}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "damaged" in done.stderr and damaged in done.stderr, done.stderr[-3000:]
    assert "Trained 2 steps (6 training images)" in done.stdout, done.stdout
    # Never silently fewer images: the rebuilt cache holds every image (read, not the metadata).
    assert sum(1 for _ in tf.data.Dataset.load(os.path.join(uri, "train"))) == 6


@pytest.mark.parametrize("damage", ["truncated_shard", "corrupt_marker"])
def test_damaged_data_cache_without_its_source_is_refused(tmp_path, damage):
    data_dir, workdir, uri, damaged = _cached_examples(tmp_path, damage)
    os.rename(data_dir, tmp_path / "moved")
    done = run_script("train.py", *TINY_MNIST, f"--data_dir={data_dir}", f"--workdir={workdir}",
                      timeout=HANG_TIMEOUT)
    assert_one_error_line(done, "damaged", damaged, "cannot be rebuilt", str(data_dir))
    assert not (workdir / "trainer").exists()


# SVHN's official .mat files and CelebA's identity split (writers and words shared with the
# unit tests in tests/data/test_sources.py): one error line naming the file, no examples written.
SVHN_CELEB_A_CASES = {
    **{f"svhn_{name}": ("svhn", SVHN_MAT_FAULTS[name][0], [*SVHN_MAT_FAULTS[name][1], "test_32x32.mat"]) for name in (
        "no_X", "no_y", "X_wrong_shape", "X_float", "y_wrong_length", "label_0", "not_a_mat")},
    **{f"celeb_a_{name}": ("celeb_a", *CELEB_A_IDENTITY_FAULTS[name]) for name in (
        "image_not_listed", "malformed_line", "one_identity")},
    # An attribute file that misses an image or has a bad row: refused before any image is read.
    **{f"celeb_a_{name}": ("celeb_a", *CELEB_A_ATTRIBUTE_FAULTS[name]) for name in CELEB_A_ATTRIBUTE_FAULTS},
}


@pytest.mark.parametrize("case", sorted(SVHN_CELEB_A_CASES))
def test_bad_svhn_or_celeb_a_data_ends_in_one_line_and_leaves_nothing(tmp_path, case):
    dataset, write, words = SVHN_CELEB_A_CASES[case]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write(data_dir)
    workdir = tmp_path / "run"
    done = run_script("train.py", f"--dataset={dataset}", "--noexport", "--epochs=1", "--config.train.verbose=0",
                      f"--data_dir={data_dir}", f"--workdir={workdir}", timeout=HANG_TIMEOUT)
    assert_one_error_line(done, *words)
    assert not (workdir / "examples").exists() and not glob.glob(str(workdir / "*.tmp-*"))
