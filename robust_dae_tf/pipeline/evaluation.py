"""The evaluation pipeline: three components and the function that runs them, as
`bin/evaluate.py` does.

    RobustnessEvaluator  (saved_model: SavedModel, examples: Examples) -> report: EvaluationReport
    ClassifierEvaluator  (saved_model: SavedModel, examples: Examples) -> report: ClassifierReport,
                                                                          classifier: ClassifierSavedModel
    FidEvaluator         (saved_model: SavedModel, examples: Examples) -> report: FidReport

`run_evaluation_pipeline(model, output, settings)` checks its arguments and that
`output` can be written (before TensorFlow is imported, so a wrong flag fails within a
second), locks `output` (`locking.lock_directory`), picks the examples (`select_examples`),
runs the components that are not skipped and writes the report
(`reporting.write_report`: tables, figures, TensorBoard and, last, summary.json).
`EvaluationSettings` holds bin/evaluate.py's flags, with the same names and defaults.

Modules: the settings and their checks are `robust_dae_tf.evaluation.settings`; the model
and examples the components take, `pipeline.evaluation_inputs`; the three components,
`pipeline.evaluators`; this module runs them (`run_evaluation_pipeline`) and re-exports
their names.

Each component validates its inputs before any long computation and raises ONE
`UserError` naming the problem:

* the SavedModel lacks `encode` / `decode` endpoints (`ExportError`); models of other forms
  (.keras files, model.export() pairs: `settings.encoder` / `decoder`) are opened by
  `adapters.open_model` in `_evaluate` and put into the model cache, so the components see
  one interface; their contract (rank-2 float latents, reconstructions of the inputs'
  shape inside the pixel range) and the declared prior are checked before any component;
* its image shape (metadata `image_shape`, else the `encode` signature) differs from
  the dataset's (`DataError`);
* the model returns NaN / Inf on a probe batch of test images, or any reported number
  is NaN (`DataError`);
* a budget <= 0, zero images or trials (`ConfigError`).

Outputs are artifacts (`artifacts.write_artifact`): written to `<uri>.tmp-<pid>` and
renamed into place after the `artifact.json` marker has been written (last), so a
failed or interrupted run never leaves a directory that looks complete; rerunning
replaces a previous complete output. A killed evaluation resumes its attacks at the run
(attack, budget) it was in: finished runs are cached in `<output>/robustness.runs`
(`run_cache_dir`; `<output>/<protocol>/robustness.runs` for --protocol=both), removed
when the whole evaluation is written. A component whose outputs a killed (or earlier)
evaluation already wrote completely for the same inputs and settings is not run again
(`Component.fingerprint`, `artifacts` module docstring): each component's markers record
the digest of the model files (`model_identity`), the examples (`examples_identity`) and
every setting that changes its numbers, and a rerun prints "[classifier] reusing the
finished ClassifierReport in ..." instead of training and attacking again. A different
setting, model or dataset, or a missing or damaged marker, runs the component.

Report files: `robustness.json` (+ `examples.npz`: the example images for the grids),
`classifier.json` (+ the classifier SavedModel in its own artifact directory) and
`fid.json`. Each report has a "model" section (path, dataset, variant, display name).
Names of the sub-directories are in `robust_dae_tf.reporting`. The components do the
file work; the metrics they call (`robust_dae_tf.evaluation`: `robustness`, `downstream`,
`fidelity`) take arrays and datasets and return results. The FD feature classifier is
cached as a `FeatureExtractor` artifact (`load_or_train_feature_extractor`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from robust_dae_tf import adapters, fileio, locking, reporting
from robust_dae_tf.reporting import per_image
from robust_dae_tf.errors import ConfigError, DataError
from robust_dae_tf.evaluation import settings as settings_lib
from robust_dae_tf.evaluation.settings import (PROTOCOL_CHOICES, SPLITS, EvaluationSettings, check_budgets,
                                               check_pool_size, check_settings, check_split, evaluation_protocols)
from robust_dae_tf.pipeline.artifacts import MARKER, Artifact, load_examples, read_artifact, write_artifact
from robust_dae_tf.pipeline.evaluation_inputs import (_MODEL_CACHE, _PROBE_IMAGES, EXAMPLES, SAVED_MODEL,
                                                      examples_identity, load_model,
                                                      model_identity, model_info, read_model_metadata,
                                                      saved_model_artifact, validated_model)
from robust_dae_tf.pipeline.evaluators import (CLASSIFIER_REPORT, CLASSIFIER_SAVED_MODEL, EVALUATION_REPORT,
                                               FEATURE_EXTRACTOR, FID_REPORT, REPORT_FILES, ClassifierEvaluator,
                                               FidEvaluator, RobustnessEvaluator, heldout_start,
                                               load_feature_extractor, load_or_train_feature_extractor, read_report,
                                               read_robustness, robustness_pool, run_cache_dir)

# TensorFlow and the modules that import it (data, export, evaluation.*, attacks) are imported
# inside the functions that use them: see the module docstring.

__all__ = [  # the API of this module before the settings, inputs and components moved out
    "CLASSIFIER_REPORT", "CLASSIFIER_SAVED_MODEL", "EVALUATION_REPORT", "EXAMPLES", "FEATURE_EXTRACTOR", "FID_REPORT",
    "PROTOCOL_CHOICES", "REPORT_FILES", "SAVED_MODEL", "SPLITS", "ClassifierEvaluator", "EvaluationSettings",
    "FidEvaluator", "RobustnessEvaluator", "check_budgets", "check_pool_size", "check_settings", "check_split",
    "copy_report", "evaluation_data", "evaluation_protocols", "examples_identity", "heldout_start",
    "load_feature_extractor", "load_model", "load_or_train_feature_extractor", "model_identity", "model_info",
    "read_model_metadata", "read_report", "read_robustness", "robustness_pool", "run_cache_dir",
    "run_evaluation_pipeline", "saved_model_artifact", "select_examples", "validated_model",
]


def select_examples(metadata: dict, dataset: str, output: str, settings: EvaluationSettings) -> Artifact:
    """The Examples artifact to evaluate on: `settings.examples` (it must hold `dataset`),
    else the training run's examples (next to the run directory recorded in the model's
    `metadata`) when they hold `dataset` and no --data_dir is given, else `dataset`
    loaded by ExampleGen into <output>/examples."""
    if settings.examples:
        artifact = read_artifact(settings.examples, EXAMPLES)
        if artifact.properties["source"]["dataset"] != dataset:
            raise DataError(f"--examples={settings.examples} holds {artifact.properties['source']['dataset']}, "
                            f"not {dataset}.")
        return artifact
    run_dir = metadata.get("run_dir")
    if run_dir and not settings.data_dir:
        candidate = os.path.join(os.path.dirname(run_dir), "examples")
        if os.path.exists(os.path.join(candidate, MARKER)):
            artifact = read_artifact(candidate, EXAMPLES)
            if artifact.properties.get("source", {}).get("dataset") == dataset:
                print(f"[data] using the training run's examples {candidate}", flush=True)
                return artifact
    from robust_dae_tf.pipeline.training import ExampleGen  # pylint: disable=import-outside-toplevel

    print(f"[data] loading {dataset} into {os.path.join(output, 'examples')}", flush=True)
    gen = ExampleGen(dataset, settings.data_dir or "", settings.tfds_data_dir or "")
    return gen({"examples": os.path.join(output, "examples")})["examples"]


def evaluation_data(metadata: dict, examples: Artifact, split: str) -> dict | None:
    """What an evaluation ran on, {"dataset", "data_dir", "examples", "split", "label"},
    when it is not the model's own training data: another dataset, or another source
    (--data_dir / --examples from other files than the training's data.data_dir); None when
    it is (the model's metadata names the dataset and config.data.data_dir it trained on).
    Recorded in summary.json as "evaluation_data", and `label` is appended to the row's
    name, so every table (report, bin/compare.py) shows on which data the numbers were taken."""
    source = examples.properties.get("source") or {}
    dataset, data_dir = source.get("dataset"), source.get("data_dir") or ""
    trained_dir = ((metadata.get("config") or {}).get("data") or {}).get("data_dir") or ""
    same_dir = (os.path.abspath(data_dir) == os.path.abspath(trained_dir)) if data_dir and trained_dir \
        else data_dir == trained_dir
    if dataset == metadata.get("dataset") and same_dir:
        return None
    where = f" ({os.path.basename(os.path.normpath(data_dir))})" if data_dir else ""
    return {"dataset": dataset, "data_dir": data_dir, "examples": os.path.abspath(examples.uri), "split": split,
            "label": f"on {dataset}{where}"}


def run_evaluation_pipeline(model: str, output: str | None = None, settings: EvaluationSettings | None = None) -> dict:
    """Evaluates the model `model` (a SavedModel directory or a .keras file; or None with
    `settings.encoder` / `settings.decoder`, `adapters` module docstring) into `output`
    (default evaluations/<model name>), as bin/evaluate.py does.

    Cheap checks first (arguments, `output` writable), then `output` is locked for the
    rest; every setting is checked (`check_settings`, before TensorFlow is imported), the
    model is admitted (`export.admit_saved_model`, unless `trust_model`) and loaded, before
    the data is loaded and any component runs.
    Returns {"output": absolute path, "row": the summary row, "markdown": the report's
    Markdown, "files": the report files, "artifacts": {part: report Artifact}}."""
    settings = settings or EvaluationSettings()
    adapters.check_paths(model, settings.encoder, settings.decoder)  # every model form (adapters module docstring)
    adapters.parse_pixel_range(settings.pixel_range)
    adapters.read_prior_spec(settings.prior)  # a malformed --prior file fails before anything is loaded
    protocols = settings_lib.check_request(settings)
    output = output or os.path.join("evaluations", os.path.splitext(os.path.basename(os.path.normpath(
        model or settings.encoder)))[0])
    fileio.check_writable(output, "--output", directory=True)  # before loading the model, data, attacking
    # The output has one owner: a second evaluation into it is refused, naming this one.
    with locking.lock_directory(output, "--output"):
        return _evaluate(model or settings.encoder, output, settings, protocols)


def _evaluate(model_path: str, output: str, settings: EvaluationSettings, protocols: tuple) -> dict:
    """Everything after the cheap checks of `run_evaluation_pipeline`, while `output` is locked.

    One protocol: the evaluation is written into `output`. Two ("both"): into
    <output>/strong and <output>/paper, each a complete evaluation (the FD, which does
    not depend on the protocol, is computed once and copied); `reporting.compare` on
    `output` shows both side by side."""
    budgets, attack, config = check_settings(settings)  # no TensorFlow: a wrong setting fails in a second
    from robust_dae_tf import attacks, data  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.evaluation import downstream as classifier  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.evaluation import robustness  # pylint: disable=import-outside-toplevel

    s = settings
    # Any model form (adapters): safety check (unless --trust_model) and endpoints before any work.
    adapted = adapters.open_model(None if s.encoder else model_path, s.encoder, s.decoder, trust=s.trust_model,
                                  pixel_range=s.pixel_range)
    saved_model = (saved_model_artifact(model_path) if adapted.form in ("export", "signatures")
                   else Artifact(SAVED_MODEL, model_path, {}))
    _MODEL_CACHE[os.path.abspath(saved_model.uri)] = adapted
    metadata = adapted.metadata
    dataset_name = s.dataset or metadata.get("dataset")
    if not dataset_name:
        raise ConfigError(f"{model_path} has no dataset in its metadata; pass --dataset.")
    dataset = data.get_spec(dataset_name).name
    if metadata.get("dataset") and metadata["dataset"] not in (dataset, dataset_name):
        print(f"[warning] the model was trained on {metadata['dataset']}, evaluating on {dataset}", flush=True)
    loaded = load_model(saved_model)  # the adapter opened above (its endpoints are checked)
    if attack.precision != "float32" and "strong" in protocols and not s.skip_robustness:
        # A model the bfloat16 search cannot rebuild fails here, before the data are loaded (the twin is kept).
        from robust_dae_tf.attacks import precision  # pylint: disable=import-outside-toplevel

        precision.bfloat16_twin(loaded)
    # The automatic attack settings (chunk size, XLA) for this model, so the reports record what ran.
    # (Without a known image shape the components stop with an error; the attacks resolve them too.)
    if classifier.image_shape_of(loaded):
        attack = attacks.for_model(attack, loaded, classifier.image_shape_of(loaded))
        config = dataclasses.replace(config, attack=attack)
    attack_of = {"strong": attack, "paper": attacks.AttackConfig(method="paper")}
    if not s.skip_robustness:
        robustness_protocols = {name: robustness.Protocol(num_images=s.num_images, trials=s.trials, budgets=budgets,
                                                          seed=s.seed, attack=attack_of[name], name=name)
                                for name in protocols}
    examples = select_examples(metadata, dataset, output, s)
    # The contract on test images, then the declared prior against the latent size: before any component runs.
    probe_images = data.to_float(data.take_arrays(load_examples(examples)["test"], _PROBE_IMAGES)[0]).numpy()
    if classifier.image_shape_of(loaded) not in (None, tuple(probe_images.shape[1:])):
        validated_model(saved_model, examples)  # its image-shape error, naming --dataset
    adapters.set_prior(loaded, s.prior, adapters.probe(loaded, probe_images, model_path))
    has_labels = int(examples.properties.get("num_classes", 0)) >= 2
    if s.skip_robustness and s.skip_fid and not has_labels:
        raise ConfigError(f"{dataset} has no class labels for the classifier and --skip_robustness --skip_fid skip "
                          "the rest; drop one of them.")
    split_start = heldout_start(metadata, examples, model_path) if s.split == "heldout_train" else 0
    other_data = evaluation_data(metadata, examples, s.split)  # None: the model's own data
    # From here on parts of an earlier evaluation in `output` may be replaced: its summary.json
    # no longer describes the directory (bin/compare.py reports it unfinished until the new one).
    outputs = {name: output if len(protocols) == 1 else os.path.join(output, name) for name in protocols}
    for directory in {output, *(os.path.join(output, name) for name in robustness.PROTOCOLS)}:
        reporting.start_evaluation(directory)  # also a stale layout of another --protocol

    inputs = {"saved_model": saved_model, "examples": examples}
    results, fid_artifact = {}, None
    for name in protocols:
        sub = outputs[name]
        artifacts, row_parts, example_arrays = {}, {"robustness": None, "classifier": None, "fid": None}, {}
        if not s.skip_robustness:
            artifacts["robustness"] = RobustnessEvaluator(robustness_protocols[name], s.pool_size, split=s.split,
                                                          split_start=split_start, keep_run_cache=True,
                                                          local_gain=s.local_gain)(
                {"report": os.path.join(sub, reporting.ROBUSTNESS_DIR)}, **inputs)["report"]
            row_parts["robustness"], example_arrays = read_robustness(artifacts["robustness"])
        if s.skip_classifier:
            pass
        elif not has_labels:
            print(f"[classifier] skipped: {dataset} has no class labels", flush=True)
        else:
            artifacts["classifier"] = ClassifierEvaluator(dataclasses.replace(config, attack=attack_of[name]),
                                                          protocol=name)(
                {"report": os.path.join(sub, reporting.CLASSIFIER_DIR),
                 "classifier": os.path.join(sub, reporting.CLASSIFIER_MODEL_DIR)}, **inputs)["report"]
            row_parts["classifier"] = read_report(artifacts["classifier"])
        if s.skip_fid:
            pass
        elif fid_artifact is not None:  # protocol-independent: computed once, copied
            artifacts["fid"] = copy_report(fid_artifact, os.path.join(sub, reporting.FID_DIR))
            row_parts["fid"] = read_report(artifacts["fid"])
        else:
            extractor = s.fid_extractor or ("inception" if s.inception_weights else "classifier")
            artifacts["fid"] = fid_artifact = FidEvaluator(extractor, s.fid_samples, s.seed, s.feature_cache,
                                                           s.fd_classifier_epochs, s.inception_weights)(
                {"report": os.path.join(sub, reporting.FID_DIR)}, **inputs)["report"]
            row_parts["fid"] = read_report(artifacts["fid"])

        info = next(p["model"] for p in row_parts.values() if p)
        row = reporting.make_row(info["name"] + (f" {other_data['label']}" if other_data else ""), **row_parts,
                                 protocol=name, split=s.split)
        if other_data:
            row["evaluation_data"] = other_data
        row["model_source"] = adapters.report_fields(loaded, s.prior, dataset)  # form, files, range, prior, data
        distributions = per_image.figures_for(artifacts["robustness"].uri if "robustness" in artifacts else None,
                                              sub, info["name"])  # box plots of the per-image values
        written = reporting.write_report(sub, row, example_arrays, tensorboard=s.tensorboard,
                                         extra_figures=distributions)
        results[name] = {"output": os.path.abspath(sub), "row": row, "markdown": written["markdown"],
                         "files": written["files"], "artifacts": artifacts}
    # Every part is written: the attack runs cached for a restart (RobustnessEvaluator) go, also
    # those of a killed evaluation with another --protocol layout.
    for directory in {output, *(os.path.join(output, name) for name in robustness.PROTOCOLS)}:
        shutil.rmtree(run_cache_dir(os.path.join(directory, reporting.ROBUSTNESS_DIR)), ignore_errors=True)
    if len(protocols) == 1:
        return results[protocols[0]]
    both = reporting.compare([output])
    return {"output": os.path.abspath(output), "markdown": both["markdown"], "evaluations": results}


def copy_report(report: Artifact, uri: str) -> Artifact:
    """A copy of the report artifact `report` (its JSON file and marker properties) at `uri`."""
    filename = REPORT_FILES[report.type_name]
    return write_artifact(uri, report.type_name, "copy", report.properties,
                          lambda tmp: shutil.copyfile(os.path.join(report.uri, filename), os.path.join(tmp, filename)))
