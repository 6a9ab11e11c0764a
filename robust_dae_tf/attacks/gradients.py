"""The check every attack optimiser relies on: the objective has a gradient with respect
to the input images.

A model whose outputs do not depend (differentiably) on its input, e.g. a constant or a
`tf.stop_gradient` encoder loaded with --trust_model, gives TensorFlow a `None` gradient
(or an all-zero one), on which an optimiser either crashes inside its compiled loop or
silently returns its random start. `check_input_gradient` evaluates the gradient once per
attack, eagerly, on a few of the attacked images at a seeded random point of the budget
ball (at d = 0 the maximum-damage loss is at its minimum, with a zero gradient), and
raises one DataError saying so. `runner.run_validated` calls it before any optimiser
runs; an optimiser called directly may call it too.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks.objectives import Objective
from robust_dae_tf.attacks.starts import random_starts
from robust_dae_tf.errors import DataError

CHECK_IMAGES = 8  # images of the attack the gradient is evaluated on


def check_input_gradient(model, objective: Objective, images: np.ndarray, reference: np.ndarray, budget: float,
                         seed: int = 0) -> None:
    """DataError when the gradient of `objective.loss_sq` with respect to the (perturbed)
    images is None or zero for every pixel of the first `CHECK_IMAGES` images."""
    n = min(CHECK_IMAGES, images.shape[0])
    start = random_starts(images[:n], budget, 1, seed)[0]
    x_adv = tf.constant(np.clip(images[:n] + start, 0.0, 1.0).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        total = tf.reduce_sum(objective.loss_sq(model, x_adv, tf.constant(reference[:n], tf.float32)))
    grad = tape.gradient(total, x_adv)
    if grad is None:
        why = "TensorFlow finds no gradient path from the images to them (a constant or stop-gradient encoder?)"
    elif not np.any(grad.numpy()):
        why = "their gradient with respect to the images is zero at every pixel (a constant encoder?)"
    else:
        return
    raise DataError(
        f"the model is not differentiable with respect to its input: the {objective.name} attack's loss on its "
        f"{objective.model_outputs} does not change with the images ({why}); gradient attacks cannot run on it, "
        "check the SavedModel's encode()."
    )
