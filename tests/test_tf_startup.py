"""robust_dae_tf.tf_startup: TensorFlow's start-up lines are off by default, on with
ROBUST_DAE_TF_VERBOSE_TF=1, and other stderr output of the import is kept."""

import os
import subprocess
import sys

import pytest

from robust_dae_tf import tf_startup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = ("absl::InitializeLog", "I0000", "port.cc", "cudart_stub")


def _stderr(code, **env):
    env = dict({k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", tf_startup.VERBOSE_ENV)},
               PYTHONPATH=REPO, **env)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_importing_tensorflow_after_the_package_prints_no_startup_lines():
    stderr = _stderr("import robust_dae_tf, keras, tensorflow as tf; import sys; print('kept', file=sys.stderr); "
                     "tf.constant(1.0) + 1")
    assert not [m for m in MARKERS if m in stderr], stderr
    assert stderr.strip() == "kept"


def test_verbose_env_shows_them():
    stderr = _stderr("import robust_dae_tf, tensorflow", **{tf_startup.VERBOSE_ENV: "1"})
    assert "absl::InitializeLog" in stderr, stderr  # TensorFlow 2.21 on this machine prints it


def test_a_command_prints_no_startup_lines(tmp_path):
    # A run that imports TensorFlow (flag errors end before it does): it fails on its data,
    # after the import (tests/test_checks_before_tensorflow.py records the import of such a run).
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", tf_startup.VERBOSE_ENV)}
    (tmp_path / "data").mkdir()
    done = subprocess.run([sys.executable, os.path.join(REPO, "bin", "train.py"), f"--workdir={tmp_path}/run",
                           "--noexport", "--dataset=mnist", f"--data_dir={tmp_path}/data"],
                          env=dict(env, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert not [m for m in MARKERS if m in done.stderr], done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error:"), done.stderr


@pytest.mark.parametrize("line, noise", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", True),
    ("I0000 00:00:1796575317.353530    5122 port.cc:153] oneDNN custom operations are on.\n", True),
    ("I0000 00:00:1796575317.355642    5122 cudart_stub.cc:31] Could not find cuda drivers\n", True),
    ("E0000 00:00:1796575307.061436    4588 cuda_platform.cc:52] failed call to cuInit\n", False),
    ("UserWarning: something the user should see\n", False),
    ("Traceback (most recent call last):\n", False),
])
def test_only_startup_notes_count_as_noise(line, noise):
    assert tf_startup.is_startup_noise(line) is noise


def test_lines_written_in_a_failing_block_are_all_kept(capfd):
    with pytest.raises(RuntimeError):
        with tf_startup.startup_lines_hidden():
            os.write(2, b"I0000 00:00:1.5    1 port.cc:1] note\n")
            raise RuntimeError
    assert "port.cc" in capfd.readouterr().err
