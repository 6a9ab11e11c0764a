"""beta-TCVAE: Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in
Variational Autoencoders" (NeurIPS 2018).

Objective (their eq. 4 with the decomposition of section 3), per batch, in nats per image:

    loss = reconstruction + alpha * mutual_information + beta * total_correlation
                          + gamma * dimension_wise_kl

* reconstruction = mean_n -log p(x_n | z_n), one reparameterised z_n ~ q(z | x_n) per
  image, with the likelihood shared by every VAE baseline (`config.vae.reconstruction`,
  Bernoulli by default; `vae_losses.reconstruction_nll`).
* mutual_information = I_q(z; n), total_correlation = KL(q(z) || prod_j q(z_j)) and
  dimension_wise_kl = sum_j KL(q(z_j) || p(z_j)) are the minibatch estimates of
  `vae_losses.beta_tcvae_terms` on the same samples z_n: minibatch weighted sampling
  ("mws", section 4.1, the authors' default) or minibatch stratified sampling ("mss",
  appendix C.2). Both need N, the number of training examples (`dataset_size`).
* alpha = gamma = 1 (section 4: "beta-TCVAE" sets alpha = gamma = 1 and tunes beta);
  beta = `config.beta_tcvae.beta`.

Identity used by the tests: whatever the estimator, the three terms sum exactly to the
single-sample Monte-Carlo KL  mean_n [log q(z_n | x_n) - log p(z_n)], whose expectation
over z_n is the analytic KL of the VAE. So with alpha = beta = gamma = 1 the objective is
the VAE's negative ELBO with a Monte-Carlo KL in place of the closed form. The reported
`kl` metric is the analytic KL (`vae_losses.gaussian_kl`), the same number the VAE and
beta-VAE report, so the baselines can be compared.

The raw MWS values of the three terms carry estimator offsets (about +log N on the
mutual information, +(D - 1) log N on the total correlation, -D log N on the
dimension-wise KL; see `vae_losses.beta_tcvae_terms`) that do not depend on the
parameters; the objective's gradients are unaffected. Use estimator="mss" when the
magnitudes of the reported terms matter.

Dataset size: `BetaTCVAE.dataset_size` is a Python int read when the loss is traced.
`config.beta_tcvae.dataset_size = 0` means "filled in by the trainer" (the trainer calls
`model.prepare(number of training examples)` before `fit`, which sets it when it is
0); tracing the loss while it is still 0 raises a ConfigError.

Choices where the paper is open or that differ from the authors' code:

* No annealing. The authors' `vae_quant.py` warms beta (and the dimension-wise weight)
  up over the first few thousand iterations for dSprites / 3D faces; the paper's
  objective has constant weights, and so does this implementation.
* Networks: the fc / conv encoder and decoder of `vae.build_gaussian_networks`, the
  same as the VAE and beta-VAE baselines (Saseendran et al. use FC nets for MNIST /
  Fashion-MNIST and conv nets for SVHN / CelebA for every model).
* Multi-device: the estimators use this replica's local batch (see `vae.py`).
"""

from __future__ import annotations

from numbers import Integral, Real

import tensorflow as tf

from robust_dae_tf.baselines import vae_losses
from robust_dae_tf.baselines.vae import VariationalAutoencoder, build_on_gaussian_networks, check_variant
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.models.sections import beta_tcvae_sections as config_sections  # noqa: F401


def tcvae_objective(reconstruction, terms: dict, alpha: float, beta: float, gamma: float):
    """recon + alpha * MI + beta * TC + gamma * dimension-wise KL (Chen et al. 2018, eq. 4).

    `reconstruction` and the values of `terms` (the dict of `vae_losses.beta_tcvae_terms`)
    are batch means; the result is a scalar in nats per image.
    """
    return (
        reconstruction
        + alpha * terms["mutual_information"]
        + beta * terms["total_correlation"]
        + gamma * terms["dimension_wise_kl"]
    )


def _check_weight(field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
        raise ConfigError(f"config.beta_tcvae.{field} must be a number >= 0, got {value!r}.")
    return float(value)


class BetaTCVAE(VariationalAutoencoder):
    """beta-TCVAE (Chen et al. 2018) on the VAE base class.

    Args:
      posterior_network, decoder, seed, reconstruction, log_var_bounds: as in
        `VariationalAutoencoder`.
      alpha, beta, gamma: weights of the mutual information, total correlation and
        dimension-wise KL (paper: alpha = gamma = 1).
      estimator: "mws" or "mss" (`vae_losses.TC_ESTIMATORS`).
      dataset_size: N, the number of training examples; 0 = not known yet (the trainer
        sets it through `prepare` before training).

    `self.beta` (the base class's KL weight) holds the TC weight; the base class's
    beta-VAE objective is not used.
    """

    metric_names = (
        "loss",
        "reconstruction",
        "kl",
        "mutual_information",
        "total_correlation",
        "dimension_wise_kl",
    )
    about = {
        "model": "beta_tcvae",
        "reference": "Chen et al. 2018, Isolating Sources of Disentanglement in VAEs",
        "objective": "reconstruction + alpha * MI + beta * TC + gamma * dimension-wise KL",
    }

    def __init__(
        self,
        posterior_network,
        decoder,
        *,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        estimator: str = "mws",
        dataset_size: int = 0,
        **kwargs,
    ):
        alpha, beta, gamma = (_check_weight(n, v) for n, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)))
        if estimator not in vae_losses.TC_ESTIMATORS:
            raise ConfigError(
                f"config.beta_tcvae.estimator must be one of {', '.join(vae_losses.TC_ESTIMATORS)}, got {estimator!r}."
            )
        if isinstance(dataset_size, bool) or not isinstance(dataset_size, Integral) or dataset_size < 0:
            raise ConfigError(
                f"config.beta_tcvae.dataset_size must be an integer >= 0 (0 = the number of training "
                f"examples, filled in by the trainer), got {dataset_size!r}."
            )
        super().__init__(posterior_network, decoder, beta=beta, **kwargs)
        self.alpha = alpha
        self.gamma = gamma
        self.estimator = estimator
        #: N of the estimators, a Python int read at trace time (0 = not set yet).
        self.dataset_size = int(dataset_size)
        self.loss_weights = {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}

    def prepare(self, num_train_examples: int) -> None:
        """Takes N = the number of training examples unless the config set it."""
        if self.dataset_size == 0:
            self.dataset_size = int(num_train_examples)

    def _checked_dataset_size(self) -> int:
        n = self.dataset_size
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ConfigError(
                f"beta_tcvae needs the number of training examples N for its total-correlation "
                f"estimator, but model.dataset_size is {n!r}. Set --config.beta_tcvae.dataset_size=N "
                f"(or let the trainer fill it in, which it does when the value is 0)."
            )
        return int(n)

    def terms_from_sample(self, x, mean, log_var, z, *, training: bool = False):
        """(objective, metric values) for given posterior parameters and samples z `[N, D]`."""
        terms = vae_losses.beta_tcvae_terms(z, mean, log_var, self._checked_dataset_size(), self.estimator)
        reconstruction = tf.reduce_mean(self.reconstruction_nll(x, self.decoder(z, training=training)))
        kl = tf.reduce_mean(vae_losses.gaussian_kl(mean, log_var))
        loss = tcvae_objective(reconstruction, terms, self.alpha, self.beta, self.gamma)
        return loss, {"loss": loss, "reconstruction": reconstruction, "kl": kl, **terms}

    def compute_terms(self, x, *, training: bool, step, stream: int):
        self._checked_dataset_size()  # fail before building any graph
        (sample_seed,) = self.step_seeds(step, stream, 1)
        mean, log_var = self.posterior(x, training=training)
        z = self.sample_posterior(mean, log_var, sample_seed)
        return self.terms_from_sample(x, mean, log_var, z, training=training)

    def export_details(self) -> dict:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "tc_estimator": self.estimator,
            "dataset_size": int(self.dataset_size),
        }


def build(config, image_shape) -> BetaTCVAE:
    """The `beta_tcvae` of a run config (networks of `config.model`, weights of `config.beta_tcvae`)."""
    check_variant(config, "beta_tcvae.build", "beta_tcvae")
    return build_on_gaussian_networks(BetaTCVAE, config, image_shape, **config.beta_tcvae)
