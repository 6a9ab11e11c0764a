"""Running the scripts in `bin/` as a user does, for the end-to-end tests of user faults
(tests/*/test_*_bad_input.py and others): in a subprocess with the test interpreter.

`run_script` runs one and returns the CompletedProcess; `assert_one_error_line` checks how
every user fault ends (exit status 1, no traceback, a last stderr line `error: ...`). With
`tensorflow_record=<file>`, `run_script` also writes the stack of the script's first import
of TensorFlow to that file (no file: TensorFlow was never imported), for the tests that
the cheap checks of flags and paths run before TensorFlow is imported.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# bin/train.py settings of a run of a few seconds (tests of training and multi-worker faults).
# No XLA for these runs (as tests/helpers.small_config): compiling the training step cost
# ~8 s of each ~20 s run and none of these faults depends on it; bin/train.py with the default
# (XLA for the fc nets) runs end to end in tests/test_train_cli.py and tests/test_multiworker.py.
QUICK_TRAINING = ["--model=gmm_dae", "--epochs=1", "--config.data.max_train_examples=200",
                  "--config.model.hidden_units=(32,)", "--config.loss.weight_estimation_batches=5",
                  "--config.train.verbose=0", "--config.train.jit_compile=false"]

# A failing element used to make tf.data.Dataset.save wait forever: runs that read bad data
# get this short timeout.
HANG_TIMEOUT = 90

# `python -c` program: runs the script argv[2] with the arguments argv[3:] as `python <script>`
# would, with a finder on sys.meta_path that writes the stack of the first import of
# TensorFlow to the file argv[1]. It finds nothing itself, so the import is unchanged (and
# still goes through robust_dae_tf.tf_startup's finder).
_RECORDING_RUNNER = """
import importlib.abc, os, runpy, sys, traceback

record, script = sys.argv[1], sys.argv[2]


class RecordTensorFlowImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and not os.path.exists(record):
            with open(record, "w") as f:
                f.write("".join(traceback.format_stack()[:-1]))
        return None


sys.meta_path.insert(0, RecordTensorFlowImport())
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name="__main__")
"""


def run_script(script, *args, timeout=300, cwd=ROOT, env=None, tensorflow_record=None):
    """Runs `bin/<script>` with the test interpreter; returns the CompletedProcess. With
    `tensorflow_record` (a path), the stack of the first `import tensorflow` goes there."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    path = os.path.join(ROOT, "bin", script)
    command = [path] if tensorflow_record is None else ["-c", _RECORDING_RUNNER, str(tensorflow_record), path]
    return subprocess.run(
        [sys.executable, *command, *args],
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
