#!/usr/bin/env python
"""Sweep: train, export and evaluate every point of a grid over a base config, then one
table of all points and a figure of the robustness-fidelity front.

    python bin/sweep.py --dataset=mnist --data_dir=../shared/data/mnist --epochs=50 \\
        --grid=loss.coupling=0.5,0.8,0.9,0.95,0.99 --output=sweeps/mnist_coupling
    python bin/sweep.py --grid=model=gmm_dae,robust --grid=loss.coupling=0.8,0.9 --engine=ray
    python bin/sweep.py ... --engine=ray --ray_address=ray://head-node:10001   # on a cluster
    python bin/sweep.py ... --eval=trials=2 --eval=budgets=1,3    # any bin/evaluate.py setting

The base config is bin/train.py's (--dataset picks configs/<dataset>.py, --config=FILE,
--config.<field>=value, --model, --epochs, --data_dir). Each --grid=<field>=<v1>,<v2>,...
adds an axis (values parsed as the field's type; "model", "epochs" and "seed" are short
for model.variant, train.epochs and train.seed; a tuple value is written in parentheses,
e.g. --grid=model.hidden_units=(64,64),(200,200)); the points are their cartesian product.
Every point's config and the evaluation settings are checked before any training.

Output (--output): points/<name>/ (point.json, run/ = training workdir,
e<epochs>/saved_model, e<epochs>/evaluation, e<epochs>/result.json), sweep.md and
sweep.csv (overrides, reconstruction MSE, FD, MS-SSIM of both attacks per budget,
accuracies, Pareto membership) and sweep_front.png (maximum-damage MS-SSIM at
--front_budget against FD and against reconstruction MSE; Pareto-optimal points marked).
Rerunning the same command skips complete points and resumes the others from their
checkpoints (robust_dae_tf/pipeline/experiments.py).
"""

from absl import flags

from robust_dae_tf import cli

FLAGS = flags.FLAGS
cli.define_sweep_flags(default_output="sweeps/sweep")
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Base config file (default: configs/<dataset>.py).", lock_config=True)
flags.DEFINE_string("model", None, "Model of every point unless the grid sweeps it (default: the config's).")
flags.DEFINE_multi_string("grid", [], "An axis of the grid: <config field>=<value>,<value>,... (repeatable).")


def main(argv):
    from robust_dae_tf.errors import UserError
    from robust_dae_tf.pipeline import experiments

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")
    base, settings = cli.sweep_inputs(model=FLAGS.model)
    axes = experiments.parse_grid(FLAGS.grid, base)
    points = experiments.make_points(base, axes)
    experiments.run_sweep(base, points, FLAGS.output, settings, engine=FLAGS.engine, ray_address=FLAGS.ray_address,
                          cpus_per_point=FLAGS.cpus_per_point, front_budget=FLAGS.front_budget, axes=axes,
                          axis_flags=[f"--grid={spec}" for spec in FLAGS.grid])


if __name__ == "__main__":
    cli.run_main(main)
