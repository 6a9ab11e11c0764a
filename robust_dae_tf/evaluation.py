"""Evaluation components (TFX-style, like `robust_dae_tf.components`).

    RobustnessEvaluator  (saved_model: SavedModel, examples: Examples) -> report: EvaluationReport
    ClassifierEvaluator  (saved_model: SavedModel, examples: Examples) -> report: ClassifierReport,
                                                                          classifier: ClassifierSavedModel
    FidEvaluator         (saved_model: SavedModel, examples: Examples) -> report: FidReport

Each component validates its inputs before any long computation and raises ONE
`UserError` naming the problem:

* the SavedModel lacks `encode` / `decode` endpoints (`ExportError`);
* its image shape (metadata `image_shape`, else the `encode` signature) differs from
  the dataset's (`DataError`);
* the model returns NaN / Inf on a probe batch of test images, or any reported number
  is NaN (`DataError`);
* a budget <= 0, zero images or trials (`ConfigError`).

Outputs are written to `<uri>.tmp-<pid>` and renamed into place after the
`artifact.json` marker has been written (last), so a failed or interrupted run never
leaves a directory that looks complete; rerunning replaces a previous complete output.

Report files: `robustness.json` (+ `examples.npz`: the example images for the grids),
`classifier.json` (+ the classifier SavedModel in its own artifact directory) and
`fid.json`. Each report has a "model" section (path, dataset, variant, display name).
Names of the sub-directories are in `robust_dae_tf.reporting`.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import tensorflow as tf

from robust_dae_tf import components, data, export, fid, fileio, reporting
from robust_dae_tf.components import Artifact, Component
from robust_dae_tf.errors import ConfigError, DataError, ExportError, UserError

SAVED_MODEL, EXAMPLES = "SavedModel", "Examples"
EVALUATION_REPORT, CLASSIFIER_REPORT, CLASSIFIER_SAVED_MODEL, FID_REPORT = (
    "EvaluationReport", "ClassifierReport", "ClassifierSavedModel", "FidReport")
_PROBE_IMAGES = 8
_MODEL_CACHE: dict = {}


# ------------------------------------------------------------------ inputs


def saved_model_artifact(path: str) -> Artifact:
    """The SavedModel artifact at `path`: its marker when present (written by the Exporter),
    else any directory with saved_model.pb (e.g. exported by `export.export_saved_model`)."""
    if not path or not os.path.isdir(path):
        raise ExportError(f"--model={path} is not a directory; pass a SavedModel directory written by bin/train.py.")
    if os.path.exists(os.path.join(path, components.MARKER)):
        try:
            return components.read_artifact(path, SAVED_MODEL)
        except (OSError, ValueError, AttributeError) as err:  # a truncated / hand-edited marker
            raise ExportError(f"{os.path.join(path, components.MARKER)} is not a valid artifact marker "
                              f"({str(err).splitlines()[0][:120]}); re-export the model.") from None
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ExportError(f"{path} is not a SavedModel directory (no saved_model.pb); pass the directory written by bin/train.py.")
    return Artifact(SAVED_MODEL, path, {})


def read_model_metadata(path: str) -> dict:
    """The model's metadata (`export.read_metadata`: {} when absent, one error when damaged)."""
    return export.read_metadata(path)


def load_model(saved_model: Artifact) -> export.ExportedAutoencoder:
    """Loads (once per process and path) the SavedModel; one ExportError naming the file or
    directory for missing endpoints, corrupt metadata or any failure while loading."""
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


def validated_model(saved_model: Artifact, examples: Artifact) -> export.ExportedAutoencoder:
    """The loaded model, after checking its endpoints, image shape and finiteness on test images."""
    from robust_dae_tf import classifier as classifier_lib  # pylint: disable=import-outside-toplevel

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
    images, _ = data.take_arrays(components.load_examples(examples)["test"], _PROBE_IMAGES)
    if len(images) == 0:
        raise DataError(f"the test split of {examples.uri} is empty.")
    x = data.to_float(images)
    try:
        latents = np.asarray(model.encode(x))
        recon = np.asarray(model.decode(latents))
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
        raise ExportError(f"{saved_model.uri}: encode/decode failed on test images: {str(err).splitlines()[0][:200]}") from err
    if not (np.all(np.isfinite(latents)) and np.all(np.isfinite(recon))):
        raise DataError(
            f"the SavedModel {saved_model.uri} returns NaN/Inf latents or reconstructions on test images; "
            "the model diverged or its checkpoint is corrupt."
        )
    if recon.shape[1:] != expected:
        raise ExportError(f"{saved_model.uri}: decode returns {recon.shape[1:]} images, expected {expected}.")
    return model


def check_budgets(budgets) -> tuple:
    """The budgets as floats; the one check of a budget list is `robustness.validate_budgets`."""
    from robust_dae_tf import robustness  # pylint: disable=import-outside-toplevel

    return robustness.validate_budgets(budgets)


def _check_positive(value, flag: str) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ConfigError(f"{flag} must be an integer >= 1, got {value!r}.")


def write_artifact(uri: str, type_name: str, producer: str, properties: dict, write_fn) -> Artifact:
    """Runs write_fn(tmp_dir), writes the marker LAST, then renames tmp_dir to `uri`."""
    uri = os.path.abspath(uri)
    with fileio.atomic_directory(uri, overwrite=True) as tmp:
        write_fn(tmp)
        components.write_marker(Artifact(type_name, tmp, properties), producer)
    return Artifact(type_name, uri, properties)


def _require_finite(report: dict, what: str, uri: str) -> None:
    if not reporting.is_finite_report(report):
        raise DataError(f"the {what} of {uri} contains NaN/Inf values; the model returns non-finite outputs.")


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


# ------------------------------------------------------------------ robustness


class RobustnessEvaluator(Component):
    """Latent-space and maximum-damage attacks (paper section 4, Table 1, Figs. 2-3).

    Runs `robustness.evaluate_robustness` on a pool of test images (a seeded random
    subset of `pool_size` images of the test split, all when smaller) and writes
    `robustness.json` + `examples.npz`.
    """

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": EVALUATION_REPORT}

    def __init__(self, protocol, pool_size: int = 5000, progress: bool = True):
        self.protocol = protocol
        self.pool_size = pool_size
        self.progress = progress

    def validate(self) -> None:
        check_budgets(self.protocol.budgets)
        _check_positive(self.protocol.num_images, "--num_images")
        _check_positive(self.protocol.trials, "--trials")
        check_pool_size(self.pool_size)

    def run(self, output_uris, saved_model: Artifact, examples: Artifact):
        self.validate()
        model = validated_model(saved_model, examples)
        info = model_info(model, saved_model)
        images, labels = robustness_pool(examples, self.pool_size, self.protocol.seed)
        if self.protocol.num_images > len(images):
            raise ConfigError(
                f"--num_images={self.protocol.num_images} exceeds the {len(images)} test images the attacks draw "
                f"from (--pool_size={self.pool_size}, at most the test split); lower --num_images or raise "
                "--pool_size.")
        _log(self.progress, f"[robustness] {info['name']}: {self.protocol.num_images} images x "
                            f"{self.protocol.trials} trials, budgets {list(self.protocol.budgets)}, pool "
                            f"{len(images)} test images")
        from robust_dae_tf import robustness  # pylint: disable=import-outside-toplevel

        result = robustness.evaluate_robustness(model, images, labels, self.protocol, progress=self.progress)
        examples_arrays = result.pop("examples", None) or {}
        report = {**result, "model": info, "pool_size": int(len(images)),
                  "examples_uri": os.path.abspath(examples.uri)}
        _require_finite(report, "robustness report", saved_model.uri)

        def write(tmp):
            reporting.write_json(os.path.join(tmp, reporting.ROBUSTNESS_FILE), report)
            if examples_arrays:
                reporting.save_examples_npz(os.path.join(tmp, reporting.EXAMPLES_FILE), examples_arrays)

        properties = {"model": info["path"], "budgets": [float(b) for b in self.protocol.budgets],
                      "num_images": self.protocol.num_images, "trials": self.protocol.trials}
        artifact = write_artifact(output_uris["report"], EVALUATION_REPORT, self.name, properties, write)
        return {"report": artifact}


def check_pool_size(pool_size) -> None:
    if isinstance(pool_size, bool) or not isinstance(pool_size, (int, np.integer)) or pool_size < 2:
        raise ConfigError(f"--pool_size must be an integer >= 2 (the latent attack's targets are other test images "
                          f"of another class), got {pool_size!r}.")


def robustness_pool(examples: Artifact, pool_size: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The test images the robustness protocol draws from: (float32 [M, H, W, C] in [0, 1],
    labels), a sorted random subset of `pool_size` of the test split (drawn with the
    protocol seed), or the whole split if it is smaller. With the same arguments
    `robustness.evaluate_robustness` / `robustness.success_levels` see the same images
    and targets as the evaluator did.

    ConfigError naming --pool_size when the pool is too small for the latent attack's
    targets: fewer than two images, or images of one class from a split with several."""
    check_pool_size(pool_size)
    images, labels = data.take_arrays(components.load_examples(examples)["test"])
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


def read_robustness(report: Artifact) -> tuple[dict, dict]:
    """(robustness.json payload, examples arrays) of an EvaluationReport artifact."""
    with open(os.path.join(report.uri, reporting.ROBUSTNESS_FILE)) as f:
        payload = json.load(f)
    npz = os.path.join(report.uri, reporting.EXAMPLES_FILE)
    return payload, (reporting.load_examples_npz(npz) if os.path.exists(npz) else {})


# ------------------------------------------------------------------ downstream classifier


class ClassifierEvaluator(Component):
    """Table 3: MLP on frozen latent codes, clean accuracy and accuracy under the latent
    attack; exports encoder + MLP as a classifier SavedModel (`classify` endpoint)."""

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": CLASSIFIER_REPORT, "classifier": CLASSIFIER_SAVED_MODEL}

    def __init__(self, config=None, progress: bool = True, attack_fn=None):
        from robust_dae_tf import classifier as classifier_lib  # pylint: disable=import-outside-toplevel

        self.config = config or classifier_lib.ClassifierConfig()
        self.progress = progress
        self.attack_fn = attack_fn

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
        splits = components.load_examples(examples)
        mlp, report = classifier_lib.evaluate_downstream(model, splits["train"], splits["test"], num_classes,
                                                         self.config, attack_fn=self.attack_fn,
                                                         progress=self.progress)
        report["model"] = info
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
            lambda tmp: reporting.write_json(os.path.join(tmp, reporting.CLASSIFIER_FILE), report))
        return {"report": rep_artifact, "classifier": cls_artifact}


# ------------------------------------------------------------------ FID


class FidEvaluator(Component):
    """Frechet distance of images decoded from prior samples vs test images.

    extractor: "classifier" (default; `fid.DatasetClassifierFeatures`, trained once and
    cached under `feature_cache`, default `fid.default_feature_cache()`) or "inception"
    (`fid.InceptionFeatures`, needs `inception_weights` offline). A ready
    `fid.FeatureExtractor` object is accepted too.
    """

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": FID_REPORT}

    def __init__(self, extractor="classifier", num_samples: int = 10000, seed: int = 0,
                 feature_cache: str | None = None, fd_classifier_epochs: int | None = None,
                 inception_weights: str | None = None, progress: bool = True):
        self.extractor = extractor
        self.num_samples = num_samples
        self.seed = seed
        self.feature_cache = feature_cache or fid.default_feature_cache()
        self.fd_classifier_epochs = fd_classifier_epochs
        self.inception_weights = inception_weights
        self.progress = progress

    def feature_cache_uri(self, examples: Artifact) -> str:
        dataset = examples.properties["source"]["dataset"]
        task = "classifier" if int(examples.properties.get("num_classes", 0)) > 0 else "rotation"
        epochs = fid.DatasetClassifierFeatures.resolve_epochs(self.fd_classifier_epochs, examples)
        return os.path.join(self.feature_cache, f"{dataset}_{task}_e{epochs}_s{self.seed}")

    def build_extractor(self, examples: Artifact):
        if isinstance(self.extractor, fid.FeatureExtractor):
            return self.extractor
        if self.extractor == "inception":
            return fid.InceptionFeatures(self.inception_weights)
        if self.extractor == "classifier":
            uri = self.feature_cache_uri(examples)
            _log(self.progress, f"[fid] feature extractor: {uri}")
            extractor = fid.DatasetClassifierFeatures.load_or_train(
                uri, examples, epochs=self.fd_classifier_epochs, seed=self.seed, verbose=2 if self.progress else 0)
            accuracy = extractor.properties.get("test_accuracy", 1.0)
            chance = 1.0 / max(int(extractor.properties.get("num_outputs", 2)), 1)
            if accuracy < 0.5 * (1.0 + chance):
                _log(self.progress, f"[fid] warning: the FD feature net reaches only {100 * accuracy:.1f}% test "
                                    f"accuracy ({extractor.properties['task']}); its distances are weakly informative. "
                                    "Raise --fd_classifier_epochs (and use a new --feature_cache entry).")
            return extractor
        raise ConfigError(f"--fid_extractor={self.extractor!r} is unknown; choose classifier or inception.")

    def run(self, output_uris, saved_model: Artifact, examples: Artifact):
        _check_positive(self.num_samples, "--fid_samples")
        if self.num_samples < 2:
            raise ConfigError("--fid_samples must be >= 2.")
        model = validated_model(saved_model, examples)
        info = model_info(model, saved_model)
        prior = (model.metadata or {}).get("prior")
        if prior is None:
            raise ExportError(f"{saved_model.uri} has no prior in {export.METADATA_FILE}; pass --skip_fid.")
        probe = fid.sample_prior(prior, 2, self.seed)
        latent_dim = int(np.asarray(model.encode(np.zeros((1, *info["image_shape"]), np.float32))).shape[-1])
        if probe.shape[1] != latent_dim:
            raise ExportError(
                f"the prior in {export.METADATA_FILE} is {probe.shape[1]}-dimensional but the model's latent "
                f"space has {latent_dim} dimensions; the metadata does not belong to this model."
            )
        extractor = self.build_extractor(examples)
        start = time.time()
        details: dict = {}
        value = fid.frechet_score(model, examples, extractor, self.num_samples, self.seed, details=details)
        _log(self.progress, f"[fid] {extractor.name} = {value:.3f} ({details['num_generated']} samples vs "
                            f"{details['num_reference']} test images)")
        report = {"name": extractor.name, "value": value, **details, "model": info,
                  "timing": {"seconds": time.time() - start}}
        _require_finite(report, "Frechet distance", saved_model.uri)
        artifact = write_artifact(
            output_uris["report"], FID_REPORT, self.name, {"model": info["path"], "name": extractor.name,
                                                           "value": value},
            lambda tmp: reporting.write_json(os.path.join(tmp, reporting.FID_FILE), report))
        return {"report": artifact}
