#!/usr/bin/env python
"""Check the strength of the PGD attacker: convergence and a second, independent attacker.

On --num_images random test images (targets of another class) and for every budget and
attack (`attacks.PAPER_OBJECTIVES`: latent, eq. 12; maximum damage, eq. 13) it runs

  * "pgd":    robust_dae_tf.attacks with the given --steps / --restarts (what evaluation uses);
  * "pgd_4x": the same attacker with --strong_factor times the steps AND the restarts;
  * "lbfgsb": the reference implementation's procedure (scipy L-BFGS-B per image, box
              bounds, random start in the L2 ball, rescaled onto the ball), an attacker
              that shares only the model and the objective with ours.

and writes to --output: summary.md (table of mean losses and relative gaps), results.json,
convergence.png (best-so-far mean loss vs iteration per budget).

Gap = how much worse "pgd" is than the other attacker, relative to the other's mean loss
(`Objective.shortfall`): (pgd - other) / other for the latent attack (lower loss = stronger
attack) and (other - pgd) / other for maximum damage (higher = stronger). Negative = pgd
is stronger.

    python bin/check_attacks.py --model=saved_models/digits_robust --output=attack_check
    python bin/check_attacks.py --model=sm --dataset=mnist --data_dir=/path/to/mnist --num_images=20
"""

import dataclasses
import json
import os
import sys
import time

from absl import flags

from robust_dae_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_model_data_flags()
flags.DEFINE_integer("num_images", 20, "Test images to attack.")
flags.DEFINE_list("budgets", ["1", "3", "5"], "L2 budgets lambda.")
flags.DEFINE_integer("steps", None, "PGD steps (AttackConfig.steps) of the attacker under test (default: per attack).")
flags.DEFINE_integer("restarts", 2, "PGD restarts (AttackConfig.restarts) of the attacker under test.")
flags.DEFINE_integer("exploration_starts", None, "AttackConfig.exploration_starts of both PGD attackers "
                     "(default: per attack).")
flags.DEFINE_integer("strong_factor", 4, "pgd_4x uses this many times the steps and the restarts.")
flags.DEFINE_integer("lbfgsb_steps", 200, "L-BFGS-B iterations per start.")
flags.DEFINE_integer("lbfgsb_restarts", 2, "L-BFGS-B random starts per image.")
flags.DEFINE_integer("seed", 0, "Seed of the image selection and the attacks.")
flags.DEFINE_string("output", "attack_check", "Output directory.")


def _plot(results, budgets, objectives, path):
    """One panel per (attack, budget): best-so-far mean loss vs gradient iteration per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robust_dae_tf import reporting

    fig, axes = plt.subplots(len(objectives), len(budgets), figsize=(3.2 * len(budgets), 2.7 * len(objectives)),
                             squeeze=False)
    styles = {"pgd": ("-", "C0"), "pgd_4x": ("--", "C1"), "lbfgsb": (":", "C2")}
    for row, objective in enumerate(objectives):
        for col, budget in enumerate(budgets):
            ax = axes[row, col]
            entry = results[objective.name][str(budget)]
            for name, (style, color) in styles.items():
                explore = entry[name].get("exploration_curve") or []
                curve = list(explore) + list(entry[name]["curve"])
                ax.plot(range(1, len(curve) + 1), curve, style, color=color, lw=1.3, label=name)
                if explore:
                    ax.axvline(len(explore) + 0.5, color=color, lw=0.6, alpha=0.5)
            ax.set_xscale("log")
            ax.set_title(f"{objective.short_label} ({objective.stronger} = stronger), $\lambda$={budget:g}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == len(objectives) - 1:
                ax.set_xlabel("iteration (exploration | refinement)", fontsize=7)
            if col == 0:
                ax.set_ylabel("mean best-so-far loss", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    try:
        reporting.save_figure(fig, path, dpi=72)
    finally:
        plt.close(fig)


def _markdown(results, budgets, objectives, meta):
    lines = [
        "# Attack check",
        "",
        f"Model `{meta['model']}`, dataset `{meta['dataset']}`, {meta['num_images']} test images, seed {meta['seed']}.",
        "pgd: " + ", ".join(f"{o.short_label} {meta['pgd'][o.name]}" for o in objectives) + " (steps, restarts, "
        f"exploration starts per restart); pgd_4x: {meta['strong_factor']}x the steps and the restarts; "
        f"lbfgsb: maxiter={meta['lbfgsb_steps']}, "
        f"restarts={meta['lbfgsb_restarts']}, memory 25.",
        "",
        "Gap = how much weaker pgd is than the other attacker, relative to its mean loss (negative: pgd stronger).",
        "",
        "| attack | lambda | pgd | pgd_4x | lbfgsb | gap vs pgd_4x | gap vs lbfgsb | images pgd >= lbfgsb - 2% | time pgd / pgd_4x / lbfgsb (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for objective in objectives:
        for budget in budgets:
            e = results[objective.name][str(budget)]
            lines.append(
                f"| {objective.name} | {budget:g} | {e['pgd']['mean']:.4f} | {e['pgd_4x']['mean']:.4f} | {e['lbfgsb']['mean']:.4f} "
                f"| {100 * e['gap_vs_pgd_4x']:+.2f}% | {100 * e['gap_vs_lbfgsb']:+.2f}% "
                f"| {e['images_within_2pct_of_lbfgsb']}/{meta['num_images']} "
                f"| {e['pgd']['seconds']:.1f} / {e['pgd_4x']['seconds']:.1f} / {e['lbfgsb']['seconds']:.1f} |"
            )
    lines += ["", "![convergence](convergence.png)", "", "Command:", "", "```", meta["command"], "```", ""]
    return "\n".join(lines)


def main(argv):
    from robust_dae_tf.errors import ConfigError, UserError

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")
    if not FLAGS.model:
        raise ConfigError("pass --model=<SavedModel directory> (written by bin/train.py --export_dir).")
    for name in ("num_images", "steps", "restarts", "exploration_starts", "strong_factor", "lbfgsb_steps",
                 "lbfgsb_restarts"):
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {FLAGS[name].value}.")
    try:
        budgets = [float(b) for b in FLAGS.budgets]
    except ValueError:
        raise ConfigError(f"--budgets must be numbers separated by commas, got {','.join(FLAGS.budgets)}.") from None

    from robust_dae_tf import fileio, reporting

    output = fileio.check_writable(FLAGS.output, "--output", directory=True)  # before any long work

    import numpy as np

    from robust_dae_tf import attacks, data
    from robust_dae_tf.evaluation import robustness
    from robust_dae_tf.errors import DataError

    budgets = robustness.validate_budgets(budgets)  # once, here: the attacks below do not check again
    model, dataset, images, labels = cli.load_model_and_test_images()
    protocol = robustness.Protocol(num_images=FLAGS.num_images, trials=1, seed=FLAGS.seed)
    if FLAGS.num_images > images.shape[0]:
        raise DataError(f"--num_images={FLAGS.num_images} exceeds the test split size {images.shape[0]}.")
    _, sources, targets = robustness.select_trials(labels, protocol)
    x, x_t = images[sources[0]], images[targets[0]]

    objectives = attacks.PAPER_OBJECTIVES

    def configs_for(objective):
        pgd = objective.resolve(attacks.AttackConfig(steps=FLAGS.steps, restarts=FLAGS.restarts,
                                                     exploration_starts=FLAGS.exploration_starts))
        return {
            "pgd": pgd,
            "pgd_4x": dataclasses.replace(pgd, steps=pgd.steps * FLAGS.strong_factor,
                                          restarts=pgd.restarts * FLAGS.strong_factor),
            "lbfgsb": attacks.AttackConfig(steps=FLAGS.lbfgsb_steps, restarts=FLAGS.lbfgsb_restarts, method="lbfgsb"),
        }

    results = {o.name: {} for o in objectives}
    for b_index, budget in enumerate(budgets):
        for objective in objectives:
            entry = {}
            losses = {}
            for name, config in configs_for(objective).items():
                seed = FLAGS.seed + 1000 * b_index + (0 if name == "pgd" else 17 if name == "pgd_4x" else 29)
                t0 = time.perf_counter()
                res = attacks.run_validated(objective, model, x, budget, config, targets=x_t, seed=seed,
                                            record_curve=True)
                seconds = time.perf_counter() - t0
                losses[name] = res.loss.astype(np.float64)
                entry[name] = {"mean": float(res.loss.mean()), "seconds": seconds,
                               "curve": [float(v) for v in res.loss_curve], "per_image": losses[name].tolist()}
                if res.exploration_curve is not None:
                    entry[name]["exploration_curve"] = [float(v) for v in res.exploration_curve]
                print(f"{objective.name:10s} lambda={budget:g} {name:7s} mean loss {res.loss.mean():.4f} ({seconds:.1f}s)",
                      flush=True)
            entry["gap_vs_pgd_4x"] = float(objective.shortfall(entry["pgd"]["mean"], entry["pgd_4x"]["mean"]))
            entry["gap_vs_lbfgsb"] = float(objective.shortfall(entry["pgd"]["mean"], entry["lbfgsb"]["mean"]))
            per_image_gap = objective.shortfall(losses["pgd"], losses["lbfgsb"])
            entry["images_within_2pct_of_lbfgsb"] = int(np.sum(per_image_gap <= 0.02))
            results[objective.name][str(budget)] = entry

    meta = {"model": FLAGS.model, "dataset": data.get_spec(dataset).name, "num_images": FLAGS.num_images,
            "seed": FLAGS.seed, "steps": FLAGS.steps, "restarts": FLAGS.restarts,
            "exploration_starts": FLAGS.exploration_starts,
            "pgd": {o.name: [getattr(configs_for(o)["pgd"], f) for f in ("steps", "restarts", "exploration_starts")]
                    for o in objectives},
            "strong_factor": FLAGS.strong_factor, "lbfgsb_steps": FLAGS.lbfgsb_steps,
            "lbfgsb_restarts": FLAGS.lbfgsb_restarts,
            "command": "python " + " ".join(sys.argv)}
    # Each file is written to a temporary name and renamed into place.
    fileio.write_text_atomic(os.path.join(output, "results.json"), json.dumps({"meta": meta, "results": results}, indent=1))
    _plot(results, budgets, objectives, os.path.join(output, "convergence.png"))
    summary = _markdown(results, budgets, objectives, meta)
    fileio.write_text_atomic(os.path.join(output, "summary.md"), summary)
    print(summary)


if __name__ == "__main__":
    cli.run_main(main, select_config=False)
