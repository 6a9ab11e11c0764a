import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from robust_dae_tf import fileio
from robust_dae_tf.errors import ExportError, UserError


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


def test_atomic_write_keeps_the_old_file_and_no_temp_file_on_failure(tmp_path):
    path = str(tmp_path / "sub" / "report.md")
    assert fileio.write_text_atomic(path, "old ±\n") == path  # parents are created, UTF-8
    assert open(path, "rb").read() == "old ±\n".encode()

    def half(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        fileio.atomic_write(path, half)
    assert os.listdir(tmp_path / "sub") == ["report.md"] and open(path).read() == "old ±\n"
    fileio.write_bytes_atomic(path, b"\x00\x01")
    assert open(path, "rb").read() == b"\x00\x01" and os.listdir(tmp_path / "sub") == ["report.md"]


class _Scalar:
    """Like a scalar tensor: converts to float, is not JSON."""

    def __float__(self):
        return 2.5


def test_write_json_atomic_writes_numbers_of_numpy_and_tensors_as_json(tmp_path):
    payload = {"b": np.float32(0.5), "a": np.int64(3), "c": np.arange(3), "d": _Scalar(), "e": (1, "x"),
               "f": {"nested": np.bool_(True)}, "g": object}
    path = fileio.write_json_atomic(str(tmp_path / "out.json"), payload)
    text = open(path).read()
    assert json.loads(text) == {"a": 3, "b": 0.5, "c": [0, 1, 2], "d": 2.5, "e": [1, "x"], "f": {"nested": True},
                                "g": str(object)}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)  # indented, keys sorted, no newline
    assert os.listdir(tmp_path) == ["out.json"]


def test_check_writable(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("")
    new = tmp_path / "new" / "deeper"
    assert fileio.check_writable(str(new / "out.md"), "--output") == str(new / "out.md")
    assert fileio.check_writable(str(new), "--output", directory=True) == str(new)
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(UserError, match=r"^--output=.*a_file/x/out.md cannot be written: .*a_file is a file, not a"):
        fileio.check_writable(str(afile / "x" / "out.md"), "--output")
    with pytest.raises(UserError, match="--flag=.*a_file exists and is not a directory"):
        fileio.check_writable(str(afile), "--flag", directory=True)
    with pytest.raises(UserError, match="exists and is not a file"):
        fileio.check_writable(str(tmp_path), "--output")
    existing = tmp_path / "existing"
    existing.mkdir()
    assert fileio.check_writable(str(existing), "--output", directory=True) == str(existing)
    assert os.listdir(existing) == [] and sorted(os.listdir(tmp_path)) == ["a_file", "existing"]  # probes removed


# --- full disks -------------------------------------------------------------------------

import errno  # noqa: E402


def test_writes_to_maps_enospc_and_tensorflows_disk_full_and_nothing_else(tmp_path):
    import tensorflow as tf

    from robust_dae_tf.errors import DiskFullError

    target = str(tmp_path / "out" / "summary.json")
    with pytest.raises(DiskFullError, match=rf"no space left on the device of {target} \(about 2.0 MiB are needed"):
        with fileio.writes_to(str(tmp_path), needed=2 * 1024 * 1024):
            raise OSError(errno.ENOSPC, "No space left on device", target)
    with pytest.raises(DiskFullError, match=rf"device of {tmp_path}"):
        with fileio.writes_to(str(tmp_path)):
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device [Op:SaveV2]")
    for other in (OSError(errno.EACCES, "Permission denied"), tf.errors.ResourceExhaustedError(None, None, "OOM")):
        with pytest.raises(type(other)):
            with fileio.writes_to(str(tmp_path)):
                raise other


def test_check_free_space_names_the_path_and_both_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: shutil_usage(free=512))
    with pytest.raises(UserError, match=rf"space for the SavedModel at {tmp_path}/new/sm: it needs about 1.5 KiB, "
                                        "512 bytes are free"):
        fileio.check_free_space(str(tmp_path / "new" / "sm"), 1536, "the SavedModel")
    fileio.check_free_space(str(tmp_path), 512, "the SavedModel")  # enough


def shutil_usage(free):
    import collections

    return collections.namedtuple("usage", "total used free")(10**9, 10**9 - free, free)


def test_a_full_disk_anywhere_in_a_command_is_one_error_line(tmp_path):
    code = ("import errno\nfrom robust_dae_tf import cli\n"
            "def main(argv):\n"
            f"    raise OSError(errno.ENOSPC, 'No space left on device', {str(tmp_path / 'summary.json')!r})\n"
            "cli.run_main(main, select_config=False)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=root))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no space left on the device of {tmp_path}/summary.json")


def test_array_digest_names_dtype_and_shape_as_well_as_bytes():
    import hashlib

    a = np.arange(6, dtype=np.float32)
    expected = hashlib.sha256(b"<f4(6,)" + a.tobytes()).hexdigest()  # independent construction
    assert fileio.array_digest(a) == expected
    assert fileio.array_digest(a) != fileio.array_digest(a.reshape(2, 3))  # same bytes, other shape
    assert fileio.array_digest(a) != fileio.array_digest(a.view(np.int32))  # same bytes, other dtype
    assert fileio.array_digest(a[::2]) == fileio.array_digest(np.ascontiguousarray(a[::2]))
