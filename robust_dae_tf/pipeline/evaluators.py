"""The three evaluation components (see the `robust_dae_tf.pipeline.evaluation` docstring):
`RobustnessEvaluator` (Table 1), `ClassifierEvaluator` (Table 3) and `FidEvaluator` (the
Frechet distance, with its cached `FeatureExtractor` artifact). They do the file work; the
metrics they call (`robust_dae_tf.evaluation`) take arrays and datasets and return results."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import time

import numpy as np

from robust_dae_tf import fileio, reporting
from robust_dae_tf.attacks import config as attack_config
from robust_dae_tf.reporting import per_image
from robust_dae_tf.errors import ConfigError, DataError, ExportError, UserError
from robust_dae_tf.evaluation.settings import SPLITS, _check_positive, check_budgets, check_pool_size, check_split
from robust_dae_tf.pipeline.artifacts import (MARKER, Artifact, Component, load_attributes, load_examples,
                                              read_artifact, write_artifact, write_marker)
from robust_dae_tf.pipeline.evaluation_inputs import EXAMPLES, SAVED_MODEL, _inputs_identity, model_info, validated_model

# TensorFlow and the modules that import it (data, export, evaluation.*) are imported inside
# the functions that use them: see the `robust_dae_tf.pipeline.evaluation` docstring.

EVALUATION_REPORT, CLASSIFIER_REPORT, CLASSIFIER_SAVED_MODEL, FID_REPORT = (
    "EvaluationReport", "ClassifierReport", "ClassifierSavedModel", "FidReport")
FEATURE_EXTRACTOR = "FeatureExtractor"
_CLASSIFIER_FILE = "classifier.keras"


def _require_finite(report: dict, what: str, uri: str) -> None:
    if not reporting.is_finite_report(report):
        raise DataError(f"the {what} of {uri} contains NaN/Inf values; the model returns non-finite outputs.")


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


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
    `local_gain`: also each attack's local gain at the attacked images (`robustness`
    module docstring, "Local gain"); in the fingerprint only when on.
    """

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": EVALUATION_REPORT}
    tag = "robustness"

    def __init__(self, protocol, pool_size: int = 5000, progress: bool = True, split: str = "test",
                 split_start: int = 0, keep_run_cache: bool = False, local_gain: bool = False):
        self.protocol = protocol
        self.local_gain = bool(local_gain)
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
        protocol["attack"] = attack_config.config_record(protocol["attack"])
        protocol["objectives"] = [[f"{type(o).__module__}.{type(o).__qualname__}", getattr(o, "name", o)]
                                  for o in protocol["objectives"]]
        local_gain = {"local_gain": True} if self.local_gain else {}  # reports written before the option match
        return {**identity, "protocol": protocol, "pool_size": self.pool_size, "split": self.split,
                "split_start": self.split_start, **local_gain}

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
        from robust_dae_tf.evaluation import robustness  # pylint: disable=import-outside-toplevel

        cache = run_cache_dir(output_uris["report"])
        values = {}  # the per-image values behind each cell (robust_dae_tf.reporting.per_image)
        result = robustness.evaluate_robustness(model, images, labels, self.protocol, progress=self.progress,
                                                run_cache_dir=cache, per_image_out=values,
                                                local_gain=self.local_gain)
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


class ClassifierEvaluator(Component):
    """Table 3: MLP on frozen latent codes, clean accuracy and accuracy under the latent
    attack; exports encoder + MLP as a classifier SavedModel (`classify` endpoint)."""

    inputs = {"saved_model": SAVED_MODEL, "examples": EXAMPLES}
    outputs = {"report": CLASSIFIER_REPORT, "classifier": CLASSIFIER_SAVED_MODEL}
    tag = "classifier"

    def __init__(self, config=None, progress: bool = True, attack_fn=None, protocol: str = "strong"):
        from robust_dae_tf.evaluation import downstream as classifier_lib  # pylint: disable=import-outside-toplevel

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
        config = dataclasses.asdict(self.config)
        config["attack"] = attack_config.config_record(self.config.attack)
        return {**identity, "config": config, "protocol": self.protocol}

    def run(self, output_uris, saved_model: Artifact, examples: Artifact):
        from robust_dae_tf.evaluation import downstream as classifier_lib  # pylint: disable=import-outside-toplevel

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


def load_feature_extractor(uri: str):
    """The `fid.DatasetClassifierFeatures` cached in the FeatureExtractor artifact at `uri`."""
    import keras  # pylint: disable=import-outside-toplevel

    from robust_dae_tf.evaluation import fidelity as fid  # pylint: disable=import-outside-toplevel

    artifact = read_artifact(uri, FEATURE_EXTRACTOR)
    classifier = keras.models.load_model(os.path.join(uri, _CLASSIFIER_FILE), compile=False)
    return fid.DatasetClassifierFeatures(classifier, artifact.properties, uri)


def load_or_train_feature_extractor(uri: str, examples: Artifact, epochs: int | None = None, batch_size: int = 128,
                                    seed: int = 0, verbose: int = 2):
    """The FD feature classifier of `examples` (an Examples artifact) cached at `uri`, or
    trained on them (`fidelity.train_feature_classifier`) and cached there as a FeatureExtractor
    artifact: classifier.keras + metrics.json + artifact.json with the source, task
    (classifier, attributes when the examples hold CelebA attributes, else rotation),
    epochs, seed and test accuracy (the marker written last, the directory renamed into
    place). A cache trained otherwise is refused (UserError).

    epochs: None or 0 = automatic (`fid.DatasetClassifierFeatures.resolve_epochs`)."""
    from robust_dae_tf.evaluation import fidelity as fid  # pylint: disable=import-outside-toplevel

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
        from robust_dae_tf.evaluation import fidelity as fid  # pylint: disable=import-outside-toplevel

        self.extractor = extractor
        self.num_samples = num_samples
        self.seed = seed
        self.feature_cache = feature_cache or fid.default_feature_cache()
        self.fd_classifier_epochs = fd_classifier_epochs
        self.inception_weights = inception_weights
        self.progress = progress

    def feature_cache_uri(self, examples: Artifact) -> str:
        from robust_dae_tf.evaluation import fidelity as fid  # pylint: disable=import-outside-toplevel

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
        from robust_dae_tf.evaluation import fidelity as fid  # pylint: disable=import-outside-toplevel

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
        from robust_dae_tf import export  # pylint: disable=import-outside-toplevel
        from robust_dae_tf.evaluation import fidelity as fid  # pylint: disable=import-outside-toplevel

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
