"""Measuring attacked images: the objective's value at given images, reconstructions, and
the MS-SSIM the strong protocol reports. Used by the runner, the ensemble (to rank its
members per image) and `check.py`. Pixels float32 in [0, 1]; batches of at most `batch`
images per TensorFlow call; no decode noise.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks import objectives


def attack_loss(model, objective, adversarial: np.ndarray, reference: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The objective value (not squared) at given adversarial images, [N] (`reference` as
    `Objective.reference` computes it)."""
    objective = objectives.objective(objective)
    adversarial, reference = adversarial.astype(np.float32), reference.astype(np.float32)
    outs = []
    for i in range(0, adversarial.shape[0], batch):
        x, ref = tf.constant(adversarial[i:i + batch]), tf.constant(reference[i:i + batch])
        outs.append(np.asarray(tf.sqrt(objective.loss_sq(model, x, ref))))
    return np.concatenate(outs)


def reconstruct(model, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """f(g(images)) as float32 [N, H, W, C], in batches (no decode noise)."""
    outs = []
    for i in range(0, images.shape[0], batch):
        outs.append(np.asarray(model.decode(model.encode(tf.constant(images[i:i + batch]))), np.float32))
    return np.concatenate(outs).reshape(images.shape[0], *outs[0].shape[1:])


def reconstruct_and_msssim(model, reference_images: np.ndarray, adversarial: np.ndarray,
                           batch: int = 500) -> np.ndarray:
    """MS-SSIM (paper convention, `ms_ssim_paper`, reference first) of `reference_images`
    vs f(g(adversarial)), [N] float64: the main metric the strong protocol reports."""
    from robust_dae_tf.metrics.msssim import ms_ssim_paper  # pylint: disable=import-outside-toplevel

    rec = reconstruct(model, adversarial)
    reference_images = np.asarray(reference_images, np.float32).reshape(rec.shape)
    return np.concatenate([np.asarray(ms_ssim_paper(tf.constant(reference_images[i:i + batch]),
                                                    tf.constant(rec[i:i + batch])), np.float64)
                           for i in range(0, rec.shape[0], batch)])
