"""Surrogate objectives: what ensemble members optimise in place of an attack's own loss.

A surrogate is an `Objective` over the same images and budget whose optimum is also a
strong attack on the paper's objective, but with another landscape: one targets the
reported metric directly (MS-SSIM, paper convention, `metrics.msssim.ms_ssim_paper`,
reference image first, as `robustness` reports it), one is scale-free (the cosine
distance of latents, so a model cannot shrink its gradients by shrinking its code).
The ensemble (`ensemble.py`) runs APGD on them and judges every member's result on the
attack's own loss. They are not registered (reports never show them).

Conventions: pixels in [0, 1]; `loss_sq` returns the square of the reported loss, so the
optimisers' sqrt gives the value itself (MS-SSIM in [0, 1]; cosine distance 1 - cos in
[0, 2]); squaring changes the gradient of each image only by a positive factor, and the
optimisers normalise each image's gradient, so the steps are those of the value itself.
"""

from __future__ import annotations

import numpy as np

from robust_dae_tf.attacks.config import check_finite_rows
from robust_dae_tf.attacks.objectives import Objective, flatten

_EPS = 1e-12


def _encode(model, images):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.cast(flatten(model.encode(images)), tf.float32)


def _cosine_distance(a, b):
    """1 - cos(a_i, b_i) per row of [N, K] tensors (0 for a zero vector)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    dot = tf.reduce_sum(a * b, axis=1)
    norms = tf.sqrt(tf.reduce_sum(a * a, axis=1) * tf.reduce_sum(b * b, axis=1))
    return 1.0 - dot / tf.maximum(norms, _EPS)


def _latents(model, images, what):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    z = np.asarray(model.encode(tf.constant(images)), np.float32).reshape(images.shape[0], -1)
    check_finite_rows(z, what, images.shape[0])
    return z


class LatentMsssim(Objective):
    """Latent attack, reported metric: maximise MS-SSIM(x_t, f(g(x + d))) (paper
    convention, target first), what Table 1 reports for the latent attack. Reference: x_t,
    flattened. First start towards the target (x_t - x) like the latent attack."""

    name = "latent_msssim"
    maximize = True
    needs_targets = True
    model_outputs = "latents/reconstructions"

    def reference(self, model, images, targets):
        _latents(model, images, "latents")
        return targets.reshape(targets.shape[0], -1).astype(np.float32)

    def loss_sq(self, model, x_adv, reference):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        from robust_dae_tf.metrics.msssim import ms_ssim_paper  # pylint: disable=import-outside-toplevel

        rec = tf.cast(model.decode(model.encode(x_adv)), tf.float32)
        target = tf.reshape(reference, tf.shape(rec))
        return tf.square(ms_ssim_paper(target, rec))

    def start_directions(self, images, targets):
        return targets - images


class MaxDamageMsssim(Objective):
    """Maximum damage, reported metric: minimise MS-SSIM(f(g(x)), f(g(x + d))) (paper
    convention, clean reconstruction first). Reference: f(g(x)), flattened."""

    name = "max_damage_msssim"
    maximize = False
    model_outputs = "latents/reconstructions"

    def reference(self, model, images, targets):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        z = _latents(model, images, "latents")
        rec = np.asarray(model.decode(tf.constant(z)), np.float32).reshape(images.shape[0], -1)
        check_finite_rows(rec, "reconstructions", images.shape[0])
        return rec

    def loss_sq(self, model, x_adv, reference):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        from robust_dae_tf.metrics.msssim import ms_ssim_paper  # pylint: disable=import-outside-toplevel

        rec = tf.cast(model.decode(model.encode(x_adv)), tf.float32)
        return tf.square(ms_ssim_paper(tf.reshape(reference, tf.shape(rec)), rec))


class LatentCosine(Objective):
    """Latent attack, scale-free: minimise 1 - cos(g(x + d), g(x_t)). Reference: g(x_t).
    First start towards the target."""

    name = "latent_cosine"
    maximize = False
    needs_targets = True

    def reference(self, model, images, targets):
        _latents(model, images, "latents")
        return _latents(model, targets, "latents (of the target images)")

    def loss_sq(self, model, x_adv, reference):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return tf.square(_cosine_distance(_encode(model, x_adv), reference))

    def start_directions(self, images, targets):
        return targets - images


class MaxDamageCosine(Objective):
    """Maximum damage, scale-free: maximise 1 - cos(g(x + d), g(x)). Reference: g(x)."""

    name = "max_damage_cosine"
    maximize = True

    def reference(self, model, images, targets):
        return _latents(model, images, "latents")

    def loss_sq(self, model, x_adv, reference):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return tf.square(_cosine_distance(_encode(model, x_adv), reference))


LATENT_MSSSIM, MAX_DAMAGE_MSSSIM = LatentMsssim(), MaxDamageMsssim()
LATENT_COSINE, MAX_DAMAGE_COSINE = LatentCosine(), MaxDamageCosine()
