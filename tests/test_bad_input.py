"""Every fault a user can cause, end to end through `bin/`: one clear `error:` line (or
a correct result), exit status 1, no traceback, no hang, nothing half-written kept.

One table per area (training, data, evaluation, loading a model); each row is a
fault the reliability review found, with the words the message must contain.
Unit-level checks of the same faults live in the test file of the module that owns them.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args, timeout=300, cwd=ROOT, env=None):
    """Runs `bin/<script>` with the test interpreter; returns the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", script), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
    )


def assert_one_error_line(done, *words):
    """Exit status 1, no traceback, and a last stderr line `error: ...` containing every word."""
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), last
    for word in words:
        assert word.lower() in last.lower(), (word, last)
    return last


# --- training: run ownership, checkpoints, resume -------------------------------------


# --- data: image folders, .npz files, the examples cache ------------------------------

import glob  # noqa: E402  (this section's imports, kept here to keep the sections apart)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from robust_dae_tf import components  # noqa: E402
from tests.test_data import write_class_folders, write_png  # noqa: E402

# 3 classes x 2 training images (+ 1 test image each): 2 steps of 3 images.
TINY_MNIST = ["--dataset=mnist", "--noexport", "--epochs=1", "--config.train.batch_size=3",
              "--config.data.max_train_examples=6", "--config.model.hidden_units=(32,)",
              "--config.train.verbose=0", "--config.loss.weight_estimation_batches=5"]
# A failing element used to make tf.data.Dataset.save wait forever: these runs get a short timeout.
HANG_TIMEOUT = 90


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


DATA_CASES = {  # name: (writes the data under a directory and returns --data_dir, words of the error)
    "corrupt_image_after_first": (
        lambda root: _folders_with_later_file(root, lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 30)),
        ["train/emu/9.png", "cannot decode"]),
    "wrong_size_image_after_first": (
        lambda root: _folders_with_later_file(root, lambda p: write_png(p, np.zeros((20, 20, 1), np.uint8))),
        ["train/emu/9.png", "20x20x1", "28x28x1"]),
    "nan_pixels_npz": (lambda root: _npz(root, _nan_pixels()), ["d.npz[x_train]", "NaN or Inf"]),
    "not_a_zip_npz": (_random_bytes_npz, ["d.npz", "not a valid .npz (zip) file"]),
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
    components.ExampleGen("mnist", str(data_dir))({"examples": uri})
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


# --- evaluation: evaluate, compare, check_attacks -------------------------------------


# --- loading a model: untrusted SavedModels ------------------------------------------
