"""The Gaussian mixture prior of the latent space (paper section 3.1, eqs. 1-3, 5).

A `GMMPrior` has K equally weighted modes with diagonal covariance std^2 * I in a
D-dimensional latent space. It is built on TensorFlow Probability:

* `marginal_cdf(z)` is F_GMM,d of eq. 3, the marginal CDF of every latent dimension,
  evaluated element-wise on a `[N, D]` batch;
* `covariance()` is Sigma_GMM of eq. 5 (law of total variance):
  std^2 I + sum_k w_k (mu_k - mu_bar)(mu_k - mu_bar)^T;
* `sample(n)` draws from the mixture and `sample_mode(k, n)` from one mode (used for
  generation grids); `sample_numpy(n, seed)` draws on the host with NumPy (the prior
  samples of the Frechet distance, `evaluation.fidelity.sample_prior`, from `from_dict(metadata)`).

Centers follow the reference code: `one_hot` places center k at `scale * e_k`
(MNIST / Fashion-MNIST use scale 10; the base GMM-DAE used 1), `sobol` spreads K
points of a Sobol sequence in D dimensions and doubles them until the minimum
pairwise distance reaches `min_distance` (6 in the reference).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats.qmc
import tensorflow as tf
import tensorflow_probability as tfp

from robust_dae_tf.errors import ConfigError

tfd = tfp.distributions

CENTER_LAYOUTS = ("one_hot", "sobol")


def one_hot_centers(num_modes: int, latent_dim: int, scale: float) -> np.ndarray:
    """Centers `scale * e_k` for k < D.

    With D <= K < 2D the pattern repeats with the opposite sign (center k =
    -scale * e_{k-D}), which keeps all centers distinct and equidistant from the
    origin; the reference's "rolling" for K > D is ambiguous and this is our choice.
    K > 2D is rejected: use the `sobol` layout.
    """
    if num_modes > 2 * latent_dim:
        raise ConfigError(
            f"prior.num_modes={num_modes} > 2 * model.latent_dim={latent_dim}: "
            "one_hot centers would repeat; set prior.centers='sobol'."
        )
    centers = np.zeros((num_modes, latent_dim), np.float64)
    for k in range(num_modes):
        centers[k, k % latent_dim] = scale if k < latent_dim else -scale
    return centers


def sobol_centers(
    num_modes: int, latent_dim: int, min_distance: float = 6.0, seed: int = 0
) -> np.ndarray:
    """K points of a scrambled Sobol sequence in [-0.5, 0.5]^D, doubled until the
    minimum pairwise Euclidean distance is >= `min_distance`."""
    if num_modes < 2:
        return np.zeros((num_modes, latent_dim))
    sampler = scipy.stats.qmc.Sobol(d=latent_dim, scramble=True, seed=seed)
    m = int(math.ceil(math.log2(num_modes)))
    centers = sampler.random_base2(m)[:num_modes] - 0.5
    diffs = centers[:, None, :] - centers[None, :, :]
    dist = np.sqrt((diffs**2).sum(-1))
    min_dist = dist[~np.eye(num_modes, dtype=bool)].min()
    if min_dist <= 0:
        raise ConfigError("Sobol centers coincide; choose another prior.seed.")
    while min_dist < min_distance:
        centers *= 2.0
        min_dist *= 2.0
    return centers


class GMMPrior:
    """Gaussian mixture with isotropic modes N(mu_k, std^2 I), equally weighted unless
    `weights` say otherwise (the models' priors are; a SavedModel's metadata may not be).

    Args:
      centers: `[K, D]` array of mode means.
      std: per-mode standard deviation (the same in every dimension).
      weights: `[K]` mode probabilities (non-negative, summing to 1); None: 1/K each.
    """

    def __init__(self, centers, std: float = 1.0, weights=None):
        centers = np.asarray(centers, np.float64)
        if centers.ndim != 2 or centers.shape[0] < 1:
            raise ConfigError(f"prior centers must be [K, D], got shape {centers.shape}.")
        if not std > 0:
            raise ConfigError(f"prior.std must be > 0, got {std}.")
        self._centers_np = centers
        self.std = float(std)
        self.num_modes, self.latent_dim = centers.shape
        weights = np.asarray([1.0 / self.num_modes] * self.num_modes if weights is None else weights, np.float64)
        if weights.shape != (self.num_modes,) or np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, atol=1e-6):
            raise ConfigError(f"prior weights must be {self.num_modes} non-negative numbers summing to 1, "
                              f"got {weights}.")
        self._weights_np = weights
        self._equal_weights = bool(np.all(weights == weights[0]))
        self.centers = tf.constant(centers, tf.float32)
        self.weights = (tf.fill([self.num_modes], 1.0 / self.num_modes) if self._equal_weights
                        else tf.constant(weights, tf.float32))
        # The K x D univariate components N(mu_kd, std^2) of the marginals (eq. 3),
        # laid out [D, K] so a latent batch [N, D, 1] broadcasts against them.
        self._marginal_components = tfd.Normal(loc=tf.transpose(self.centers), scale=self.std)
        self._mixture = tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(
                logits=tf.zeros([self.num_modes]) if self._equal_weights else tf.math.log(self.weights)),
            components_distribution=tfd.MultivariateNormalDiag(
                loc=self.centers, scale_diag=tf.fill([self.num_modes, self.latent_dim], self.std)
            ),
        )
        self._covariance = tf.constant(self.covariance_numpy(), tf.float32)

    @classmethod
    def from_config(cls, prior_config, latent_dim: int) -> "GMMPrior":
        """Builds the prior from the `prior` block of a run config."""
        layout = prior_config.centers
        if layout == "one_hot":
            centers = one_hot_centers(prior_config.num_modes, latent_dim, prior_config.center_scale)
        elif layout == "sobol":
            centers = sobol_centers(
                prior_config.num_modes, latent_dim, prior_config.min_distance, prior_config.seed
            )
        else:
            raise ConfigError(
                f"prior.centers={layout!r} is unknown; choose one of {', '.join(CENTER_LAYOUTS)}."
            )
        return cls(centers, prior_config.std)

    @classmethod
    def from_dict(cls, description: dict) -> "GMMPrior":
        """The prior `to_dict` described (e.g. a SavedModel's metadata["prior"]); weights
        default to equal. ConfigError for any other description."""
        if not isinstance(description, dict) or str(description.get("type", "")).lower() != "gmm":
            raise ConfigError(f"not a GMM prior description: {description!r}.")
        return cls(description.get("centers"), float(description.get("std", 1.0)),
                   description.get("weights") or None)

    # -- statistics ---------------------------------------------------------------

    def marginal_cdf(self, z: tf.Tensor) -> tf.Tensor:
        """F_GMM,d(z[n, d]) of eq. 3 for a `[N, D]` batch; returns `[N, D]` in [0, 1].

        Computed in closed form as the equally weighted mean of the K component CDFs,
        (1/K) sum_k Phi((z - mu_kd) / std), with TFP's Normal CDF: the same value as
        `tfd.MixtureSameFamily(...).cdf`, which goes through log-space and a
        logsumexp and made the whole robust training step ~20% slower on CPU
        (benchmarks/README.md). Memory is N * D * K floats.
        """
        z = tf.convert_to_tensor(z, tf.float32)
        cdfs = self._marginal_components.cdf(z[:, :, None])
        if self._equal_weights:
            return tf.reduce_mean(cdfs, axis=-1)
        return tf.reduce_sum(cdfs * self.weights, axis=-1)

    def covariance(self) -> tf.Tensor:
        """Sigma_GMM of eq. 5 as a `[D, D]` float32 tensor."""
        return self._covariance

    def mean_numpy(self) -> np.ndarray:
        """mu_bar = sum_k w_k mu_k in float64."""
        return self._weights_np @ self._centers_np

    def covariance_numpy(self) -> np.ndarray:
        """Sigma_GMM in float64: std^2 I + sum_k w_k (mu_k - mu_bar)(mu_k - mu_bar)^T (w_k = 1/K)."""
        if self._equal_weights:
            centered = self._centers_np - self._centers_np.mean(axis=0, keepdims=True)
            between = centered.T @ centered / self.num_modes
        else:
            centered = self._centers_np - self.mean_numpy()
            between = (centered * self._weights_np[:, None]).T @ centered
        return self.std**2 * np.eye(self.latent_dim) + between

    # -- sampling -----------------------------------------------------------------

    def sample(self, n: int, seed=None) -> tf.Tensor:
        """`[n, D]` draws from the mixture (a shape-[2] int seed makes it stateless)."""
        return self._mixture.sample(n, seed=seed)

    def sample_mode(self, k: int, n: int, seed=(0, 0)) -> tf.Tensor:
        """`[n, D]` draws from mode k alone; `seed` is a stateless seed pair."""
        if not 0 <= k < self.num_modes:
            raise ConfigError(f"mode {k} does not exist; the prior has {self.num_modes} modes.")
        noise = tf.random.stateless_normal([n, self.latent_dim], seed=seed)
        return self.centers[k] + self.std * noise

    def sample_numpy(self, n: int, seed: int = 0) -> np.ndarray:
        """`[n, D]` float32 draws on the host, deterministic for a given `seed` (NumPy PCG64):
        mode k with probability weights[k], then mu_k + std * eps, eps ~ N(0, I)."""
        rng = np.random.default_rng(seed)
        modes = rng.choice(self.num_modes, size=n, p=self._weights_np / self._weights_np.sum())
        return (self._centers_np[modes] + self.std * rng.standard_normal((n, self.latent_dim))).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-serialisable description (stored in SavedModel metadata)."""
        return {
            "type": "gmm",
            "num_modes": self.num_modes,
            "latent_dim": self.latent_dim,
            "std": self.std,
            "weights": self._weights_np.tolist(),
            "centers": self._centers_np.tolist(),
        }
