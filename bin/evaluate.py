#!/usr/bin/env python
"""Evaluate an exported autoencoder: attacks (Table 1, Figs. 2-3), downstream classifier
(Table 3) and the Frechet distance of prior samples.

    python bin/evaluate.py --model=saved_models/digits_robust
    python bin/evaluate.py --model=my_ae.keras --dataset=mnist --prior=standard_normal
    python bin/evaluate.py --encoder=enc.keras --decoder=dec.keras --dataset=mnist --skip_fid
    python bin/evaluate.py --model=saved_models/mnist_robust --data_dir=/path/to/mnist \\
        --num_images=100 --trials=10 --budgets=1,3,5
    python bin/evaluate.py --model=... --skip_fid --skip_classifier --attack_steps=50
    python bin/evaluate.py --model=... --fid_extractor=inception --inception_weights=incv3_notop.h5

Runs the components RobustnessEvaluator, ClassifierEvaluator and FidEvaluator
(robust_dae_tf.pipeline.evaluation.run_evaluation_pipeline, which the flags are passed
to as EvaluationSettings) and writes into --output (default evaluations/<model dir
name>): robustness/, classifier/, classifier_model/, fid/ (artifacts), summary.json,
table1.md/.csv, table3.md/.csv, report.md, figures/*.png and tensorboard/
(`tensorboard --logdir <output>/tensorboard`). The Table 1 Markdown is printed at
the end; summary.json is written last (an evaluation without it did not finish). The
--output directory is checked before the model and the data are loaded. Compare several
evaluations with bin/compare.py.

--protocol: strong (default; the project's attack), paper (the paper's evaluation:
its L-BFGS-B attacker and decode-time latent noise) or both (<output>/strong and
<output>/paper). --split=heldout_train attacks training images the model did not train
on instead of test images.

The data: --examples=<Examples artifact dir>, else the training run's examples
(next to the run directory recorded in the model's metadata) when they hold the same
dataset, else the dataset is loaded (--dataset, default: the model's) into
<output>/examples.
"""

import dataclasses

from absl import flags, logging

from robust_dae_tf import cli  # noqa: E402 - first: hides TensorFlow's start-up lines (robust_dae_tf.tf_startup)
from robust_dae_tf.pipeline.evaluation import EvaluationSettings  # noqa: E402  (no TensorFlow)

FLAGS = flags.FLAGS
DEFAULTS = EvaluationSettings()  # one place for the defaults, shared with the pipeline function
cli.define_model_data_flags()
flags.DEFINE_string("examples", DEFAULTS.examples,
                    "An Examples artifact directory to evaluate on (e.g. <workdir>/examples).")
flags.DEFINE_string("output", None, "Output directory (default: evaluations/<model dir name>).")
flags.DEFINE_string("encoder", DEFAULTS.encoder, "Instead of --model: the encoder, a .keras file or a Keras "
                    "model.export() directory (with --decoder of the same kind; README, 'Evaluating your own "
                    "autoencoder').")
flags.DEFINE_string("decoder", DEFAULTS.decoder, "Instead of --model: the decoder (see --encoder).")
flags.DEFINE_string("prior", DEFAULTS.prior, "The latent prior for the FD when the model's metadata has none (or to "
                    "replace it): standard_normal, or a GMM JSON file {\"type\": \"gmm\", \"weights\": [K], "
                    "\"means\": [K x D], \"stds\": [K]}.")
flags.DEFINE_list("pixel_range", DEFAULTS.pixel_range, "The model's pixel range lo,hi (default 0,1; e.g. -1,1 or "
                  "0,255): images are scaled into it for the model; budgets stay L2 norms in [0, 1] pixels.")
flags.DEFINE_integer("num_images", DEFAULTS.num_images, "Test images attacked per trial.")
flags.DEFINE_integer("trials", DEFAULTS.trials, "Attack trials (new images, targets and starts each).")
flags.DEFINE_list("budgets", [f"{b:g}" for b in DEFAULTS.budgets], "L2 budgets lambda, comma separated.")
flags.DEFINE_integer("attack_steps", DEFAULTS.attack_steps, "PGD refinement steps per restart (default: 400 for the "
                     "latent attack, 200 for maximum damage; L-BFGS-B: iterations).")
flags.DEFINE_integer("attack_restarts", DEFAULTS.attack_restarts,
                     "PGD runs per image refined to the end (L-BFGS-B: random starts).")
flags.DEFINE_integer("attack_exploration_starts", DEFAULTS.attack_exploration_starts,
                     "PGD: random starts per restart in the exploration phase "
                     "(default: 24 latent, 32 maximum damage; 1 = plain PGD); see docs/attacks.md.")
flags.DEFINE_bool("attack_xla", DEFAULTS.attack_xla, "XLA-compile the PGD loop (falls back without it if XLA fails); "
                  "default: on for FC nets, off for conv nets (slower with XLA).")
flags.DEFINE_enum("attack_method", DEFAULTS.attack_method, ["pgd", "lbfgsb", "apgd", "ensemble"],
                  "Attack optimiser of the strong protocol (the paper protocol always uses the paper's attacker); "
                  "ensemble: APGD members + a reduced PGD under a quarter of PGD's gradient evaluations, "
                  "per-image worst case (docs/attacks.md, Ensemble).")
flags.DEFINE_integer("attack_towards_starts", DEFAULTS.attack_towards_starts,
                     "PGD: how many of its first phase's starts point towards other attacked images instead of "
                     "random points (same cost; stronger on maximum damage, docs/attacks.md); 0 = none.")
flags.DEFINE_integer("attack_gradient_evaluations", DEFAULTS.attack_gradient_evaluations,
                     "--attack_method=apgd / ensemble: gradient evaluations per image (default: a quarter of PGD's "
                     "default cost, 500 maximum damage and 800 latent).")
flags.DEFINE_list("attack_ensemble_members", DEFAULTS.attack_ensemble_members,
                  "--attack_method=ensemble: its members, e.g. apgd_geometry,apgd_towards,apgd_towards_long "
                  "(default: each attack's own; docs/attacks.md, Ensemble).")
flags.DEFINE_enum("attack_precision", DEFAULTS.attack_precision, ["float32", "bfloat16", "auto"],
                  "Arithmetic of the strong protocol's attack search: bfloat16 searches the latent attack on a "
                  "bfloat16 twin of the model (maximum damage stays float32) and scores what it finds in float32; "
                  "auto: bfloat16 only where measured faster on this CPU (docs/attacks.md, bfloat16).")
flags.DEFINE_integer("attack_chunk_size", DEFAULTS.attack_chunk_size,
                     "Images per compiled attack call (default: a ~1 GiB memory bound from the image size, "
                     "1000 at 32x32x1, 145 at 64x64x3; lower it if memory is short).")
flags.DEFINE_integer("pool_size", DEFAULTS.pool_size, "Test images the attacked images and targets are drawn from.")
flags.DEFINE_integer("seed", DEFAULTS.seed, "Seed of image selection, targets, attack starts and prior samples.")
flags.DEFINE_enum("protocol", DEFAULTS.protocol, ["strong", "paper", "both"],
                  "Evaluation protocol: strong (this project's attack, --attack_*), paper (the paper's L-BFGS-B "
                  "attacker and its decode-time latent noise 0.4 / 0.004 on the reported reconstructions), or both "
                  "(<output>/strong and <output>/paper; bin/compare.py <output> shows them side by side).")
flags.DEFINE_enum("split", DEFAULTS.split, ["test", "heldout_train"],
                  "Images the attacks draw from: test, or heldout_train = the training images after the model's "
                  "data.max_train_examples (never trained on; for tuning without test images; needs --skip_classifier "
                  "--skip_fid).")
flags.DEFINE_bool("local_gain", DEFAULTS.local_gain, "Also report each attack's local gain at the attacked images: "
                  "attack-free, first order, 8 gradient evaluations per image (docs/attacks.md, Local gain).")
flags.DEFINE_bool("skip_robustness", DEFAULTS.skip_robustness, "Skip the attacks (Table 1 robustness columns).")
flags.DEFINE_bool("skip_classifier", DEFAULTS.skip_classifier, "Skip the downstream classifier (Table 3).")
flags.DEFINE_bool("skip_fid", DEFAULTS.skip_fid, "Skip the Frechet distance.")
flags.DEFINE_enum("fid_extractor", DEFAULTS.fid_extractor, ["classifier", "inception"],
                  "Features for the Frechet distance (default: inception if --inception_weights, else classifier).")
flags.DEFINE_string("inception_weights", DEFAULTS.inception_weights,
                    "Local Keras InceptionV3 no-top weights (.h5) for FID.")
flags.DEFINE_integer("fid_samples", DEFAULTS.fid_samples, "Prior samples (and at most as many test images) for the FD.")
flags.DEFINE_string("feature_cache", DEFAULTS.feature_cache, "Where the FD feature classifier is cached (default: "
                    "$XDG_CACHE_HOME/robust_dae_tf/feature_extractors, i.e. ~/.cache/..., shared by all evaluations).")
flags.DEFINE_integer("fd_classifier_epochs", DEFAULTS.fd_classifier_epochs,
                     "Training epochs of the FD feature classifier (0: enough for >= 600 steps, 2..20 epochs).")
flags.DEFINE_list("classifier_hidden", [str(u) for u in DEFAULTS.classifier_hidden], "Hidden units of the latent MLP.")
flags.DEFINE_float("classifier_dropout", DEFAULTS.classifier_dropout, "Dropout of the latent MLP.")
flags.DEFINE_integer("classifier_epochs", DEFAULTS.classifier_epochs, "Training epochs of the latent MLP.")
flags.DEFINE_integer("classifier_attack_images", DEFAULTS.classifier_attack_images,
                     "Test images attacked for Table 3 (<= 0: all).")
flags.DEFINE_integer("classifier_attack_trials", DEFAULTS.classifier_attack_trials, "Attack trials for Table 3.")
flags.DEFINE_float("classifier_budget", DEFAULTS.classifier_budget, "Budget lambda of the Table 3 attack.")
flags.DEFINE_bool("tensorboard", DEFAULTS.tensorboard, "Write TensorBoard summaries.")


def main(argv):
    # No TensorFlow before the pipeline's cheap checks: a wrong flag fails within a second.
    from robust_dae_tf.errors import UserError
    from robust_dae_tf.pipeline.evaluation import run_evaluation_pipeline

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    settings = EvaluationSettings(**{field.name: FLAGS[field.name].value for field in dataclasses.fields(DEFAULTS)})
    result = run_evaluation_pipeline(FLAGS.model, FLAGS.output, settings)
    print(result["markdown"])
    print(f"Reports: {result['output']}")


if __name__ == "__main__":
    cli.run_main(main, select_config=False, saved_on_interrupt="the finished attack runs and evaluation parts are "
                 "kept in the --output directory")
