"""Tests for robust_dae_tf.components: artifact markers and ExampleGen's examples cache.
(Trainer and Exporter are exercised end to end in test_train_cli.py.)"""

import glob
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import components
from robust_dae_tf.errors import DataError, UserError
from tests.test_data import write_class_folders


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


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\x89PNG\x00\xff", b"[1, 2]", b'{"type": "Examples", "properties": [1]}'],
    ids=["invalid_json", "binary", "list", "properties_not_a_dict"],
)
def test_damaged_marker_is_one_user_error_naming_it(tmp_path, content):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "artifact.json").write_bytes(content)
    with pytest.raises(UserError) as info:
        components.read_artifact(str(tmp_path / "examples"), "Examples")
    assert str(tmp_path / "examples" / "artifact.json") in str(info.value)
    assert "damaged" in str(info.value)


def test_example_gen_records_counts_and_file_sizes(tmp_path):
    uri = str(tmp_path / "ex")
    examples = components.ExampleGen("mnist", _source(tmp_path))({"examples": uri})["examples"]
    assert examples.properties["num_examples"] == {"train": 6, "test": 3}
    files = examples.properties["files"]
    assert os.path.relpath(_train_shard(uri), os.path.join(uri, "train")) in files["train"]
    for split in ("train", "test"):
        for name, size in files[split].items():
            assert os.path.getsize(os.path.join(uri, split, name)) == size
    assert json.load(open(os.path.join(uri, "artifact.json")))["properties"] == examples.properties


def test_truncated_shard_is_rebuilt_never_read_as_fewer_images(tmp_path, caplog):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    gen = components.ExampleGen("mnist", source)
    first = gen({"examples": uri})["examples"]
    shard = _train_shard(uri)
    _truncate(shard)
    assert _count(uri, "train") < 6  # what training read before the check
    with pytest.raises(DataError, match="damaged") as info:
        components.load_examples(first)
    assert shard in str(info.value) and "bytes" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.components"):
        again = gen({"examples": uri})["examples"]
    assert "damaged" in caplog.text and shard in caplog.text
    assert again.properties["num_examples"] == {"train": 6, "test": 3}
    assert _count(uri, "train") == 6 and _count(uri, "test") == 3
    components.load_examples(again)  # no error


def test_truncated_shard_without_its_source_is_refused(tmp_path):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    components.ExampleGen("mnist", source)({"examples": uri})
    _truncate(_train_shard(uri))
    shutil.rmtree(source)
    with pytest.raises(DataError) as info:
        components.ExampleGen("mnist", source)({"examples": uri})
    message = str(info.value)
    assert "damaged" in message and "cannot be rebuilt" in message and source in message


def test_damaged_marker_is_rebuilt(tmp_path, caplog):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    components.ExampleGen("mnist", source)({"examples": uri})
    with open(os.path.join(uri, "artifact.json"), "w") as f:
        f.write('{"type": "Examples", "prop')
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.components"):
        rebuilt = components.ExampleGen("mnist", source)({"examples": uri})["examples"]
    assert "artifact.json cannot be read as JSON" in caplog.text
    assert components.read_artifact(uri, "Examples").properties == rebuilt.properties
    assert _count(uri, "train") == 6


def test_cache_written_before_sizes_were_recorded_is_checked_by_counting(tmp_path, caplog):
    uri, source = str(tmp_path / "ex"), _source(tmp_path)
    components.ExampleGen("mnist", source)({"examples": uri})
    marker = os.path.join(uri, "artifact.json")
    payload = json.load(open(marker))
    del payload["properties"]["files"]
    json.dump(payload, open(marker, "w"))
    reused = components.ExampleGen("mnist", source)({"examples": uri})["examples"]
    assert "files" not in reused.properties  # intact: reused as it is
    _truncate(_train_shard(uri))
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.components"):
        rebuilt = components.ExampleGen("mnist", source)({"examples": uri})["examples"]
    assert "train split holds" in caplog.text and "files" in rebuilt.properties
    assert _count(uri, "train") == 6
