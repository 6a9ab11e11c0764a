"""Regularization losses of the GMM deterministic autoencoders (paper eqs. 4-10).

All functions are pure: they take latent batches `z` (and `z_adv`) of shape `[N, D]`
(float32) and a prior object exposing `marginal_cdf(z) -> [N, D]` and
`covariance() -> [D, D]` (see `robust_dae_tf.priors.GMMPrior`) and return a scalar.

Conventions shared by every function:

* Empirical marginal CDF (eq. 2) at the i-th smallest value of a dimension is i / N,
  i = 1..N. Sorting is per dimension over the batch; ties are ordered arbitrarily,
  which does not change the loss value (tied values get the same prior CDF).
* "MSE" is the mean over all N * D entries, which equals eq. 4's
  (1/D) sum_d MSE_d.
* Empirical covariances divide by N (not N - 1).
* NaN or Inf in the input propagates to a NaN / Inf loss (training stops on it);
  nothing is silently masked.
* A batch of one is valid: its empirical CDF is 1 and its covariance is zero.
"""

from __future__ import annotations

import tensorflow as tf

from robust_dae_tf.errors import ConfigError


def _empirical_cdf_levels(n: tf.Tensor, dtype) -> tf.Tensor:
    """[N, 1] column of i / N, i = 1..N (eq. 2 evaluated at the sorted samples)."""
    n_float = tf.cast(n, dtype)
    return (tf.range(1, n + 1, dtype=dtype) / n_float)[:, None]


def _sorted_prior_cdf(z: tf.Tensor, prior) -> tf.Tensor:
    """Prior marginal CDF at the per-dimension sorted latents, `[N, D]`."""
    return prior.marginal_cdf(tf.sort(z, axis=0))


def ks_loss(z: tf.Tensor, prior) -> tf.Tensor:
    """Marginal Kolmogorov-Smirnov loss, eq. 4.

    L_KS(z_1..N) = (1/D) sum_d MSE(F_d(z_(i),d), F_GMM,d(z_(i),d)), with the empirical
    CDF F_d at the i-th sorted value equal to i / N.
    """
    z = tf.convert_to_tensor(z)
    prior_cdf = _sorted_prior_cdf(z, prior)
    levels = _empirical_cdf_levels(tf.shape(z)[0], prior_cdf.dtype)
    return tf.reduce_mean(tf.square(prior_cdf - levels))


def _covariance(z: tf.Tensor) -> tf.Tensor:
    """Empirical covariance of the columns of `z`, divided by N."""
    centered = z - tf.reduce_mean(z, axis=0, keepdims=True)
    n = tf.cast(tf.shape(z)[0], z.dtype)
    return tf.matmul(centered, centered, transpose_a=True) / n


def covariance_loss(z: tf.Tensor, prior) -> tf.Tensor:
    """Covariance loss, eq. 5: (1/D^2) sum_{l,d} (Sigma_emp - Sigma_GMM)_{l,d}^2."""
    z = tf.convert_to_tensor(z)
    target = tf.cast(prior.covariance(), z.dtype)
    return tf.reduce_mean(tf.square(_covariance(z) - target))


def augmented_ks_loss(z: tf.Tensor, z_adv: tf.Tensor, prior) -> tf.Tensor:
    """Augmented KS loss, eq. 7: (1/2) L_KS(z) + (1/2) L_KS(z_adv).

    This is the paper's form. The reference code instead pools z and z_adv into one
    2N batch before computing eq. 4; both have the same minimiser, we follow the
    paper's equation.
    """
    return 0.5 * ks_loss(z, prior) + 0.5 * ks_loss(z_adv, prior)


def two_sample_ks_loss(z: tf.Tensor, z_adv: tf.Tensor, prior) -> tf.Tensor:
    """Two-sample KS coupling term of eq. 9, in its differentiable quantile-matched form.

    (1/D) sum_d MSE(F_GMM,d(z_(i),d), F_GMM,d(z_adv_(i),d)): both batches are sorted
    per dimension separately and the i-th order statistics are compared through the
    prior marginal CDF. (Comparing two empirical step CDFs directly has zero gradient
    almost everywhere.) Zero when z_adv is z, or any per-dimension re-ordering of it.
    """
    return tf.reduce_mean(tf.square(_sorted_prior_cdf(z, prior) - _sorted_prior_cdf(z_adv, prior)))


def adversarial_ks_loss(
    z: tf.Tensor, z_adv: tf.Tensor, prior, two_sample_weight: float | tf.Tensor = 1.0, *, two_sample=None
) -> tf.Tensor:
    """Adversarial KS loss, eq. 9: (2/3) L_KS^aug(z, z_adv) + (1/3) w * two-sample term.

    The one implementation of eq. 9: the robust model (`models.RegularizedAutoencoder`)
    and the benchmark call it. `two_sample_weight` w rescales the coupling term relative
    to the KS term when the two are normalised by separately estimated weights (see
    `estimate_loss_weights`; the robust model passes lambda_2S / lambda_KS, as the
    reference does); w = 1 is eq. 9 as printed. `two_sample`: the value of
    `two_sample_ks_loss(z, z_adv, prior)` when the caller has already computed it (the
    model reports it as a metric), so it is not computed twice.
    """
    if two_sample is None:
        two_sample = two_sample_ks_loss(z, z_adv, prior)
    return (2.0 / 3.0) * augmented_ks_loss(z, z_adv, prior) + (1.0 / 3.0) * two_sample_weight * two_sample


CROSS_COVARIANCE_MODES = ("target", "ignore")


def coupled_covariance_loss(
    z: tf.Tensor, z_adv: tf.Tensor, prior, coupling: float | tf.Tensor = 0.0, cross_covariance: str = "target"
) -> tf.Tensor:
    """Coupled covariance loss, eq. 10 (coupling alpha); alpha = 0 gives eq. 8.

    Compares the empirical covariance of the 2D-dimensional vectors [z_n, z_adv_n]
    (blocks Sigma, Sigma_cross; Sigma_cross^T, Sigma_adv) with
    [[S, alpha S], [alpha S, S]], S = Sigma_GMM, by the mean squared difference over
    the (2D)^2 entries, i.e. the 1 / (4 D^2) normalisation of eqs. 8 and 10.
    |alpha| <= 1; alpha = 1 is the border case z_adv = z.

    `cross_covariance="ignore"` is the other reading of eq. 8: only the two diagonal
    blocks are compared with S (each of z and z_adv matches the prior's covariance, no
    constraint between them), the mean squared difference over their 2 D^2 entries;
    `coupling` is then unused.
    """
    if cross_covariance not in CROSS_COVARIANCE_MODES:
        raise ConfigError(
            f"cross_covariance must be one of {CROSS_COVARIANCE_MODES}, got {cross_covariance!r} "
            "(config.loss.cross_covariance)."
        )
    z = tf.convert_to_tensor(z)
    z_adv = tf.convert_to_tensor(z_adv)
    s = tf.cast(prior.covariance(), z.dtype)
    if cross_covariance == "ignore":
        own = tf.square(_covariance(z) - s) + tf.square(_covariance(z_adv) - s)
        return tf.reduce_mean(own) / 2.0
    a = tf.cast(coupling, z.dtype)
    target = tf.concat(
        [tf.concat([s, a * s], axis=1), tf.concat([a * s, s], axis=1)], axis=0
    )
    joint = tf.concat([z, z_adv], axis=1)
    return tf.reduce_mean(tf.square(_covariance(joint) - target))


def reconstruction_loss(x: tf.Tensor, x_rec: tf.Tensor) -> tf.Tensor:
    """Pixel mean squared error, averaged over the batch and all pixels and channels
    (L_REC of eq. 11; pixels in [0, 1]). The model multiplies it by lambda_REC."""
    return tf.reduce_mean(tf.square(tf.cast(x, x_rec.dtype) - x_rec))


def estimate_loss_weights(prior, batch_size: int, num_batches: int = 100, seed: int = 0) -> dict:
    """Loss weights lambda = 1 / E_prior[loss], estimated from batches of the prior.

    As in the paper's appendix and the reference code, each regularizer is normalised
    by its mean value over `num_batches` batches of `batch_size` latents drawn from the
    prior itself, so that every weighted term is ~1 for prior-distributed latents:

    * "ks": 1 / mean L_KS(z) (eq. 4, also used for eqs. 7 and 9);
    * "covariance": 1 / mean L_CV(z) (eq. 5, also used for eqs. 8 and 10);
    * "two_sample_ks": 1 / mean two-sample term between two independent prior batches.

    Sampling is stateless (seeded), so the weights are reproducible. Returns floats.
    """
    total = {"ks": 0.0, "covariance": 0.0, "two_sample_ks": 0.0}
    for i in range(num_batches):
        z = prior.sample(batch_size, seed=tf.constant([seed, 2 * i], tf.int32))
        z_other = prior.sample(batch_size, seed=tf.constant([seed, 2 * i + 1], tf.int32))
        total["ks"] += float(ks_loss(z, prior))
        total["covariance"] += float(covariance_loss(z, prior))
        total["two_sample_ks"] += float(two_sample_ks_loss(z, z_other, prior))
    return {name: num_batches / value for name, value in total.items()}


#: `loss.weighting`: how the regularizer weights are estimated and the adversarial
#: terms combined. "paper": `estimate_loss_weights` and eqs. 7 / 9 as printed;
#: "reference": `estimate_reference_loss_weights` and the reference code's total.
WEIGHTINGS = ("paper", "reference")


def reference_ks_loss(z: tf.Tensor, z_adv: tf.Tensor, prior) -> tf.Tensor:
    """KS loss of the reference code for the adversarial models: eq. 4 on z and z_adv
    pooled into ONE 2N batch (empirical CDF levels i / 2N), instead of eq. 7's average
    of two N-batch KS losses."""
    return ks_loss(tf.concat([z, z_adv], axis=0), prior)


def estimate_reference_loss_weights(
    prior,
    batch_size: int,
    num_batches: int = 100,
    coupling: float = 0.0,
    seed: int = 0,
    cross_covariance: str = "target",
) -> dict:
    """Loss weights of the reference code (`loss.weighting = "reference"`).

    Like `estimate_loss_weights`, each weight is 1 / the mean of its loss over
    `num_batches` prior draws, but every draw is a PAIR (z, z') of independent prior
    batches of `batch_size` latents, and each weight normalises the term the reference
    actually puts in its objective for the adversarial models:

    * "ks": 1 / mean L_KS(z and z' pooled into one 2N batch) (`reference_ks_loss`).
      Pooling doubles the batch, so this weight is about 2x the one-batch weight of
      `estimate_loss_weights` (MNIST prior, batch 100, seed 0: ~1183 vs ~576);
    * "two_sample_ks": 1 / mean two-sample term between z and z' (the same value as
      `estimate_loss_weights`, from the same seeded draws);
    * "covariance": 1 / mean coupled covariance loss of eq. 10 between z and z' at the
      model's `coupling` alpha (cross block compared with alpha * Sigma_GMM), so this
      weight depends on alpha: it falls as alpha grows (MNIST prior, batch 100, seed 0:
      ~1.03 at alpha 0, ~0.185 at 0.9, ~0.155 at 1, vs ~1.08 from eq. 5 in
      `estimate_loss_weights` whatever alpha). Independent z, z' have zero cross-covariance, so a large alpha
      makes the prior's own loss large and its weight small: at alpha 0.9 the
      paper-weighted coupling is ~6x stronger than the reference's. With
      `cross_covariance="ignore"` (not in the reference) the weight normalises that
      loss instead, the one the model then uses.

    The reference's total for the robust model is then
    lambda_KS KS(pooled z, z_adv) + lambda_2S two-sample + lambda_CV L_CV(alpha),
    without eq. 9's 2/3 and 1/3; the augmented model is the same with alpha = 0 and
    no two-sample term (see `models.regularized`). Sampling is stateless (seeded), the
    same draws as `estimate_loss_weights` with the same seed. Returns floats.
    """
    total = {"ks": 0.0, "covariance": 0.0, "two_sample_ks": 0.0}
    for i in range(num_batches):
        z = prior.sample(batch_size, seed=tf.constant([seed, 2 * i], tf.int32))
        z_other = prior.sample(batch_size, seed=tf.constant([seed, 2 * i + 1], tf.int32))
        total["ks"] += float(reference_ks_loss(z, z_other, prior))
        total["covariance"] += float(coupled_covariance_loss(z, z_other, prior, coupling, cross_covariance))
        total["two_sample_ks"] += float(two_sample_ks_loss(z, z_other, prior))
    return {name: num_batches / value for name, value in total.items()}
