"""The scripts check flags and paths before they import TensorFlow: a wrong flag, a missing
or unwritable path, a directory in use ends in its one `error:` line within a second
instead of after TensorFlow's import (several seconds). Each case runs the script with a
finder that records the first `import tensorflow` (tests/scripts.py `run_script`
`tensorflow_record`) and asserts the error line and that there was none.

The full tables of these faults (and the words of every message) are in the
tests/*/test_*_bad_input.py files; this file only pins where TensorFlow is first imported.
"""

import os

import pytest

from tests.scripts import QUICK_TRAINING, assert_one_error_line, run_script

_TWO_WORKERS = '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}'

# (script, arguments, TF_CONFIG, words of the error line); {tmp} is the test's directory, which
# holds a_file (a regular file) and model/ (a directory with a saved_model.pb that is not one:
# the settings are checked before the model is read).
CASES = [
    # bin/train.py: the config (file, fields, values), the run's directories, multi-worker flags.
    ("train.py", ["--config.train.no_such_field=1"], None, ["no field 'no_such_field'"]),
    ("train.py", ["--config.train.keep_checkpoints=0"], None, ["train.keep_checkpoints", ">= 1"]),
    ("train.py", ["--model=robustt"], None, ["'robustt' is unknown"]),
    ("train.py", ["--dataset=nope"], None, ["unknown dataset 'nope'"]),
    ("train.py", ["--dataset=mnist", "--config=configs/digits.py"], None, ["--dataset=mnist contradicts"]),
    ("train.py", ["--workdir={tmp}/a_file/run"], None, ["--workdir", "a_file is a file"]),
    ("train.py", ["--export_dir={tmp}/a_file/saved"], None, ["--export_dir", "a_file is a file"]),
    ("train.py", ["--task_index=0"], None, ["--worker_hosts", "--task_index", "both"]),
    ("train.py", ["--worker_timeout=0"], None, ["--worker_timeout=0", "> 0"]),
    ("train.py", ["--num_cpu_devices=2"], _TWO_WORKERS, ["train.num_cpu_devices=2", "leave it at 1"]),
    # bin/sweep.py and bin/reproduce.py: the grid, every point's config, the evaluation settings, the output.
    ("sweep.py", ["--grid=loss.coupling=0.5,1.5"], None, ["value 1.5 is invalid"]),
    ("sweep.py", ["--grid=model=robust,robustt"], None, ["'robustt' is unknown"]),
    ("sweep.py", ["--eval=budgets=1"], None, ["--front_budget=3", "budgets"]),
    ("sweep.py", ["--eval=pool_size=1"], None, ["--pool_size must be an integer >= 2"]),
    ("sweep.py", ["--output={tmp}/a_file/sweep"], None, ["--output=", "a_file is a file"]),
    ("reproduce.py", ["--models=gmm_dae,robustt"], None, ["'robustt' is unknown"]),
    ("reproduce.py", ["--model_epochs=robust=0"], None, ["--model_epochs=robust=0", "positive integer"]),
    ("reproduce.py", ["--paper=nope"], None, ["--paper must be one of"]),
    ("reproduce.py", ["--output={tmp}/a_file/reproduce"], None, ["--output=", "a_file is a file"]),
    # bin/evaluate.py: the model's path, the settings, the output.
    ("evaluate.py", ["--model={tmp}/missing"], None, ["--model=", "missing"]),
    ("evaluate.py", ["--model={tmp}/model", "--pool_size=1"], None, ["--pool_size must be an integer >= 2"]),
    ("evaluate.py", ["--model={tmp}/model", "--protocol=paper", "--budgets=1,0"], None, ["budget", "> 0", "got 0"]),
    ("evaluate.py", ["--model={tmp}/model", "--split=heldout_train"], None, ["--skip_classifier"]),
    ("evaluate.py", ["--model={tmp}/model", "--classifier_dropout=1.5"], None, ["dropout", "[0, 1)"]),
    ("evaluate.py", ["--model={tmp}/model", "--attack_towards_starts=1000"], None, ["towards_starts", "got 1000"]),
    ("evaluate.py", ["--model={tmp}/model", "--attack_method=ensemble", "--attack_ensemble_members=apgd,fab"], None,
     ["ensemble members", "unknown: fab"]),
    ("evaluate.py", ["--model={tmp}/model", "--attack_ensemble_members=apgd_geometry"], None,
     ["ensemble_members", "'ensemble' only"]),
    ("evaluate.py", ["--model={tmp}/model", "--attack_method=ensemble", "--attack_gradient_evaluations=50"], None,
     ["needs at least 80 gradient evaluations", "got 50"]),
    ("evaluate.py", ["--model={tmp}/model", "--attack_method=lbfgsb", "--attack_precision=bfloat16"], None,
     ["precision 'bfloat16'", "not 'lbfgsb'", "float32"]),
    ("evaluate.py", ["--model={tmp}/model", "--output={tmp}/a_file/eval"], None, ["--output=", "a_file is a file"]),
    # bin/check_attacks.py and bin/benchmark_attacks.py: the model's path, the dataset, budgets, methods, the output.
    ("check_attacks.py", ["--model={tmp}/missing"], None, ["--model=", "not a directory"]),
    ("check_attacks.py", ["--model={tmp}/model", "--dataset=nope"], None, ["unknown dataset 'nope'"]),
    ("check_attacks.py", ["--model={tmp}/model", "--budgets=1,0"], None, ["budget", "> 0", "got 0"]),
    ("check_attacks.py", ["--model={tmp}/model", "--methods=pgd,nope"], None, ["--methods must be distinct"]),
    ("check_attacks.py", ["--model={tmp}/model", "--ensemble_evaluations=3"], None,
     ["needs at least 80 gradient evaluations", "got 3"]),
    ("check_attacks.py", ["--model={tmp}/model", "--ensemble_members=apgd_geometry", "--ensemble_evaluations=35"],
     None, ["needs at least 36 gradient evaluations", "apgd_geometry", "got 35"]),
    ("check_attacks.py", ["--model={tmp}/model", "--output={tmp}/a_file/check"], None, ["--output=", "a_file is a file"]),
    ("benchmark_attacks.py", ["--model={tmp}/missing"], None, ["--model=", "not a directory"]),
    ("benchmark_attacks.py", ["--model={tmp}/model", "--budgets=1,-3"], None, ["budget", "> 0", "got -3"]),
    ("benchmark_attacks.py", ["--model={tmp}/model", "--output={tmp}/a_file/b.json"], None,
     ["--output=", "a_file is a file"]),
]


def _record(tmp_path):
    return tmp_path / "tensorflow_import.txt"


def _assert_no_tensorflow(record):
    assert not record.exists(), "TensorFlow was imported before the error, from:\n" + record.read_text()


@pytest.mark.parametrize("script, args, tf_config, words", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_a_bad_flag_fails_before_tensorflow_is_imported(tmp_path, script, args, tf_config, words):
    (tmp_path / "a_file").write_text("a regular file")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"not a SavedModel")
    if script == "train.py":  # a --config file before the --config.<field> flags; the case's flags last (they win)
        files = [arg for arg in args if arg.startswith("--config=")]
        args = [*files, "--workdir={tmp}/run", "--export_dir={tmp}/out", *QUICK_TRAINING,
                *(arg for arg in args if arg not in files)]
    else:
        output = "--output={tmp}/out" + (".json" if script == "benchmark_attacks.py" else "")
        args = [output, *(["--dataset=digits"] if script != "evaluate.py" else []), *args]
    done = run_script(script, *(arg.format(tmp=tmp_path) for arg in args), timeout=120,
                      env={"TF_CONFIG": tf_config or ""}, tensorflow_record=_record(tmp_path))
    assert_one_error_line(done, *words)
    _assert_no_tensorflow(_record(tmp_path))
    assert not os.path.exists(tmp_path / "run" / "examples") and not os.path.exists(tmp_path / "out")
    assert not os.path.exists(tmp_path / "out.json")


def test_a_workdir_in_use_is_refused_before_tensorflow_is_imported(tmp_path):
    from tests.test_locking import lock_held_elsewhere

    workdir = tmp_path / "run"
    with lock_held_elsewhere(str(workdir)) as first:
        done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING, timeout=120,
                          tensorflow_record=_record(tmp_path))
    assert_one_error_line(done, "--workdir=", "in use by another run", f"pid {first.pid}")
    _assert_no_tensorflow(_record(tmp_path))


def test_the_record_sees_an_import_of_tensorflow(tmp_path):
    """The check is not vacuous: a run that gets past its cheap checks (here: data that is
    not there) imports TensorFlow, through robust_dae_tf.tf_startup, and the record shows from where."""
    (tmp_path / "data").mkdir()
    done = run_script("train.py", f"--workdir={tmp_path / 'run'}", "--noexport", "--dataset=mnist",
                      f"--data_dir={tmp_path / 'data'}", *QUICK_TRAINING, timeout=120,
                      tensorflow_record=_record(tmp_path))
    assert_one_error_line(done, str(tmp_path / "data"))
    stack = _record(tmp_path).read_text()
    assert "robust_dae_tf/tf_startup.py" in stack and "bin/train.py" in stack, stack
