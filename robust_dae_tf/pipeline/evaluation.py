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
file work; the metrics they call (`robustness`, `classifier`, `fid`) take arrays and
datasets and return results. The FD feature classifier is cached as a
`FeatureExtractor` artifact (`load_or_train_feature_extractor`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import time

import numpy as np

from robust_dae_tf import adapters, fileio, locking, per_image, reporting
from robust_dae_tf.attacks.config import AttackConfig
from robust_dae_tf.errors import ConfigError, DataError, ExportError, UserError
from robust_dae_tf.pipeline.artifacts import (MARKER, Artifact, Component, DamagedMarkerError, load_attributes,
                                              load_examples, read_artifact, write_artifact, write_marker)

# TensorFlow and the modules that import it (data, export, fid, classifier, robustness,
# attacks) are imported inside the functions that use them: see the module docstring.

SAVED_MODEL, EXAMPLES = "SavedModel", "Examples"
EVALUATION_REPORT, CLASSIFIER_REPORT, CLASSIFIER_SAVED_MODEL, FID_REPORT = (
    "EvaluationReport", "ClassifierReport", "ClassifierSavedModel", "FidReport")
FEATURE_EXTRACTOR = "FeatureExtractor"
_CLASSIFIER_FILE = "classifier.keras"
_PROBE_IMAGES = 8
_MODEL_CACHE: dict = {}


# ------------------------------------------------------------------ inputs


def saved_model_artifact(path: str) -> Artifact:
    """The SavedModel artifact at `path`: its marker when present (written by the Exporter),
    else any directory with saved_model.pb (e.g. exported by `export.export_saved_model`)."""
    if not path or not os.path.isdir(path):
        raise ExportError(f"--model={path} is not a directory; pass a SavedModel directory written by bin/train.py.")
    if os.path.exists(os.path.join(path, MARKER)):
        try:
            return read_artifact(path, SAVED_MODEL)
        except DamagedMarkerError as err:  # a truncated / hand-edited marker
            raise ExportError(f"{os.path.join(path, MARKER)} is not a valid artifact marker "
                              f"({err.problem.splitlines()[0][:160]}); re-export the model.") from None
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ExportError(f"{path} is not a SavedModel directory (no saved_model.pb); pass the directory written by bin/train.py.")
    return Artifact(SAVED_MODEL, path, {})


def read_model_metadata(path: str) -> dict:
    """The model's metadata (`export.read_metadata`: {} when absent, one error when damaged)."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    return export.read_metadata(path)


def load_model(saved_model: Artifact):
    """Loads (once per process and path) the SavedModel as an `export.ExportedAutoencoder`;
    one ExportError naming the file or directory for missing endpoints, corrupt metadata
    or any failure while loading."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    key = os.path.abspath(saved_model.uri)
    if key not in _MODEL_CACHE:
        read_model_metadata(saved_model.uri)  # names the metadata file when it is corrupt
        try:
            _MODEL_CACHE[key] = export.ExportedAutoencoder(saved_model.uri)
        except UserError:
            raise
        except Exception as err:  # corrupt SavedModel protos, unreadable variables, ...
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise ExportError(f"cannot load the SavedModel {saved_model.uri} ({first}); re-export it "
                              "(bin/train.py --export_dir).") from err
    return _MODEL_CACHE[key]


def model_info(model, saved_model: Artifact) -> dict:
    from robust_dae_tf import classifier as classifier_lib  # pylint: disable=import-outside-toplevel

    meta = model.metadata or {}
    fallback = os.path.basename(os.path.normpath(saved_model.uri))
    shape = classifier_lib.image_shape_of(model)
    return {
        "path": os.path.abspath(saved_model.uri),
        "name": reporting.row_name(meta, fallback),
        "dataset": meta.get("dataset"),
        "variant": meta.get("variant"),
        "image_shape": list(shape) if shape else None,
        "prior_type": (meta.get("prior") or {}).get("type"),
    }


def validated_model(saved_model: Artifact, examples: Artifact):
    """The loaded model, after checking its endpoints, image shape and finiteness on test images."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from robust_dae_tf import classifier as classifier_lib  # pylint: disable=import-outside-toplevel
    from robust_dae_tf import data, export  # pylint: disable=import-outside-toplevel

    model = load_model(saved_model)
    expected = tuple(int(d) for d in examples.properties["image_shape"])
    dataset = examples.properties.get("source", {}).get("dataset", "the dataset")
    shape = classifier_lib.image_shape_of(model)
    if shape is None:
        raise ExportError(
            f"cannot tell the image shape of {saved_model.uri}: no image_shape in {export.METADATA_FILE} and no "
            "fully defined encode signature."
        )
    if tuple(shape) != expected:
        raise DataError(
            f"the SavedModel {saved_model.uri} takes {tuple(shape)} images but {dataset} images are {expected}; "
            "evaluate it on the dataset it was trained on (--dataset)."
        )
    images, _ = data.take_arrays(load_examples(examples)["test"], _PROBE_IMAGES)
    if len(images) == 0:
        raise DataError(f"the test split of {examples.uri} is empty.")
    x = data.to_float(images)
    try:
        latents = np.asarray(model.encode(x))
        recon = np.asarray(model.decode(latents))
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
        raise ExportError(f"{saved_model.uri}: encode/decode failed on test images: {str(err).splitlines()[0][:200]}") from err
    if not np.issubdtype(latents.dtype, np.floating):
        raise ExportError(f"the SavedModel {saved_model.uri} encodes images to {latents.dtype} latents; the attacks "
                          "(gradients through the latents) and the paper protocol's decode noise need float latents.")
    if not (np.all(np.isfinite(latents)) and np.all(np.isfinite(recon))):
        raise DataError(
            f"the SavedModel {saved_model.uri} returns NaN/Inf latents or reconstructions on test images; "
            "the model diverged or its checkpoint is corrupt."
        )
    if recon.shape[1:] != expected:
        raise ExportError(f"{saved_model.uri}: decode returns {recon.shape[1:]} images, expected {expected}.")
    adapters.check_outputs(model, np.asarray(x), latents, recon, saved_model.uri)  # rank-2 latents, pixel range
    return model


def check_budgets(budgets) -> tuple:
    """The budgets as floats; the one check of a budget list is `robustness.validate_budgets`."""
    from robust_dae_tf import robustness  # pylint: disable=import-outside-toplevel

    return robustness.validate_budgets(budgets)


def _check_positive(value, flag: str) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ConfigError(f"{flag} must be an integer >= 1, got {value!r}.")


def _require_finite(report: dict, what: str, uri: str) -> None:
    if not reporting.is_finite_report(report):
        raise DataError(f"the {what} of {uri} contains NaN/Inf values; the model returns non-finite outputs.")


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


def model_identity(saved_model: Artifact) -> dict | None:
    """The SavedModel in a component's fingerprint: `export.saved_model_identity` (absolute
    path, SHA-256 of saved_model.pb, the variables index and the metadata file); None when
    the directory has no saved_model.pb."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    loaded = _MODEL_CACHE.get(os.path.abspath(saved_model.uri))
    if isinstance(loaded, adapters.Adapter):  # any model form, with its declared prior and pixel range
        return loaded.identity()
    return export.saved_model_identity(saved_model.uri, with_metadata=True)


def examples_identity(examples: Artifact) -> dict:
    """The Examples in a component's fingerprint: absolute uri and marker properties (source,
    split, counts, the byte size of every saved file)."""
    return {"uri": os.path.abspath(examples.uri), "properties": examples.properties}


def _inputs_identity(saved_model: Artifact, examples: Artifact) -> dict | None:
    model = model_identity(saved_model)
    return None if model is None else {"model": model, "examples": examples_identity(examples)}


# ------------------------------------------------------------------ robustness


class RobustnessEvaluator(Component):
    """Latent-space and maximum-damage attacks (paper section 4, Table 1, Figs. 2-3).

    Runs `robustness.evaluate_robustness` on a pool of images (a seeded random subset of
    `pool_size` images of the split, all when smaller) and writes `robustness.json` +
    `examples.npz`. split: "test" (default), or "heldout_train" = the training images from
    index `split_start` on (the ones a model trained on the first `split_start` images
    never saw; `heldout_start`).

    Each finished attack run is cached in `run_cache_dir(<report uri>)` (a sibling of the
    report, which `write_artifact` and its stale-temp cleanup leave alone), so a killed
    evaluation resumes at the run it was in (`robustness` module docstring). The cache is
    removed once the report is written, unless `keep_run_cache` (the pipeline keeps it
    until the whole evaluation is written, as it runs this component again on a restart).
    """

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": EVALUATION_REPORT}
    tag = "robustness"

    def __init__(self, protocol, pool_size: int = 5000, progress: bool = True, split: str = "test",
                 split_start: int = 0, keep_run_cache: bool = False):
        self.protocol = protocol
        self.keep_run_cache = keep_run_cache
        self.pool_size = pool_size
        self.progress = progress
        self.split = check_split(split)
        self.split_start = int(split_start)

    def validate(self) -> None:
        check_budgets(self.protocol.budgets)
        _check_positive(self.protocol.num_images, "--num_images")
        _check_positive(self.protocol.trials, "--trials")
        check_pool_size(self.pool_size)

    def fingerprint(self, saved_model: Artifact, examples: Artifact):
        """Model, examples, the protocol (every field; objectives by class and name), pool
        and split: a restart after the report was written reuses it (not even the run cache
        is read). None for a protocol that is not a `robustness.Protocol`."""
        if not dataclasses.is_dataclass(self.protocol):
            return None
        identity = _inputs_identity(saved_model, examples)
        if identity is None:
            return None
        protocol = {field.name: getattr(self.protocol, field.name) for field in dataclasses.fields(self.protocol)}
        protocol["attack"] = dataclasses.asdict(protocol["attack"]) if protocol["attack"] is not None else None
        protocol["objectives"] = [[f"{type(o).__module__}.{type(o).__qualname__}", getattr(o, "name", o)]
                                  for o in protocol["objectives"]]
        return {**identity, "protocol": protocol, "pool_size": self.pool_size, "split": self.split,
                "split_start": self.split_start}

    def run(self, output_uris, saved_model: Artifact, examples: Artifact):
        self.validate()
        model = validated_model(saved_model, examples)
        info = model_info(model, saved_model)
        images, labels = robustness_pool(examples, self.pool_size, self.protocol.seed, self.split, self.split_start)
        what = SPLITS[self.split]
        if self.protocol.num_images > len(images):
            raise ConfigError(
                f"--num_images={self.protocol.num_images} exceeds the {len(images)} {what} the attacks draw "
                f"from (--pool_size={self.pool_size}, at most the split); lower --num_images or raise "
                "--pool_size.")
        _log(self.progress, f"[robustness] {info['name']}: protocol {self.protocol.name}, "
                            f"{self.protocol.num_images} images x {self.protocol.trials} trials, budgets "
                            f"{list(self.protocol.budgets)}, pool {len(images)} {what}")
        from robust_dae_tf import robustness  # pylint: disable=import-outside-toplevel

        cache = run_cache_dir(output_uris["report"])
        values = {}  # the per-image values behind each cell (robust_dae_tf.per_image)
        result = robustness.evaluate_robustness(model, images, labels, self.protocol, progress=self.progress,
                                                run_cache_dir=cache, per_image_out=values)
        examples_arrays = result.pop("examples", None) or {}
        report = {**result, "model": info, "pool_size": int(len(images)), "split": self.split,
                  "split_start": self.split_start, "examples_uri": os.path.abspath(examples.uri)}
        _require_finite(report, "robustness report", saved_model.uri)

        def write(tmp):
            fileio.write_json_atomic(os.path.join(tmp, reporting.ROBUSTNESS_FILE), report)
            if examples_arrays:
                reporting.save_examples_npz(os.path.join(tmp, reporting.EXAMPLES_FILE), examples_arrays)
            per_image.save(os.path.join(tmp, per_image.FILE), values, self.protocol.trials)

        properties = {"model": info["path"], "budgets": [float(b) for b in self.protocol.budgets],
                      "num_images": self.protocol.num_images, "trials": self.protocol.trials,
                      "protocol": self.protocol.name, "split": self.split}
        artifact = write_artifact(output_uris["report"], EVALUATION_REPORT, self.name, properties, write)
        if not self.keep_run_cache:
            shutil.rmtree(cache, ignore_errors=True)
        return {"report": artifact}


def run_cache_dir(report_uri: str) -> str:
    """Where `RobustnessEvaluator` caches the finished attack runs of the report at `report_uri`."""
    return os.path.abspath(report_uri) + ".runs"


def check_pool_size(pool_size) -> None:
    if isinstance(pool_size, bool) or not isinstance(pool_size, (int, np.integer)) or pool_size < 2:
        raise ConfigError(f"--pool_size must be an integer >= 2 (the latent attack's targets are other test images "
                          f"of another class), got {pool_size!r}.")


SPLITS = {"test": "test images", "heldout_train": "held-out training images"}  # --split values


def check_split(split) -> str:
    if split not in SPLITS:
        raise ConfigError(f"--split={split!r} is unknown; choose one of {', '.join(SPLITS)}.")
    return split


def heldout_start(metadata: dict, examples: Artifact, model_path: str) -> int:
    """Index of the first training image the model did not train on: the run config's
    `data.max_train_examples` (training keeps the first N of the train split). ConfigError
    when the metadata does not say, when the model trained on all training images, or when
    `examples` are not split like the training run's."""
    config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    first = (config.get("data") or {}).get("max_train_examples") if isinstance(config.get("data"), dict) else None
    if first is None:
        raise ConfigError(f"--split=heldout_train: {model_path}'s metadata has no config.data.max_train_examples, so "
                          "the training images it did not see are unknown; use --split=test.")
    num_train = int((examples.properties.get("num_examples") or {}).get("train", 0))
    if not first or int(first) >= num_train:
        raise ConfigError(f"--split=heldout_train: {model_path} was trained on all {num_train} training images "
                          f"(data.max_train_examples={first}); there are no held-out training images. Train with "
                          "--config.data.max_train_examples=N < the training split to hold some out, or use "
                          "--split=test.")
    recorded = (metadata.get("training") or {}).get("data_split")
    if recorded and examples.properties.get("split") and recorded != examples.properties["split"]:
        raise ConfigError(f"--split=heldout_train: the examples {examples.uri} are split differently from the "
                          f"model's training run ({examples.properties['split']!r} vs {recorded!r}); pass the run's "
                          "examples with --examples.")
    return int(first)


def robustness_pool(examples: Artifact, pool_size: int = 5000, seed: int = 0, split: str = "test",
                    start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The images the robustness protocol draws from: (float32 [M, H, W, C] in [0, 1],
    labels), a sorted random subset of `pool_size` of the split (drawn with the protocol
    seed), or the whole split if it is smaller. split "test", or "heldout_train": the
    train split from index `start` on (`heldout_start`). With the same arguments
    `robustness.evaluate_robustness` / `robustness.success_levels` see the same images
    and targets as the evaluator did.

    ConfigError naming --pool_size when the pool is too small for the latent attack's
    targets: fewer than two images, or images of one class from a split with several."""
    from robust_dae_tf import data  # pylint: disable=import-outside-toplevel

    check_pool_size(pool_size)
    if check_split(split) == "heldout_train":
        images, labels = data.take_arrays(load_examples(examples)["train"].skip(int(start)))
    else:
        images, labels = data.take_arrays(load_examples(examples)["test"])
    all_labels = labels
    if len(images) > pool_size:
        keep = np.sort(np.random.default_rng(seed).choice(len(images), pool_size, replace=False))
        images, labels = images[keep], labels[keep]
    classes = np.unique(labels)
    if classes.size == 1 and classes[0] >= 0 and np.unique(all_labels).size > 1:
        raise ConfigError(
            f"--pool_size={pool_size} drew test images of class {int(classes[0])} only; the latent attack needs "
            "targets of another class: raise --pool_size (default 5000) to include at least two classes.")
    return data.to_float(images).numpy(), labels


REPORT_FILES = {EVALUATION_REPORT: reporting.ROBUSTNESS_FILE, CLASSIFIER_REPORT: reporting.CLASSIFIER_FILE,
                FID_REPORT: reporting.FID_FILE}


def read_report(report: Artifact) -> dict:
    """The JSON report of a report artifact (robustness.json, classifier.json or fid.json)."""
    with open(os.path.join(report.uri, REPORT_FILES[report.type_name])) as f:
        return json.load(f)


def read_robustness(report: Artifact) -> tuple[dict, dict]:
    """(robustness.json payload, examples arrays) of an EvaluationReport artifact."""
    npz = os.path.join(report.uri, reporting.EXAMPLES_FILE)
    return read_report(report), (reporting.load_examples_npz(npz) if os.path.exists(npz) else {})


# ------------------------------------------------------------------ downstream classifier


class ClassifierEvaluator(Component):
    """Table 3: MLP on frozen latent codes, clean accuracy and accuracy under the latent
    attack; exports encoder + MLP as a classifier SavedModel (`classify` endpoint)."""

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": CLASSIFIER_REPORT, "classifier": CLASSIFIER_SAVED_MODEL}
    tag = "classifier"

    def __init__(self, config=None, progress: bool = True, attack_fn=None, protocol: str = "strong"):
        from robust_dae_tf import classifier as classifier_lib  # pylint: disable=import-outside-toplevel

        self.config = config or classifier_lib.ClassifierConfig()
        self.progress = progress
        self.attack_fn = attack_fn
        self.protocol = protocol  # recorded; the attack itself is config.attack

    def fingerprint(self, saved_model: Artifact, examples: Artifact):
        """Model, examples, the whole ClassifierConfig (its attack included) and the protocol
        name; None with a custom `attack_fn`."""
        if self.attack_fn is not None:
            return None
        identity = _inputs_identity(saved_model, examples)
        if identity is None:
            return None
        return {**identity, "config": dataclasses.asdict(self.config), "protocol": self.protocol}

    def run(self, output_uris, saved_model: Artifact, examples: Artifact):
        from robust_dae_tf import classifier as classifier_lib  # pylint: disable=import-outside-toplevel

        self.config.validate()
        check_budgets([self.config.attack_budget])
        num_classes = int(examples.properties.get("num_classes", 0))
        if num_classes < 2:
            raise DataError(
                f"{examples.properties.get('source', {}).get('dataset')} has no class labels, so there is no "
                "downstream classifier to train; pass --skip_classifier."
            )
        model = validated_model(saved_model, examples)
        info = model_info(model, saved_model)
        splits = load_examples(examples)
        mlp, report = classifier_lib.evaluate_downstream(model, splits["train"], splits["test"], num_classes,
                                                         self.config, attack_fn=self.attack_fn,
                                                         progress=self.progress)
        report["model"] = info
        report["protocol"] = self.protocol
        _require_finite(report, "classifier report", saved_model.uri)
        cls_uri = os.path.abspath(output_uris["classifier"])
        report["classifier_saved_model"] = cls_uri
        metadata = {"dataset": info["dataset"], "variant": info["variant"], "clean_accuracy": report["clean_accuracy"],
                    "attacked_accuracy": report["attacked_accuracy"], "config": report["config"]}

        cls_props = {"model": info["path"], "num_classes": num_classes}

        def write_classifier(tmp):  # export_classifier replaces the (empty) tmp dir atomically
            classifier_lib.export_classifier(model, mlp, tmp, metadata, overwrite=True)

        cls_artifact = write_artifact(cls_uri, CLASSIFIER_SAVED_MODEL, self.name, cls_props, write_classifier)
        report_props = {"model": info["path"], "clean_accuracy": report["clean_accuracy"],
                        "attacked_accuracy": report["attacked_accuracy"]["mean"]}
        rep_artifact = write_artifact(
            output_uris["report"], CLASSIFIER_REPORT, self.name, report_props,
            lambda tmp: fileio.write_json_atomic(os.path.join(tmp, reporting.CLASSIFIER_FILE), report))
        return {"report": rep_artifact, "classifier": cls_artifact}


# ------------------------------------------------------------------ FID


def load_feature_extractor(uri: str):
    """The `fid.DatasetClassifierFeatures` cached in the FeatureExtractor artifact at `uri`."""
    import keras  # pylint: disable=import-outside-toplevel

    from robust_dae_tf import fid  # pylint: disable=import-outside-toplevel

    artifact = read_artifact(uri, FEATURE_EXTRACTOR)
    classifier = keras.models.load_model(os.path.join(uri, _CLASSIFIER_FILE), compile=False)
    return fid.DatasetClassifierFeatures(classifier, artifact.properties, uri)


def load_or_train_feature_extractor(uri: str, examples: Artifact, epochs: int | None = None, batch_size: int = 128,
                                    seed: int = 0, verbose: int = 2):
    """The FD feature classifier of `examples` (an Examples artifact) cached at `uri`, or
    trained on them (`fid.train_feature_classifier`) and cached there as a FeatureExtractor
    artifact: classifier.keras + metrics.json + artifact.json with the source, task
    (classifier, attributes when the examples hold CelebA attributes, else rotation),
    epochs, seed and test accuracy (the marker written last, the directory renamed into
    place). A cache trained otherwise is refused (UserError).

    epochs: None or 0 = automatic (`fid.DatasetClassifierFeatures.resolve_epochs`)."""
    from robust_dae_tf import fid  # pylint: disable=import-outside-toplevel

    num_train = int((examples.properties.get("num_examples") or {}).get("train", 0))
    epochs = fid.DatasetClassifierFeatures.resolve_epochs(epochs, num_train, batch_size)
    num_classes = int(examples.properties.get("num_classes", 0))
    attributes = load_attributes(examples) if num_classes <= 0 else None
    wanted = {"source": examples.properties["source"], "task": fid.feature_task(num_classes, attributes is not None),
              "epochs": epochs, "seed": seed}
    if os.path.exists(os.path.join(uri, MARKER)):
        cached = read_artifact(uri, FEATURE_EXTRACTOR)
        if all(cached.properties.get(k) == v for k, v in wanted.items()):
            return load_feature_extractor(uri)
        raise UserError(
            f"{uri} holds a feature extractor trained with "
            f"{ {k: cached.properties.get(k) for k in wanted} }, not {wanted}; "
            "choose another --feature_cache or delete that directory."
        )
    image_shape = tuple(examples.properties["image_shape"])
    classifier, metrics = fid.train_feature_classifier(load_examples(examples), image_shape, num_classes, epochs,
                                                       batch_size, seed, verbose, attributes)
    properties = {
        **wanted,
        "dataset": examples.properties["source"]["dataset"],
        "image_shape": list(image_shape),
        **metrics,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with fileio.atomic_directory(uri.rstrip(os.sep), overwrite=True) as tmp:
        classifier.save(os.path.join(tmp, _CLASSIFIER_FILE))
        fileio.write_json_atomic(os.path.join(tmp, "metrics.json"), properties)
        write_marker(Artifact(FEATURE_EXTRACTOR, tmp, properties), "DatasetClassifierFeatures")
    return load_feature_extractor(uri)


class FidEvaluator(Component):
    """Frechet distance of images decoded from prior samples vs test images.

    extractor: "classifier" (default; `fid.DatasetClassifierFeatures`, trained once and
    cached under `feature_cache`, default `fid.default_feature_cache()`; on CelebA
    attributes when the examples hold them, else rotations, for datasets without labels) or "inception"
    (`fid.InceptionFeatures`, needs `inception_weights` offline). A ready
    `fid.FeatureExtractor` object is accepted too.
    """

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": FID_REPORT}
    tag = "fid"

    def __init__(self, extractor="classifier", num_samples: int = 10000, seed: int = 0,
                 feature_cache: str | None = None, fd_classifier_epochs: int | None = None,
                 inception_weights: str | None = None, progress: bool = True):
        from robust_dae_tf import fid  # pylint: disable=import-outside-toplevel

        self.extractor = extractor
        self.num_samples = num_samples
        self.seed = seed
        self.feature_cache = feature_cache or fid.default_feature_cache()
        self.fd_classifier_epochs = fd_classifier_epochs
        self.inception_weights = inception_weights
        self.progress = progress

    def feature_cache_uri(self, examples: Artifact) -> str:
        from robust_dae_tf import fid  # pylint: disable=import-outside-toplevel

        dataset = examples.properties["source"]["dataset"]
        task = fid.feature_task(examples.properties.get("num_classes", 0), bool(examples.properties.get("attributes")))
        num_train = int((examples.properties.get("num_examples") or {}).get("train", 0))
        epochs = fid.DatasetClassifierFeatures.resolve_epochs(self.fd_classifier_epochs, num_train)
        return os.path.join(self.feature_cache, f"{dataset}_{task}_e{epochs}_s{self.seed}")

    def fingerprint(self, saved_model: Artifact, examples: Artifact):
        """Model, examples, extractor and settings: the "classifier" extractor by its feature
        cache (uri and marker properties, incl. its "created" stamp: a retrained cache is
        another extractor), "inception" by its weights file. None for a ready
        `fid.FeatureExtractor` object (its weights are unknown)."""
        if not isinstance(self.extractor, str):
            return None
        identity = _inputs_identity(saved_model, examples)
        if identity is None:
            return None
        extractor = {"kind": self.extractor, "fd_classifier_epochs": self.fd_classifier_epochs}
        if self.extractor == "classifier":
            uri = os.path.abspath(self.feature_cache_uri(examples))
            cached = read_artifact(uri, FEATURE_EXTRACTOR) if os.path.exists(os.path.join(uri, MARKER)) else None
            extractor["feature_cache"] = {"uri": uri, "properties": cached and cached.properties}
        elif self.extractor == "inception" and self.inception_weights:
            path = os.path.abspath(self.inception_weights)
            stat = os.stat(path) if os.path.isfile(path) else None
            extractor["inception_weights"] = {"path": path, "bytes": stat and stat.st_size,
                                              "mtime_ns": stat and stat.st_mtime_ns}
        return {**identity, "extractor": extractor, "num_samples": self.num_samples, "seed": self.seed}

    def build_extractor(self, examples: Artifact):
        from robust_dae_tf import fid  # pylint: disable=import-outside-toplevel

        if isinstance(self.extractor, fid.FeatureExtractor):
            return self.extractor
        if self.extractor == "inception":
            return fid.InceptionFeatures(self.inception_weights)
        if self.extractor == "classifier":
            uri = self.feature_cache_uri(examples)
            _log(self.progress, f"[fid] feature extractor: {uri}")
            extractor = load_or_train_feature_extractor(uri, examples, epochs=self.fd_classifier_epochs, seed=self.seed,
                                                        verbose=2 if self.progress else 0)
            accuracy = extractor.properties.get("test_accuracy", 1.0)
            chance = 1.0 / max(int(extractor.properties.get("num_outputs", 2)), 1)
            # Attributes: no better than predicting each attribute's most frequent value.
            floor = extractor.properties.get("majority_accuracy", 0.5 * (1.0 + chance))
            if accuracy < floor:
                _log(self.progress, f"[fid] warning: the FD feature net reaches only {100 * accuracy:.1f}% test "
                                    f"accuracy ({extractor.properties['task']}); its distances are weakly informative. "
                                    "Raise --fd_classifier_epochs (and use a new --feature_cache entry).")
            return extractor
        raise ConfigError(f"--fid_extractor={self.extractor!r} is unknown; choose classifier or inception.")

    def run(self, output_uris, saved_model: Artifact, examples: Artifact):
        from robust_dae_tf import export, fid  # pylint: disable=import-outside-toplevel

        _check_positive(self.num_samples, "--fid_samples")
        if self.num_samples < 2:
            raise ConfigError("--fid_samples must be >= 2.")
        model = validated_model(saved_model, examples)
        info = model_info(model, saved_model)
        prior = (model.metadata or {}).get("prior")
        if prior is None:
            raise ExportError(f"{saved_model.uri} has no prior in {export.METADATA_FILE}; declare it with "
                              "--prior=standard_normal or --prior=<gmm.json>, or pass --skip_fid.")
        probe = fid.sample_prior(prior, 2, self.seed)
        latent_dim = int(np.asarray(model.encode(np.zeros((1, *info["image_shape"]), np.float32))).shape[-1])
        if probe.shape[1] != latent_dim:
            raise ExportError(
                f"the prior in {export.METADATA_FILE} is {probe.shape[1]}-dimensional but the model's latent "
                f"space has {latent_dim} dimensions; the metadata does not belong to this model."
            )
        extractor = self.build_extractor(examples)
        start = time.time()
        result = fid.frechet_score(model, load_examples(examples)["test"], extractor, self.num_samples, self.seed)
        _log(self.progress, f"[fid] {extractor.name} = {result.value:.3f} ({result.num_generated} samples vs "
                            f"{result.num_reference} test images)")
        report = {"name": extractor.name, **result.as_dict(), "reference_split": "test", "model": info,
                  "timing": {"seconds": time.time() - start}}
        _require_finite(report, "Frechet distance", saved_model.uri)
        artifact = write_artifact(
            output_uris["report"], FID_REPORT, self.name, {"model": info["path"], "name": extractor.name,
                                                           "value": result.value},
            lambda tmp: fileio.write_json_atomic(os.path.join(tmp, reporting.FID_FILE), report))
        return {"report": artifact}


# ------------------------------------------------------------------ the pipeline


_ATTACK_DEFAULTS = AttackConfig()


@dataclasses.dataclass
class EvaluationSettings:
    """What to evaluate and how: bin/evaluate.py's flags (same names, same defaults; see
    `bin/evaluate.py --help`). `budgets` and `classifier_hidden` may be numbers or the
    flags' strings ("1,3,5" or ["1", "3", "5"])."""

    examples: str | None = None
    dataset: str | None = None
    # Models the project did not train (robust_dae_tf.adapters): an encoder/decoder pair instead of
    # --model, the prior for the FD ("standard_normal" or a GMM JSON file) and the model's pixel range.
    encoder: str | None = None
    decoder: str | None = None
    prior: str | None = None
    pixel_range: tuple | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    trust_model: bool = False
    num_images: int = 100
    trials: int = 10
    budgets: tuple = (1.0, 3.0, 5.0)
    # The attack flags default to AttackConfig's values (one place for them).
    attack_steps: int | None = _ATTACK_DEFAULTS.steps
    attack_restarts: int = _ATTACK_DEFAULTS.restarts
    attack_exploration_starts: int | None = _ATTACK_DEFAULTS.exploration_starts
    attack_xla: bool | None = _ATTACK_DEFAULTS.jit_compile
    attack_method: str = _ATTACK_DEFAULTS.method
    attack_chunk_size: int | None = _ATTACK_DEFAULTS.chunk_size
    pool_size: int = 5000
    seed: int = 0
    protocol: str = "strong"
    split: str = "test"
    skip_robustness: bool = False
    skip_classifier: bool = False
    skip_fid: bool = False
    fid_extractor: str | None = None
    inception_weights: str | None = None
    fid_samples: int = 10000
    feature_cache: str | None = None
    fd_classifier_epochs: int = 0
    classifier_hidden: tuple = (256, 256)
    classifier_dropout: float = 0.0
    classifier_epochs: int = 20
    classifier_attack_images: int = 1000
    classifier_attack_trials: int = 1
    classifier_budget: float = 1.0
    tensorboard: bool = True


def _numbers(values, flag: str, kind) -> tuple:
    if isinstance(values, str):
        values = values.split(",")
    try:
        return tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        what = "numbers" if kind is float else "integers"
        raise ConfigError(f"--{flag} must be comma-separated {what}, got {','.join(map(str, values))}.") from None


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
    rest; the model is admitted (`export.admit_saved_model`, unless `trust_model`) and
    loaded, and every setting checked, before the data is loaded and any component runs.
    Returns {"output": absolute path, "row": the summary row, "markdown": the report's
    Markdown, "files": the report files, "artifacts": {part: report Artifact}}."""
    settings = settings or EvaluationSettings()
    adapters.check_paths(model, settings.encoder, settings.decoder)  # every model form (adapters module docstring)
    adapters.parse_pixel_range(settings.pixel_range)
    adapters.read_prior_spec(settings.prior)  # a malformed --prior file fails before anything is loaded
    _numbers(settings.budgets, "budgets", float)  # malformed --budgets fails before the output is locked
    if settings.skip_robustness and settings.skip_classifier and settings.skip_fid:
        raise ConfigError("all evaluations were skipped; drop one of --skip_robustness/--skip_classifier/--skip_fid.")
    protocols = evaluation_protocols(settings.protocol)
    if check_split(settings.split) != "test" and not (settings.skip_classifier and settings.skip_fid):
        raise ConfigError(f"--split={settings.split} draws the attacked images from held-out training images, but the "
                          "classifier and the FD use the test split; add --skip_classifier --skip_fid.")
    if settings.split != "test" and settings.skip_robustness:
        raise ConfigError(f"--split={settings.split} only changes the attacked images; drop --skip_robustness.")
    output = output or os.path.join("evaluations", os.path.splitext(os.path.basename(os.path.normpath(
        model or settings.encoder)))[0])
    fileio.check_writable(output, "--output", directory=True)  # before loading the model, data, attacking
    # The output has one owner: a second evaluation into it is refused, naming this one.
    with locking.lock_directory(output, "--output"):
        return _evaluate(model or settings.encoder, output, settings, protocols)


PROTOCOL_CHOICES = ("strong", "paper", "both")  # --protocol; "both" = <output>/strong and <output>/paper


def evaluation_protocols(protocol) -> tuple:
    """The protocols (robustness.PROTOCOLS names) that --protocol=`protocol` runs."""
    if protocol not in PROTOCOL_CHOICES:
        raise ConfigError(f"--protocol={protocol!r} is unknown; choose one of {', '.join(PROTOCOL_CHOICES)}.")
    return ("strong", "paper") if protocol == "both" else (protocol,)


def check_settings(settings: EvaluationSettings) -> tuple:
    """(budgets, attacks.AttackConfig, classifier.ClassifierConfig) of `settings`, after
    every check that needs neither the model nor the data (one ConfigError naming the
    flag): run by the pipeline before it loads anything, and by a sweep
    (`pipeline.experiments`) before it trains any point."""
    from robust_dae_tf import attacks, classifier  # pylint: disable=import-outside-toplevel

    s = settings
    evaluation_protocols(s.protocol)
    check_split(s.split)
    budgets = check_budgets(_numbers(s.budgets, "budgets", float))
    attack = attacks.AttackConfig(steps=s.attack_steps, restarts=s.attack_restarts,
                                  exploration_starts=s.attack_exploration_starts,
                                  chunk_size=s.attack_chunk_size, method=s.attack_method,
                                  jit_compile=s.attack_xla)
    attacks.validate_config(attack)
    if not s.skip_robustness:
        check_pool_size(s.pool_size)
    config = classifier.ClassifierConfig(
        hidden_units=_numbers(s.classifier_hidden, "classifier_hidden", int), dropout=s.classifier_dropout,
        epochs=s.classifier_epochs, seed=s.seed, attack_images=s.classifier_attack_images,
        attack_budget=s.classifier_budget, attack_trials=s.classifier_attack_trials, attack=attack)
    if not s.skip_classifier:
        config.validate()
    return budgets, attack, config


def _evaluate(model_path: str, output: str, settings: EvaluationSettings, protocols: tuple) -> dict:
    """Everything after the cheap checks of `run_evaluation_pipeline`, while `output` is locked.

    One protocol: the evaluation is written into `output`. Two ("both"): into
    <output>/strong and <output>/paper, each a complete evaluation (the FD, which does
    not depend on the protocol, is computed once and copied); `reporting.compare` on
    `output` shows both side by side."""
    from robust_dae_tf import attacks, classifier, data, robustness  # pylint: disable=import-outside-toplevel

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
    budgets, attack, config = check_settings(s)
    loaded = load_model(saved_model)  # the adapter opened above (its endpoints are checked)
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
                                                          split_start=split_start, keep_run_cache=True)(
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
