"""Run ownership: a directory lock held by another process refuses with its owner named;
a lock file left by a dead process is taken over with a warning."""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from robust_dae_tf import locking
from robust_dae_tf.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = """
import sys, time
from robust_dae_tf import locking
with locking.lock_directory(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def lock_held_elsewhere(target, flag="--workdir"):
    """A separate process holding the lock of `target` for the block (then killed);
    yields the Popen. Used by the pipeline and bin/train.py tests too."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-c", HOLDER, target, flag, "holder-marker"],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.fixture
def holder(tmp_path):
    target = str(tmp_path / "run")
    with lock_held_elsewhere(target) as process:
        yield process, target


def test_a_second_process_is_refused_with_the_owner_named(holder):
    process, target = holder
    with pytest.raises(locking.DirectoryInUseError) as info:
        with locking.lock_directory(target, "--workdir"):
            pytest.fail("a second owner got the lock")
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    assert f"--workdir={target} is in use by another run" in message
    assert f"pid {process.pid} on host" in message and "holder-marker" in message
    assert locking.lock_path(target) in message


def test_the_lock_of_a_killed_process_is_taken_over_with_a_warning(holder, caplog):
    process, target = holder
    process.send_signal(signal.SIGKILL)  # no clean-up: its lock file stays behind
    process.wait(timeout=30)
    lock_file = locking.lock_path(target)
    assert json.load(open(lock_file))["pid"] == process.pid
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.locking"):
        with locking.lock_directory(target, "--workdir"):
            assert json.load(open(lock_file))["pid"] == os.getpid()
    assert f"pid {process.pid}" in caplog.text and "Taking over" in caplog.text
    assert not os.path.exists(lock_file)  # released


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path, caplog):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    target = str(tmp_path / "export")
    with open(locking.lock_path(target), "w") as f:
        json.dump({"pid": dead_pid, "host": "this-host", "command": "python bin/train.py", "started": "then"}, f)
    with caplog.at_level(logging.WARNING, logger="robust_dae_tf.locking"):
        with locking.lock_directory(target, "--export_dir") as lock_file:
            owner = json.load(open(lock_file))
    assert owner["pid"] == os.getpid() and owner["command"] and owner["host"] and owner["started"]
    assert f"pid {dead_pid} on host this-host" in caplog.text
    assert not os.path.exists(lock_file)


def test_the_lock_is_released_on_error_and_not_taken_twice_by_one_process(tmp_path):
    target = str(tmp_path / "out")
    with pytest.raises(RuntimeError):
        with locking.lock_directory(target, "--output"):
            raise RuntimeError("failed run")
    with locking.lock_directory(target, "--output"):
        with pytest.raises(locking.DirectoryInUseError, match="already used by this run"):
            with locking.lock_directory(os.path.join(str(tmp_path), ".", "out"), "--export_dir"):
                pass
    assert os.listdir(tmp_path) == []


def test_a_lock_file_that_cannot_be_created_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(locking.DirectoryInUseError, match=r"cannot create .*--workdir=.*file/run"):
        with locking.lock_directory(str(blocker / "run"), "--workdir"):
            pass
