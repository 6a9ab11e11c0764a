"""The reference implementation's attacker ("lbfgsb"), an independent check of PGD.

Per image (and restart) scipy's L-BFGS-B (memory 25, at most `steps` iterations) on d
with box bounds [-x, 1 - x], starting at a random point of the L2 ball (`starts`), where
d is rescaled onto the ball (d * lambda / ||d||) when it leaves it before the objective is
evaluated; gradients come from TensorFlow through the rescaling. scipy minimises
-sign * loss (`Objective.sign`). The best point evaluated is returned. Slow (one Python
loop iteration per image and function evaluation); used by `bin/check_attacks.py` and
the tests to check the PGD attacker. It shares only the model and the objective with PGD.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks.config import AttackConfig, AttackResult
from robust_dae_tf.attacks.objectives import Objective
from robust_dae_tf.attacks.projection import l2_norm
from robust_dae_tf.attacks.starts import random_starts

LBFGSB_MEMORY = 25
_TINY = 1e-30


def run(model, objective: Objective, images: np.ndarray, reference: np.ndarray, budget: float, config: AttackConfig,
        seed: int, record_curve: bool) -> AttackResult:
    """L-BFGS-B on validated inputs (`runner.run_validated` prepares them)."""
    from scipy import optimize  # pylint: disable=import-outside-toplevel

    n = images.shape[0]
    image_shape = images.shape[1:]
    p = int(np.prod(image_shape))
    sign = -objective.sign  # scipy minimises sign * loss

    @tf.function(input_signature=[
        tf.TensorSpec([1, *image_shape], tf.float32),
        tf.TensorSpec([1, None], tf.float32),
        tf.TensorSpec([1, p], tf.float32),
        tf.TensorSpec([], tf.float32),
    ])
    @tf.autograph.experimental.do_not_convert
    def value_and_grad(x, ref, d, lam):
        with tf.GradientTape() as tape:
            tape.watch(d)
            scale = tf.minimum(1.0, lam / tf.maximum(l2_norm(d), _TINY))  # rescale onto the ball
            d_in = d * scale[:, None]
            x_adv = tf.clip_by_value(x + tf.reshape(d_in, tf.shape(x)), 0.0, 1.0)
            loss = tf.sqrt(objective.loss_sq(model, x_adv, ref) + 1e-20)[0]
        return loss, tape.gradient(loss, d), x_adv

    starts = random_starts(images, budget, config.restarts, seed)
    adversarial = np.empty_like(images)
    losses = np.empty(n, np.float32)
    curves = np.zeros((n, config.steps))
    lam = tf.constant(budget, tf.float32)
    spent = [0]  # objective + gradient evaluations, all images
    for i in range(n):
        x = tf.constant(images[i:i + 1])
        ref = tf.constant(reference[i:i + 1])
        flat_x = images[i].reshape(-1).astype(np.float64)
        bounds = optimize.Bounds(-flat_x, 1.0 - flat_x)
        best = {"loss": objective.worst, "x": images[i]}
        restart_curves = []
        for r in range(config.restarts):
            run = {"loss": objective.worst}

            def fun(d, run=run):
                spent[0] += 1  # one gradient evaluation
                loss, grad, x_adv = value_and_grad(x, ref, tf.constant(d[None].astype(np.float32)), lam)
                loss = float(loss)
                if np.isfinite(loss) and sign * loss < sign * run["loss"]:
                    run["loss"] = loss
                    if sign * loss < sign * best["loss"]:
                        best["loss"], best["x"] = loss, x_adv.numpy()[0]
                grad = grad.numpy()[0].astype(np.float64)
                return sign * loss, sign * np.where(np.isfinite(grad), grad, 0.0)

            run_curve = []
            optimize.minimize(
                fun, starts[r, i].reshape(-1).astype(np.float64), jac=True, method="L-BFGS-B", bounds=bounds,
                options={"maxiter": config.steps, "maxcor": LBFGSB_MEMORY, "ftol": 1e-12, "gtol": 1e-10},
                callback=lambda _xk, run=run, run_curve=run_curve: run_curve.append(run["loss"]),
            )
            run_curve = (run_curve or [run["loss"]])[: config.steps]
            run_curve += [run["loss"]] * (config.steps - len(run_curve))
            run_curve[-1] = run["loss"]
            restart_curves.append(run_curve)
        # Best over restarts after k iterations of each restart.
        curves[i] = objective.best_np(restart_curves, 0)
        adversarial[i] = best["x"]
        losses[i] = best["loss"] if np.isfinite(best["loss"]) else np.nan
    curve = curves.mean(0).astype(np.float32) if record_curve else None
    return AttackResult(adversarial, losses, curve, info={"gradient_evaluations_per_image": spent[0] / n})
