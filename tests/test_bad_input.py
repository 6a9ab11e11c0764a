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


# --- evaluation: evaluate, compare, check_attacks -------------------------------------


# --- loading a model: untrusted SavedModels ------------------------------------------
