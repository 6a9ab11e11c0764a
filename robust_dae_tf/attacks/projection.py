"""The exact Euclidean projection onto the L2 ball intersected with the pixel box.

P(v) = argmin_d ||d - v||_2 subject to ||d||_2 <= lambda and lower <= d <= upper (for an
image x: lower = -x, upper = 1 - x). Used by the evaluation attacks (`attacks.pgd`, the
random starts) and by the Smooth Encoder baseline's training-time PGD
(`baselines.smooth_encoder`).

With a multiplier mu >= 0 for the ball the problem separates per pixel, and the KKT
conditions give d(mu) = clip(v / (1 + mu), lower, upper), with mu = 0 if
||clip(v, lower, upper)|| <= lambda, and otherwise the mu with ||d(mu)||_2 = lambda
(Slater holds: d = 0 is strictly inside the ball and inside the box because lower <= 0
<= upper). ||d(mu)|| is continuous and non-increasing in mu, so mu is found per example
by vectorised bisection, here on s = 1 / (1 + mu) in [lambda / ||v||, 1] (the lower end
is always feasible because ||clip(s v)|| <= s ||v||). The bracket's feasible end is then
polished by active-set steps: with the set C of pixels clipped at s fixed, s' =
sqrt((lambda^2 - sum_C c_i^2) / sum_{not C} v_i^2) solves the norm equation; s' never
overshoots the exact s* (clipped terms only shrink) and equals it once C is the final
active set, so the result is exact up to float rounding. A final rescaling by min(1,
lambda / ||d||) guards against rounding (it keeps the box because 0 is inside it).
"""

from __future__ import annotations

import tensorflow as tf

# Bisection iterations on s = 1 / (1 + mu), then active-set polishing steps.
PROJECTION_BISECTION_STEPS = 8
PROJECTION_POLISH_STEPS = 4
_TINY = 1e-30


def l2_norm(v: tf.Tensor) -> tf.Tensor:
    """Row norms ||v_i||_2 of [B, P]."""
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=1))


def project_l2_box(v, lower, upper, budget, bisection_steps: int = PROJECTION_BISECTION_STEPS,
                   polish_steps: int = PROJECTION_POLISH_STEPS) -> tf.Tensor:
    """Exact Euclidean projection of each row of v onto {||d||_2 <= budget} ∩ [lower, upper].

    Args:
      v, lower, upper: [B, P] float32 with lower <= 0 <= upper.
      budget: scalar or [B] radius > 0.
    Returns d = clip(v / (1 + mu), lower, upper), [B, P] (see the module docstring).
    """
    v = tf.convert_to_tensor(v, tf.float32)
    lower = tf.convert_to_tensor(lower, tf.float32)
    upper = tf.convert_to_tensor(upper, tf.float32)
    budget = tf.broadcast_to(tf.cast(budget, tf.float32), tf.shape(v)[:1])
    budget_sq = tf.square(budget)

    d0 = tf.clip_by_value(v, lower, upper)
    inside = l2_norm(d0) <= budget  # mu = 0
    s_lo = tf.minimum(1.0, budget / tf.maximum(l2_norm(v), _TINY))  # always feasible
    s_hi = tf.ones_like(s_lo)

    def clipped_norm_sq(s):
        return tf.reduce_sum(tf.square(tf.clip_by_value(s[:, None] * v, lower, upper)), axis=1)

    for _ in range(bisection_steps):
        mid = 0.5 * (s_lo + s_hi)
        ok = clipped_norm_sq(mid) <= budget_sq
        s_lo = tf.where(ok, mid, s_lo)
        s_hi = tf.where(ok, s_hi, mid)
    v_sq = tf.square(v)
    for _ in range(polish_steps):
        u = s_lo[:, None] * v
        clipped = (u < lower) | (u > upper)
        clipped_sq = tf.reduce_sum(tf.where(clipped, tf.square(tf.clip_by_value(u, lower, upper)), 0.0), axis=1)
        free_sq = tf.reduce_sum(tf.where(clipped, 0.0, v_sq), axis=1)
        s_new = tf.sqrt(tf.maximum(budget_sq - clipped_sq, 0.0) / tf.maximum(free_sq, _TINY))
        s_lo = tf.maximum(s_lo, tf.minimum(s_new, s_hi))
    d = tf.clip_by_value(s_lo[:, None] * v, lower, upper)
    d = tf.where(inside[:, None], d0, d)
    scale = tf.minimum(1.0, budget / tf.maximum(l2_norm(d), _TINY))
    return d * scale[:, None]
