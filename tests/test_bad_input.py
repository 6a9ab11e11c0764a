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

# No XLA for these runs (as tests/helpers.small_config): compiling the training step cost
# ~8 s of each ~20 s run and none of these faults depends on it; bin/train.py with the default
# (XLA for the fc nets) runs end to end in tests/test_train_cli.py and tests/test_multiworker.py.
QUICK_TRAINING = ["--model=gmm_dae", "--epochs=1", "--config.data.max_train_examples=200",
                  "--config.model.hidden_units=(32,)", "--config.loss.weight_estimation_batches=5",
                  "--config.train.verbose=0", "--config.train.jit_compile=false"]

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
        while not (workdir / "trainer" / "checkpoints" / "ckpt-125.index").exists():  # epoch 1's end
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



# --- data: image folders, .npz files, the examples cache ------------------------------

import glob  # noqa: E402  (this section's imports, kept here to keep the sections apart)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from robust_dae_tf.pipeline.training import ExampleGen  # noqa: E402
from tests.data.test_sources import write_class_folders, write_png  # noqa: E402

# 3 classes x 2 training images (+ 1 test image each): 2 steps of 3 images.
TINY_MNIST = ["--dataset=mnist", "--noexport", "--epochs=1", "--config.train.batch_size=3",
              "--config.data.max_train_examples=6", "--config.model.hidden_units=(32,)",
              "--config.train.verbose=0", "--config.loss.weight_estimation_batches=5"]
# A failing element used to make tf.data.Dataset.save wait forever: these runs get a short timeout.
HANG_TIMEOUT = 90


def _folders_with_later_file(root, write_bad):
    write_class_folders(root, (28, 28, 1), np.random.default_rng(0))
    write_bad(root / "train" / "emu" / "9.png")  # sorted after the classes' first files
    return root


def _npz(root, x_train):
    x = np.zeros((3, 28, 28), np.float32)
    np.savez(root / "d.npz", x_train=x_train, y_train=[0, 1, 2], x_test=x, y_test=[0, 1, 2])
    return root / "d.npz"


def _nan_pixels():
    x = np.full((3, 28, 28), 0.5, np.float32)
    x[2, 5, 5] = np.nan
    return x


def _random_bytes_npz(root):
    (root / "d.npz").write_bytes(np.random.default_rng(0).bytes(500))
    return root / "d.npz"


def _empty_celeba_folder(root):
    (root / "img_align_celeba").mkdir()
    (root / "img_align_celeba" / "readme.txt").write_text("images go here")
    return root


DATA_CASES = {  # name: (writes the data under a directory and returns --data_dir, words of the error)
    "corrupt_image_after_first": (
        lambda root: _folders_with_later_file(root, lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 30)),
        ["train/emu/9.png", "cannot decode"]),
    "wrong_size_image_after_first": (
        lambda root: _folders_with_later_file(root, lambda p: write_png(p, np.zeros((20, 20, 1), np.uint8))),
        ["train/emu/9.png", "20x20x1", "28x28x1"]),
    "nan_pixels_npz": (lambda root: _npz(root, _nan_pixels()), ["d.npz[x_train]", "NaN or Inf"]),
    "not_a_zip_npz": (_random_bytes_npz, ["d.npz", "not a valid .npz (zip) file"]),
    # The folder layout the "no supported data" message names, but empty: say so, naming the folder.
    "empty_img_align_celeba": (_empty_celeba_folder, ["img_align_celeba holds no images", "readme.txt", ".jpg"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_ends_in_one_line_and_leaves_nothing(tmp_path, case):
    write, words = DATA_CASES[case]
    (tmp_path / "data").mkdir()
    data_dir = write(tmp_path / "data")
    workdir = tmp_path / "run"
    done = run_script("train.py", *TINY_MNIST, f"--data_dir={data_dir}", f"--workdir={workdir}",
                      timeout=HANG_TIMEOUT)
    last = assert_one_error_line(done, *words)
    assert "rescale" not in last and "pickled" not in last, last
    assert not (workdir / "examples").exists() and not glob.glob(str(workdir / "*.tmp-*"))


def _damage_examples(uri, damage):
    if damage == "truncated_shard":
        (shard,) = glob.glob(os.path.join(uri, "train", "*", "*.shard", "*.snapshot"))
        with open(shard, "r+b") as f:
            f.truncate(os.path.getsize(shard) // 3)
        return shard
    marker = os.path.join(uri, "artifact.json")
    with open(marker, "w") as f:
        f.write("{not json")
    return marker


def _cached_examples(tmp_path, damage):
    """A damaged examples cache of a tiny image folder in <tmp_path>/run/examples, as a
    killed or disk-full run leaves it; returns (data_dir, workdir, examples uri, damaged file)."""
    data_dir = tmp_path / "data"
    write_class_folders(data_dir, (32, 32, 1), np.random.default_rng(1))
    uri = str(tmp_path / "run" / "examples")
    ExampleGen("mnist", str(data_dir))({"examples": uri})
    return data_dir, tmp_path / "run", uri, _damage_examples(uri, damage)


@pytest.mark.parametrize("damage", ["truncated_shard", "corrupt_marker"])
def test_damaged_data_cache_is_rebuilt_on_rerun(tmp_path, damage):
    data_dir, workdir, uri, damaged = _cached_examples(tmp_path, damage)
    done = run_script("train.py", *TINY_MNIST, f"--data_dir={data_dir}", f"--workdir={workdir}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "damaged" in done.stderr and damaged in done.stderr, done.stderr[-3000:]
    assert "Trained 2 steps (6 training images)" in done.stdout, done.stdout
    # Never silently fewer images: the rebuilt cache holds every image (read, not the metadata).
    assert sum(1 for _ in tf.data.Dataset.load(os.path.join(uri, "train"))) == 6


@pytest.mark.parametrize("damage", ["truncated_shard", "corrupt_marker"])
def test_damaged_data_cache_without_its_source_is_refused(tmp_path, damage):
    data_dir, workdir, uri, damaged = _cached_examples(tmp_path, damage)
    os.rename(data_dir, tmp_path / "moved")
    done = run_script("train.py", *TINY_MNIST, f"--data_dir={data_dir}", f"--workdir={workdir}",
                      timeout=HANG_TIMEOUT)
    assert_one_error_line(done, "damaged", damaged, "cannot be rebuilt", str(data_dir))
    assert not (workdir / "trainer").exists()


# SVHN's official .mat files and CelebA's identity split (writers and words shared with the
# unit tests in tests/data/test_sources.py): one error line naming the file, no examples written.
from tests.data.test_sources import CELEB_A_ATTRIBUTE_FAULTS, CELEB_A_IDENTITY_FAULTS, SVHN_MAT_FAULTS  # noqa: E402

SVHN_CELEB_A_CASES = {
    **{f"svhn_{name}": ("svhn", SVHN_MAT_FAULTS[name][0], [*SVHN_MAT_FAULTS[name][1], "test_32x32.mat"]) for name in (
        "no_X", "no_y", "X_wrong_shape", "X_float", "y_wrong_length", "label_0", "not_a_mat")},
    **{f"celeb_a_{name}": ("celeb_a", *CELEB_A_IDENTITY_FAULTS[name]) for name in (
        "image_not_listed", "malformed_line", "one_identity")},
    # An attribute file that misses an image or has a bad row: refused before any image is read.
    **{f"celeb_a_{name}": ("celeb_a", *CELEB_A_ATTRIBUTE_FAULTS[name]) for name in CELEB_A_ATTRIBUTE_FAULTS},
}


@pytest.mark.parametrize("case", sorted(SVHN_CELEB_A_CASES))
def test_bad_svhn_or_celeb_a_data_ends_in_one_line_and_leaves_nothing(tmp_path, case):
    dataset, write, words = SVHN_CELEB_A_CASES[case]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write(data_dir)
    workdir = tmp_path / "run"
    done = run_script("train.py", f"--dataset={dataset}", "--noexport", "--epochs=1", "--config.train.verbose=0",
                      f"--data_dir={data_dir}", f"--workdir={workdir}", timeout=HANG_TIMEOUT)
    assert_one_error_line(done, *words)
    assert not (workdir / "examples").exists() and not glob.glob(str(workdir / "*.tmp-*"))


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


# --- multi-worker training: TF_CONFIG, --worker_hosts / --task_index --------------------

# (arguments, TF_CONFIG or None, words of the error line); refused before any work.
_TWO_WORKERS = '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": %s}}'
MULTIWORKER_CASES = [
    (["--worker_hosts=127.0.0.1", "--task_index=0"], None, ["--worker_hosts", "'127.0.0.1'", "host:port"]),
    (["--worker_hosts=127.0.0.1:1,127.0.0.1:2", "--task_index=2"], None, ["--task_index=2", "out of range", "0..1"]),
    (["--task_index=0"], None, ["--worker_hosts", "--task_index", "both"]),
    (["--worker_hosts=127.0.0.1:1,127.0.0.1:2", "--task_index=0"], _TWO_WORKERS % 0, ["TF_CONFIG", "use one"]),
    ([], "{not json", ["TF_CONFIG", "not valid JSON"]),
    ([], _TWO_WORKERS % 5, ["TF_CONFIG", "task.index=5", "0..1"]),
    (["--num_cpu_devices=2"], _TWO_WORKERS % 0, ["train.num_cpu_devices=2", "TF_CONFIG", "leave it at 1"]),
]


@pytest.mark.parametrize("args,tf_config,words", MULTIWORKER_CASES,
                         ids=[" ".join(a) + (f" TF_CONFIG={c}" if c else "") for a, c, _ in MULTIWORKER_CASES])
def test_multiworker_bad_input(tmp_path, args, tf_config, words):
    workdir, export_dir = tmp_path / "run", tmp_path / "saved"
    env = {"TF_CONFIG": tf_config} if tf_config else {"TF_CONFIG": ""}
    done = run_script("train.py", f"--workdir={workdir}", f"--export_dir={export_dir}", *QUICK_TRAINING, *args,
                      env=env, timeout=120)
    assert_one_error_line(done, *words)
    assert not (workdir / "examples").exists() and not export_dir.exists()


def test_a_worker_whose_peer_never_starts_says_whom_it_awaits_and_gives_up(tmp_path):
    """Worker 0 of two, worker 1 never started: the awaited worker is named at once, and after
    --worker_timeout one error line ends the run (TensorFlow would wait forever, silently)."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
    workdir = tmp_path / "run"
    done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING, f"--worker_hosts={hosts}",
                      "--task_index=0", "--worker_timeout=3", env={"TF_CONFIG": ""}, timeout=180)
    assert f"waiting up to 3 s (--worker_timeout) for worker 1 (127.0.0.1:{ports[1]}) to start" in done.stderr, \
        done.stderr[-3000:]
    # Killed by the watchdog (TensorFlow blocks the process): exit status 137, the error line last.
    assert done.returncode == -9 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-3000:])
    last = done.stderr.strip().splitlines()[-1]
    for words in (f"error: worker 0 (127.0.0.1:{ports[0]}) waited 3 s", f"worker 1 (127.0.0.1:{ports[1]})",
                  "--worker_timeout"):
        assert words in last, last
    assert not (workdir / "trainer").exists()
    done = run_script("train.py", f"--workdir={workdir}", *QUICK_TRAINING, "--worker_timeout=0", env={"TF_CONFIG": ""})
    assert_one_error_line(done, "--worker_timeout=0", "> 0")


# --- sweep: bin/sweep.py and bin/reproduce.py (grid, evaluation pass-through, engine) ---------

SWEEP_CASES = [
    ("sweep.py", ["--grid=loss.couplin=0.5,0.9"], ["--grid=loss.couplin=0.5,0.9", "no field 'couplin'", "coupling"]),
    ("sweep.py", ["--grid=loss.coupling=0.5,high"], ["--grid=loss.coupling=0.5,high", "'high'", "a number"]),
    ("sweep.py", ["--grid=loss.coupling"], ["--grid=loss.coupling", "expected --grid=<config field>=<value>"]),
    ("sweep.py", ["--grid=loss.coupling=0.5,1.5"], ["--grid=loss.coupling=0.5,1.5", "value 1.5 is invalid", "alpha"]),
    ("sweep.py", ["--grid=model=robust,robustt"], ["--grid=model=robust,robustt", "'robustt' is unknown"]),
    ("sweep.py", ["--eval=trails=2"], ["--eval=trails=2", "trials"]),
    ("sweep.py", ["--eval=budgets=1"], ["--front_budget=3", "budgets"]),
    ("reproduce.py", ["--models=gmm_dae,robustt"], ["--models=gmm_dae,robustt", "'robustt' is unknown"]),
    ("reproduce.py", ["--models=gmm_dae,vae", "--model_epochs=se=3"], ["--model_epochs=se=3", "'se' is not one of"]),
    ("reproduce.py", ["--model_epochs=robust=0"], ["--model_epochs=robust=0", "positive integer"]),
]


@pytest.mark.parametrize("script, args, words", SWEEP_CASES, ids=[" ".join(c[1]) for c in SWEEP_CASES])
def test_sweep_bad_input(tmp_path, script, args, words):
    output = tmp_path / "out"
    done = run_script(script, "--dataset=digits", f"--output={output}", *args, timeout=120)
    assert_one_error_line(done, *words)
    assert not output.exists()  # checked before anything is written


def test_sweep_engine_ray_without_ray_says_how_to_install(tmp_path):
    fake = tmp_path / "no_ray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    path = os.pathsep.join([str(fake), ROOT, os.environ.get("PYTHONPATH", "")])
    done = run_script("sweep.py", "--dataset=digits", "--engine=ray", f"--output={tmp_path / 'out'}",
                      env={"PYTHONPATH": path}, timeout=120)
    assert_one_error_line(done, "--engine=ray", "pip install .[distributed]")
