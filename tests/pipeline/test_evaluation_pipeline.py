"""Tests of robust_dae_tf.pipeline.evaluation (the evaluation components and
run_evaluation_pipeline) and of bin/evaluate.py / bin/compare.py / bin/check_attacks.py."""

import dataclasses
import json
import os
import shutil
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import data, export, fileio, reporting
from robust_dae_tf.evaluation import downstream as classifier
from robust_dae_tf.evaluation import fidelity as fid
from robust_dae_tf.evaluation import robustness
from robust_dae_tf.errors import ConfigError, DataError, ExportError, UserError
from robust_dae_tf.metrics.frechet import frechet_distance_from_features
from robust_dae_tf.pipeline import artifacts, evaluation, evaluators
from robust_dae_tf.pipeline.training import ExampleGen
from tests.helpers import TINY_LATENT_DIM as LATENT_DIM
from tests.helpers import Killed, count_attack_runs, digits_arrays
from tests.helpers import export_tiny_autoencoder as _export_tiny
from tests.scripts import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class EncodeOnly(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32)])
    def encode(self, images):
        return {"latents": tf.reshape(images, [-1, 1024])[:, :LATENT_DIM]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    examples = ExampleGen("digits")({"examples": str(root / "run" / "examples")})["examples"]
    paths = {
        "good": _export_tiny(str(root / "good"), run_dir=str(root / "run" / "trainer")),
        "wrong_shape": _export_tiny(str(root / "wrong_shape"), shape=(28, 28, 1)),
        "nan": _export_tiny(str(root / "nan"), nan=True),
        "missing": str(root / "missing"),
    }
    tf.saved_model.save(EncodeOnly(), paths["missing"])
    return types.SimpleNamespace(root=root, examples=examples, paths=paths)


def protocol(budgets=(1.0,), num_images=2, trials=1):
    return types.SimpleNamespace(num_images=num_images, trials=trials, budgets=budgets, seed=0, attack=None,
                                 name="strong")


class MeanPixels(fid.FeatureExtractor):
    name = "mean-pixels"

    def _features(self, images):
        return tf.stack([tf.reduce_mean(images, [1, 2, 3]), tf.math.reduce_std(images, [1, 2, 3])], 1)


def _stub_attack(model, x, targets, budget, config, seed=0):
    return types.SimpleNamespace(adversarial=np.array(x), loss=np.zeros(len(x)))


COMPONENTS = {
    "robustness": lambda: (evaluation.RobustnessEvaluator(protocol(), progress=False), ["report"]),
    "robustness_budget0": lambda: (evaluation.RobustnessEvaluator(protocol((1.0, 0.0)), progress=False), ["report"]),
    "classifier": lambda: (evaluation.ClassifierEvaluator(
        classifier.ClassifierConfig(hidden_units=(8,), epochs=1, attack_images=10), progress=False,
        attack_fn=_stub_attack), ["report", "classifier"]),
    "fid": lambda: (evaluation.FidEvaluator(MeanPixels(), num_samples=20, progress=False), ["report"]),
}


@pytest.mark.parametrize("component, model, error, words", [
    ("robustness_budget0", "good", ConfigError, "budget"),
    ("robustness", "missing", ExportError, "no decode endpoint"),
    ("robustness", "wrong_shape", DataError, r"takes \(28, 28, 1\) images but digits images are \(32, 32, 1\)"),
    ("robustness", "nan", DataError, "NaN"),
    ("classifier", "nan", DataError, "NaN"),
    ("classifier", "wrong_shape", DataError, "takes"),
    ("fid", "missing", ExportError, "no decode endpoint"),
    ("fid", "nan", DataError, "NaN"),
])
def test_bad_inputs_raise_one_clear_error_and_leave_no_marker(setup, tmp_path, component, model, error, words):
    comp, outputs = COMPONENTS[component]()
    uris = {key: str(tmp_path / key) for key in outputs}
    saved = evaluation.saved_model_artifact(setup.paths[model])
    with pytest.raises(error, match=words):
        comp(uris, saved_model=saved, examples=setup.examples)
    assert os.listdir(tmp_path) == []  # no output, no marker, no temp directory


def test_nan_in_the_robustness_report_leaves_no_marker(setup, tmp_path, monkeypatch):
    def nan_report(model, images, labels, protocol, progress=True, run_cache_dir=None, per_image_out=None,
                   local_gain=False):
        return {"latent": {"1.0": {"attack_loss": {"mean": float("nan"), "std": 0.0}}}, "max_damage": {}}

    monkeypatch.setattr(robustness, "evaluate_robustness", nan_report)
    comp = evaluation.RobustnessEvaluator(protocol(), progress=False)
    saved = evaluation.saved_model_artifact(setup.paths["good"])
    with pytest.raises(DataError, match="NaN"):
        comp({"report": str(tmp_path / "report")}, saved_model=saved, examples=setup.examples)
    assert os.listdir(tmp_path) == []


def test_components_write_complete_artifacts(setup, tmp_path, monkeypatch):
    seen = {}

    def fake_report(model, images, labels, protocol, progress=True, run_cache_dir=None, per_image_out=None,
                    local_gain=False):
        seen.update(n=len(images), images=images, labels=labels, lo=float(images.min()), hi=float(images.max()))
        x = images[:2]
        rec = np.asarray(model.reconstruct(x))
        return {"protocol": {}, "latent": {"1.0": {"attack_loss": {"mean": 1.0, "std": 0.1}}},
                "max_damage": {"1.0": {"attack_loss": {"mean": 2.0, "std": 0.2}}},
                "examples": {"max_damage": {"budget": 1.0, "x": x, "reconstruction": rec, "adversarial": x,
                                            "adversarial_reconstruction": rec}}}

    monkeypatch.setattr(robustness, "evaluate_robustness", fake_report)
    saved = evaluation.saved_model_artifact(setup.paths["good"])
    out = evaluation.RobustnessEvaluator(protocol(), pool_size=50, progress=False)(
        {"report": str(tmp_path / "robustness")}, saved_model=saved, examples=setup.examples)["report"]
    assert artifacts.read_artifact(out.uri, "EvaluationReport").properties["budgets"] == [1.0]
    payload, arrays = evaluation.read_robustness(out)
    assert seen["n"] == 50 and 0.0 <= seen["lo"] and seen["hi"] <= 1.0 and len(set(seen["labels"])) > 2
    # The pool is a public function of (examples, size, seed), e.g. for robustness.success_levels.
    pool_images, pool_labels = evaluation.robustness_pool(setup.examples, 50, seed=0)
    np.testing.assert_array_equal(pool_images, seen["images"])
    np.testing.assert_array_equal(pool_labels, seen["labels"])
    assert not np.array_equal(evaluation.robustness_pool(setup.examples, 50, seed=1)[1], pool_labels)
    assert payload["model"]["name"] == "tiny (digits)" and payload["pool_size"] == 50
    assert arrays["max_damage"]["x"].shape == (2, 32, 32, 1) and arrays["max_damage"]["budget"] == 1.0

    cls = evaluation.ClassifierEvaluator(
        classifier.ClassifierConfig(hidden_units=(8,), epochs=1, attack_images=10), progress=False,
        attack_fn=_stub_attack)({"report": str(tmp_path / "cls"), "classifier": str(tmp_path / "cls_model")},
                                saved_model=saved, examples=setup.examples)
    report = json.loads(open(os.path.join(cls["report"].uri, reporting.CLASSIFIER_FILE)).read())
    assert 0.0 <= report["clean_accuracy"] <= 1.0 and report["num_attacked"] == 10
    loaded = classifier.load_classifier(cls["classifier"].uri)
    artifacts.read_artifact(cls["classifier"].uri, "ClassifierSavedModel")
    assert loaded.classify(np.zeros((2, 32, 32, 1), np.float32))["probabilities"].shape == (2, 10)

    fid_out = evaluation.FidEvaluator(MeanPixels(), num_samples=20, progress=False)(
        {"report": str(tmp_path / "fid")}, saved_model=saved, examples=setup.examples)["report"]
    fid_report = json.loads(open(os.path.join(fid_out.uri, reporting.FID_FILE)).read())
    assert fid_report["name"] == "mean-pixels" and fid_report["value"] >= 0 and fid_report["num_generated"] == 20
    assert sorted(os.listdir(tmp_path)) == ["cls", "cls_model", "fid", "robustness"]
    # load_evaluation reads the default sub-directory names.
    for name, default in (("cls", reporting.CLASSIFIER_DIR), ("cls_model", reporting.CLASSIFIER_MODEL_DIR)):
        os.rename(tmp_path / name, tmp_path / default)
    # Component outputs without summary.json (bin/evaluate.py writes it last) are an unfinished evaluation.
    with pytest.raises(UserError, match="summary.json is missing: bin/evaluate.py did not finish"):
        reporting.load_evaluation(str(tmp_path))
    fileio.write_json_atomic(str(tmp_path / reporting.SUMMARY_FILE), {"robustness": payload, "classifier": report,
                                                                       "fid": fid_report})
    row = reporting.load_evaluation(str(tmp_path))
    assert row["name"] == "tiny (digits)" and row["fid"]["value"] == fid_report["value"]


def test_robustness_pool_errors_name_pool_size(setup, tmp_path):
    with pytest.raises(ConfigError, match=r"--pool_size must be an integer >= 2 \(the latent attack's targets"):
        evaluation.robustness_pool(setup.examples, 1)
    with pytest.raises(ConfigError, match="--pool_size must be an integer >= 2"):
        evaluation.RobustnessEvaluator(protocol(), pool_size=1).validate()
    labels = evaluation.robustness_pool(setup.examples, 10 ** 6)[1]  # the whole test split
    seed = next(s for s in range(1000)
                if np.unique(labels[np.random.default_rng(s).choice(len(labels), 2, replace=False)]).size == 1)
    with pytest.raises(ConfigError, match=r"--pool_size=2 drew test images of class \d only; .* raise --pool_size"):
        evaluation.robustness_pool(setup.examples, 2, seed)
    comp = evaluation.RobustnessEvaluator(protocol(num_images=60), pool_size=50, progress=False)
    with pytest.raises(ConfigError, match=r"--num_images=60 exceeds the 50 test images .*\(--pool_size=50"):
        comp({"report": str(tmp_path / "report")}, saved_model=evaluation.saved_model_artifact(setup.paths["good"]),
             examples=setup.examples)
    assert os.listdir(tmp_path) == []


def test_damaged_models_raise_one_error_naming_the_file(setup, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(setup.paths["good"], bad)
    metadata = bad / export.METADATA_FILE
    for text, words in (('{"dataset": "dig', "is not readable JSON"), ("[1, 2]", "holds a JSON list, not an object")):
        metadata.write_text(text)
        with pytest.raises(ExportError, match=f"{metadata}.*{words}.*re-export"):
            evaluation.load_model(evaluation.saved_model_artifact(str(bad)))
    (bad / artifacts.MARKER).write_text('{"type": "Saved')
    with pytest.raises(ExportError, match=f"{bad / artifacts.MARKER} is not a valid artifact marker"):
        evaluation.saved_model_artifact(str(bad))


# ------------------------------------------------------------------ the FD feature classifier cache


def test_dataset_classifier_features_cached_and_sensitive_to_shift(setup, tmp_path):
    digits_examples = setup.examples
    uri = str(tmp_path / "fd_digits")
    extractor = evaluation.load_or_train_feature_extractor(uri, digits_examples, epochs=1, verbose=0)
    assert extractor.name == "FD-digits-classifier"
    marker = artifacts.read_artifact(uri, evaluation.FEATURE_EXTRACTOR)
    assert 0.0 <= marker.properties["test_accuracy"] <= 1.0
    assert marker.properties["task"] == "classifier" and marker.properties["epochs"] == 1
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    stamp = os.path.getmtime(os.path.join(uri, "artifact.json"))
    time.sleep(0.01)
    again = evaluation.load_or_train_feature_extractor(uri, digits_examples, epochs=1, verbose=0)  # cached
    assert os.path.getmtime(os.path.join(uri, "artifact.json")) == stamp
    with pytest.raises(UserError, match="feature extractor trained with"):
        evaluation.load_or_train_feature_extractor(uri, digits_examples, epochs=2, verbose=0)

    x = digits_arrays()[2]
    feats = extractor(x)
    assert feats.shape == (len(x), 128) and feats.dtype == np.float64
    np.testing.assert_allclose(again(x), feats, rtol=1e-5, atol=1e-5)
    assert abs(frechet_distance_from_features(feats, extractor(x.copy()))) < 1e-6
    rng = np.random.default_rng(0)
    distances = [frechet_distance_from_features(
        feats, extractor(np.clip(x + s * rng.standard_normal(x.shape).astype(np.float32), 0, 1)))
        for s in (0.05, 0.2, 0.5)]
    assert distances[0] > 1e-4
    assert distances[0] < distances[1] < distances[2]


def test_unlabelled_dataset_uses_rotation_prediction(tmp_path):
    """celeb_a has no labels (-1): the extractor learns to predict 0/90/180/270 degree rotations."""
    rng = np.random.default_rng(0)
    uri = tmp_path / "examples"
    for split, n in (("train", 64), ("test", 16)):
        images = (rng.random((n, 16, 16, 3)) * 255).astype(np.uint8)
        tf.data.Dataset.from_tensor_slices({"image": images, "label": np.full(n, -1, np.int64)}).save(
            str(uri / split))
    artifact = artifacts.Artifact("Examples", str(uri), {
        "source": {"dataset": "celeb_a", "data_dir": ""}, "image_shape": [16, 16, 3], "num_classes": 0,
        "num_examples": {"train": 64, "test": 16}})
    artifacts.write_marker(artifact, "test")
    extractor = evaluation.load_or_train_feature_extractor(str(tmp_path / "fd"), artifact, epochs=1, verbose=0)
    assert extractor.name == "FD-celeb_a-rotation"
    assert extractor.properties["task"] == "rotation" and extractor.properties["num_outputs"] == 4
    assert extractor(rng.random((5, 16, 16, 3)).astype(np.float32)).shape == (5, 128)


def write_celeb_a_with_attributes(root, people=20, per_person=2, seed=0) -> dict:
    """A tiny local CelebA: img_align_celeba/ of flat-colour JPEGs (image i has value
    5 + 4 i, so a preprocessed image tells which file it is), identity_CelebA.txt and
    list_attr_celeba.txt (official layout, CRLF, random -1/+1 rows, plus a row for an
    absent image). Returns {file name: index}."""
    rng = np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True)
    names = {}
    for index in range(people * per_person):
        name = f"{index + 1:06d}.jpg"
        image = np.full((218, 178, 3), 5 + 4 * index, np.uint8)
        (root / "img_align_celeba" / name).write_bytes(tf.io.encode_jpeg(image).numpy())
        names[name] = index
    (root / "identity_CelebA.txt").write_bytes(
        "".join(f"{n} {1 + i % people}\r\n" for n, i in names.items()).encode())
    rows = [f"{n} " + " ".join(f"{v:2d}" for v in rng.choice([-1, 1], 40)) for n in [*names, "999999.jpg"]]
    header = [str(len(rows)), " ".join(f"Attr_{k}" for k in range(40)) + " "]
    (root / "list_attr_celeba.txt").write_bytes(("\r\n".join(header + rows) + "\r\n").encode())
    return names


def test_celeb_a_attribute_features(tmp_path):
    """With list_attr_celeba.txt the FD features of CelebA come from a 40-attribute net
    trained on the train split, fed the file's rows of exactly those images."""
    names = write_celeb_a_with_attributes(tmp_path / "celeba")
    examples = ExampleGen("celeb_a", str(tmp_path / "celeba"))({"examples": str(tmp_path / "examples")})["examples"]
    assert examples.properties["attributes"]["source"] == str(tmp_path / "celeba" / "list_attr_celeba.txt")
    # An independent parse of the file: {image index: 40 values in {0, 1}}.
    lines = (tmp_path / "celeba" / "list_attr_celeba.txt").read_text().split("\n")[2:]
    expected = {names[f[0]]: [(int(v) + 1) / 2 for v in f[1:]] for f in map(str.split, lines) if f and f[0] in names}
    splits = artifacts.load_examples(examples)
    attributes = artifacts.load_attributes(examples)
    seen = {}
    for split, shuffle in (("train", True), ("test", False)):
        for images, targets in fid.feature_training_data(splits, split, "attributes", 16, shuffle, 0, attributes):
            for image, target in zip(images.numpy(), targets.numpy()):
                index = int(round((image.mean() * 255 - 5) / 4))
                assert abs(image.mean() * 255 - (5 + 4 * index)) < 1.5
                np.testing.assert_array_equal(target, expected[index])
                seen[index] = split
    assert sorted(seen) == list(range(len(names))) and list(seen.values()).count("test") == 4

    uri = str(tmp_path / "fd")
    extractor = evaluation.load_or_train_feature_extractor(uri, examples, epochs=2, verbose=0)
    assert extractor.name == "FD-celeb_a-attributes"
    marker = artifacts.read_artifact(uri, evaluation.FEATURE_EXTRACTOR)
    assert marker.properties["task"] == "attributes" and marker.properties["num_outputs"] == 40
    assert 0.0 <= marker.properties["test_accuracy"] <= 1.0 and "majority_accuracy" in marker.properties
    assert os.path.basename(evaluation.FidEvaluator(feature_cache=str(tmp_path)).feature_cache_uri(examples)).startswith(
        "celeb_a_attributes_")
    test_images, _ = data.take_arrays(splits["test"])
    x = test_images.astype(np.float32) / 255.0
    feats = extractor(x)
    assert feats.shape == (4, 128)
    same = frechet_distance_from_features(feats, extractor(x.copy()))
    noise = frechet_distance_from_features(feats, extractor(np.random.default_rng(1).random(x.shape).astype(np.float32)))
    assert abs(same) < 1e-3 * noise and noise > 1e-3, (same, noise)


# ------------------------------------------------------------------ the pipeline function and bin/


def _run(script, *args, timeout=400):
    return run_script(script, *args, timeout=timeout, env={"CUDA_VISIBLE_DEVICES": ""})


# bin/evaluate.py's tiny settings, as flags and as the pipeline function's settings.
TINY_EVALUATION = {"num_images": 4, "trials": 2, "budgets": (1.0,), "attack_steps": 5, "attack_restarts": 1,
                   "attack_exploration_starts": 2, "pool_size": 100, "fd_classifier_epochs": 1, "fid_samples": 64,
                   "classifier_epochs": 1, "classifier_hidden": (16,), "classifier_attack_images": 16}


def _flag(name, value):
    return f"--{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}"


@pytest.fixture(scope="module")
def bin_evaluation(setup):
    """bin/evaluate.py run once on the good model: (its stdout, --output, --feature_cache)."""
    out, features = setup.root / "bin_eval" / "eval", setup.root / "bin_eval" / "features"
    proc = _run("evaluate.py", f"--model={setup.paths['good']}", f"--output={out}", f"--feature_cache={features}",
                *(_flag(name, value) for name, value in TINY_EVALUATION.items()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return types.SimpleNamespace(stdout=proc.stdout, out=out, features=features)


def _without_times(payload):
    """`payload` without its run times ("timing", "seconds", "created" anywhere inside)."""
    if isinstance(payload, dict):
        return {k: _without_times(v) for k, v in payload.items() if k not in ("timing", "seconds", "created")}
    if isinstance(payload, list):
        return [_without_times(v) for v in payload]
    return payload


def _differences(ours, theirs, where=""):
    """Where two JSON values differ (paths), for a readable assertion."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [d for k in sorted(set(ours) | set(theirs), key=str)
                for d in _differences(ours.get(k), theirs.get(k), f"{where}/{k}")]
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [d for i, (a, b) in enumerate(zip(ours, theirs)) for d in _differences(a, b, f"{where}[{i}]")]
    return [] if ours == theirs else [f"{where}: {ours!r} != {theirs!r}"[:300]]


def _evaluation_files(directory):
    """{relative path: comparable content} of an evaluation directory: JSON reports with the
    directory's own path and the run times taken out, Markdown / CSV text, other files by name."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if rel.startswith("tensorboard" + os.sep):  # event file names hold the host and the time
                files[os.path.dirname(rel)] = "tensorboard events"
            elif name.endswith(".json") and not rel.startswith("classifier_model" + os.sep):
                files[rel] = _without_times(json.loads(open(path).read().replace(str(directory), "<output>")))
            elif name.endswith((".md", ".csv")):
                files[rel] = open(path).read()
            else:
                files[rel] = "present"
    return files


def test_run_evaluation_pipeline_runs_the_components_and_writes_what_bin_evaluate_writes(setup, bin_evaluation,
                                                                                       tmp_path):
    out = tmp_path / "eval"
    settings = evaluation.EvaluationSettings(feature_cache=str(bin_evaluation.features), **TINY_EVALUATION)
    result = evaluation.run_evaluation_pipeline(setup.paths["good"], str(out), settings)
    assert result["output"] == str(out) and not os.path.exists(f"{out}.lock")  # the lock is released
    assert {key: artifact.type_name for key, artifact in result["artifacts"].items()} == {
        "robustness": "EvaluationReport", "classifier": "ClassifierReport", "fid": "FidReport"}
    assert result["row"] == json.loads((out / reporting.SUMMARY_FILE).read_text())
    ours, theirs = _evaluation_files(out), _evaluation_files(bin_evaluation.out)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert ours[name] == theirs[name], (name, _differences(ours[name], theirs[name]))  # the same numbers
    assert result["markdown"] in bin_evaluation.stdout


def test_run_evaluation_pipeline_checks_arguments_and_output_before_the_model(setup, tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("")
    cases = [
        ("", {}, ConfigError, "pass --model="),
        (str(tmp_path / "nope"), {}, ExportError, "nope does not exist; pass a SavedModel directory or a .keras file"),
        (setup.paths["good"], {"budgets": ("1", "x")}, ConfigError, "--budgets must be comma-separated numbers"),
        (setup.paths["good"], {"skip_robustness": True, "skip_classifier": True, "skip_fid": True}, ConfigError,
         "all evaluations were skipped"),
    ]
    for model, fields, error, words in cases:
        with pytest.raises(error, match=words):
            evaluation.run_evaluation_pipeline(model, str(tmp_path / "out"), evaluation.EvaluationSettings(**fields))
    with pytest.raises(ConfigError, match="--output=.*a_file is a file, not a directory"):
        evaluation.run_evaluation_pipeline(setup.paths["good"], str(afile / "out"))
    with pytest.raises(ConfigError, match=r"--classifier_hidden must be comma-separated integers, got 8,x"):
        evaluation.run_evaluation_pipeline(setup.paths["good"], str(tmp_path / "out"),
                                           evaluation.EvaluationSettings(classifier_hidden=("8", "x")))
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # nothing evaluated, no lock left


def test_bin_evaluate_end_to_end(setup, bin_evaluation, tmp_path):
    out = bin_evaluation.out
    proc = types.SimpleNamespace(stdout=bin_evaluation.stdout)
    for name in ("robustness/artifact.json", "robustness/robustness.json", "robustness/examples.npz",
                 "classifier/artifact.json", "classifier_model/saved_model.pb", "classifier_model/artifact.json",
                 "fid/artifact.json", "fid/fid.json", "summary.json", "table1.md", "table1.csv", "table3.md",
                 "report.md", "figures/attack_curves.png", "figures/grid_latent.png",
                 "figures/grid_max_damage.png"):
        assert (out / name).exists(), name
    assert os.listdir(out / "tensorboard")
    assert "| tiny (digits) |" in proc.stdout and "FD-digits-classifier" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["robustness"]["latent"]) == {"1.0"}
    assert summary["robustness"]["protocol"]["trials"] == 2
    # Success levels recomputed from the model and the evaluator's pool, without attacks.
    model = evaluation.load_model(evaluation.saved_model_artifact(setup.paths["good"]))
    levels = robustness.success_levels(model, *evaluation.robustness_pool(setup.examples, 100, seed=0),
                                       robustness.Protocol(num_images=4, trials=2, budgets=(1.0,)))
    for kind, stats in levels.items():
        for metric, stat in stats.items():
            assert summary["robustness"]["success_levels"][kind][metric]["mean"] == pytest.approx(stat["mean"], rel=1e-5)
    assert "Success levels" in (out / "report.md").read_text()
    # The training run's examples (run_dir in the metadata) were reused, not reloaded.
    assert not (out / "examples").exists()

    table = tmp_path / "cmp.md"
    proc = _run("compare.py", str(out), str(out), f"--output={table}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert table.exists() and (tmp_path / "cmp_table1.csv").exists()
    # The same directory twice: both rows, told apart, in Table 1 and Table 3.
    assert proc.stdout.count("| tiny (digits) [eval #1] |") == 2
    assert proc.stdout.count("| tiny (digits) [eval #2] |") == 2


def test_bin_check_attacks_writes_consistent_tables(setup, tmp_path):
    """pgd, its 4x reference and L-BFGS-B side by side (the ensemble: tests/attacks/test_check_attacks.py):
    the configs run as given, the table's "vs pgd" is each method's relative strength."""
    out = tmp_path / "check"
    proc = _run("check_attacks.py", f"--model={setup.paths['good']}", f"--output={out}", "--num_images=3",
                "--budgets=1,2", "--steps=4", "--restarts=1", "--reference_factor=2", "--lbfgsb_steps=4",
                "--lbfgsb_restarts=1", "--methods=pgd,reference,lbfgsb")  # --exploration_starts: per-attack default
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "summary.md").exists()
    results = json.loads((out / "results.json").read_text())
    configs = results["meta"]["configs"]
    assert [configs[k]["pgd"][f] for k in ("latent", "max_damage") for f in ("steps", "restarts",
                                                                             "exploration_starts")] == [4, 1, 24, 4, 1, 32]
    assert configs["latent"]["reference"]["steps"] == 8 and configs["latent"]["reference"]["restarts"] == 2
    summary = (out / "summary.md").read_text()
    for kind, sign in (("latent", -1.0), ("max_damage", 1.0)):
        for budget in ("1.0", "2.0"):
            entry = results["results"][kind][budget]
            pgd = np.mean(entry["pgd"]["loss"])
            for other in ("reference", "lbfgsb"):
                mean = np.mean(entry[other]["loss"])
                assert f"| {kind} | {float(budget):g} | {other} | {mean:.4f} | {100 * sign * (mean - pgd) / abs(pgd):+.2f}% |" \
                    in summary
    proc = _run("check_attacks.py", f"--model={setup.paths['good']}", "--exploration_starts=0", timeout=120)
    assert proc.returncode == 1 and "--exploration_starts must be >= 1" in proc.stderr


def test_bin_evaluate_bad_model_is_one_line_error(tmp_path):
    proc = _run("evaluate.py", f"--model={tmp_path / 'nope'}", timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0], proc.stderr


def test_heldout_train_split_is_the_training_images_after_max_train_examples(setup):
    """--split=heldout_train: the pool is exactly the train split from data.max_train_examples
    on (training keeps the first N); refused when the model trained on all of them."""
    from robust_dae_tf import data

    num_train = setup.examples.properties["num_examples"]["train"]
    metadata = {"config": {"data": {"max_train_examples": 1000}}}
    start = evaluation.heldout_start(metadata, setup.examples, "m")
    assert start == 1000
    images, labels = evaluation.robustness_pool(setup.examples, 10 ** 6, 0, "heldout_train", start)
    train_images, train_labels = data.take_arrays(artifacts.load_examples(setup.examples)["train"])
    assert len(images) == num_train - 1000
    np.testing.assert_array_equal(images, data.to_float(train_images[1000:]).numpy())
    np.testing.assert_array_equal(labels, train_labels[1000:])
    # A pool smaller than the held-out images is a seeded subset of them, never a trained-on image.
    sub, _ = evaluation.robustness_pool(setup.examples, 50, 0, "heldout_train", start)
    held = {im.tobytes() for im in images}
    assert len(sub) == 50 and all(im.tobytes() in held for im in sub)
    for bad, words in (({"config": {"data": {"max_train_examples": 0}}}, "trained on all"),
                       ({"config": {"data": {"max_train_examples": num_train}}}, "trained on all"),
                       ({}, "no config.data.max_train_examples")):
        with pytest.raises(ConfigError, match=words):
            evaluation.heldout_start(bad, setup.examples, "m")
    with pytest.raises(ConfigError, match="--split='valid' is unknown"):
        evaluation.check_split("valid")


def test_protocol_both_writes_two_evaluations_that_compare_side_by_side(setup, tmp_path):
    """--protocol=both: <output>/strong is exactly the --protocol=strong evaluation, and
    <output>/paper the paper protocol's (its attacker, its decode noise); compare on
    <output> gives both rows."""
    tiny = dict(examples=setup.examples.uri, num_images=2, trials=1, budgets=(1.0,), attack_steps=2,
                attack_restarts=1, attack_exploration_starts=1, attack_xla=False, pool_size=50,
                skip_classifier=True, skip_fid=True, tensorboard=False)
    both = evaluation.run_evaluation_pipeline(setup.paths["good"], str(tmp_path / "both"),
                                              evaluation.EvaluationSettings(protocol="both", **tiny))
    alone = evaluation.run_evaluation_pipeline(setup.paths["good"], str(tmp_path / "alone"),
                                               evaluation.EvaluationSettings(**tiny))
    assert set(os.listdir(tmp_path / "both")) >= {"strong", "paper"}
    assert not os.path.exists(tmp_path / "both" / "summary.json")
    strong = json.loads((tmp_path / "both" / "strong" / "summary.json").read_text())
    paper = json.loads((tmp_path / "both" / "paper" / "summary.json").read_text())
    single = json.loads((tmp_path / "alone" / "summary.json").read_text())
    assert (strong["protocol"], paper["protocol"], single["protocol"]) == ("strong", "paper", "strong")
    assert strong["robustness"]["latent"] == single["robustness"]["latent"]
    assert paper["robustness"]["protocol"]["attack"]["method"] == "paper"
    assert paper["robustness"]["protocol"]["decode_noise_std"] == {"latent": 0.4, "max_damage": 0.004}
    rows = reporting.compare([str(tmp_path / "both")])["rows"]
    assert [r["protocol"] for r in rows] == ["strong", "paper"]
    assert "| strong |" in both["markdown"] and "| paper |" in both["markdown"]
    assert alone["row"]["protocol"] == "strong"


def test_a_killed_robustness_component_resumes_and_then_removes_its_cache(setup, tmp_path, monkeypatch):
    """RobustnessEvaluator caches its finished attack runs next to its report: killed in the
    second run it leaves no report and one cached run, which the rerun loads; once the report
    is written the cache is gone."""
    from robust_dae_tf.attacks import AttackConfig

    proto = robustness.Protocol(num_images=2, trials=1, budgets=(1.0,), seed=0, attack=AttackConfig(
        steps=2, restarts=1, exploration_starts=1, jit_compile=False))
    saved = evaluation.saved_model_artifact(setup.paths["good"])
    uri = str(tmp_path / "robustness")
    cache = evaluation.run_cache_dir(uri)
    assert cache == f"{uri}.runs"
    count_attack_runs(monkeypatch, fail_after=1)
    with pytest.raises(Killed):
        evaluation.RobustnessEvaluator(proto, pool_size=50, progress=False)({"report": uri}, saved_model=saved,
                                                                           examples=setup.examples)
    assert sorted(os.listdir(tmp_path)) == ["robustness.runs"] and os.listdir(cache) == ["latent_1.0.npz"]
    calls = count_attack_runs(monkeypatch)
    out = evaluation.RobustnessEvaluator(proto, pool_size=50, progress=False)(
        {"report": uri}, saved_model=saved, examples=setup.examples)["report"]
    assert calls == [("max_damage", 1.0)]
    assert sorted(os.listdir(tmp_path)) == ["robustness"]  # the cache went after the report was written
    assert evaluation.read_robustness(out)[0]["timing"]["resumed_runs"] == 1


def test_a_killed_evaluation_of_both_protocols_resumes_at_the_attack_run_it_was_in(setup, tmp_path, monkeypatch,
                                                                                   capsys):
    """--protocol=both killed in its last attack run (the paper protocol's maximum damage):
    the rerun attacks only that run (the strong protocol's report, already written, is
    reused and the paper's latent run comes from the cache), writes what an uninterrupted
    evaluation writes, and leaves no cache behind."""
    settings = evaluation.EvaluationSettings(
        protocol="both", examples=setup.examples.uri, num_images=2, trials=1, budgets=(1.0,), attack_steps=2,
        attack_restarts=1, attack_exploration_starts=1, attack_xla=False, pool_size=50, skip_classifier=True,
        skip_fid=True, tensorboard=False)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    calls = count_attack_runs(monkeypatch)
    evaluation.run_evaluation_pipeline(setup.paths["good"], str(whole), settings)
    assert len(calls) == 4  # 2 attacks x 1 budget x 2 protocols
    count_attack_runs(monkeypatch, fail_after=3)
    with pytest.raises(Killed):
        evaluation.run_evaluation_pipeline(setup.paths["good"], str(killed), settings)
    # The strong report is written (the rerun reuses it); its runs are kept until the evaluation is.
    assert os.path.exists(killed / "strong" / reporting.ROBUSTNESS_DIR / artifacts.MARKER)
    assert len(os.listdir(killed / "strong" / "robustness.runs")) == 2
    assert os.listdir(killed / "paper" / "robustness.runs") == ["latent_1.0.npz"]
    calls = count_attack_runs(monkeypatch)
    capsys.readouterr()
    result = evaluation.run_evaluation_pipeline(setup.paths["good"], str(killed), settings)
    assert calls == [("max_damage", 1.0)]
    assert [evaluation.read_robustness(result["evaluations"][name]["artifacts"]["robustness"])[0]["timing"]
            .get("resumed_runs", 0) for name in ("strong", "paper")] == [0, 1]  # strong: the killed run's report
    printed = capsys.readouterr().out
    assert (f"[robustness] reusing the finished EvaluationReport in {killed / 'strong' / reporting.ROBUSTNESS_DIR} "
            "(same model, data and settings)") in printed and printed.count("reusing the finished") == 1
    ours, theirs = _evaluation_files(killed), _evaluation_files(whole)
    assert sorted(ours) == sorted(theirs)  # no robustness.runs left
    for name in ours:
        assert ours[name] == theirs[name], (name, _differences(ours[name], theirs[name]))
    assert not [d for d in os.listdir(killed / "strong") + os.listdir(killed / "paper") if d.endswith(".runs")]


class _Called(Exception):
    """A component's computation was called where the test expects its finished output to be reused."""


def _refuse(what):
    def refuse(*args, **kwargs):
        raise _Called(what)
    return refuse


def test_a_restarted_evaluation_reuses_the_finished_components(setup, tmp_path, monkeypatch, capsys):
    """An evaluation killed in the FD (after the robustness and classifier reports were
    written): the rerun into the same output trains and attacks nothing for those two
    (printing that it reuses them) and computes the FD; a third run reuses all three and
    writes the same numbers; another classifier setting runs the classifier again (the
    robustness report is still reused)."""
    out = tmp_path / "eval"
    tiny = {**TINY_EVALUATION, "num_images": 2, "trials": 1, "attack_steps": 2, "attack_exploration_starts": 1,
            "attack_xla": False, "pool_size": 50}
    settings = evaluation.EvaluationSettings(examples=setup.examples.uri, feature_cache=str(tmp_path / "features"),
                                             tensorboard=False, **tiny)

    def run(settings=settings):
        capsys.readouterr()
        result = evaluation.run_evaluation_pipeline(setup.paths["good"], str(out), settings)
        return result, capsys.readouterr().out

    def reusing(part, type_name):
        return f"[{part}] reusing the finished {type_name} in {out / part}"

    with monkeypatch.context() as patch:  # killed in the FD, before its feature net is trained
        patch.setattr(evaluators, "load_or_train_feature_extractor", _refuse("the FD"))  # FidEvaluator's module
        with pytest.raises(_Called, match="the FD"):
            run()
    assert os.path.exists(out / "classifier" / artifacts.MARKER) and not os.path.exists(out / "fid")
    calls = count_attack_runs(monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(classifier, "evaluate_downstream", _refuse("the classifier"))
        first, printed = run()
    assert calls == []  # the robustness report was reused too (not even its run cache was read)
    assert reusing("robustness", "EvaluationReport") in printed
    assert (f"{reusing('classifier', 'ClassifierReport')} and ClassifierSavedModel in {out / 'classifier_model'} "
            "(same model, data and settings)") in printed
    assert "[fid] reusing" not in printed and "[fid] FD-digits-classifier = " in printed  # computed now
    files = _evaluation_files(out)
    # Restarted once more: everything is reused, the FD too (its feature net was trained by the run that wrote it).
    with monkeypatch.context() as patch:
        patch.setattr(classifier, "evaluate_downstream", _refuse("the classifier"))
        patch.setattr(fid, "frechet_score", _refuse("the FD"))
        again, printed = run()
    assert printed.count("reusing the finished") == 3 and reusing("fid", "FidReport") in printed
    assert again["row"] == first["row"] and calls == []
    assert _evaluation_files(out) == files
    assert first["row"]["classifier"]["clean_accuracy"] > 0 and first["row"]["fid"]["value"] > 0
    # Another classifier setting: the classifier runs again.
    with monkeypatch.context() as patch:
        patch.setattr(classifier, "evaluate_downstream", _refuse("the classifier"))
        with pytest.raises(_Called, match="the classifier"):
            run(dataclasses.replace(settings, classifier_epochs=2))
    assert calls == []


def test_an_evaluation_on_other_data_than_the_models_records_and_shows_it(tmp_path):
    """A digits model evaluated on an MNIST .npz: summary.json records the evaluation data and
    the row (report, bin/compare.py) says it; on the model's own data neither appears."""
    model = _export_tiny(str(tmp_path / "model"))  # metadata: trained on digits (32x32, as padded MNIST)
    rng = np.random.default_rng(0)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (60, 28, 28), np.uint8), y_train=np.arange(60) % 10,
             x_test=rng.integers(0, 256, (60, 28, 28), np.uint8), y_test=np.arange(60) % 10)
    settings = evaluation.EvaluationSettings(
        dataset="mnist", data_dir=str(npz), num_images=2, trials=1, budgets=(1.0,), attack_steps=2,
        attack_restarts=1, attack_exploration_starts=1, pool_size=50, attack_xla=False, skip_classifier=True,
        skip_fid=True, tensorboard=False)
    output = tmp_path / "eval"
    evaluation.run_evaluation_pipeline(model, str(output), settings)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["name"] == "tiny (digits) on mnist (mnist.npz)"
    assert {k: summary["evaluation_data"][k] for k in ("dataset", "data_dir", "split")} == {
        "dataset": "mnist", "data_dir": str(npz), "split": "test"}
    assert summary["evaluation_data"]["examples"] == str(output / "examples")
    table = reporting.compare([str(output)])["markdown"]
    assert "| tiny (digits) on mnist (mnist.npz) |" in table
    # The model's own data (its metadata: digits, no data_dir): nothing is added.
    meta = {"dataset": "digits", "config": {"data": {"data_dir": ""}}}
    own = artifacts.Artifact("Examples", str(tmp_path), {"source": {"dataset": "digits", "data_dir": ""}})
    assert evaluation.evaluation_data(meta, own, "test") is None
    other_dir = artifacts.Artifact("Examples", str(tmp_path), {"source": {"dataset": "digits", "data_dir": "/x/d"}})
    assert evaluation.evaluation_data(meta, other_dir, "test")["label"] == "on digits (d)"


def test_local_gain_enters_the_robustness_fingerprint_only_when_on(monkeypatch):
    """Finished robustness parts written before --local_gain existed keep matching; with it on
    the part is recomputed (its report gains the local gain)."""
    monkeypatch.setattr(evaluators, "_inputs_identity", lambda *args: {"model": "m"})  # no artifacts needed
    proto = robustness.Protocol(num_images=2, trials=1, budgets=(1.0,))
    off = evaluators.RobustnessEvaluator(proto, progress=False).fingerprint(None, None)
    on = evaluators.RobustnessEvaluator(proto, progress=False, local_gain=True).fingerprint(None, None)
    assert "local_gain" not in off and on == {**off, "local_gain": True}
