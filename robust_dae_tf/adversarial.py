"""Latent-space adversarial training examples (paper eq. 6).

One FGSM step with a random start ("fast is better than free", Wong et al. 2020)
on the objective of eq. 6, the squared latent displacement
||g(x + delta) - g(x)||_2^2, under an L-infinity budget epsilon:

    delta_0 ~ U[-eps, eps]^shape, clipped so that x + delta_0 stays in [0, 1]
    delta   = clip(delta_0 + step_size * sign(grad_delta ||g(x + delta_0) - z||^2), -eps, eps)
    x_adv   = clip(x + delta, 0, 1)

Pixels are float in [0, 1]. The target `z` is the clean latent g(x) with its gradient
stopped, and `x_adv` carries no gradient: the training step treats it as data.
"""

from __future__ import annotations

import tensorflow as tf


def random_start(x: tf.Tensor, epsilon: float, uniform_noise: tf.Tensor) -> tf.Tensor:
    """delta_0 = eps * u with u ~ U[-1, 1] (given), clipped so that x + delta_0 is in [0, 1]."""
    delta = epsilon * uniform_noise
    return tf.clip_by_value(delta, -x, 1.0 - x)


def fgsm_latent_adversarial(
    encoder,
    x: tf.Tensor,
    z_clean: tf.Tensor,
    epsilon: float,
    step_size: float,
    initial_delta: tf.Tensor | None = None,
    training: bool = True,
) -> tf.Tensor:
    """Returns x_adv, `[N, H, W, C]` in [0, 1] with ||x_adv - x||_inf <= epsilon.

    Args:
      encoder: callable images -> latents.
      x: clean images in [0, 1].
      z_clean: g(x) (its gradient is stopped here).
      epsilon: L-infinity budget (MNIST: 0.3).
      step_size: FGSM step alpha (MNIST: 0.375 = 1.25 * eps).
      initial_delta: the random start delta_0 (see `random_start`); None starts at 0.
        The caller draws it so that randomness stays reproducible per training step
        and identical across replica layouts.
      training: passed to the encoder (the reference crafts in train mode).
    """
    z_clean = tf.stop_gradient(z_clean)
    delta = tf.zeros_like(x) if initial_delta is None else initial_delta
    with tf.GradientTape() as tape:
        tape.watch(delta)
        displacement = encoder(x + delta, training=training) - z_clean
        objective = tf.reduce_sum(tf.square(displacement))
    grad = tape.gradient(objective, delta)
    delta = tf.clip_by_value(delta + step_size * tf.sign(grad), -epsilon, epsilon)
    return tf.stop_gradient(tf.clip_by_value(x + delta, 0.0, 1.0))
