"""Tests for robust_dae_tf.pipeline.training: ExampleGen's examples cache and the validation
of the run config. (Trainer and Exporter are exercised end to end in tests/test_train_cli.py.)"""

import glob
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf.errors import ConfigError, DataError
from robust_dae_tf.pipeline import artifacts
from robust_dae_tf.pipeline.training import ExampleGen
from tests.data.test_sources import write_class_folders


def _source(tmp_path):
    write_class_folders(tmp_path / "images", (32, 32, 1), np.random.default_rng(0))
    return str(tmp_path / "images")


def _train_shard(uri):
    (shard,) = glob.glob(os.path.join(uri, "train", "*", "*.shard", "*.snapshot"))
    return shard


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)


def _count(uri, split):
    """Elements actually read (the cardinality comes from the metadata and stays 6)."""
    return sum(1 for _ in tf.data.Dataset.load(os.path.join(uri, split)))


def test_example_gen_records_counts_and_file_sizes(tmp_path):
    uri = str(tmp_path / "ex")
    examples = ExampleGen("mnist", _source(tmp_path))({"examples": uri})["examples"]
    assert examples.properties["num_examples"] == {"train": 6, "test": 3}
    files = examples.properties["files"]
    assert os.path.relpath(_train_shard(uri), os.path.join(uri, "train")) in files["train"]
    for split in ("train", "test"):
        for name, size in files[split].items():
            assert os.path.getsize(os.path.join(uri, split, name)) == size
    assert json.load(open(os.path.join(uri, "artifact.json")))["properties"] == examples.properties


def test_truncated_shard_is_rebuilt_never_read_as_fewer_images(tmp_path, caplog):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    gen = ExampleGen("mnist", source)
    first = gen({"examples": uri})["examples"]
    shard = _train_shard(uri)
    _truncate(shard)
    assert _count(uri, "train") < 6  # what training read before the check
    with pytest.raises(DataError, match="damaged") as info:
        artifacts.load_examples(first)
    assert shard in str(info.value) and "bytes" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.pipeline.training"):
        again = gen({"examples": uri})["examples"]
    assert "damaged" in caplog.text and shard in caplog.text
    assert again.properties["num_examples"] == {"train": 6, "test": 3}
    assert _count(uri, "train") == 6 and _count(uri, "test") == 3
    artifacts.load_examples(again)  # no error


def test_truncated_shard_without_its_source_is_refused(tmp_path):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    ExampleGen("mnist", source)({"examples": uri})
    _truncate(_train_shard(uri))
    shutil.rmtree(source)
    with pytest.raises(DataError) as info:
        ExampleGen("mnist", source)({"examples": uri})
    message = str(info.value)
    assert "damaged" in message and "cannot be rebuilt" in message and source in message


def test_damaged_marker_is_rebuilt(tmp_path, caplog):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    ExampleGen("mnist", source)({"examples": uri})
    with open(os.path.join(uri, "artifact.json"), "w") as f:
        f.write('{"type": "Examples", "prop')
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.pipeline.training"):
        rebuilt = ExampleGen("mnist", source)({"examples": uri})["examples"]
    assert "artifact.json cannot be read as JSON" in caplog.text
    assert artifacts.read_artifact(uri, "Examples").properties == rebuilt.properties
    assert _count(uri, "train") == 6


def test_cache_written_before_sizes_were_recorded_is_checked_by_counting(tmp_path, caplog):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    ExampleGen("mnist", source)({"examples": uri})
    marker = os.path.join(uri, "artifact.json")
    payload = json.load(open(marker))
    del payload["properties"]["files"]
    json.dump(payload, open(marker, "w"))
    reused = ExampleGen("mnist", source)({"examples": uri})["examples"]
    assert "files" not in reused.properties  # intact: reused as it is
    _truncate(_train_shard(uri))
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.pipeline.training"):
        rebuilt = ExampleGen("mnist", source)({"examples": uri})["examples"]
    assert "train split holds" in caplog.text and "files" in rebuilt.properties
    assert _count(uri, "train") == 6


def test_example_gen_writes_and_reuses_its_artifact(tmp_path):
    gen = ExampleGen("digits")
    first = gen({"examples": str(tmp_path / "ex")})["examples"]
    assert first.properties["num_examples"] == {"train": 1500, "test": 297}
    stamp = os.path.getmtime(tmp_path / "ex" / "artifact.json")
    second = gen({"examples": str(tmp_path / "ex")})["examples"]
    assert second.properties == first.properties
    assert os.path.getmtime(tmp_path / "ex" / "artifact.json") == stamp
    splits = artifacts.load_examples(second)
    image = next(iter(splits["train"]))["image"]
    assert image.shape == (32, 32, 1) and image.dtype.name == "uint8"


def _quick_config():
    from tests.helpers import small_config

    return small_config("gmm_dae", epochs=1)


@pytest.mark.parametrize("locked", ["workdir", "export_dir"])
def test_the_pipeline_refuses_a_locked_workdir_or_export_dir_before_any_work(tmp_path, locked):
    from robust_dae_tf import locking, pipeline
    from tests.test_locking import lock_held_elsewhere

    workdir, export_dir = str(tmp_path / "run"), str(tmp_path / "sm")
    os.makedirs(os.path.join(workdir, "examples"))
    open(os.path.join(workdir, "examples", "first-run-data"), "w").close()
    target = workdir if locked == "workdir" else export_dir
    with lock_held_elsewhere(target, f"--{locked}") as first:
        with pytest.raises(locking.DirectoryInUseError, match=rf"--{locked}=.* is in use .*pid {first.pid}"):
            pipeline.run_training_pipeline(_quick_config(), workdir, export_dir)
    assert os.listdir(workdir) == ["examples"] and os.listdir(os.path.join(workdir, "examples")) == ["first-run-data"]
    assert not os.path.exists(export_dir)


def test_the_pipeline_refuses_overlapping_workdir_and_export_dir(tmp_path):
    from robust_dae_tf import pipeline

    with pytest.raises(ConfigError, match="overlap"):
        pipeline.run_training_pipeline(_quick_config(), str(tmp_path / "run"), str(tmp_path / "run" / "sm"))
    assert not os.path.exists(tmp_path / "run")


def test_the_run_config_is_validated_once_where_the_run_starts(tmp_path, monkeypatch):
    """config_lib.validate runs once per training run (not again in training.train or for
    each model built), and a bad config stops the pipeline before any directory is touched."""
    from robust_dae_tf import config_lib, pipeline

    calls = []
    validate = config_lib.validate
    monkeypatch.setattr(config_lib, "validate", lambda config: calls.append(config.model.variant) or validate(config))
    config = _quick_config()
    config.model.hidden_units = (32,)
    config.data.max_train_examples = 200
    config.loss.weight_estimation_batches = 5
    result = pipeline.run_training_pipeline(config, str(tmp_path / "run"), str(tmp_path / "sm"))
    assert result["export_dir"] and os.path.exists(tmp_path / "sm" / "saved_model.pb")
    assert calls == ["gmm_dae"]  # the Trainer and the Exporter each built the model without validating again
    config.train.keep_checkpoints = 0
    with pytest.raises(ConfigError, match="keep_checkpoints: must be >= 1"):
        pipeline.run_training_pipeline(config, str(tmp_path / "new"), str(tmp_path / "new_sm"))
    assert sorted(os.listdir(tmp_path)) == ["run", "sm"]


def test_example_gen_records_the_split_and_rebuilds_a_cache_split_another_way(tmp_path, caplog):
    """CelebA without a partition file is split by identity; the Examples artifact says so,
    and a cache written under another split rule (here: before the identity file existed,
    the last 10% of file names) is rebuilt, never reused with a different split."""
    from tests.data.test_sources import write_celeb_a_identities

    root = tmp_path / "celeba"
    write_celeb_a_identities(root, list(range(1, 11)))
    identity_file = root / "identity_CelebA.txt"
    saved = identity_file.read_bytes()
    identity_file.unlink()
    uri = str(tmp_path / "ex")
    by_name = ExampleGen("celeb_a", str(root))({"examples": uri})["examples"]
    assert by_name.properties["split"].startswith("last 10% of the sorted file names")
    identity_file.write_bytes(saved)
    with caplog.at_level(logging.WARNING):
        by_identity = ExampleGen("celeb_a", str(root))({"examples": uri})["examples"]
    assert by_identity.properties["split"] == (
        "identity split: 9 train / 1 test identities (identity_CelebA.txt), 18 / 2 images")
    assert by_identity.properties["num_examples"] == {"train": 18, "test": 2}
    assert "out of date" in caplog.text and "identity split" in caplog.text
    # Same rule again: reused as it is (the marker is not rewritten).
    stamp = os.path.getmtime(os.path.join(uri, "artifact.json"))
    again = ExampleGen("celeb_a", str(root))({"examples": uri})["examples"]
    assert again.properties == by_identity.properties and os.path.getmtime(os.path.join(uri, "artifact.json")) == stamp


def _tiny_config():
    config = _quick_config()
    config.model.hidden_units = (32,)
    config.data.max_train_examples = 200
    config.loss.weight_estimation_batches = 5
    return config


def test_a_full_disk_is_one_error_naming_the_path_and_the_space(tmp_path, monkeypatch):
    """Checkpoint writes: TensorFlow's ResourceExhaustedError (SaveV2) becomes one DiskFullError
    naming the checkpoint directory; export: the free space is checked against the checkpoint's
    size before the model is rebuilt and traced, and nothing is written."""
    from unittest import mock

    from robust_dae_tf import fileio, pipeline
    from robust_dae_tf import fit as training
    from robust_dae_tf.errors import DiskFullError

    workdir, export_dir = str(tmp_path / "run"), str(tmp_path / "sm")
    full = tf.errors.ResourceExhaustedError(None, None, f"{workdir}/trainer/checkpoints/ckpt-2_temp/part-00000; "
                                            "No space left on device [Op:SaveV2]")
    with mock.patch.object(tf.train.CheckpointManager, "save", side_effect=full):
        with pytest.raises(DiskFullError, match=r"no space left on the device of .*/trainer/checkpoints"):
            pipeline.run_training_pipeline(_tiny_config(), workdir, export_dir)
    assert not os.path.exists(export_dir)

    pipeline.run_training_pipeline(_tiny_config(), workdir, None)  # trained, not exported
    size = fileio.checkpoint_bytes(tf.train.latest_checkpoint(os.path.join(workdir, "trainer", "checkpoints")))
    monkeypatch.setattr(fileio, "free_bytes", lambda path: 1000)
    compiled, compile_model = [], training.compile_model
    monkeypatch.setattr(training, "compile_model", lambda *a, **k: compiled.append(1) or compile_model(*a, **k))
    with pytest.raises(DiskFullError, match=rf"SavedModel {export_dir}.*needs about {fileio.format_bytes(size)}, "
                                            r"1000 bytes are free"):
        pipeline.run_training_pipeline(_tiny_config(), workdir, export_dir)
    # The Trainer built its model (the run was finished: nothing trained); the Exporter stopped before.
    assert len(compiled) == 1 and not os.path.exists(export_dir) and not glob.glob(f"{export_dir}.tmp-*")
