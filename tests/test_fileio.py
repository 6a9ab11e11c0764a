import json
import os

import pytest

from robust_dae_tf import fileio
from robust_dae_tf.errors import ExportError


def test_failed_block_leaves_no_trace_and_keeps_the_old_directory(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_directory(str(target), overwrite=True) as tmp:
            open(os.path.join(tmp, "new.txt"), "w").write("half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(target) == ["old.txt"]


def test_success_replaces_and_refuses_without_overwrite(tmp_path):
    target = str(tmp_path / "out")
    with fileio.atomic_directory(target) as tmp:
        fileio.write_json_atomic(os.path.join(tmp, "a.json"), {"v": 1})
    assert json.load(open(os.path.join(target, "a.json"))) == {"v": 1}
    with pytest.raises(ExportError, match="--overwrite"):
        with fileio.atomic_directory(target):
            pass
    with fileio.atomic_directory(target, overwrite=True) as tmp:
        fileio.write_json_atomic(os.path.join(tmp, "b.json"), [2])
    assert os.listdir(target) == ["b.json"] and os.listdir(tmp_path) == ["out"]
