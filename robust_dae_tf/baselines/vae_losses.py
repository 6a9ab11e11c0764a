"""Loss terms of the VAE-family baselines (VAE, beta-VAE, beta-TCVAE).

Conventions shared by every function:

* Latent tensors are `[N, D]` (batch first, latent dimension last); images are
  `[N, ...]` with pixels in [0, 1].
* Diagonal Gaussians are parameterised by `mean` and `log_var` = log sigma^2 (natural
  log of the variance, not of the standard deviation).
* Per-example functions (`gaussian_kl`, `reconstruction_nll`) SUM over the latent /
  pixel axes and return `[N]`; they never average over the batch. The caller takes
  the batch mean, so a VAE loss is `mean(reconstruction_nll + beta * gaussian_kl)`,
  the negative ELBO per example in nats.
* `gaussian_log_density` is element-wise (no reduction) so that it can be broadcast
  into the `[M, M, D]` matrix of the beta-TCVAE estimators.
* `beta_tcvae_terms` returns batch MEANS (scalars), as in Chen et al.'s code.
* Everything is pure TensorFlow, differentiable, and follows the dtype of its first
  argument. Bad arguments raise `ConfigError`; NaN / Inf in inputs propagate.

Reconstruction likelihood. All VAE baselines in this package use ONE likelihood,
`DEFAULT_RECONSTRUCTION = "bernoulli"`: the Bernoulli cross-entropy summed over pixels
(Kingma & Welling 2014, appendix C.1, used for MNIST; Chen et al. 2018 use it for
dSprites). Pixels in [0, 1] are treated as Bernoulli means, which is the standard
(if not normalised for non-binary pixels) choice for MNIST / Fashion-MNIST. The
Gaussian alternative with a fixed standard deviation is kept for ablations only.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import tensorflow as tf

from robust_dae_tf.errors import ConfigError

_LOG_2PI = math.log(2.0 * math.pi)

#: The reconstruction likelihood used by every VAE baseline of this package.
DEFAULT_RECONSTRUCTION = "bernoulli"
RECONSTRUCTION_KINDS = ("bernoulli", "gaussian")
TC_ESTIMATORS = ("mws", "mss")

#: Probabilities are clipped to [eps, 1 - eps] before taking logs (Bernoulli, probs).
BERNOULLI_EPSILON = 1e-7


def gaussian_kl(mean, log_var) -> tf.Tensor:
    """KL(N(mean, diag exp(log_var)) || N(0, I)), summed over the last axis.

    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", appendix B:
    -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).
    `mean`, `log_var`: `[N, D]` -> `[N]` (any leading shape works; the last axis is summed).
    """
    mean = tf.convert_to_tensor(mean)
    log_var = tf.convert_to_tensor(log_var, dtype=mean.dtype)
    return -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mean) - tf.exp(log_var), axis=-1)


def gaussian_log_density(z, mean, log_var) -> tf.Tensor:
    """Element-wise log N(z; mean, exp(log_var)), broadcasting its three arguments.

    log N = -1/2 (log 2 pi + log_var + (z - mean)^2 exp(-log_var)). No reduction: the
    result has the broadcast shape `[..., D]`; sum the last axis for a diagonal
    Gaussian's joint log density.
    """
    z = tf.convert_to_tensor(z)
    mean = tf.convert_to_tensor(mean, dtype=z.dtype)
    log_var = tf.convert_to_tensor(log_var, dtype=z.dtype)
    return -0.5 * (_LOG_2PI + log_var + tf.square(z - mean) * tf.exp(-log_var))


def _check_seed(seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ConfigError(
            f"seed must be an integer tensor of shape [2] (e.g. tf.constant([0, 1])), "
            f"got dtype {seed.dtype.name}."
        )
    if seed.shape.rank is not None and seed.shape.as_list() != [2]:
        raise ConfigError(
            f"seed must have shape [2] for tf.random.stateless_normal, got shape "
            f"{seed.shape.as_list()}."
        )
    return seed


def reparameterize(mean, log_var, seed) -> tf.Tensor:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, sec. 2.4).

    `seed` is a shape-`[2]` integer tensor passed to `tf.random.stateless_normal`, so
    the same seed gives the same noise (reproducible, no hidden RNG state); the caller
    derives a fresh seed per step (e.g. `tf.random.experimental.stateless_split`).
    Gradients flow to `mean` and `log_var`, not through `eps`.
    """
    mean = tf.convert_to_tensor(mean)
    log_var = tf.convert_to_tensor(log_var, dtype=mean.dtype)
    seed = _check_seed(seed)
    eps = tf.random.stateless_normal(tf.shape(mean), seed=seed, dtype=mean.dtype)
    return mean + tf.exp(0.5 * log_var) * eps


def _sum_non_batch(t: tf.Tensor) -> tf.Tensor:
    """Sum over every axis but the first: `[N, ...] -> [N]`."""
    return tf.reduce_sum(tf.reshape(t, [tf.shape(t)[0], -1]), axis=1)


def reconstruction_nll(
    x,
    x_rec,
    kind: str = DEFAULT_RECONSTRUCTION,
    gaussian_std: float = 1.0,
    from_logits: bool = False,
) -> tf.Tensor:
    """Per-image negative log-likelihood -log p(x | z), summed over pixels -> `[N]`.

    `x`: targets `[N, ...]`, pixels in [0, 1]. `x_rec`: decoder output of the same shape.

    * kind="bernoulli" (the default, used by all VAE baselines): cross-entropy
      -sum [x log p + (1 - x) log(1 - p)] with p = x_rec (probabilities, clipped to
      [BERNOULLI_EPSILON, 1 - BERNOULLI_EPSILON]) or p = sigmoid(x_rec) when
      `from_logits=True` (exact, preferred for training: no clipping, no saturation).
    * kind="gaussian": -sum log N(x; x_rec, gaussian_std^2), i.e.
      sum (x - x_rec)^2 / (2 std^2) + 0.5 * log(2 pi std^2) per pixel, with the
      normalising constant included so it is a true NLL.
    """
    if kind not in RECONSTRUCTION_KINDS:
        raise ConfigError(
            f"reconstruction kind must be one of {RECONSTRUCTION_KINDS}, got {kind!r}."
        )
    x_rec = tf.convert_to_tensor(x_rec)
    x = tf.cast(tf.convert_to_tensor(x), x_rec.dtype)
    if x.shape.rank is not None and x_rec.shape.rank is not None:
        if not x.shape.is_compatible_with(x_rec.shape):
            raise ConfigError(
                f"x and x_rec must have the same shape, got {x.shape.as_list()} and "
                f"{x_rec.shape.as_list()}."
            )
    if kind == "bernoulli":
        if from_logits:
            per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=x_rec)
        else:
            p = tf.clip_by_value(x_rec, BERNOULLI_EPSILON, 1.0 - BERNOULLI_EPSILON)
            per_pixel = -(x * tf.math.log(p) + (1.0 - x) * tf.math.log1p(-p))
        return _sum_non_batch(per_pixel)
    if from_logits:
        raise ConfigError("from_logits=True only applies to kind='bernoulli'.")
    if not isinstance(gaussian_std, Real) or not math.isfinite(gaussian_std) or gaussian_std <= 0:
        raise ConfigError(f"gaussian_std must be > 0, got {gaussian_std}.")
    var = tf.constant(float(gaussian_std), x_rec.dtype) ** 2
    per_pixel = 0.5 * tf.square(x - x_rec) / var + 0.5 * (_LOG_2PI + tf.math.log(var))
    return _sum_non_batch(per_pixel)


def _mss_log_weights(batch_size: tf.Tensor, dataset_size: int, dtype) -> tf.Tensor:
    """Log importance weights `[M, M]` of minibatch stratified sampling.

    Chen et al. (2018), appendix C.2: for the sample of row i, its own posterior gets
    1/N, one other batch element (column (i + 1) mod M here) gets the stratum weight
    (N - M + 1) / (N (M - 1)), and the remaining M - 2 get 1 / (M - 1); every row sums
    to 1. (The authors' `_log_importance_weight_matrix` writes 1/N into column 0 rather
    than onto the diagonal because of a strided-index slip, cf.
    YannDubs/disentangling-vae#58; we follow the paper.)
    """
    m = tf.cast(batch_size, dtype)
    n = tf.constant(float(dataset_size), dtype)
    other = tf.fill([batch_size, batch_size], 1.0 / (m - 1.0))
    stratum = (n - m + 1.0) / (n * (m - 1.0))
    next_index = tf.math.floormod(tf.range(batch_size) + 1, batch_size)
    stratum_mask = tf.one_hot(next_index, batch_size, dtype=dtype)
    weights = other + stratum_mask * (stratum - other)
    weights = tf.linalg.set_diag(weights, tf.fill([batch_size], 1.0 / n))
    return tf.math.log(weights)


def beta_tcvae_terms(z, mean, log_var, dataset_size: int, estimator: str = "mws") -> dict:
    """Minibatch estimates of the three terms of the KL decomposition (Chen et al. 2018).

    "Isolating Sources of Disentanglement in VAEs", section 3 (the ELBO TC-decomposition):
    E_p(n) KL(q(z|n) || p(z)) = I_q(z; n) + KL(q(z) || prod_j q(z_j))
                                + sum_j KL(q(z_j) || p(z_j)),
    i.e. index-code mutual information + total correlation + dimension-wise KL, with
    the factorised prior p(z) = N(0, I). A beta-TCVAE minimises
    recon + alpha * mutual_information + beta * total_correlation
          + gamma * dimension_wise_kl (their section 4).

    Args:
      z: `[M, D]` one sample z_i ~ q(z | x_i) per batch element.
      mean, log_var: `[M, D]` parameters of q(z | x_i) for the same batch.
      dataset_size: N, the number of training examples (not the batch size M).
      estimator: "mws" (default) or "mss".

    With l_ijd = log q(z_id | x_j) (the `[M, M, D]` matrix):

    * "mws", minibatch weighted sampling (section 4.1, as in the authors' code):
      log q(z_i) ~ logsumexp_j sum_d l_ijd - log(N M) and
      log prod_d q(z_id) ~ sum_d [logsumexp_j l_ijd - log(N M)].
    * "mss", minibatch stratified sampling (appendix C.2): the same logsumexps with
      the importance weights of `_mss_log_weights` instead of 1 / (N M).

    Returns a dict of scalars (means over the batch):
      mutual_information = mean[log q(z_i|x_i) - log q(z_i)],
      total_correlation  = mean[log q(z_i) - sum_d log q(z_id)],
      dimension_wise_kl  = mean[sum_d log q(z_id) - log p(z_i)].
    Their sum is exactly the Monte-Carlo KL estimate mean[log q(z_i|x_i) - log p(z_i)]
    whichever estimator is used.

    Bias of MWS (measured and derived, see tests): when the minibatch is a
    representative sample of the aggregate posterior (posterior widths at least the
    spacing between posterior means), logsumexp_j l_ij ~ log(M q(z_i)), so the MWS
    estimate of log q(z) is ~ log q(z) - log N, of sum_d log q(z_d) ~ ... - D log N:
    MWS total_correlation ~ TC + (D - 1) log N, mutual_information ~ MI + log N and
    dimension_wise_kl ~ DWKL - D log N. These offsets do not depend on the network
    parameters in that regime, so gradients (and the paper's training objective) are
    unaffected, but the raw values are not calibrated estimates of the terms; MSS is
    (approximately) unbiased for q(z) and gives calibrated values. Report MSS values,
    or subtract the offsets, when the magnitudes matter.
    """
    if estimator not in TC_ESTIMATORS:
        raise ConfigError(f"estimator must be one of {TC_ESTIMATORS}, got {estimator!r}.")
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, Integral) or dataset_size < 1:
        raise ConfigError(
            f"dataset_size must be a positive integer (number of training examples), "
            f"got {dataset_size!r}."
        )
    z = tf.convert_to_tensor(z)
    mean = tf.convert_to_tensor(mean, dtype=z.dtype)
    log_var = tf.convert_to_tensor(log_var, dtype=z.dtype)
    for name, t in (("z", z), ("mean", mean), ("log_var", log_var)):
        if t.shape.rank is not None and t.shape.rank != 2:
            raise ConfigError(f"{name} must have shape [batch, latent_dim], got {t.shape.as_list()}.")
    static_m = z.shape[0]
    if static_m is not None:
        if static_m > dataset_size:
            raise ConfigError(
                f"dataset_size ({dataset_size}) must be >= the batch size ({static_m})."
            )
        if estimator == "mss" and static_m < 2:
            raise ConfigError("estimator='mss' needs a batch of at least 2 examples.")
    dtype = z.dtype
    batch_size = tf.shape(z)[0]

    # l[i, j, d] = log q(z_id | x_j).
    log_q_matrix = gaussian_log_density(z[:, None, :], mean[None, :, :], log_var[None, :, :])
    log_q_z_given_x = tf.reduce_sum(gaussian_log_density(z, mean, log_var), axis=1)
    log_p_z = tf.reduce_sum(gaussian_log_density(z, 0.0, 0.0), axis=1)

    if estimator == "mws":
        log_nm = tf.math.log(tf.constant(float(dataset_size), dtype)) + tf.math.log(
            tf.cast(batch_size, dtype)
        )
        log_q_z = tf.reduce_logsumexp(tf.reduce_sum(log_q_matrix, axis=2), axis=1) - log_nm
        log_q_z_product = tf.reduce_sum(
            tf.reduce_logsumexp(log_q_matrix, axis=1) - log_nm, axis=1
        )
    else:
        log_w = _mss_log_weights(batch_size, dataset_size, dtype)
        log_q_z = tf.reduce_logsumexp(log_w + tf.reduce_sum(log_q_matrix, axis=2), axis=1)
        log_q_z_product = tf.reduce_sum(
            tf.reduce_logsumexp(log_w[:, :, None] + log_q_matrix, axis=1), axis=1
        )

    return {
        "mutual_information": tf.reduce_mean(log_q_z_given_x - log_q_z),
        "total_correlation": tf.reduce_mean(log_q_z - log_q_z_product),
        "dimension_wise_kl": tf.reduce_mean(log_q_z_product - log_p_z),
    }
