#!/usr/bin/env python
"""Evaluate an exported autoencoder: attacks (Table 1, Figs. 2-3), downstream classifier
(Table 3) and the Frechet distance of prior samples.

    python bin/evaluate.py --model=saved_models/digits_robust
    python bin/evaluate.py --model=saved_models/mnist_robust --data_dir=/path/to/mnist \\
        --num_images=100 --trials=10 --budgets=1,3,5
    python bin/evaluate.py --model=... --skip_fid --skip_classifier --attack_steps=50
    python bin/evaluate.py --model=... --fid_extractor=inception --inception_weights=incv3_notop.h5

Runs the components RobustnessEvaluator, ClassifierEvaluator and FidEvaluator
(robust_dae_tf.evaluation) and writes into --output (default evaluations/<model dir
name>): robustness/, classifier/, classifier_model/, fid/ (artifacts), summary.json,
table1.md/.csv, table3.md/.csv, report.md, figures/*.png and tensorboard/
(`tensorboard --logdir <output>/tensorboard`). The Table 1 Markdown is printed at
the end; summary.json is written last (an evaluation without it did not finish). The
--output directory is checked before the model and the data are loaded. Compare several
evaluations with bin/compare.py.

The data: --examples=<Examples artifact dir>, else the training run's examples
(next to the run directory recorded in the model's metadata) when they hold the same
dataset, else the dataset is loaded (--dataset, default: the model's) into
<output>/examples.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags, logging  # noqa: E402

from robust_dae_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_model_data_flags()
flags.DEFINE_string("examples", None, "An Examples artifact directory to evaluate on (e.g. <workdir>/examples).")
flags.DEFINE_string("output", None, "Output directory (default: evaluations/<model dir name>).")
flags.DEFINE_integer("num_images", 100, "Test images attacked per trial.")
flags.DEFINE_integer("trials", 10, "Attack trials (new images, targets and starts each).")
flags.DEFINE_list("budgets", ["1", "3", "5"], "L2 budgets lambda, comma separated.")
flags.DEFINE_integer("attack_steps", None, "PGD refinement steps per restart (default: 400 for the latent attack, "
                     "200 for maximum damage; L-BFGS-B: iterations).")
flags.DEFINE_integer("attack_restarts", 2, "PGD runs per image refined to the end (L-BFGS-B: random starts).")
flags.DEFINE_integer("attack_exploration_starts", None, "PGD: random starts per restart in the exploration phase "
                     "(default: 24 latent, 32 maximum damage; 1 = plain PGD); see docs/attacks.md.")
flags.DEFINE_bool("attack_xla", True, "XLA-compile the PGD loop (falls back without it if XLA fails).")
flags.DEFINE_enum("attack_method", "pgd", ["pgd", "lbfgsb"], "Attack optimiser.")
flags.DEFINE_integer("attack_chunk_size", 1000, "Images per compiled attack call (lower it if memory is short).")
flags.DEFINE_integer("pool_size", 5000, "Test images the attacked images and targets are drawn from.")
flags.DEFINE_integer("seed", 0, "Seed of image selection, targets, attack starts and prior samples.")
flags.DEFINE_bool("skip_robustness", False, "Skip the attacks (Table 1 robustness columns).")
flags.DEFINE_bool("skip_classifier", False, "Skip the downstream classifier (Table 3).")
flags.DEFINE_bool("skip_fid", False, "Skip the Frechet distance.")
flags.DEFINE_enum("fid_extractor", None, ["classifier", "inception"],
                  "Features for the Frechet distance (default: inception if --inception_weights, else classifier).")
flags.DEFINE_string("inception_weights", None, "Local Keras InceptionV3 no-top weights (.h5) for FID.")
flags.DEFINE_integer("fid_samples", 10000, "Prior samples (and at most as many test images) for the FD.")
flags.DEFINE_string("feature_cache", None, "Where the FD feature classifier is cached (default: "
                    "$XDG_CACHE_HOME/robust_dae_tf/feature_extractors, i.e. ~/.cache/..., shared by all evaluations).")
flags.DEFINE_integer("fd_classifier_epochs", 0,
                     "Training epochs of the FD feature classifier (0: enough for >= 600 steps, 2..20 epochs).")
flags.DEFINE_list("classifier_hidden", ["256", "256"], "Hidden units of the latent MLP.")
flags.DEFINE_float("classifier_dropout", 0.0, "Dropout of the latent MLP.")
flags.DEFINE_integer("classifier_epochs", 20, "Training epochs of the latent MLP.")
flags.DEFINE_integer("classifier_attack_images", 1000, "Test images attacked for Table 3 (<= 0: all).")
flags.DEFINE_integer("classifier_attack_trials", 1, "Attack trials for Table 3.")
flags.DEFINE_float("classifier_budget", 1.0, "Budget lambda of the Table 3 attack.")
flags.DEFINE_bool("tensorboard", True, "Write TensorBoard summaries.")


def _floats(values, flag):
    from robust_dae_tf.errors import ConfigError

    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ConfigError(f"--{flag} must be comma-separated numbers, got {','.join(values)}.") from None


def _ints(values, flag):
    from robust_dae_tf.errors import ConfigError

    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ConfigError(f"--{flag} must be comma-separated integers, got {','.join(values)}.") from None


def _examples(metadata, dataset, output):
    from robust_dae_tf import components

    if FLAGS.examples:
        artifact = components.read_artifact(FLAGS.examples, "Examples")
        if artifact.properties["source"]["dataset"] != dataset:
            from robust_dae_tf.errors import DataError

            raise DataError(f"--examples={FLAGS.examples} holds {artifact.properties['source']['dataset']}, "
                            f"not {dataset}.")
        return artifact
    run_dir = metadata.get("run_dir")
    if run_dir and not FLAGS.data_dir:
        candidate = os.path.join(os.path.dirname(run_dir), "examples")
        if os.path.exists(os.path.join(candidate, components.MARKER)):
            artifact = components.read_artifact(candidate, "Examples")
            if artifact.properties.get("source", {}).get("dataset") == dataset:
                print(f"[data] using the training run's examples {candidate}", flush=True)
                return artifact
    print(f"[data] loading {dataset} into {os.path.join(output, 'examples')}", flush=True)
    gen = components.ExampleGen(dataset, FLAGS.data_dir or "", FLAGS.tfds_data_dir or "")
    return gen({"examples": os.path.join(output, "examples")})["examples"]


def main(argv):
    # Cheap checks first, before TensorFlow is imported: a wrong flag fails within a second.
    from robust_dae_tf import reporting
    from robust_dae_tf.errors import ConfigError, ExportError, UserError

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not FLAGS.model:
        raise ConfigError("pass --model=<SavedModel directory> (e.g. saved_models/digits_robust).")
    if not os.path.isfile(os.path.join(FLAGS.model, "saved_model.pb")):
        raise ExportError(f"--model={FLAGS.model} is not a SavedModel directory (no saved_model.pb); pass a "
                          "directory written by bin/train.py (saved_models/<run>).")
    budgets = _floats(FLAGS.budgets, "budgets")
    if FLAGS.skip_robustness and FLAGS.skip_classifier and FLAGS.skip_fid:
        raise ConfigError("all evaluations were skipped; drop one of --skip_robustness/--skip_classifier/--skip_fid.")
    output = FLAGS.output or os.path.join("evaluations", os.path.basename(os.path.normpath(FLAGS.model)))
    reporting.check_writable(output, "--output", directory=True)  # before loading the model, data, attacking
    from robust_dae_tf import locking

    # The output has one owner: a second evaluation into it is refused, naming this one.
    with locking.lock_directory(output, "--output"):
        _evaluate(output, budgets)


def _evaluate(output, budgets):
    """Everything after the cheap checks of `main`, while `output` is locked."""
    from robust_dae_tf.errors import ConfigError

    from robust_dae_tf import attacks, classifier, data, evaluation, export, reporting, robustness

    export.admit_saved_model(FLAGS.model, trust=FLAGS.trust_model)  # refuses unsafe ops before any work
    budgets = evaluation.check_budgets(budgets)
    saved_model = evaluation.saved_model_artifact(FLAGS.model)
    metadata = evaluation.read_model_metadata(FLAGS.model)
    dataset_name = FLAGS.dataset or metadata.get("dataset")
    if not dataset_name:
        raise ConfigError(f"{FLAGS.model} has no dataset in its metadata; pass --dataset.")
    dataset = data.get_spec(dataset_name).name
    if metadata.get("dataset") and metadata["dataset"] not in (dataset, dataset_name):
        print(f"[warning] the model was trained on {metadata['dataset']}, evaluating on {dataset}", flush=True)
    attack = attacks.AttackConfig(steps=FLAGS.attack_steps, restarts=FLAGS.attack_restarts,
                                  exploration_starts=FLAGS.attack_exploration_starts,
                                  chunk_size=FLAGS.attack_chunk_size, method=FLAGS.attack_method,
                                  jit_compile=FLAGS.attack_xla)
    attacks.validate_config(attack)
    if not FLAGS.skip_robustness:
        evaluation.check_pool_size(FLAGS.pool_size)
    config = classifier.ClassifierConfig(
        hidden_units=_ints(FLAGS.classifier_hidden, "classifier_hidden"), dropout=FLAGS.classifier_dropout,
        epochs=FLAGS.classifier_epochs, seed=FLAGS.seed, attack_images=FLAGS.classifier_attack_images,
        attack_budget=FLAGS.classifier_budget, attack_trials=FLAGS.classifier_attack_trials, attack=attack)
    if not FLAGS.skip_classifier:
        config.validate()
    evaluation.load_model(saved_model)  # a corrupt SavedModel fails before the data is loaded
    examples = _examples(metadata, dataset, output)
    has_labels = int(examples.properties.get("num_classes", 0)) >= 2
    if FLAGS.skip_robustness and FLAGS.skip_fid and not has_labels:
        raise ConfigError(f"{dataset} has no class labels for the classifier and --skip_robustness --skip_fid skip "
                          "the rest; drop one of them.")
    # From here on parts of an earlier evaluation in `output` may be replaced: its summary.json
    # no longer describes the directory (bin/compare.py reports it unfinished until the new one).
    reporting.start_evaluation(output)

    row_parts = {"robustness": None, "classifier": None, "fid": None}
    example_arrays = {}
    if not FLAGS.skip_robustness:
        protocol = robustness.Protocol(num_images=FLAGS.num_images, trials=FLAGS.trials, budgets=budgets,
                                       seed=FLAGS.seed, attack=attack)
        out = evaluation.RobustnessEvaluator(protocol, FLAGS.pool_size)(
            {"report": os.path.join(output, reporting.ROBUSTNESS_DIR)}, saved_model=saved_model, examples=examples)
        row_parts["robustness"], example_arrays = evaluation.read_robustness(out["report"])
    if FLAGS.skip_classifier:
        pass
    elif not has_labels:
        print(f"[classifier] skipped: {dataset} has no class labels", flush=True)
    else:
        out = evaluation.ClassifierEvaluator(config)(
            {"report": os.path.join(output, reporting.CLASSIFIER_DIR),
             "classifier": os.path.join(output, reporting.CLASSIFIER_MODEL_DIR)},
            saved_model=saved_model, examples=examples)
        row_parts["classifier"] = reporting._read_json(os.path.join(out["report"].uri, reporting.CLASSIFIER_FILE))
    if not FLAGS.skip_fid:
        extractor = FLAGS.fid_extractor or ("inception" if FLAGS.inception_weights else "classifier")
        out = evaluation.FidEvaluator(extractor, FLAGS.fid_samples, FLAGS.seed, FLAGS.feature_cache,
                                      FLAGS.fd_classifier_epochs, FLAGS.inception_weights)(
            {"report": os.path.join(output, reporting.FID_DIR)}, saved_model=saved_model, examples=examples)
        row_parts["fid"] = reporting._read_json(os.path.join(out["report"].uri, reporting.FID_FILE))

    info = next(p["model"] for p in row_parts.values() if p)
    row = reporting.make_row(info["name"], **row_parts)
    written = reporting.write_report(output, row, example_arrays, tensorboard=FLAGS.tensorboard)
    print(written["markdown"])
    print(f"Reports: {os.path.abspath(output)}")


if __name__ == "__main__":
    cli.run_main(main, select_config=False)
