"""Local gain: an attack-free robustness score of a model at each image.

The local gain at an image x is the operator norm of the Jacobian J = dh/dx of the map an
attack compares, at the clean image: sqrt of the top eigenvalue of the pullback metric
J^T J (Khan and Storkey, arXiv 2208.03923). For maximum damage h = f o g (the autoencoder),
so a small perturbation of L2 size lambda moves the reconstruction by about gain x lambda
at most, to first order; for the latent attack h = g (the encoder; the gain is in latent
units per pixel-L2 unit). Pixels in [0, 1], L2 norms, one value per image.

It costs `steps` gradient evaluations per image and attack (`attacks.geometry`: orthogonal
iteration with one direction, read off the attack's own gradient at a step of
`geometry.EPS`), a few seconds where an attack costs minutes, and it needs no budget,
target or start: a cheap first look at which of two models is the more sensitive, on the
same images (docs/attacks.md, "Local gain"). It is a first-order quantity at x: the attacks
at the paper's budgets go far beyond the linear regime, so it complements them, it does not
replace them. A model output that is not finite at an image gives NaN there; a model without
a gradient with respect to its input raises DataError (`attacks.gradients`).
"""

from __future__ import annotations

import numpy as np

from robust_dae_tf.attacks.budgets import GEOMETRY_POWER_STEPS


def local_gain(model, objective, images: np.ndarray, steps: int = GEOMETRY_POWER_STEPS, seed: int = 0,
               chunk_size: int = 64) -> np.ndarray:
    """[N] float64 local gain of `model` at each of `images` ([N, H, W, C] float32 in [0, 1])
    for the attack `objective` (an `attacks.Objective` or its name): sqrt of the top Ritz
    value of the pullback metric of what the attack compares (module docstring)."""
    from robust_dae_tf.attacks import geometry, gradients, objectives  # pylint: disable=import-outside-toplevel

    attack = objectives.objective(objective)
    images = np.asarray(images, np.float32)
    reference = geometry.own_reference(model, attack, images)
    gradients.check_input_gradient(model, attack, images, reference, geometry.EPS)  # DataError: no gradient
    _, values = geometry.top_directions(model, attack, images, reference, count=1, steps=steps, seed=seed,
                                        chunk_size=chunk_size)
    values = values[0].astype(np.float64)
    return np.where(np.isfinite(values), np.sqrt(np.maximum(values, 0.0)), np.nan)


def local_gains(model, objectives, images: np.ndarray, seed: int = 0) -> tuple[dict, dict]:
    """({attack name: summary}, {attack name: float64 [N] gains}) of `model` at `images` for
    each of `objectives` (`local_gain` with `GEOMETRY_POWER_STEPS` steps), as evaluation
    reports hold it (`robustness.evaluate_robustness(local_gain=True)`). A summary has "mean",
    "median" and "std" (numpy, ddof=0) over the images, not per trial as the attacks' cells
    (the gain is a property of each image; its spread over the images is what it shows),
    "images", "non_finite_images" (images where the model is not finite nearby: left out of
    the statistics; all of them: the statistics are None) and
    "gradient_evaluations_per_image"."""
    summaries, values = {}, {}
    for objective in objectives:
        attack = getattr(objective, "name", objective)  # an Objective or its registered name
        gain = local_gain(model, objective, images, steps=GEOMETRY_POWER_STEPS, seed=seed)
        finite = gain[np.isfinite(gain)]
        summaries[attack] = {
            **{name: float(fn(finite)) if finite.size else None
               for name, fn in (("mean", np.mean), ("median", np.median), ("std", np.std))},
            "images": int(gain.size), "non_finite_images": int(gain.size - finite.size),
            "gradient_evaluations_per_image": GEOMETRY_POWER_STEPS}
        values[attack] = gain
    return summaries, values
