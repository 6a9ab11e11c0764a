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
import pytest  # noqa: E402  (kept in this section so the shared header stays untouched; hoist when merging)

# A crafted SavedModel (tests/test_model_safety.py `save_crafted`) reads or writes `target`
# when loaded or called; every script refuses it before TensorFlow runs it, naming the op
# and --trust_model, and writes nothing. Corrupt model files name the file.

LOADING_CASES = [
    # (script, crafted kind or corruption, words of the error); the other crafted kinds
    # (py_function, saves_in_encode, table_from_file) are refused the same way (tests/test_model_safety.py).
    ("evaluate.py", "writes_at_load", ["refusing", "WriteFile", "initializer", "--trust_model"]),
    ("evaluate.py", "reads_in_encode", ["ReadFile", "encode", "--trust_model"]),
    ("check_attacks.py", "writes_at_load", ["WriteFile", "--trust_model"]),  # = benchmark_attacks' loading
    ("evaluate.py", "truncated_pb", ["saved_model.pb is corrupt", "re-export"]),
    ("check_attacks.py", "bad_json", ["robust_dae_tf.json is not readable JSON"]),
]


def _loading_model(tmp_path, kind):
    """(model directory, the file its crafted ops would read or write)."""
    from tests.test_model_safety import CRAFTED, save_crafted

    target = tmp_path / "target"
    if kind in CRAFTED:
        if kind in ("reads_in_encode", "table_from_file"):
            target.write_text("a\nb\n")
        return save_crafted(kind, tmp_path / "model", target), target
    from tests.test_evaluation import _export_tiny
    from tests.test_export import _corrupt

    path = _export_tiny(str(tmp_path / "model"))
    _corrupt(path, kind)
    return path, target


@pytest.mark.parametrize("script, kind, words", LOADING_CASES)
def test_loading_a_model_bad_input(tmp_path, script, kind, words):
    path, target = _loading_model(tmp_path, kind)
    before = sorted(os.listdir(tmp_path))
    done = run_script(script, f"--model={path}", f"--output={tmp_path / 'out'}", "--num_images=2", timeout=180)
    assert_one_error_line(done, *words)
    assert sorted(os.listdir(tmp_path)) == before  # no output; the target was neither created nor written
    assert not target.exists() or target.read_text() == "a\nb\n"


def test_loading_a_crafted_model_with_trust_model_runs_it(tmp_path):
    path, target = _loading_model(tmp_path, "writes_at_load")
    args = [f"--model={path}", f"--output={tmp_path / 'out'}", "--num_images=2", "--trials=1", "--budgets=1",
            "--attack_steps=2", "--attack_restarts=1", "--attack_exploration_starts=1", "--pool_size=20",
            "--skip_classifier", "--skip_fid", "--tensorboard=false"]
    done = run_script("evaluate.py", *args, "--trust_model")
    assert done.returncode == 0, done.stderr[-3000:]
    assert target.read_text() == "written while the model was loaded"  # trusted: its initializer ran
    assert (tmp_path / "out" / "summary.json").exists()
