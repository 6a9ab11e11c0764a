"""User faults of training, end to end through `bin/train.py`: run ownership, checkpoints,
resume, Ctrl-C / SIGTERM. Each ends in one clear `error:` line (or a correct result), exit
status 1, no traceback, no hang, nothing half-written kept.

The other areas: tests/data/test_data_bad_input.py, tests/pipeline/test_evaluation_bad_input.py,
tests/test_multiworker_bad_input.py, tests/pipeline/test_sweep_bad_input.py (shared helpers:
tests/scripts.py). Unit-level checks of the same faults live in the test file of the module
that owns them.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.scripts import QUICK_TRAINING, ROOT, assert_one_error_line, run_script

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


def test_a_run_failing_on_the_restore_leaves_the_run_record_and_ends_with_the_error(tmp_path):
    """Mixed precision wraps the optimizer (loss-scale variables): its checkpoint objects differ
    although no architecture field does. The failed run must not replace config.json (the
    record of the checkpoints), and its error is the last line (no TensorFlow warnings after it)."""
    workdir = tmp_path / "run"
    done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING)
    assert done.returncode == 0, done.stderr[-3000:]
    record = workdir / "trainer" / "config.json"
    before = record.read_text()
    done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING, "--epochs=2",
                      "--config.train.mixed_precision=true")
    assert_one_error_line(done, "ckpt-", "written by a different model")
    assert "unrestored" not in done.stderr.lower() and "could not be found" not in done.stderr, done.stderr[-3000:]
    assert record.read_text() == before
    done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING, "--epochs=2")
    assert done.returncode == 0, done.stderr[-3000:]  # the right command resumes


def _signal_training(workdir, signum):
    """Starts a long training (125 steps an epoch), sends `signum` once the checkpoint of its
    first epoch was written and returns (last stderr line, exit status, the step numbers in
    that line); bounded in time."""
    import re
    import signal
    import time

    args = [sys.executable, os.path.join(ROOT, "bin", "train.py"), f"--workdir={workdir}", "--noexport",
            *QUICK_TRAINING, "--epochs=500", "--config.data.max_train_examples=1000", "--config.train.batch_size=8",
            "--config.train.steps_per_execution=1", "--config.train.checkpoint_every_steps=100000"]
    # A suite started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python keeps an ignored SIGINT: give the training the default disposition, as a
    # terminal's foreground job has, so that the Ctrl-C under test reaches it.
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        # Epoch 1's end, once its checkpoint is recorded: the CheckpointManager writes the state
        # file (atomically) after the checkpoint's files, and after it holds it as the latest.
        state = workdir / "trainer" / "checkpoints" / "checkpoint"
        while not (state.exists() and '"ckpt-125"' in state.read_text()):
            assert process.poll() is None and time.time() < deadline, process.stderr.read() if process.poll() else ""
            time.sleep(0.2)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    steps = [int(n) for n in re.findall(r"step (\d+)", last)]
    return last, process.returncode, steps


def test_ctrl_c_during_training_is_one_line_naming_the_kept_checkpoint(tmp_path):
    import re
    import signal

    last, status, steps = _signal_training(tmp_path / "run", signal.SIGINT)
    assert status == 130, last
    assert last.startswith("interrupted (Ctrl-C): stopped at step") and "run the same command to resume" in last
    # Ctrl-C does not save: the newest checkpoint is an epoch end's (125 steps an epoch).
    assert re.search(r"the newest checkpoint \S+/ckpt-(\d+) \(step \1\) is kept", last) and steps[1] % 125 == 0, last


def test_sigterm_during_training_checkpoints_the_partial_epoch(tmp_path):
    import signal

    workdir = tmp_path / "run"
    last, status, steps = _signal_training(workdir, signal.SIGTERM)
    assert status == 143, last
    assert last.startswith("terminated (SIGTERM): ") and "run the same command to resume" in last, last
    # The step it stopped at is checkpointed: the partial epoch (or, by chance, an epoch end).
    assert steps and tf_latest_step(workdir / "trainer" / "checkpoints") == steps[-1], last
    if steps[-1] % 125:
        assert "saved the partial epoch as checkpoint" in last, last


def tf_latest_step(directory):
    from robust_dae_tf.fit import checkpoint_steps

    return checkpoint_steps(str(directory))[-1]


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
