import json
import logging
import os
import subprocess
import sys

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


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(tmp_path, caplog):
    target = tmp_path / "out"
    target.mkdir()  # so the dead process's .old copy is stale, not the only copy
    dead, live = _dead_pid(), os.getppid()
    for name in (f"out.tmp-{dead}", f"out.old-{dead}", f"out.tmp-{live}", f"out.old-{live}", f"other.tmp-{dead}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "half.txt").write_text("half")
    with caplog.at_level(logging.INFO, logger="robust_dae_tf.fileio"):
        with fileio.atomic_directory(str(target), overwrite=True) as tmp:
            fileio.write_json_atomic(os.path.join(tmp, "a.json"), 1)
    assert sorted(os.listdir(tmp_path)) == sorted(["out", f"out.tmp-{live}", f"out.old-{live}", f"other.tmp-{dead}"])
    assert os.listdir(target) == ["a.json"]
    assert f"out.tmp-{dead}" in caplog.text and f"out.old-{dead}" in caplog.text


def test_old_copy_of_a_replacement_killed_between_renames_is_moved_back(tmp_path):
    target, dead = tmp_path / "out", _dead_pid()
    (tmp_path / f"out.old-{dead}").mkdir()
    (tmp_path / f"out.old-{dead}" / "old.txt").write_text("old")
    (tmp_path / f"out.tmp-{dead}").mkdir()
    # Without overwrite the restored directory is protected like any existing one.
    with pytest.raises(ExportError, match="exists"):
        with fileio.atomic_directory(str(target)):
            pass
    assert os.listdir(tmp_path) == ["out"] and os.listdir(target) == ["old.txt"]
