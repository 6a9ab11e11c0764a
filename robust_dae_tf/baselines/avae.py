"""AVAE: the Autoencoding Variational Autoencoder (Cemgil, Ghaisas, Dvijotham, Gowal &
Kohli, NeurIPS 2020), a VAE whose encoder is trained to be *self-consistent*: a sample
x' ~ p(x | z) that the decoder generates from a code z ~ q(z | x) must be encoded back
to a code z' ~ q(z' | x') coupled to z.

The construction. The data side is the Markov chain that alternates encoder and
decoder, x ~ pi(x), z ~ q(z | x), x' ~ p(x' | z), z' ~ q(z' | x'); the target is the
generative model with a coupled copy of its code,

    p(z) p(x | z) r_rho(z' | z),   r_rho(z' | z) = N(z'; rho z, (1 - rho^2) I),

where r_rho leaves the prior N(0, I) invariant (z' has the prior marginal and
correlation rho with z; rho -> 1 asks for exact self-consistency). The AVAE minimises
KL(pi(x) q(z | x) q(z' | z) || p(z) p(x | z) r_rho(z' | z)) with
q(z' | z) = E_{p(x' | z)} q(z' | x'). Up to the data entropy this is the negative
ELBO of the VAE plus E[log q(z' | z) - log r_rho(z' | z)]; the practical form replaces
the intractable log q(z' | z) by log q(z' | x') (an upper bound of the KL, since
-H[z' | z] <= -H[z' | z, x']). Per image, in nats:

    loss_n = -log p(x_n | z_n) + KL(q(z | x_n) || N(0, I))                (VAE)
             + w * [ E(-log r_rho(z' | z)) - H(q(z' | x'_n)) ]            (self-consistency)

With diagonal Gaussians both expectations are closed-form. Writing
q(z | x) = N(mu, sigma^2), q(z' | x') = N(mu', sigma'^2), c = 1 - rho^2 and summing
over the D latent dimensions:

    coupling_nll      = 1/2 sum_d [ log(2 pi c) + (sigma'^2 + rho^2 s^2 + (mu' - rho m)^2) / c ]
    reencoded_entropy = 1/2 sum_d [ log(2 pi e) + log sigma'^2 ]
    self_consistency  = coupling_nll - reencoded_entropy
                      = E_z KL(N(mu', sigma'^2) || N(rho z, c I)) >= 0,

with (m, s^2) = (mu, sigma^2) for `coupling_expectation="analytic"` (z integrated over
q(z | x)) or (z_n, 0) for "sample" (the z_n that generated x'_n). Every term is a batch
mean of per-image sums; w = `self_consistency_weight` (1 = the bound).

Sources and choices. The paper's text was not available to us; the objective above
is the paper's construction (its abstract: "an alternative construction of the
variational approximation distribution to the true posterior of an extended VAE model
with a Markov chain alternating between the encoder and the decoder") in the practical
form of the authors' released JAX code (deepmind-research/avae, `VAE.avae_elbo`,
read, not copied). Where that leaves details open:

* x' sampling (`decoder_sample`): "mean" (default, as the authors' code) feeds the
  decoder mean back to the encoder (Bernoulli means / Gaussian means in [0, 1]);
  "sample" draws x' ~ p(x | z): binary pixels for the Bernoulli likelihood,
  mean + std * eps (std = the likelihood's std, `vae_losses.reconstruction_nll`'s
  default, unclipped) for the Gaussian one.
* Gradients through x' (`stop_gradient_decoder_sample`): True (default, as the
  authors' code) treats x' as data, so the self-consistency term trains only the
  encoder (that is what lets it run as a post-processing step without training data).
  False lets it also train the decoder through x' (only with "mean" or the Gaussian
  sample; a Bernoulli sample has no gradient).
* The z of the coupling (`coupling_expectation`): "analytic" (default, as the authors'
  code) takes E over z ~ q(z | x) in closed form, independent of the z that made x';
  "sample" uses that z (the chain as written, one reparameterised sample, gradients
  flow through it). "analytic" adds rho^2 sigma^2 / (2c) per dimension, i.e. it also
  shrinks the posterior variance.
* Same z for the reconstruction and for x' (as the authors' code: one key for both).
* rho (`rho`): 0.975, the authors' published command for their ColorMNIST MLP model
  (their code's flag default is 0.8). 0 <= rho < 1.
* Likelihood: `config.vae.reconstruction` (Bernoulli by default), the one likelihood of
  every VAE baseline here; the authors' code uses a Gaussian with variance 0.5 (pixels
  in [0, 1]), which is available as "gaussian" with std 1 only. KL weight 1 (as the paper).

Conventions (those of `vae.py`): images `[N, H, W, C]` in [0, 1]; `encoder` /
`encode` / the exported `encode` return the posterior mean; N(0, I) prior; stateless
randomness from (train.seed, step): the same z as the VAE of the same seed, the x'
sample from a seed folded from it. With `self_consistency_weight = 0` the objective
(and its gradients) is exactly the VAE's; the self-consistency terms are still
reported as metrics.
"""

from __future__ import annotations

import inspect
import math

import tensorflow as tf

from robust_dae_tf.baselines import vae_losses
from robust_dae_tf.baselines.vae import VariationalAutoencoder, build_on_gaussian_networks, check_variant
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.models.sections import avae_sections as config_sections  # noqa: F401

DECODER_SAMPLES = ("mean", "sample")
COUPLING_EXPECTATIONS = ("analytic", "sample")

_LOG_2PI = math.log(2.0 * math.pi)
#: Std of the Gaussian likelihood the model uses (reconstruction_nll's default).
GAUSSIAN_LIKELIHOOD_STD = float(inspect.signature(vae_losses.reconstruction_nll).parameters["gaussian_std"].default)


def _check_rho(rho) -> float:
    rho = float(rho)
    if not 0.0 <= rho < 1.0:
        raise ConfigError(f"avae.rho must be in [0, 1) (the coupling N(rho z, (1 - rho^2) I)), got {rho}.")
    return rho


def coupling_nll(reencoded_mean, reencoded_log_var, source_mean, source_var, rho: float) -> tf.Tensor:
    """-E log r_rho(z' | z), r_rho(z' | z) = N(z'; rho z, (1 - rho^2) I), summed over D -> `[N]`.

    The expectation is over z' ~ N(reencoded_mean, exp(reencoded_log_var)) and
    z ~ N(source_mean, source_var) independently (pass source_var = 0 for a fixed z):
    1/2 sum_d [log(2 pi c) + (var' + rho^2 source_var + (mean' - rho source_mean)^2) / c],
    c = 1 - rho^2. Note `source_var` is a variance, not a log-variance.
    """
    rho = _check_rho(rho)
    reencoded_mean = tf.convert_to_tensor(reencoded_mean)
    dtype = reencoded_mean.dtype
    reencoded_log_var = tf.convert_to_tensor(reencoded_log_var, dtype)
    source_mean = tf.convert_to_tensor(source_mean, dtype)
    source_var = tf.convert_to_tensor(source_var, dtype)
    c = 1.0 - rho * rho
    second_moment = tf.exp(reencoded_log_var) + rho * rho * source_var + tf.square(reencoded_mean - rho * source_mean)
    return 0.5 * tf.reduce_sum(_LOG_2PI + math.log(c) + second_moment / c, axis=-1)


def gaussian_entropy(log_var) -> tf.Tensor:
    """Entropy of N(mean, diag exp(log_var)): 1/2 sum_d (log(2 pi e) + log_var) -> `[N]`."""
    log_var = tf.convert_to_tensor(log_var)
    return 0.5 * tf.reduce_sum(_LOG_2PI + 1.0 + log_var, axis=-1)


class AutoencodingVariationalAutoencoder(VariationalAutoencoder):
    """VAE + the AVAE self-consistency term (see the module docstring).

    Args:
      posterior_network, decoder, seed, reconstruction, log_var_bounds: as
        `VariationalAutoencoder` (the KL weight is 1).
      rho: coupling strength, 0 <= rho < 1.
      self_consistency_weight: w >= 0 (1 = the AVAE bound, 0 = the VAE).
      decoder_sample: "mean" | "sample", how x' is drawn from p(x | z).
      stop_gradient_decoder_sample: treat x' as a constant.
      coupling_expectation: "analytic" | "sample", the z of r_rho(z' | z).
    """

    metric_names = ("loss", "reconstruction", "kl", "self_consistency", "coupling_nll", "reencoded_entropy")

    def __init__(
        self,
        posterior_network,
        decoder,
        *,
        rho: float = 0.975,
        self_consistency_weight: float = 1.0,
        decoder_sample: str = "mean",
        stop_gradient_decoder_sample: bool = True,
        coupling_expectation: str = "analytic",
        **kwargs,
    ):
        if "beta" in kwargs:
            raise ConfigError("the AVAE's KL weight is 1; it takes no beta.")
        super().__init__(posterior_network, decoder, beta=1.0, **kwargs)
        self.rho = _check_rho(rho)
        weight = float(self_consistency_weight)
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"avae.self_consistency_weight must be a finite number >= 0, got {self_consistency_weight}.")
        if decoder_sample not in DECODER_SAMPLES:
            raise ConfigError(f"avae.decoder_sample must be one of {DECODER_SAMPLES}, got {decoder_sample!r}.")
        if coupling_expectation not in COUPLING_EXPECTATIONS:
            raise ConfigError(
                f"avae.coupling_expectation must be one of {COUPLING_EXPECTATIONS}, got {coupling_expectation!r}."
            )
        if not isinstance(stop_gradient_decoder_sample, bool):
            raise ConfigError(
                f"avae.stop_gradient_decoder_sample must be True or False, got {stop_gradient_decoder_sample!r}."
            )
        self.self_consistency_weight = weight
        self.decoder_sample = decoder_sample
        self.stop_gradient_decoder_sample = stop_gradient_decoder_sample
        self.coupling_expectation = coupling_expectation
        self.loss_weights = {"beta": 1.0, "self_consistency_weight": weight, "rho": self.rho}

    # -- the self-consistent chain ------------------------------------------------------

    def sample_decoder(self, decoder_mean, seed):
        """x' ~ p(x | z) given the decoder output (its mean) `[N, H, W, C]`, per
        `decoder_sample`; a constant when `stop_gradient_decoder_sample`."""
        if self.decoder_sample == "mean":
            x_prime = decoder_mean
        elif self.reconstruction == "bernoulli":
            u = self.global_random(tf.random.stateless_uniform, tf.shape(decoder_mean), seed)
            x_prime = tf.cast(u < decoder_mean, decoder_mean.dtype)
        else:
            eps = self.global_random(tf.random.stateless_normal, tf.shape(decoder_mean), seed)
            x_prime = decoder_mean + GAUSSIAN_LIKELIHOOD_STD * eps
        if self.stop_gradient_decoder_sample:
            x_prime = tf.stop_gradient(x_prime)
        return x_prime

    def self_consistency_terms(self, mean, log_var, z, x_prime, training=False):
        """(coupling_nll, reencoded_entropy), each `[N]`, for q(z | x) = N(mean, exp(log_var)),
        its sample z and the decoder sample x' made from z."""
        reencoded_mean, reencoded_log_var = self.posterior(x_prime, training=training)
        if self.coupling_expectation == "analytic":
            source_mean, source_var = mean, tf.exp(log_var)
        else:
            source_mean, source_var = z, tf.zeros_like(z)
        return (
            coupling_nll(reencoded_mean, reencoded_log_var, source_mean, source_var, self.rho),
            gaussian_entropy(reencoded_log_var),
        )

    # -- objective ------------------------------------------------------------------------

    def compute_terms(self, x, *, training: bool, step, stream: int):
        """(objective, metric values): VAE negative ELBO + w * self_consistency, batch means."""
        (sample_seed,) = self.step_seeds(step, stream, 1)
        mean, log_var = self.posterior(x, training=training)
        z = self.sample_posterior(mean, log_var, sample_seed)
        x_rec = self.decoder(z, training=training)
        reconstruction = tf.reduce_mean(self.reconstruction_nll(x, x_rec))
        kl = tf.reduce_mean(vae_losses.gaussian_kl(mean, log_var))
        vae_loss = reconstruction + self.beta * kl  # the base VAE's objective, same z

        x_prime = self.sample_decoder(x_rec, tf.random.experimental.stateless_fold_in(sample_seed, 1))
        coupling, entropy = self.self_consistency_terms(mean, log_var, z, x_prime, training=training)
        coupling = tf.reduce_mean(coupling)
        entropy = tf.reduce_mean(entropy)
        self_consistency = coupling - entropy

        loss = vae_loss + self.self_consistency_weight * self_consistency if self.self_consistency_weight else vae_loss
        return loss, {
            "loss": loss,
            "reconstruction": reconstruction,
            "kl": kl,
            "self_consistency": self_consistency,
            "coupling_nll": coupling,
            "reencoded_entropy": entropy,
        }


def build(config, image_shape) -> AutoencodingVariationalAutoencoder:
    """The `avae` of a run config (hyperparameters in `config.avae`, likelihood in
    `config.vae.reconstruction`)."""
    check_variant(config, "avae.build", "avae")
    return build_on_gaussian_networks(AutoencodingVariationalAutoencoder, config, image_shape, **config.avae)
