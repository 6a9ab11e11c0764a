"""Wasserstein distances for the smooth-encoder (SE) baseline.

Cemgil, Ghaisas, Dvijotham & Kohli, "Adversarially Robust Representations with Smooth
Encoders" (ICLR 2020) regularise a VAE encoder with the distance between the posterior
of a clean input, q(z|x), and that of a perturbed input, q(z|x'), where x' is chosen
adversarially inside an input ball. Their general formulation (a selection mechanism
over fictive perturbed points) leads to an entropy-regularised Wasserstein distance
between representations; with the diagonal Gaussian encoders used in practice the
distance between the two posteriors is the 2-Wasserstein distance, which has a closed
form. Both are provided:

* `gaussian_w2_squared`: closed-form W2^2 between N(m1, diag s1^2) and
  N(m2, diag s2^2): ||m1 - m2||^2 + ||s1 - s2||^2 (Dowson & Landau 1982 / Givens &
  Shortt 1984 for commuting covariances). This is the SE regulariser between
  q(z|x) and q(z|x') for Gaussian posteriors, and the one the SE baseline uses.
* `sinkhorn_distance`: entropy-regularised optimal transport between two empirical
  point clouds with uniform weights (Cuturi 2013), log-domain stabilised; use it for
  sample-based (non-Gaussian or batch-level) versions of the regulariser.

Conventions: per-example functions sum over the latent axis and return `[N]` (no
batch mean); `sinkhorn_distance` returns a scalar for one pair of clouds. Costs are
squared Euclidean for p = 2, so both functions approximate W2 SQUARED (not W2).
Everything is differentiable TensorFlow in the dtype of the first argument.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import tensorflow as tf

from robust_dae_tf.errors import ConfigError


def gaussian_w2_squared(mean1, log_var1, mean2, log_var2) -> tf.Tensor:
    """Squared 2-Wasserstein distance between diagonal Gaussians, summed over the last axis.

    W2^2(N(m1, S1), N(m2, S2)) = ||m1 - m2||^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2),
    which for diagonal S_k = diag(s_k^2) is sum_d (m1_d - m2_d)^2 + (s1_d - s2_d)^2 with
    s = exp(log_var / 2). `[N, D]` inputs -> `[N]`.
    """
    mean1 = tf.convert_to_tensor(mean1)
    dtype = mean1.dtype
    mean2 = tf.convert_to_tensor(mean2, dtype=dtype)
    std1 = tf.exp(0.5 * tf.convert_to_tensor(log_var1, dtype=dtype))
    std2 = tf.exp(0.5 * tf.convert_to_tensor(log_var2, dtype=dtype))
    return tf.reduce_sum(tf.square(mean1 - mean2) + tf.square(std1 - std2), axis=-1)


def _pairwise_cost(x: tf.Tensor, y: tf.Tensor, p: float) -> tf.Tensor:
    """C_ij = ||x_i - y_j||_2^p, `[n, m]`, with a gradient-safe norm at 0 for p != 2."""
    sq = tf.reduce_sum(tf.square(x[:, None, :] - y[None, :, :]), axis=-1)
    if p == 2:
        return sq
    positive = sq > 0
    safe = tf.where(positive, sq, tf.ones_like(sq))
    return tf.where(positive, tf.pow(safe, 0.5 * p), tf.zeros_like(sq))


def sinkhorn_distance(x, y, epsilon: float, num_iters: int, p: float = 2) -> tf.Tensor:
    """Entropy-regularised OT cost between point clouds x `[n, d]` and y `[m, d]`.

    Uniform weights a = 1/n, b = 1/m, cost C_ij = ||x_i - y_j||_2^p. The Sinkhorn plan
    P_eps = argmin_{P in U(a, b)} <P, C> - eps H(P) is computed by `num_iters` log-domain
    Sinkhorn iterations on the dual potentials (Cuturi 2013; the log-domain form of
    Peyre & Cuturi 2019, "Computational Optimal Transport"):

        f_i = -eps logsumexp_j((g_j - C_ij) / eps + log b_j)
        g_j = -eps logsumexp_i((f_i - C_ij) / eps + log a_i)
        log P_ij = (f_i + g_j - C_ij) / eps + log a_i + log b_j

    and the returned value is the transport cost of that plan, <P_eps, C> (Cuturi's
    "Sinkhorn distance", without the entropy term). At convergence
    W_p^p <= <P_eps, C> <= W_p^p + eps * log(min(n, m)) (optimality of P_eps for
    <P, C> + eps KL(P || a b^T), and KL(P* || a b^T) <= log min(n, m) for an optimal
    plan P*), so it tends to the exact W_p^p (W2^2 for p = 2) as eps -> 0, given
    enough iterations (small eps needs more). The value is symmetric in (x, y) at
    convergence. Gradients flow through all unrolled iterations.

    Args:
      x, y: `[n, d]`, `[m, d]` samples (same d).
      epsilon: entropic regularisation, in cost units (> 0).
      num_iters: Sinkhorn iterations (>= 1), each updates f then g.
      p: cost exponent >= 1.
    """
    if not isinstance(epsilon, Real) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ConfigError(f"sinkhorn epsilon must be a finite number > 0, got {epsilon!r}.")
    if isinstance(num_iters, bool) or not isinstance(num_iters, Integral) or num_iters < 1:
        raise ConfigError(f"sinkhorn num_iters must be a positive integer, got {num_iters!r}.")
    if not isinstance(p, Real) or not p >= 1:
        raise ConfigError(f"sinkhorn cost exponent p must be >= 1, got {p!r}.")
    x = tf.convert_to_tensor(x)
    y = tf.convert_to_tensor(y, dtype=x.dtype)
    if x.shape.rank != 2 or y.shape.rank != 2:
        raise ConfigError(
            f"sinkhorn_distance needs point clouds of shape [n, d] and [m, d], got "
            f"{x.shape.as_list()} and {y.shape.as_list()}."
        )
    if x.shape[1] is not None and y.shape[1] is not None and x.shape[1] != y.shape[1]:
        raise ConfigError(
            f"x and y must have the same feature dimension, got {x.shape[1]} and {y.shape[1]}."
        )
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ConfigError("sinkhorn_distance needs non-empty point clouds.")
    cost = _pairwise_cost(x, y, p)
    return _sinkhorn_cost(cost, tf.constant(epsilon, x.dtype), tf.constant(num_iters, tf.int32))


@tf.function(reduce_retracing=True)
def _sinkhorn_cost(cost: tf.Tensor, eps: tf.Tensor, num_iters: tf.Tensor) -> tf.Tensor:
    """<P_eps, C> for uniform marginals after `num_iters` log-domain Sinkhorn sweeps.

    Compiled once per dtype (shapes and hyper-parameters are dynamic) so that the
    sweeps run as a graph loop, also when called eagerly; differentiable.
    """
    dtype = cost.dtype
    n = tf.shape(cost)[0]
    m = tf.shape(cost)[1]
    log_a = -tf.math.log(tf.cast(n, dtype)) * tf.ones([n], dtype)
    log_b = -tf.math.log(tf.cast(m, dtype)) * tf.ones([m], dtype)

    def body(i, f, g):
        f = -eps * tf.reduce_logsumexp((g[None, :] - cost) / eps + log_b[None, :], axis=1)
        g = -eps * tf.reduce_logsumexp((f[:, None] - cost) / eps + log_a[:, None], axis=0)
        return i + 1, f, g

    _, f, g = tf.while_loop(
        lambda i, f, g: i < num_iters,
        body,
        (tf.constant(0), tf.zeros([n], dtype), tf.zeros([m], dtype)),
    )
    log_plan = (f[:, None] + g[None, :] - cost) / eps + log_a[:, None] + log_b[None, :]
    return tf.reduce_sum(tf.exp(log_plan) * cost)
