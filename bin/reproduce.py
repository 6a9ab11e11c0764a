#!/usr/bin/env python
"""Reproduce a dataset's tables: train, export and evaluate a list of models with the
dataset's shipped config and the paper's evaluation protocol, then compare them with the
paper's published rows (bin/compare.py's table).

    python bin/reproduce.py --dataset=mnist --data_dir=../shared/data/mnist --epochs=500
    python bin/reproduce.py --dataset=fashion_mnist --data_dir=../shared/data/fashion_mnist --models=all
    python bin/reproduce.py --dataset=mnist --models=vae,se --epochs=50 --eval=trials=2
    python bin/reproduce.py --dataset=fashion_mnist --models=all --epochs=100 --model_epochs=lipschitz_vae=30

A sweep over the model axis (robust_dae_tf/pipeline/experiments.py): every model is a
point in <output>/points/<model>/ (training workdir run/, e<epochs>/saved_model,
e<epochs>/evaluation). Rerunning resumes: complete models are skipped, a killed one
continues from its checkpoints, and a larger --epochs continues every finished training.
Progress is printed per model and stage. At the end: <output>/sweep.md / .csv /
_front.png (the sweep's table and front) and <output>/comparison_e<epochs>.md (+ CSVs):
Tables 1 and 3 of all models and, with --paper (default: --dataset when the paper has
it), each model next to the paper's numbers.
"""

from absl import flags

from robust_dae_tf import cli

FLAGS = flags.FLAGS
cli.define_sweep_flags(default_output="runs/reproduce")
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file (default: configs/<dataset>.py).", lock_config=True)
flags.DEFINE_list("models", ["gmm_dae", "augmented", "robust"], "Models to train and evaluate, comma separated; "
                  "'all' = ours and the six baselines.")
flags.DEFINE_list("model_epochs", [], "Epoch budgets of some models instead of --epochs, <model>=<epochs>, "
                  "comma separated, e.g. lipschitz_vae=30 (a model whose steps cost too much); such a model's "
                  "results are in points/<model>/e<epochs>.")
flags.DEFINE_string("paper", None, "Compare with the paper's rows of this dataset (mnist, fashion_mnist, "
                    "svhn_cropped, celeb_a; default: --dataset when the paper has it; 'none' to leave them out).")


def main(argv):
    import os

    from robust_dae_tf import config_lib, fileio, reporting
    from robust_dae_tf.reporting import paper as paper_results
    from robust_dae_tf.errors import ConfigError, UserError
    from robust_dae_tf.pipeline import experiments

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")
    base, settings = cli.sweep_inputs()
    paper = FLAGS.paper or (base.dataset if base.dataset in paper_results.DATASETS else None)
    if paper == "none":
        paper = None
    if paper is not None and paper not in paper_results.DATASETS:
        raise ConfigError(f"--paper must be one of {', '.join(paper_results.DATASETS)} or none, got {paper!r}.")
    models = list(config_lib.MODELS) if FLAGS.models == ["all"] else [m.strip() for m in FLAGS.models]
    if not models or len(set(models)) != len(models):
        raise ConfigError(f"--models must list distinct models, got {','.join(FLAGS.models)!r}.")
    axes = [("model.variant", tuple(models))]
    points = experiments.with_model_epochs(experiments.make_points(base, axes), FLAGS.model_epochs)
    comparison = os.path.join(FLAGS.output, f"comparison_e{base.train.epochs}.md")
    stem = os.path.splitext(comparison)[0]
    outputs = [comparison, f"{stem}_table1.csv", f"{stem}_table3.csv"]
    for path in outputs:  # before any training
        fileio.check_writable(path, "--output")
    experiments.run_sweep(base, points, FLAGS.output, settings, engine=FLAGS.engine, ray_address=FLAGS.ray_address,
                          cpus_per_point=FLAGS.cpus_per_point, front_budget=FLAGS.front_budget, axes=axes,
                          axis_flags=[f"--models={','.join(FLAGS.models)}"])
    evaluations = [experiments.point_paths(FLAGS.output, p)["evaluation"] for p in points]
    result = reporting.compare(evaluations, paper=paper)
    for path, text in zip(outputs, (result["markdown"], result["table1_csv"], result["table3_csv"])):
        fileio.write_text_atomic(path, text)
    print(result["markdown"])
    print(f"Written: {', '.join(outputs)}")


if __name__ == "__main__":
    cli.run_main(main)
