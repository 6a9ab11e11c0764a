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

import json  # noqa: E402 - imports of this section kept in it (one section per area)

import pytest  # noqa: E402

QUICK_TRAINING = ["--model=gmm_dae", "--epochs=1", "--config.data.max_train_examples=200",
                  "--config.model.hidden_units=(32,)", "--config.loss.weight_estimation_batches=5",
                  "--config.train.verbose=0"]

# (arguments, words of the error line); {tmp} is the test's directory, which holds
# syntax_error.py, no_get_config.py and a_file (a regular file).
TRAINING_CASES = [
    (["--config.train.no_such_field=1"], ["--config.train.no_such_field", "no field", "keep_checkpoints"]),
    (["--config={tmp}/missing.py"], ["--config=", "missing.py", "no such file"]),
    (["--config={tmp}/syntax_error.py"], ["syntax_error.py", "syntax error", "line 2"]),
    (["--config={tmp}/no_get_config.py"], ["no_get_config.py", "get_config()"]),
    (["--config.train.keep_checkpoints=0"], ["train.keep_checkpoints", ">= 1"]),
    (["--workdir={tmp}/a_file/run"], ["--workdir", "a_file is a file"]),
    (["--export_dir={tmp}/a_file/saved"], ["--export_dir", "a_file is a file"]),
]


@pytest.mark.parametrize("args,words", TRAINING_CASES, ids=[" ".join(a) for a, _ in TRAINING_CASES])
def test_training_bad_input(tmp_path, args, words):
    (tmp_path / "syntax_error.py").write_text("def get_config():\n    return {\n")
    (tmp_path / "no_get_config.py").write_text("CONFIG = None\n")
    (tmp_path / "a_file").write_text("a regular file")
    workdir, export_dir = tmp_path / "run", tmp_path / "saved"
    done = run_script("train.py", f"--workdir={workdir}", f"--export_dir={export_dir}", *QUICK_TRAINING,
                      *(arg.format(tmp=tmp_path) for arg in args))
    assert_one_error_line(done, *words)
    # Refused before any work: no examples prepared, nothing trained or exported.
    assert not (workdir / "examples").exists() and not export_dir.exists()


def test_training_on_a_workdir_in_use_stops_naming_the_first_run(tmp_path):
    from tests.test_locking import lock_held_elsewhere

    workdir = tmp_path / "run"
    (workdir / "examples").mkdir(parents=True)
    (workdir / "examples" / "artifact.json").write_text("{}")  # the first run's data: must stay
    with lock_held_elsewhere(str(workdir)) as first:
        done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING)
    assert_one_error_line(done, "--workdir=", "in use by another run", f"pid {first.pid}", "holder-marker")
    assert os.listdir(workdir) == ["examples"] and os.listdir(workdir / "examples") == ["artifact.json"]


def test_training_resumes_past_an_empty_checkpoint_state_file(tmp_path):
    workdir = tmp_path / "run"
    first = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING)
    assert first.returncode == 0, first.stderr[-3000:]
    (workdir / "trainer" / "checkpoints" / "checkpoint").write_text("")
    done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING, "--epochs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "unreadable" in done.stderr and "Resuming from" in done.stderr and "(step 2," in done.stderr
    history = json.load(open(workdir / "trainer" / "history.json"))
    assert history["epoch"] == [1, 2]
    assert json.load(open(workdir / "trainer" / "artifact.json"))["properties"]["steps"] == 4



# --- data: image folders, .npz files, the examples cache ------------------------------


# --- evaluation: evaluate, compare, check_attacks -------------------------------------


# --- loading a model: untrusted SavedModels ------------------------------------------
