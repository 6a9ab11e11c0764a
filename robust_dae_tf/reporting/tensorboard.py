"""TensorBoard summaries of an evaluation: attack metrics vs lambda, accuracies, the FD,
figures and image grids (TensorFlow is imported only when writing).

Steps: `tf.summary` steps are integers, so the attack curves use step = lambda when every
budget is an integer (the paper's 1, 3, 5), else the budget's index; the text summary
"attack_curves/step_to_lambda" maps steps to budgets."""

from __future__ import annotations

import numpy as np

from robust_dae_tf.attacks.config import budget_key
from robust_dae_tf.reporting.tables import budgets_of, objectives_of


def tensorboard_steps(budget_keys) -> dict:
    """budget key -> integer step: lambda itself when all budgets are integers, else the index."""
    values = sorted(float(k) for k in budget_keys)
    if all(v == int(v) for v in values) and len({int(v) for v in values}) == len(values):
        return {budget_key(v): int(v) for v in values}
    return {budget_key(v): i for i, v in enumerate(values)}


def write_tensorboard(logdir: str, robustness: dict | None = None, figure_paths: dict | None = None,
                      grids: dict | None = None, classifier: dict | None = None, fid: dict | None = None) -> str:
    """Scalars (attack metrics vs lambda, mean and std), figure PNGs and image grids."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        if robustness:
            steps = tensorboard_steps(budgets_of([{"robustness": robustness}]))
            for attack in (o.name for o in objectives_of([{"robustness": robustness}])):
                for key, metrics in (robustness.get(attack) or {}).items():
                    for metric, stat in metrics.items():
                        if isinstance(stat, dict) and "mean" in stat:
                            step = steps[budget_key(key)]
                            tf.summary.scalar(f"{attack}/{metric}", float(stat["mean"]), step=step)
                            tf.summary.scalar(f"{attack}/{metric}_std", float(stat["std"]), step=step)
            mapping = ", ".join(f"step {s} = λ {float(k):g}" for k, s in sorted(steps.items(), key=lambda kv: kv[1]))
            tf.summary.text("attack_curves/step_to_lambda", mapping, step=0)
        if classifier and "clean_accuracy" in classifier:
            tf.summary.scalar("classifier/clean_accuracy", float(classifier["clean_accuracy"]), step=0)
            tf.summary.scalar("classifier/attacked_accuracy",
                              float(classifier["attacked_accuracy"]["mean"]), step=0)
        if fid and "value" in fid:
            tf.summary.scalar(f"fid/{fid.get('name', 'FD')}", float(fid["value"]), step=0)
        for name, path in (figure_paths or {}).items():
            png = tf.io.decode_png(tf.io.read_file(path), channels=3)
            tf.summary.image(f"figures/{name}", png[None], step=0)
        for name, mosaic in (grids or {}).items():
            tf.summary.image(f"grids/{name}", np.asarray(mosaic, np.float32)[None], step=0)
    writer.flush()
    writer.close()
    return logdir
