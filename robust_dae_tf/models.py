"""GMM-regularized deterministic autoencoders: `gmm_dae`, `augmented` and `robust`.

One `keras.Model`, `RegularizedAutoencoder`, whose `variant` selects the objective:

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
lambda_KS * (2/3 KS_aug + 1/3 (lambda_2S / lambda_KS) KS_2S).

Multi-device (tf.distribute.MirroredStrategy): the KS and covariance statistics are
computed on the GLOBAL batch (latents are all-gathered across replicas, which is
differentiable), the reconstruction on the local batch, and the loss is divided by
the number of replicas because Keras sums gradients across replicas. Random numbers
(FGSM start, latent noise) are drawn for the global batch from a stateless seed
(train.seed, optimizer step) and sliced per replica, so one device and N devices
compute the same step, and a resumed run continues the same random stream.

Every term is tracked as a metric; `test_step` reports the same terms without latent
noise (adversarial examples are still crafted, in inference mode, from a fixed seed).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from robust_dae_tf import adversarial, config_lib, losses, networks, replicas
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.priors import GMMPrior

ADVERSARIAL_VARIANTS = ("augmented", "robust")


class RegularizedAutoencoder(keras.Model):
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
      epsilon, step_size, random_start: FGSM settings (eq. 6).
      seed: base seed of the per-step stateless random streams.
    """

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
        epsilon: float = 0.3,
        step_size: float = 0.375,
        random_start: bool = True,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in config_lib.VARIANTS:
            raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(config_lib.VARIANTS)}.")
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.variant = variant
        self.loss_weights = {k: float(v) for k, v in loss_weights.items()}
        self.reconstruction_weight = float(reconstruction_weight)
        self.latent_noise_std = float(latent_noise_std)
        self.coupling = float(coupling) if variant == "robust" else 0.0
        self.cross_covariance = cross_covariance
        self.epsilon = float(epsilon)
        self.step_size = float(step_size)
        self.random_start = bool(random_start)
        self.seed = int(seed)
        self.is_adversarial = variant in ADVERSARIAL_VARIANTS

        names = ["loss", "reconstruction", "ks", "covariance"]
        if self.is_adversarial:
            names += ["two_sample_ks", "latent_shift"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    # -- inference ----------------------------------------------------------------

    def call(self, images, training=False):
        return self.decoder(self.encoder(images, training=training), training=training)

    def encode(self, images, training=False):
        return self.encoder(images, training=training)

    def decode(self, latents, training=False):
        return self.decoder(latents, training=training)

    # -- randomness ---------------------------------------------------------------

    def _step_seeds(self, step, stream: int):
        """Two independent stateless seeds for (FGSM start, latent noise)."""
        base = tf.stack([tf.constant(self.seed + 7919 * stream, tf.int64), tf.cast(step, tf.int64)])
        return tf.unstack(tf.random.experimental.stateless_split(base, num=2))

    _global_random = staticmethod(replicas.global_random)

    def adversarial_examples(self, x, z, seed, training=False):
        """FGSM latent adversarial examples of eq. 6 for images `x` with latents `z`,
        with the random start drawn from the stateless `seed` (shape [2])."""
        initial_delta = None
        if self.random_start:
            uniform = self._global_random(
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
        if self.variant == "augmented":
            ks = losses.augmented_ks_loss(z, z_adv, prior)
        else:
            ratio = self.loss_weights["two_sample_ks"] / self.loss_weights["ks"]
            ks = (2.0 / 3.0) * losses.augmented_ks_loss(z, z_adv, prior) + (1.0 / 3.0) * ratio * two_sample
        covariance = losses.coupled_covariance_loss(z, z_adv, prior, self.coupling, self.cross_covariance)
        return ks, covariance, extra

    def _forward(self, x, *, training: bool, step, stream: int):
        """Returns (objective for this replica's gradient, dict of global metric values)."""
        ctx = tf.distribute.get_replica_context()
        start_seed, noise_seed = self._step_seeds(step, stream)
        z = self.encoder(x, training=training)
        z_adv = None
        if self.is_adversarial:
            x_adv = self.adversarial_examples(x, z, start_seed, training=training)
            z_adv = self.encoder(x_adv, training=training)
        z_dec = z
        if training and self.latent_noise_std > 0:
            z_dec = z + self.latent_noise_std * self._global_random(
                tf.random.stateless_normal, tf.shape(z), noise_seed
            )
        x_rec = self.decoder(z_dec, training=training)

        reconstruction = losses.reconstruction_loss(x, x_rec)
        z_global = replicas.gather(z)
        z_adv_global = replicas.gather(z_adv) if z_adv is not None else None
        ks, covariance, extra = self._regularizers(z_global, z_adv_global)
        regularizer = self.loss_weights["ks"] * ks + self.loss_weights["covariance"] * covariance
        objective = self.reconstruction_weight * reconstruction + regularizer

        num_replicas = ctx.num_replicas_in_sync
        global_reconstruction = tf.stop_gradient(reconstruction)
        if num_replicas > 1:
            global_reconstruction = ctx.all_reduce("mean", global_reconstruction)
        values = {
            "loss": self.reconstruction_weight * global_reconstruction + tf.stop_gradient(regularizer),
            "reconstruction": global_reconstruction,
            "ks": ks,
            "covariance": covariance,
            **extra,
        }
        return objective / num_replicas, values

    def _update_metrics(self, values):
        for name, value in values.items():
            self.trackers[name].update_state(tf.stop_gradient(value))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    # -- Keras hooks --------------------------------------------------------------

    def train_step(self, data):
        x = replicas.images_of(data)
        with tf.GradientTape() as tape:
            objective, values = self._forward(x, training=True, step=self.optimizer.iterations, stream=0)
        variables = self.trainable_variables
        grads = tape.gradient(objective, variables)
        self.optimizer.apply(grads, variables)
        return self._update_metrics(values)

    def test_step(self, data):
        x = replicas.images_of(data)
        _, values = self._forward(x, training=False, step=0, stream=1)
        return self._update_metrics(values)


def build_model(config, image_shape) -> keras.Model:
    """Builds the (uncompiled) model a run config names: a `RegularizedAutoencoder`
    (prior, networks, prior-estimated loss weights) or a baseline of
    `robust_dae_tf.baselines`. `config` must be valid (`config_lib.validate`, which a run
    applies once where it starts: `training.train`, `pipeline.run_training_pipeline`)."""
    if config.model.variant in config_lib.BASELINES:
        from robust_dae_tf.baselines import registry

        return registry.build_baseline(config, image_shape)
    prior = GMMPrior.from_config(config.prior, config.model.latent_dim)
    encoder, decoder = networks.build_networks(config.model, image_shape)
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
        epsilon=config.adversarial.epsilon,
        step_size=config.adversarial.step_size,
        random_start=config.adversarial.random_start,
        seed=config.train.seed,
        name=f"{config.model.variant}_autoencoder",
    )
