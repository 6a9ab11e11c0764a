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

import json  # noqa: E402  (kept in this section: each area's table is edited independently)
import shutil  # noqa: E402

import pytest  # noqa: E402

# Fast evaluate.py settings: attacks only, 2 images, 1 trial, a few PGD steps, no XLA.
TINY_EVALUATE = ("--skip_classifier", "--skip_fid", "--num_images=2", "--trials=1", "--budgets=1",
                 "--attack_steps=2", "--attack_restarts=1", "--attack_exploration_starts=1", "--pool_size=50",
                 "--attack_xla=false", "--tensorboard=false")


@pytest.fixture(scope="module")
def evaluation_inputs(tmp_path_factory):
    """Paths for the evaluation table: a tiny exported model, copies with corrupt metadata /
    a truncated saved_model.pb, a regular file (as a parent it makes any output unwritable)
    and copies of one finished evaluation (classifier and FD skipped) damaged in one way each."""
    from tests.helpers import export_tiny_autoencoder

    root = tmp_path_factory.mktemp("bad_evaluation")
    paths = {"model": export_tiny_autoencoder(str(root / "model")), "file": str(root / "a_file")}
    open(paths["file"], "w").close()
    for name in ("bad_metadata", "truncated_pb"):
        paths[name] = str(root / name)
        shutil.copytree(paths["model"], paths[name])
    with open(os.path.join(paths["bad_metadata"], "robust_dae_tf.json"), "w") as f:
        f.write('{"dataset": "dig')
    pb = os.path.join(paths["truncated_pb"], "saved_model.pb")
    with open(pb, "rb") as f:
        head = f.read()[:2000]
    with open(pb, "wb") as f:
        f.write(head)

    evaluated = root / "eval"
    done = run_script("evaluate.py", f"--model={paths['model']}", f"--output={evaluated}", *TINY_EVALUATE)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["robustness"] and summary["classifier"] is None and summary["fid"] is None
    damage = {
        "eval_truncated": lambda d: (d / "robustness" / "robustness.json").write_text('{"latent": {"1.0": {'),
        "eval_no_report": lambda d: (d / "robustness" / "robustness.json").unlink(),
        "eval_part_missing": lambda d: shutil.rmtree(d / "robustness"),
        "eval_unfinished": lambda d: (d / "summary.json").unlink(),
        "eval_ok": lambda d: None,
    }
    for name, spoil in damage.items():
        paths[name] = str(root / name)
        shutil.copytree(evaluated, paths[name])
        spoil(root / name)
    return paths


# (id, script, arguments ({name} = a path of `evaluation_inputs`), words of the error line)
EVALUATION_CASES = [
    ("compare_truncated_report", "compare.py", ["{eval_ok}", "{eval_truncated}"],
     ["eval_truncated/robustness/robustness.json", "not readable JSON", "rerun bin/evaluate.py"]),
    ("compare_marker_without_report", "compare.py", ["{eval_no_report}"],
     ["eval_no_report/robustness/robustness.json is missing"]),
    ("compare_recorded_part_missing", "compare.py", ["{eval_part_missing}"],
     ["eval_part_missing/robustness", "summary.json records the robustness part as run"]),
    ("compare_unfinished_evaluation", "compare.py", ["{eval_unfinished}"],
     ["eval_unfinished/summary.json is missing", "did not finish"]),
    # The output is checked before any evaluation directory is read (this one does not exist).
    ("compare_unwritable_output", "compare.py", ["{file}/missing_eval", "--output={file}/table.md"],
     ["--output=", "a_file is a file, not a directory"]),
    ("check_attacks_corrupt_metadata", "check_attacks.py", ["--model={bad_metadata}", "--output={file}.d"],
     ["bad_metadata/robust_dae_tf.json is not valid JSON"]),
    ("check_attacks_truncated_model", "check_attacks.py", ["--model={truncated_pb}", "--output={file}.d"],
     ["cannot load the SavedModel", "truncated_pb", "re-export"]),
    ("evaluate_corrupt_metadata", "evaluate.py", ["--model={bad_metadata}", "--output={file}.d"],
     ["bad_metadata/robust_dae_tf.json is not valid JSON"]),
    ("evaluate_truncated_model", "evaluate.py", ["--model={truncated_pb}", "--output={file}.d"],
     ["cannot load the SavedModel", "truncated_pb"]),
    # Unwritable outputs fail before the (here: broken) model is loaded.
    ("evaluate_unwritable_output", "evaluate.py", ["--model={truncated_pb}", "--output={file}/eval"],
     ["--output=", "a_file is a file, not a directory"]),
    ("check_attacks_unwritable_output", "check_attacks.py", ["--model={truncated_pb}", "--output={file}/check"],
     ["--output=", "a_file is a file, not a directory"]),
    ("benchmark_attacks_unwritable_output", "benchmark_attacks.py",
     ["--model={truncated_pb}", "--output={file}/bench.json"], ["--output=", "a_file is a file, not a directory"]),
    ("evaluate_pool_size_1", "evaluate.py", ["--model={model}", "--output={file}.d", "--pool_size=1"],
     ["--pool_size must be an integer >= 2", "another class"]),
]


@pytest.mark.parametrize("script, args, words", [case[1:] for case in EVALUATION_CASES],
                         ids=[case[0] for case in EVALUATION_CASES])
def test_evaluation_bad_input(evaluation_inputs, script, args, words):
    done = run_script(script, *(arg.format(**evaluation_inputs) for arg in args), timeout=240)
    assert_one_error_line(done, *words)
    assert not os.path.exists(f"{evaluation_inputs['file']}.d/robustness")  # nothing was evaluated


def test_evaluation_compare_shows_skipped_parts_as_skipped(evaluation_inputs, tmp_path):
    """The counterpart of the damaged rows: parts recorded as skipped are "—", not errors."""
    table = tmp_path / "sub" / "cmp.md"
    done = run_script("compare.py", evaluation_inputs["eval_ok"], f"--output={table}")
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in table.read_text().splitlines() if line.startswith("| tiny (digits)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-2:] == ["—", "—"] and "±" in cells[1]  # FD skipped, robustness present
    assert "Table 3" not in done.stdout  # the classifier was skipped




# --- loading a model: untrusted SavedModels ------------------------------------------
