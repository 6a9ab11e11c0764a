#!/usr/bin/env python
"""Strength and cost of the attack methods side by side, in one run (`attacks.check`).

On --num_images random test images (targets of another class; seed --seed) and for every
attack in --attacks and budget in --budgets it runs each method of --methods:

  * "ensemble":  the attack ensemble (`attacks.ensemble`), --ensemble_evaluations gradient
                 evaluations per image (default: a quarter of pgd's default cost);
  * "pgd":       today's default PGD (--steps / --restarts / --exploration_starts, default
                 per attack: what evaluation uses);
  * "reference": pgd with --reference_factor times the steps AND the restarts
                 (--reference_factor=4: 16x the compute, docs/attacks.md's pgd_4x);
  * "lbfgsb":    (optional) the reference implementation's L-BFGS-B procedure;
  * "ensemble_bf16": (optional) the ensemble searching in bfloat16 (`AttackConfig.precision`;
                 the latent attack only, maximum damage stays float32), scored in float32.

Per cell: mean attack loss, mean reported MS-SSIM, images won, gradient evaluations per
image (spent), seconds. Writes <output>/summary.md and <output>/results.json (the CPU's
model name included), prints the table, and draws <output>/per_image.png (each image's attack
loss under each method against pgd's, one panel per attack and budget). Resumable: each finished (attack, budget,
method) cell is kept in <output>/cells/ and reused by a rerun with the same settings.

    python bin/check_attacks.py --model=saved_models/digits_robust --output=attack_check
    python bin/check_attacks.py --model=sm --dataset=mnist --data_dir=/path/to/mnist --num_images=100 \\
      --budgets=1,3,5 --attacks=latent,max_damage --output=runs/attack_check/mnist
"""

import dataclasses
import json
import os
import sys

from absl import flags

from robust_dae_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_model_data_flags()
flags.DEFINE_integer("num_images", 20, "Test images to attack.")
flags.DEFINE_list("budgets", ["1", "3", "5"], "L2 budgets lambda.")
flags.DEFINE_list("attacks", ["latent", "max_damage"], "Attacks (registered objective names).")
flags.DEFINE_list("methods", ["ensemble", "pgd", "reference"], "Methods: ensemble, pgd, pgd_towards, reference, lbfgsb, "
                  "ensemble_bf16 (pgd_towards: pgd with --towards_starts of its starts towards other images; "
                  "ensemble_bf16: the ensemble searching in bfloat16).")
flags.DEFINE_integer("steps", None, "PGD steps (AttackConfig.steps) of pgd (default: per attack).")
flags.DEFINE_integer("restarts", 2, "PGD restarts (AttackConfig.restarts) of pgd.")
flags.DEFINE_integer("exploration_starts", None, "AttackConfig.exploration_starts of pgd and reference "
                     "(default: per attack).")
flags.DEFINE_integer("reference_factor", 4, "reference = pgd with this many times the steps and the restarts "
                     "(4: 16x the compute).")
flags.DEFINE_integer("towards_starts", None, "Method pgd_towards: starts towards other images "
                     "(AttackConfig.towards_starts; default: half of pgd's first-phase starts).")
flags.DEFINE_integer("ensemble_evaluations", None, "Gradient evaluations per image of the ensemble "
                     "(default: a quarter of pgd's default cost per attack).")
flags.DEFINE_list("ensemble_members", None, "Members of the ensemble, e.g. apgd_geometry,apgd_towards,apgd_towards_long "
                  "(default: each attack's own; names and shares: docs/attacks.md, Ensemble).")
flags.DEFINE_integer("lbfgsb_steps", 200, "L-BFGS-B iterations per start (method lbfgsb).")
flags.DEFINE_integer("lbfgsb_restarts", 2, "L-BFGS-B random starts per image (method lbfgsb).")
flags.DEFINE_integer("seed", 0, "Seed of the image selection and the attacks.")
flags.DEFINE_string("output", "attack_check", "Output directory (cells/ in it make a rerun resume).")

METHODS = ("ensemble", "pgd", "pgd_towards", "reference", "lbfgsb", "ensemble_bf16")


def method_configs(objective, methods):
    """{method: AttackConfig} for `objective` from the flags, in the order given."""
    from robust_dae_tf import attacks

    pgd = objective.resolve(attacks.AttackConfig(steps=FLAGS.steps, restarts=FLAGS.restarts,
                                                 exploration_starts=FLAGS.exploration_starts))
    ensemble = objective.resolve(attacks.AttackConfig(method="ensemble", gradient_evaluations=FLAGS.ensemble_evaluations,
                                                      ensemble_members=FLAGS.ensemble_members))
    table = {
        "ensemble": ensemble,
        "ensemble_bf16": dataclasses.replace(ensemble, precision="bfloat16"),
        "pgd": pgd,
        "pgd_towards": dataclasses.replace(pgd, towards_starts=(pgd.exploration_starts * pgd.restarts // 2
                                                                if FLAGS.towards_starts is None else FLAGS.towards_starts)),
        "reference": dataclasses.replace(pgd, steps=pgd.steps * FLAGS.reference_factor,
                                         restarts=pgd.restarts * FLAGS.reference_factor),
        "lbfgsb": attacks.AttackConfig(steps=FLAGS.lbfgsb_steps, restarts=FLAGS.lbfgsb_restarts, method="lbfgsb"),
    }
    return {m: table[m] for m in methods}


def main(argv):
    from robust_dae_tf.errors import ConfigError, DataError, UserError

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")
    cli.check_model_data_flags()
    for name in ("num_images", "steps", "restarts", "exploration_starts", "reference_factor", "lbfgsb_steps",
                 "lbfgsb_restarts", "ensemble_evaluations", "towards_starts"):
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {FLAGS[name].value}.")
    methods = list(FLAGS.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ConfigError(f"--methods must be distinct names from {', '.join(METHODS)}, got {','.join(methods)}.")
    try:
        budgets = [float(b) for b in FLAGS.budgets]
    except ValueError:
        raise ConfigError(f"--budgets must be numbers separated by commas, got {','.join(FLAGS.budgets)}.") from None

    from robust_dae_tf import attacks, fileio, machine
    from robust_dae_tf.evaluation.settings import validate_budgets

    budgets = validate_budgets(budgets)
    objectives = [attacks.objective(name) for name in FLAGS.attacks]
    configs = {o.name: method_configs(o, methods) for o in objectives}  # ConfigError before loading anything
    output = fileio.check_writable(FLAGS.output, "--output", directory=True)  # before any long work

    # TensorFlow from here on: every flag above fails within a second.
    from robust_dae_tf import data, export
    from robust_dae_tf.attacks import check
    from robust_dae_tf.evaluation import robustness

    model, dataset, images, labels = cli.load_model_and_test_images()
    if FLAGS.num_images > images.shape[0]:
        raise DataError(f"--num_images={FLAGS.num_images} exceeds the test split size {images.shape[0]}.")
    protocol = robustness.Protocol(num_images=FLAGS.num_images, trials=1, seed=FLAGS.seed)
    _, sources, targets = robustness.select_trials(labels, protocol)
    x, x_t = images[sources[0]], images[targets[0]]
    model_id = json.dumps(export.saved_model_identity(FLAGS.model), sort_keys=True)

    results = {}
    for objective in objectives:
        results.update(check.check_attacks(model, x, x_t, budgets, [objective], configs[objective.name], output,
                                           seed=FLAGS.seed, model_id=model_id,
                                           log=lambda msg: print(msg, flush=True), show_progress=True))
    meta = {"model": FLAGS.model, "dataset": data.get_spec(dataset).name, "num_images": FLAGS.num_images,
            "seed": FLAGS.seed, "cpu": machine.cpu_name(), "budgets": list(budgets),
            "methods": {m: "; ".join(f"{o.name}: {_describe(configs[o.name][m])}" for o in objectives)
                        for m in methods},
            "configs": {o.name: {m: dataclasses.asdict(c) for m, c in configs[o.name].items()} for o in objectives},
            "command": "python " + " ".join(sys.argv)}
    fileio.write_text_atomic(os.path.join(output, "results.json"), json.dumps({"meta": meta, "results": results},
                                                                              indent=1))
    summary = check.markdown(results, methods, meta)
    fileio.write_text_atomic(os.path.join(output, "summary.md"), summary)
    print(summary)
    if len(methods) > 1:  # per-image losses against pgd's (or the first method's)
        from robust_dae_tf import reporting

        figure = reporting.plot_attack_check(results, methods, os.path.join(output, "per_image.png"),
                                             reference="pgd" if "pgd" in methods else methods[0],
                                             title=f"{os.path.basename(os.path.normpath(FLAGS.model))}: "
                                                   f"{FLAGS.num_images} images, seed {FLAGS.seed}")
        print(f"Per-image figure: {figure}")


def _describe(config) -> str:
    if config.method == "ensemble":
        in_bf16 = ", search in bfloat16 where allowed" if config.precision != "float32" else ""
        return f"ensemble of {config.gradient_evaluations} gradient evaluations{in_bf16}"
    if config.method == "lbfgsb":
        return f"L-BFGS-B {config.steps} iterations x {config.restarts} starts"
    towards = f", {config.towards_starts} starts towards other images" if config.towards_starts else ""
    return (f"PGD steps {config.steps}, restarts {config.restarts}, exploration starts {config.exploration_starts}"
            f"{towards}")


if __name__ == "__main__":
    cli.run_main(main, select_config=False)
