"""VAE and beta-VAE, and the base class of every VAE-family baseline: `VariationalAutoencoder`.

Every baseline (vae, beta_vae, beta_tcvae, lipschitz_vae, se, avae) is a subclass of
`VariationalAutoencoder`, itself a `models.base.Autoencoder` (the one base class of
every model: train / test steps, metric trackers, seeds, cross-replica reduction)
that adds the Gaussian posterior; each model overrides `compute_terms(x, training,
step, stream)`, which returns the objective (batch mean, nats per image) and a dict of
metric values. The base implementation is the (beta-)VAE of Kingma & Welling (2014) / Higgins et al.
(2017): mean_n [ -log p(x_n | z_n) + beta * KL(q(z | x_n) || N(0, I)) ], one
reparameterised sample z_n per image.

Conventions:

* Images `[N, H, W, C]` float32 in [0, 1]; latents `[N, D]`.
* The posterior network maps images to `[N, 2D]` = (mean || log_var), log_var the
  natural log of the variance. `self.encoder` is the keras.Model images -> posterior
  MEAN (it shares the posterior network's layers), which is what `encode` and the
  exported SavedModel's `encode` return, as the issue requires.
* `self.decoder` maps latents to Bernoulli means in [0, 1] (sigmoid output); the
  likelihood is `vae_losses.DEFAULT_RECONSTRUCTION` (Bernoulli, summed over pixels).
* `self.prior` is `StandardNormalPrior(D)`: its `to_dict()` is what the SavedModel
  metadata records ({"type": "normal", "latent_dim": D}), so FID samples come from
  N(0, I).
* Randomness is stateless: per step, `step_seeds(step, stream, n)` derives n seeds from
  (train.seed, optimizer step); `global_random` draws for the global batch and slices
  this replica's rows, so one device and N devices see the same numbers per example.
* Multi-device: `compute_terms` works on the LOCAL batch; the base class divides the
  objective by the number of replicas (Keras sums gradients across replicas) and
  averages the reported metric values across replicas. Batch-level estimators (the
  beta-TCVAE minibatch-weighted sampling) therefore use the local batch; with equal
  local batches this is the average of per-replica estimates.

`config_sections()` (defined in `models.sections`, without TensorFlow) is the `vae`
config section (the likelihood every VAE baseline shares and beta_vae's beta);
`build_on_gaussian_networks` is how the baselines' `build` functions make their model
from a run config.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from robust_dae_tf import networks
from robust_dae_tf.baselines import vae_losses
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.models.base import Autoencoder
from robust_dae_tf.models.sections import vae_sections as config_sections  # noqa: F401


class StandardNormalPrior:
    """The N(0, I) prior of the VAE family, with the interface of `GMMPrior` that the
    trainer, TensorBoard logger and exporter use (one "mode")."""

    num_modes = 1

    def __init__(self, latent_dim: int):
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {latent_dim}.")
        self.latent_dim = int(latent_dim)

    def sample(self, n: int, seed=(0, 0)) -> tf.Tensor:
        return tf.random.stateless_normal([n, self.latent_dim], seed=seed)

    def sample_mode(self, k: int, n: int, seed=(0, 0)) -> tf.Tensor:
        if k != 0:
            raise ConfigError(f"mode {k} does not exist; the N(0, I) prior has one mode.")
        return self.sample(n, seed)

    def to_dict(self) -> dict:
        return {"type": "normal", "latent_dim": self.latent_dim}


def build_gaussian_networks(model_config, image_shape: Sequence[int]):
    """(posterior network images -> [N, 2D], decoder latents -> images) of the
    architecture in `model_config` (the same fc / conv nets as the GMM models, with the
    encoder's last layer doubled for (mean, log_var))."""
    latent_dim = int(model_config.latent_dim)
    if model_config.architecture == "fc":
        units = tuple(model_config.hidden_units)
        posterior = networks.build_fc_encoder(image_shape, 2 * latent_dim, units)
        decoder = networks.build_fc_decoder(image_shape, latent_dim, units)
    elif model_config.architecture == "conv":
        filters = tuple(model_config.conv_filters)
        posterior = networks.build_conv_encoder(image_shape, 2 * latent_dim, filters)
        decoder = networks.build_conv_decoder(image_shape, latent_dim, filters)
    else:
        raise ConfigError(
            f"model.architecture={model_config.architecture!r} is unknown; "
            f"choose one of {', '.join(networks.ARCHITECTURES)}."
        )
    return posterior, decoder


def mean_encoder(posterior_network: keras.Model, latent_dim: int) -> keras.Model:
    """images -> posterior mean, sharing the layers of `posterior_network`."""
    mean = keras.layers.Lambda(lambda t: t[:, :latent_dim], name="posterior_mean")(posterior_network.output)
    return keras.Model(posterior_network.input, mean, name="encoder")


class VariationalAutoencoder(Autoencoder):
    """VAE / beta-VAE (beta = 1 is the VAE) and the base class of every baseline.

    Args:
      posterior_network: images -> `[N, 2D]` (mean || log_var).
      decoder: latents `[N, D]` -> images in [0, 1].
      beta: weight of the KL term (Higgins et al. 2017; 1 = Kingma & Welling).
      seed: base seed of the per-step stateless random streams.
      reconstruction: "bernoulli" (default) or "gaussian" (see `vae_losses`).
      log_var_bounds: (low, high) clip of log_var, keeping exp(log_var) finite early in
        training; None disables it.
    """

    metric_names = ("loss", "reconstruction", "kl")
    #: {"model", "reference", "objective"}: recorded in the SavedModel metadata by
    #: subclasses that report details (`export_details`).
    about: dict = {}

    def __init__(
        self,
        posterior_network: keras.Model,
        decoder: keras.Model,
        *,
        beta: float = 1.0,
        seed: int = 0,
        reconstruction: str = vae_losses.DEFAULT_RECONSTRUCTION,
        log_var_bounds=(-12.0, 8.0),
        **kwargs,
    ):
        if not beta >= 0:
            raise ConfigError(f"beta must be >= 0, got {beta}.")
        if reconstruction not in vae_losses.RECONSTRUCTION_KINDS:
            raise ConfigError(f"reconstruction must be one of {vae_losses.RECONSTRUCTION_KINDS}, got {reconstruction!r}.")
        latent_dim = int(decoder.input_shape[-1])
        if int(posterior_network.output_shape[-1]) != 2 * latent_dim:
            raise ConfigError(
                f"the posterior network must output 2 * latent_dim = {2 * latent_dim} values "
                f"(mean || log_var), got {posterior_network.output_shape[-1]}."
            )
        super().__init__(
            mean_encoder(posterior_network, latent_dim),
            decoder,
            StandardNormalPrior(latent_dim),
            seed=seed,
            loss_weights={"beta": float(beta)},  # subclasses record their own weights
            **kwargs,
        )
        self.posterior_network = posterior_network
        self.latent_dim = latent_dim
        self.beta = float(beta)
        self.reconstruction = reconstruction
        self.log_var_bounds = tuple(log_var_bounds) if log_var_bounds is not None else None

    # -- inference ------------------------------------------------------------------

    def posterior(self, images, training=False):
        """(mean, log_var) of q(z | x), each `[N, D]`."""
        out = self.posterior_network(images, training=training)
        mean, log_var = out[:, : self.latent_dim], out[:, self.latent_dim :]
        if self.log_var_bounds is not None:
            log_var = tf.clip_by_value(log_var, *self.log_var_bounds)
        return mean, log_var

    def encode(self, images, training=False):
        """Posterior mean."""
        return self.posterior(images, training=training)[0]

    # -- randomness -----------------------------------------------------------------

    def sample_posterior(self, mean, log_var, seed):
        """z = mean + exp(log_var / 2) eps (reparameterisation), eps from `seed`."""
        eps = self.global_random(tf.random.stateless_normal, tf.shape(mean), seed)
        return mean + tf.exp(0.5 * log_var) * eps

    # -- objective --------------------------------------------------------------------

    def reconstruction_nll(self, x, x_rec):
        """Per-image -log p(x | z) `[N]` (summed over pixels)."""
        return vae_losses.reconstruction_nll(x, x_rec, kind=self.reconstruction)

    def compute_terms(self, x, *, training: bool, step, stream: int):
        """(objective, metric values) on this replica's batch; override in subclasses.

        The objective is the batch mean of the negative (beta-)ELBO in nats per image;
        `values` has one scalar per name in `metric_names`.
        """
        (sample_seed,) = self.step_seeds(step, stream, 1)
        mean, log_var = self.posterior(x, training=training)
        z = self.sample_posterior(mean, log_var, sample_seed)
        reconstruction = tf.reduce_mean(self.reconstruction_nll(x, self.decoder(z, training=training)))
        kl = tf.reduce_mean(vae_losses.gaussian_kl(mean, log_var))
        loss = reconstruction + self.beta * kl
        return loss, {"loss": loss, "reconstruction": reconstruction, "kl": kl}

    # -- export -----------------------------------------------------------------------

    def export_details(self) -> dict | None:
        """Model-specific entries of `export_metadata` (None: the model records none)."""
        return None

    def export_metadata(self) -> dict:
        """{} or, when `export_details` gives some, `about` and the likelihood with them
        (SavedModel metadata "model_details")."""
        details = self.export_details()
        if details is None:
            return {}
        return {**self.about, "reconstruction_likelihood": self.reconstruction, **details}


def check_variant(config, builder: str, *names: str) -> None:
    """ConfigError unless `config.model.variant` is one of `names` (what `builder` makes)."""
    if config.model.variant not in names:
        made = " or ".join(repr(name) for name in names)
        raise ConfigError(f"{builder} makes {made}, not {config.model.variant!r}.")


def build_on_gaussian_networks(cls, config, image_shape, **settings):
    """`cls(posterior, decoder, **settings)` on the fc / conv networks of `config.model`
    (`build_gaussian_networks`), with the run's seed and likelihood, named after the model."""
    posterior, decoder = build_gaussian_networks(config.model, image_shape)
    return cls(
        posterior,
        decoder,
        seed=config.train.seed,
        reconstruction=config.vae.reconstruction,
        name=config.model.variant,
        **settings,
    )


def build(config, image_shape) -> VariationalAutoencoder:
    """The `vae` (beta = 1) or `beta_vae` (beta = config.vae.beta) of a run config."""
    check_variant(config, "vae.build", "vae", "beta_vae")
    beta = 1.0 if config.model.variant == "vae" else config.vae.beta
    return build_on_gaussian_networks(VariationalAutoencoder, config, image_shape, beta=beta)
