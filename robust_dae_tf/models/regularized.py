"""GMM-regularized deterministic autoencoders: `gmm_dae`, `augmented` and `robust`.

One model class, `RegularizedAutoencoder` (a `models.base.Autoencoder` implementing only
`compute_terms`), whose `variant` selects the objective:

* ``gmm_dae``   (paper sec. 3.1, [27]): lambda_REC L_REC + lambda_KS L_KS (eq. 4)
  + lambda_CV L_CV (eq. 5) on the clean latents z = g(x).
* ``augmented`` (sec. 3.2): adds FGSM latent adversarial examples x_adv (eq. 6) and
  regularizes z and z_adv = g(x_adv) independently: eq. 7 (KS) and eq. 8 (coupled
  covariance with alpha = 0).
* ``robust``    (sec. 3.3, "Ours"): eq. 9 (2/3 augmented KS + 1/3 two-sample KS
  coupling) and eq. 10 (coupled covariance with coupling alpha), total eq. 11.

The reconstruction term is lambda_REC * MSE(x, f(z + n)), n ~ N(0, s^2 I) in training
(s = `latent_noise_std`, 0.1 in the reference; the paper's text says N(0, I)); x_adv
is not reconstructed (as in the reference). Loss weights lambda_KS, lambda_CV and the
two-sample weight are 1 / (mean loss on prior batches), see
`losses.estimate_loss_weights`; the two-sample term is normalised by its own weight,
as in the reference, so eq. 9 is applied as
lambda_KS * (2/3 KS_aug + 1/3 (lambda_2S / lambda_KS) KS_2S)
(`losses.adversarial_ks_loss` with two-sample weight lambda_2S / lambda_KS).

`weighting="reference"` (config `loss.weighting`) switches the adversarial models to
the reference code's objective and weights (`losses.estimate_reference_loss_weights`):
lambda_KS KS(z and z_adv pooled into one 2N batch) + lambda_2S two-sample term
+ lambda_CV L_CV(alpha), without eq. 9's 2/3 and 1/3, where lambda_KS normalises the
pooled KS and lambda_CV the coupled covariance loss at the model's alpha; the
augmented model is the same with alpha = 0 and no two-sample term. The "ks" metric is
then the pooled KS loss. `gmm_dae` ignores the weighting: for one clean batch the
reference's objective and weights are the paper's (eqs. 4, 5 and
`losses.estimate_loss_weights`; the pooled-KS weight would be wrong for an N batch).

Multi-device (tf.distribute.MirroredStrategy): the KS and covariance statistics are
computed on the GLOBAL batch (latents are all-gathered across replicas, which is
differentiable), the reconstruction on the local batch (its metric is all-reduced),
so the reported values are global (`metrics_are_global`); the base class divides the
objective by the number of replicas because Keras sums gradients across replicas. Random numbers
(FGSM start, latent noise) are drawn for the global batch from a stateless seed
(train.seed, optimizer step) and sliced per replica, so one device and N devices
compute the same step, and a resumed run continues the same random stream.

Every term is tracked as a metric; `test_step` reports the same terms without latent
noise (adversarial examples are still crafted, in inference mode, from a fixed seed).

The config sections these models read (`prior`, `loss`, `adversarial`) are
`config_sections` (defined without TensorFlow in `models.sections`); `build` makes the
model of a run config.
"""

from __future__ import annotations

import tensorflow as tf

from robust_dae_tf import adversarial, losses, networks, replicas
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.models.base import Autoencoder
from robust_dae_tf.models.sections import regularized_sections as config_sections  # noqa: F401
from robust_dae_tf.priors import GMMPrior

#: The variants of `RegularizedAutoencoder`, in the order of the paper.
VARIANTS = ("gmm_dae", "augmented", "robust")
ADVERSARIAL_VARIANTS = ("augmented", "robust")


class RegularizedAutoencoder(Autoencoder):
    """Deterministic autoencoder regularized towards a GMM prior.

    Args:
      encoder: Keras model images `[N, H, W, C]` in [0, 1] -> latents `[N, D]`.
      decoder: Keras model latents -> images in [0, 1].
      prior: the `GMMPrior`.
      variant: "gmm_dae", "augmented" or "robust".
      loss_weights: dict with "ks", "covariance", "two_sample_ks" (prior-estimated).
      reconstruction_weight: lambda_REC.
      latent_noise_std: std of the latent noise added before decoding in training.
      coupling: alpha of eq. 10 (robust only; augmented uses 0 by definition).
      cross_covariance: "target" (eqs. 8 / 10 as written) or "ignore" (the cross block
        of the joint covariance is not regularized), see `losses.coupled_covariance_loss`.
      weighting: "paper" (eqs. 7 / 9 as printed) or "reference" (the reference code's
        pooled-KS total without 2/3 and 1/3, for the adversarial variants; gmm_dae is
        the same under both); `loss_weights` must come from the matching estimator.
      epsilon, step_size, random_start: FGSM settings (eq. 6).
      seed: base seed of the per-step stateless random streams.
    """

    metrics_are_global = True

    def __init__(
        self,
        encoder,
        decoder,
        prior: GMMPrior,
        *,
        variant: str = "robust",
        loss_weights: dict,
        reconstruction_weight: float = 500.0,
        latent_noise_std: float = 0.1,
        coupling: float = 0.9,
        cross_covariance: str = "target",
        weighting: str = "paper",
        epsilon: float = 0.3,
        step_size: float = 0.375,
        random_start: bool = True,
        seed: int = 0,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
        if weighting not in losses.WEIGHTINGS:
            raise ConfigError(
                f"config.loss.weighting: {weighting!r} is unknown; choose one of {', '.join(losses.WEIGHTINGS)}."
            )
        names = ["loss", "reconstruction", "ks", "covariance"]
        if variant in ADVERSARIAL_VARIANTS:
            names += ["two_sample_ks", "latent_shift"]
        super().__init__(encoder, decoder, prior, seed=seed, loss_weights=loss_weights, metric_names=names, **kwargs)
        self.variant = variant
        self.reconstruction_weight = float(reconstruction_weight)
        self.latent_noise_std = float(latent_noise_std)
        self.coupling = float(coupling) if variant == "robust" else 0.0
        self.cross_covariance = cross_covariance
        self.weighting = weighting
        self.epsilon = float(epsilon)
        self.step_size = float(step_size)
        self.random_start = bool(random_start)
        self.is_adversarial = variant in ADVERSARIAL_VARIANTS
        self.reference_objective = weighting == "reference" and self.is_adversarial

    def adversarial_examples(self, x, z, seed, training=False):
        """FGSM latent adversarial examples of eq. 6 for images `x` with latents `z`,
        with the random start drawn from the stateless `seed` (shape [2])."""
        initial_delta = None
        if self.random_start:
            uniform = self.global_random(
                lambda shape, s: tf.random.stateless_uniform(shape, s, -1.0, 1.0), tf.shape(x), seed
            )
            initial_delta = adversarial.random_start(x, self.epsilon, uniform)
        return adversarial.fgsm_latent_adversarial(
            self.encoder, x, z, self.epsilon, self.step_size, initial_delta, training=training
        )

    # -- objective ----------------------------------------------------------------

    def _regularizers(self, z, z_adv):
        """(ks, covariance, extra terms) on global batches, per variant."""
        prior = self.prior
        if not self.is_adversarial:
            return losses.ks_loss(z, prior), losses.covariance_loss(z, prior), {}
        two_sample = losses.two_sample_ks_loss(z, z_adv, prior)
        shift = tf.reduce_mean(tf.norm(z_adv - z, axis=1))
        extra = {"two_sample_ks": two_sample, "latent_shift": shift}
        if self.reference_objective:
            ks = losses.reference_ks_loss(z, z_adv, prior)
        elif self.variant == "augmented":
            ks = losses.augmented_ks_loss(z, z_adv, prior)
        else:
            ratio = self.loss_weights["two_sample_ks"] / self.loss_weights["ks"]
            ks = losses.adversarial_ks_loss(z, z_adv, prior, ratio, two_sample=two_sample)
        covariance = losses.coupled_covariance_loss(z, z_adv, prior, self.coupling, self.cross_covariance)
        return ks, covariance, extra

    def compute_terms(self, x, *, training: bool, step, stream: int):
        """(objective of this replica's batch, global metric values): eq. 11 and its terms."""
        start_seed, noise_seed = self.step_seeds(step, stream, 2)
        z = self.encoder(x, training=training)
        z_adv = None
        if self.is_adversarial:
            x_adv = self.adversarial_examples(x, z, start_seed, training=training)
            z_adv = self.encoder(x_adv, training=training)
        z_dec = z
        if training and self.latent_noise_std > 0:
            z_dec = z + self.latent_noise_std * self.global_random(
                tf.random.stateless_normal, tf.shape(z), noise_seed
            )
        x_rec = self.decoder(z_dec, training=training)

        reconstruction = losses.reconstruction_loss(x, x_rec)
        z_global = replicas.gather(z)
        z_adv_global = replicas.gather(z_adv) if z_adv is not None else None
        ks, covariance, extra = self._regularizers(z_global, z_adv_global)
        regularizer = self.loss_weights["ks"] * ks + self.loss_weights["covariance"] * covariance
        if self.reference_objective and self.variant == "robust":
            regularizer += self.loss_weights["two_sample_ks"] * extra["two_sample_ks"]
        objective = self.reconstruction_weight * reconstruction + regularizer

        global_reconstruction = replicas.mean(tf.stop_gradient(reconstruction))
        values = {
            "loss": self.reconstruction_weight * global_reconstruction + tf.stop_gradient(regularizer),
            "reconstruction": global_reconstruction,
            "ks": ks,
            "covariance": covariance,
            **extra,
        }
        return objective, values


def build(config, image_shape) -> RegularizedAutoencoder:
    """The `gmm_dae` / `augmented` / `robust` model of a run config: prior, networks and
    prior-estimated loss weights."""
    prior = GMMPrior.from_config(config.prior, config.model.latent_dim)
    encoder, decoder = networks.build_networks(config.model, image_shape)
    variant = config.model.variant
    if config.loss.weighting == "reference" and variant in ADVERSARIAL_VARIANTS:
        weights = losses.estimate_reference_loss_weights(
            prior,
            config.train.batch_size,
            config.loss.weight_estimation_batches,
            coupling=config.loss.coupling if variant == "robust" else 0.0,
            cross_covariance=config.loss.cross_covariance,
            seed=config.train.seed,
        )
    else:
        weights = losses.estimate_loss_weights(
            prior, config.train.batch_size, config.loss.weight_estimation_batches, seed=config.train.seed
        )
    return RegularizedAutoencoder(
        encoder,
        decoder,
        prior,
        variant=config.model.variant,
        loss_weights=weights,
        reconstruction_weight=config.loss.reconstruction_weight,
        latent_noise_std=config.loss.latent_noise_std,
        coupling=config.loss.coupling,
        cross_covariance=config.loss.cross_covariance,
        weighting=config.loss.weighting,
        epsilon=config.adversarial.epsilon,
        step_size=config.adversarial.step_size,
        random_start=config.adversarial.random_start,
        seed=config.train.seed,
        name=f"{config.model.variant}_autoencoder",
    )
