"""User faults of evaluating and of loading a model, end to end through `bin/evaluate.py`,
`bin/compare.py`, `bin/check_attacks.py` and `bin/benchmark_attacks.py`: damaged models and
evaluations, unwritable outputs, settings, untrusted SavedModels. Each ends in one clear
`error:` line, exit status 1, no traceback, nothing written (shared helpers: tests/scripts.py).
"""

import json
import os
import shutil

import numpy as np
import pytest

from tests.data.test_sources import write_class_folders
from tests.scripts import HANG_TIMEOUT, assert_one_error_line, run_script

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
    # Trained on all training images (data.max_train_examples = 0): no held-out training images.
    paths["all_train"] = str(root / "all_train")
    shutil.copytree(paths["model"], paths["all_train"])
    meta_path = os.path.join(paths["all_train"], "robust_dae_tf.json")
    meta = json.loads(open(meta_path).read())
    meta["config"] = {"data": {"max_train_examples": 0}}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    paths["int_latents"] = _save_int_latent_model(str(root / "int_latents"), paths["model"])

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


def _save_int_latent_model(path, metadata_from):
    """A SavedModel whose encode returns int32 latents (decode takes floats), with digits metadata."""
    import tensorflow as tf

    class IntLatents(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32)])
        def encode(self, images):
            return {"latents": tf.cast(10.0 * tf.reshape(images, [-1, 1024])[:, :3], tf.int32)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def decode(self, latents):
            return {"images": tf.zeros([tf.shape(latents)[0], 32, 32, 1]) + tf.reduce_mean(latents) * 0.0}

    tf.saved_model.save(IntLatents(), path)
    shutil.copy(os.path.join(metadata_from, "robust_dae_tf.json"), path)
    return path


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
     ["bad_metadata/robust_dae_tf.json is not readable JSON"]),
    ("check_attacks_truncated_model", "check_attacks.py", ["--model={truncated_pb}", "--output={file}.d"],
     ["truncated_pb/saved_model.pb is corrupt", "re-export"]),
    ("evaluate_corrupt_metadata", "evaluate.py", ["--model={bad_metadata}", "--output={file}.d"],
     ["bad_metadata/robust_dae_tf.json is not readable JSON"]),
    ("evaluate_truncated_model", "evaluate.py", ["--model={truncated_pb}", "--output={file}.d"],
     ["truncated_pb/saved_model.pb is corrupt", "re-export"]),
    # Unwritable outputs fail before the (here: broken) model is loaded.
    ("evaluate_unwritable_output", "evaluate.py", ["--model={truncated_pb}", "--output={file}/eval"],
     ["--output=", "a_file is a file, not a directory"]),
    ("check_attacks_unwritable_output", "check_attacks.py", ["--model={truncated_pb}", "--output={file}/check"],
     ["--output=", "a_file is a file, not a directory"]),
    ("benchmark_attacks_unwritable_output", "benchmark_attacks.py",
     ["--model={truncated_pb}", "--output={file}/bench.json"], ["--output=", "a_file is a file, not a directory"]),
    ("evaluate_pool_size_1", "evaluate.py", ["--model={model}", "--output={file}.d", "--pool_size=1"],
     ["--pool_size must be an integer >= 2", "another class"]),
    # Evaluation protocols and the held-out split.
    ("evaluate_unknown_protocol", "evaluate.py", ["--model={model}", "--output={file}.d", "--protocol=weak"],
     ["--protocol=weak", "strong", "paper", "both"]),
    ("evaluate_paper_protocol_budget_0", "evaluate.py",
     ["--model={model}", "--output={file}.d", "--protocol=paper", "--budgets=1,0"], ["budget", "> 0", "got 0"]),
    ("evaluate_both_protocols_negative_budget", "evaluate.py",
     ["--model={model}", "--output={file}.d", "--protocol=both", "--budgets=-1"], ["budget", "> 0"]),
    ("evaluate_int_latents", "evaluate.py",
     ["--model={int_latents}", "--output={file}.d", "--protocol=paper", *TINY_EVALUATE],
     ["int_latents", "int32 latents", "float latents"]),
    ("evaluate_heldout_split_trained_on_all", "evaluate.py",
     ["--model={all_train}", "--output={file}.d", "--split=heldout_train", *TINY_EVALUATE],
     ["--split=heldout_train", "trained on all", "max_train_examples"]),
    ("evaluate_heldout_split_with_classifier", "evaluate.py",
     ["--model={model}", "--output={file}.d", "--split=heldout_train"], ["--split=heldout_train", "--skip_classifier"]),
    ("compare_unknown_protocol", "compare.py", ["{eval_ok}", "--protocol=weak"], ["--protocol=weak", "strong"]),
    # A bfloat16 search needs layers to rebuild; this SavedModel's metadata has no training config.
    ("evaluate_bfloat16_search_without_layers", "evaluate.py",
     ["--model={model}", "--output={file}.d", "--attack_precision=bfloat16", *TINY_EVALUATE],
     ["computes in float32 as saved", "--attack_precision=float32"]),
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
    assert cells[-2:] == ["—", "—"] and cells[1] == "strong"  # FD skipped
    assert "±" not in cells[2] and 0.0 <= float(cells[2]) <= 1.0  # robustness present; one trial: the mean alone
    assert "Table 3" not in done.stdout  # the classifier was skipped


# --- loading a model: untrusted SavedModels ------------------------------------------

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
    # A SavedModel that is not an autoencoder (no metadata either): its endpoints are named, not --dataset.
    ("evaluate.py", "foreign", ["no encode / decode endpoint", "encode(images)"]),
    ("check_attacks.py", "foreign", ["no encode / decode endpoint"]),
]


def _save_foreign_model(path):
    """A SavedModel of another kind: one `predict` function, no encode/decode, no metadata."""
    import tensorflow as tf

    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.predict = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, path)
    return path


def _loading_model(tmp_path, kind):
    """(model directory, the file its crafted ops would read or write)."""
    from tests.test_model_safety import CRAFTED, save_crafted

    target = tmp_path / "target"
    if kind in CRAFTED:
        if kind in ("reads_in_encode", "table_from_file"):
            target.write_text("a\nb\n")
        return save_crafted(kind, tmp_path / "model", target), target
    if kind == "foreign":
        return _save_foreign_model(str(tmp_path / "model")), target
    from tests.helpers import export_tiny_autoencoder as _export_tiny
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
            "--attack_xla=false", "--skip_classifier", "--skip_fid", "--tensorboard=false"]
    done = run_script("evaluate.py", *args, "--trust_model")
    assert done.returncode == 0, done.stderr[-3000:]
    assert target.read_text() == "written while the model was loaded"  # trusted: its initializer ran
    assert (tmp_path / "out" / "summary.json").exists()


def test_evaluation_into_an_output_in_use_stops_naming_the_first_run(evaluation_inputs, tmp_path):
    from tests.test_locking import lock_held_elsewhere

    output = tmp_path / "eval"
    shutil.copytree(evaluation_inputs["eval_ok"], output)  # the first evaluation's parts: must stay
    before = sorted(os.listdir(output))
    with lock_held_elsewhere(str(output), "--output") as first:
        done = run_script("evaluate.py", f"--model={evaluation_inputs['model']}", f"--output={output}",
                          *TINY_EVALUATE, timeout=240)
    assert_one_error_line(done, "--output=", "in use by another run", f"pid {first.pid}")
    assert sorted(os.listdir(output)) == before and (output / "summary.json").exists()


def test_scripts_reading_test_images_directly_name_a_corrupt_file(tmp_path):
    """bin/check_attacks.py reads the test split without ExampleGen (cli.load_model_and_test_images):
    a corrupt test image after the first ends in one line naming the file, not a TF traceback."""
    from tests.helpers import export_tiny_autoencoder

    write_class_folders(tmp_path / "data", (28, 28, 1), np.random.default_rng(0))
    (tmp_path / "data" / "test" / "emu" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 30)
    model = export_tiny_autoencoder(str(tmp_path / "model"))
    done = run_script("check_attacks.py", f"--model={model}", "--dataset=mnist", f"--data_dir={tmp_path / 'data'}",
                      f"--output={tmp_path / 'check'}", timeout=HANG_TIMEOUT)
    assert_one_error_line(done, "test/emu/9.png", "cannot decode")
    assert not (tmp_path / "check").exists()
