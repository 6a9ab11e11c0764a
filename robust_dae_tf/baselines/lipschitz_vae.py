"""Lipschitz-VAE: Barrett, Camuto, Willetts & Rainforth, "Certifiably Robust Variational
Autoencoders" (arXiv:2102.07559, AISTATS 2022).

A VAE whose three networks have l2 Lipschitz constants fixed before training:

* encoder mean      mu(x):    images -> `[N, D]`, M_mu-Lipschitz,
* encoder std       sigma(x): images -> `[N, D]` in (0, 1), M_sigma-Lipschitz,
* decoder mean      g(z):     latents -> images in (0, 1) (Bernoulli means), M_g-Lipschitz,

each a stack of `lipschitz.BjorckDense` layers (Bjorck-orthonormalised kernels, spectral
norm 1, times a fixed scale) and `lipschitz.GroupSort` activations (Anil et al. 2019).
Training maximises the ordinary ELBO (beta = 1, one reparameterised sample, the
`VariationalAutoencoder` objective); robustness comes from the architecture alone.

Certificate (their first margin bound, `lipschitz.certified_reconstruction_radius`):
for an input x, every perturbation d with ||d||_2 <= R(x) keeps the sampled
reconstruction within l2 distance r of the clean one with probability >= p, where R
solves (M_mu^2 + M_sigma^2) R^2 + 4 M_sigma s R + 4 s^2 = (1 - p) r^2 / M_g^2 with
s = ||sigma(x)||_2. `certificate()` reports the constants, R(x) for given images and a
data-independent radius valid for every input (R at the largest possible ||sigma||);
the deterministic encode-decode path that the SavedModel exports (decoder(mu(x))) is
certified separately by `lipschitz.mean_path_certified_radius`: r / (M_mu M_g).

Conventions: images `[N, H, W, C]` in [0, 1], flattened to H*W*C inputs; norms are l2
over all pixels; "Lipschitz constant" means an upper bound on it.

Layout of the posterior network expected by the base class: `[N, 2D]` = (mu || log_var)
with log_var = 2 log sigma(x) of the BOUNDED std. The base class's log_var clipping is
switched off (it would change sigma and its bound). `self.encoder` is the mean network
itself (images -> mu), so the exported encoder is exactly the certified M_mu-Lipschitz map.

Where the paper (and Saseendran et al., who use it as a baseline) leave a choice open,
or where we differ from the authors' code (github.com/FabianBarrett/Lipschitz_VAEs,
read, not copied):

1. Lipschitz constants. Saseendran et al. do not state theirs; Barrett et al. sweep
   them (the authors' MNIST scripts train 6, 7, 8, 9 and 10, Fashion-MNIST 4). Default
   8 for all three networks (`config.lipschitz_vae.*_lipschitz`, our choice).
2. Spreading a network's constant L over its n linear layers: each layer is scaled by
   L^(1/n), GroupSort is 1-Lipschitz (as in the authors' code).
3. Widths: `config.model.hidden_units` for all three networks (the FC widths shared by
   every model of this package; the decoder uses them reversed) instead of the
   authors' 512-512; GroupSort groups of `config.lipschitz_vae.group_size` = 2 (MaxMin,
   the authors' config).
4. Fully connected Lipschitz nets for EVERY dataset, also where the other models use
   conv nets (SVHN, CelebA): Lipschitz convolutions (e.g. BCOP / Cayley layers) are out
   of scope. Flattened 32x32x3 (3072) and 64x64x3 (12288) inputs work; the Bjorck
   iteration works on the smaller Gram matrix, so the cost is O(in * units^2) per layer.
5. Output nonlinearities: the decoder and the std network end with a sigmoid (authors'
   code). The sigmoid is 1/4-Lipschitz, so the certified constants of those two
   networks are L / 4 (`lipschitz.lipschitz_constant_bound` on the actual layers); the
   authors' code certifies with the pre-sigmoid L, which is valid but 4 times more
   conservative. `certificate()` reports both ("network" and "certified" constants).
6. Bounding the std: sigmoid -> each sigma_j in (0, 1) (authors' default config), so
   ||sigma||_2 < sqrt(D). Optionally (`config.lipschitz_vae.std_norm_r` > 0, the
   authors' "desired_radius" variant, which uses 5) sigma is projected onto the l2 ball
   of radius sqrt(1 - p) r_s / (2 M_g) (1 - 1e-4), the largest ||sigma|| for which the
   certificate at r_s is positive (r_s / (sqrt(8) M_g) for p = 1/2, as in their code);
   projection onto a ball is 1-Lipschitz, so M_sigma is unchanged. Default 0 = off.
7. Likelihood: the Bernoulli likelihood shared by every VAE baseline
   (`config.vae.reconstruction`) instead of the authors' continuous Bernoulli.
8. Bjorck iterations: `config.lipschitz_vae.bjorck_iters` = 3 in training (the
   authors' training scripts) and `bjorck_inference_iters` = 20 in inference, i.e. in
   evaluation, export and attacks (Anil et al.'s default and the authors' config file).
   The authors then fine-tune with 50 iterations at lr 1e-5; a two-phase schedule does
   not fit the shared trainer. 20 iterations in training make a step far costlier than
   the robust model's (measured with bin/benchmark.py, benchmarks/README.md), 3 much
   less so. With `lipschitz.bjorck_prescale` the spectral norm is
   <= 1 after any number of iterations, so the certificate never depends on
   convergence (fewer iterations only make layers more contractive).
9. Optimiser, batch size, epochs: the shared `config.train` values (the authors use
   Adam with lr 1e-4, batch 128, training to convergence).
10. log sigma: computed as log(max(sigma, 1e-30)); the floor only guards the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from numbers import Integral, Real

import keras
import tensorflow as tf

from robust_dae_tf.baselines import lipschitz, vae_losses
from robust_dae_tf.baselines.lipschitz import BjorckDense, GroupSort
from robust_dae_tf.baselines.vae import VariationalAutoencoder, check_variant
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.models.sections import lipschitz_vae_sections as config_sections  # noqa: F401

logger = logging.getLogger(__name__)

#: sigma is floored at this value only inside log(sigma) (keeps log_var finite).
STD_LOG_FLOOR = 1e-30
#: The std clip radius is shrunk by this relative margin so that R(max_norm) > 0 strictly.
STD_CLIP_MARGIN = 1e-4


@keras.saving.register_keras_serializable(package="robust_dae_tf")
class LipschitzSigmoid(keras.layers.Layer):
    """Element-wise logistic sigmoid, with its l2 Lipschitz constant 1/4 (max of sigmoid')."""

    def call(self, inputs):
        return tf.sigmoid(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def lipschitz_constant(self) -> float:
        return 0.25


@keras.saving.register_keras_serializable(package="robust_dae_tf")
class NormClip(keras.layers.Layer):
    """Projects each row (last axis) onto the l2 ball of radius `max_norm`:
    v -> v * min(1, max_norm / ||v||_2). A projection onto a convex set is 1-Lipschitz."""

    def __init__(self, max_norm: float, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(max_norm, Real) or not math.isfinite(max_norm) or max_norm <= 0:
            raise ConfigError(f"NormClip max_norm must be a finite number > 0, got {max_norm!r}.")
        self.max_norm = float(max_norm)

    def call(self, inputs):
        squared = tf.reduce_sum(tf.square(inputs), axis=-1, keepdims=True)
        norm = tf.sqrt(tf.maximum(squared, tf.constant(1e-30, inputs.dtype)))
        return inputs * tf.minimum(tf.constant(1.0, inputs.dtype), self.max_norm / norm)

    def compute_output_shape(self, input_shape):
        return input_shape

    def lipschitz_constant(self) -> float:
        return 1.0

    def get_config(self):
        return {**super().get_config(), "max_norm": self.max_norm}


@keras.saving.register_keras_serializable(package="robust_dae_tf")
class StdToLogVariance(keras.layers.Layer):
    """sigma -> log sigma^2 = 2 log(max(sigma, STD_LOG_FLOOR))."""

    def call(self, inputs):
        return 2.0 * tf.math.log(tf.maximum(inputs, tf.constant(STD_LOG_FLOOR, inputs.dtype)))

    def compute_output_shape(self, input_shape):
        return input_shape


def lipschitz_mlp(
    input_shape: Sequence[int],
    hidden_units: Sequence[int],
    out_units: int,
    lipschitz_constant: float,
    *,
    group_size: int = 2,
    bjorck_iters: int = 20,
    bjorck_inference_iters: int | None = None,
    head=(),
    name: str = "lipschitz_mlp",
) -> keras.Model:
    """Flatten -> [BjorckDense -> GroupSort] * len(hidden_units) -> BjorckDense(out_units) -> head.

    Each of the len(hidden_units) + 1 linear layers is scaled by
    lipschitz_constant ** (1 / number of linear layers), so the stack before `head` is
    `lipschitz_constant`-Lipschitz in l2; `head` layers (e.g. `LipschitzSigmoid`,
    `NormClip`, `keras.layers.Reshape`) multiply that by their own constants.
    """
    n_linear = len(hidden_units) + 1
    scale = float(lipschitz_constant) ** (1.0 / n_linear)
    inputs = keras.Input(tuple(input_shape), name="inputs")
    h = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    for i, units in enumerate(hidden_units):
        h = BjorckDense(
            int(units), iters=bjorck_iters, inference_iters=bjorck_inference_iters, lipschitz_scale=scale,
            name=f"bjorck_{i}",
        )(h)
        h = GroupSort(group_size, name=f"groupsort_{i}")(h)
    h = BjorckDense(
        int(out_units), iters=bjorck_iters, inference_iters=bjorck_inference_iters, lipschitz_scale=scale,
        name="bjorck_out",
    )(h)
    for layer in head:
        h = layer(h)
    return keras.Model(inputs, h, name=name)


def std_clip_radius(std_norm_r: float, decoder_lipschitz: float, p: float) -> float:
    """Largest ||sigma||_2 for which the certified radius at r = `std_norm_r` is positive,
    shrunk by STD_CLIP_MARGIN: sqrt(1 - p) r / (2 M_g) (1 - margin) (from 4 s^2 < (1 - p) r^2 / M_g^2)."""
    return math.sqrt(1.0 - p) * std_norm_r / (2.0 * decoder_lipschitz) * (1.0 - STD_CLIP_MARGIN)


def build_lipschitz_networks(
    image_shape: Sequence[int],
    latent_dim: int,
    hidden_units: Sequence[int],
    *,
    encoder_mean_lipschitz: float,
    encoder_std_lipschitz: float,
    decoder_lipschitz: float,
    group_size: int = 2,
    bjorck_iters: int = 20,
    bjorck_inference_iters: int | None = None,
    std_max_norm: float = 0.0,
):
    """(mean network, std network, decoder) of a Lipschitz-VAE.

    The constants are those of the linear stacks (the authors' "l_constant"); the std
    network and the decoder end with a sigmoid (so their certified constants are 1/4 of
    these), the std network optionally with `NormClip(std_max_norm)` (0 = none).
    """
    image_shape = tuple(int(d) for d in image_shape)
    num_pixels = math.prod(image_shape)
    common = {"group_size": group_size, "bjorck_iters": bjorck_iters, "bjorck_inference_iters": bjorck_inference_iters}
    mean_network = lipschitz_mlp(
        image_shape, hidden_units, latent_dim, encoder_mean_lipschitz, name="encoder_mean", **common
    )
    std_head = [LipschitzSigmoid(name="sigmoid")]
    if std_max_norm > 0:
        std_head.append(NormClip(std_max_norm, name="norm_clip"))
    std_network = lipschitz_mlp(
        image_shape, hidden_units, latent_dim, encoder_std_lipschitz, head=std_head, name="encoder_std", **common
    )
    decoder = lipschitz_mlp(
        (latent_dim,),
        tuple(reversed(tuple(hidden_units))),
        num_pixels,
        decoder_lipschitz,
        head=[LipschitzSigmoid(name="sigmoid"), keras.layers.Reshape(image_shape, name="images")],
        name="decoder",
        **common,
    )
    return mean_network, std_network, decoder


class LipschitzVAE(VariationalAutoencoder):
    """Lipschitz-constrained VAE (Barrett et al. 2022) trained on the ELBO.

    Args:
      mean_network: images -> mu `[N, D]` (Lipschitz stack).
      std_network: images -> sigma `[N, D]`, sigma > 0 (bounded, Lipschitz stack).
      decoder: latents -> images in [0, 1] (Lipschitz stack).
      certificate_r: r of the reported r-robustness (reconstruction tolerance, l2 over pixels).
      certificate_p: probability p of r-robustness (1/2 in their definition).
      network_lipschitz: optional dict of the configured (pre-sigmoid) constants,
        reported by `certificate()` next to the certified ones.
      seed, reconstruction: as in `VariationalAutoencoder`. beta is fixed to 1 (ELBO).

    The certified constants are `lipschitz.lipschitz_constant_bound` of the three
    networks' layers, so any network passed in must be built from layers with known
    constants (BjorckDense, GroupSort, LipschitzSigmoid, NormClip, Flatten, Reshape).
    """

    metric_names = ("loss", "reconstruction", "kl", "certified_radius", "std_norm")
    about = {
        "model": "lipschitz_vae",
        "reference": "Barrett et al. 2022, Certifiably Robust Variational Autoencoders (arXiv:2102.07559)",
        "objective": "ELBO (beta = 1), one reparameterised sample",
    }

    def __init__(
        self,
        mean_network: keras.Model,
        std_network: keras.Model,
        decoder: keras.Model,
        *,
        certificate_r: float = 8.0,
        certificate_p: float = 0.5,
        network_lipschitz: dict | None = None,
        **kwargs,
    ):
        if not isinstance(certificate_r, Real) or not math.isfinite(certificate_r) or certificate_r <= 0:
            raise ConfigError(f"config.lipschitz_vae.certificate_r must be a finite number > 0, got {certificate_r!r}.")
        if not isinstance(certificate_p, Real) or not 0.0 < certificate_p < 1.0:
            raise ConfigError(f"config.lipschitz_vae.certificate_p must be in (0, 1), got {certificate_p!r}.")
        if "beta" in kwargs or "log_var_bounds" in kwargs:
            raise ConfigError("LipschitzVAE trains on the ELBO (beta = 1) with an unclipped, bounded std.")
        images = keras.Input(tuple(int(d) for d in mean_network.input_shape[1:]), name="images")
        log_var = StdToLogVariance(name="log_var")(std_network(images))
        packed = keras.layers.Concatenate(axis=-1, name="mean_log_var")([mean_network(images), log_var])
        posterior = keras.Model(images, packed, name="posterior")
        super().__init__(posterior, decoder, beta=1.0, log_var_bounds=None, **kwargs)
        self.mean_network = mean_network
        self.std_network = std_network
        # The exported encoder is the M_mu-Lipschitz mean network itself.
        self.encoder = mean_network
        self.certificate_r = float(certificate_r)
        self.certificate_p = float(certificate_p)
        self.lipschitz_constants = {
            "encoder_mean": lipschitz.lipschitz_constant_bound(mean_network),
            "encoder_std": lipschitz.lipschitz_constant_bound(std_network),
            "decoder": lipschitz.lipschitz_constant_bound(decoder),
        }
        self.network_lipschitz = dict(network_lipschitz or {})
        self.std_max_norm = next(
            (layer.max_norm for layer in std_network.layers if isinstance(layer, NormClip)), None
        )
        self.loss_weights = {"beta": 1.0}

    # -- inference ------------------------------------------------------------------

    def encode(self, images, training=False):
        """Posterior mean mu(x) (the mean network alone)."""
        return self.mean_network(images, training=training)

    def posterior_std(self, images, training=False):
        """sigma(x) `[N, D]` (the bounded std network)."""
        return self.std_network(images, training=training)

    # -- certificate ------------------------------------------------------------------

    def certified_radius(self, images=None, *, std_norm=None, r: float | None = None, p: float | None = None):
        """R per input `[N]` (Barrett et al.'s first margin bound) for the images' ||sigma(x)||_2,
        or for given `std_norm` values; r, p default to `certificate_r`, `certificate_p`."""
        if std_norm is None:
            if images is None:
                raise ConfigError("certified_radius needs images or std_norm.")
            std_norm = tf.norm(self.posterior_std(images), axis=-1)
        c = self.lipschitz_constants
        return lipschitz.certified_reconstruction_radius(
            self.certificate_r if r is None else r,
            c["decoder"],
            c["encoder_mean"],
            c["encoder_std"],
            std_norm,
            p=self.certificate_p if p is None else p,
        )

    def max_std_norm(self) -> float:
        """Largest possible ||sigma(x)||_2: the clip radius, else sqrt(D) (sigmoid < 1)."""
        return self.std_max_norm if self.std_max_norm is not None else math.sqrt(self.latent_dim)

    def certificate(self, images=None) -> dict:
        """Lipschitz constants and certified radii (JSON-serialisable).

        "worst_case_radius" holds for EVERY input (R at `max_std_norm()`, R decreasing in
        ||sigma||); "mean_path_radius" certifies ||g(mu(x + d)) - g(mu(x))||_2 <= r for
        ||d||_2 <= it (the exported deterministic reconstruction). With `images`, adds
        the per-image radii R(x) and their mean.
        """
        c = self.lipschitz_constants
        result = {
            "definition": (
                "r-robust with probability p (Barrett et al. 2022): every ||d||_2 <= R keeps "
                "P(||g(z') - g(z)||_2 <= r) >= p, z ~ q(z|x), z' ~ q(z|x+d); l2 over pixels in [0, 1]"
            ),
            "r": self.certificate_r,
            "p": self.certificate_p,
            "certified_lipschitz": dict(c),
            "network_lipschitz": dict(self.network_lipschitz),
            "std_max_norm": self.max_std_norm(),
            "std_clipped": self.std_max_norm is not None,
            "worst_case_radius": float(self.certified_radius(std_norm=tf.constant(self.max_std_norm(), tf.float64))),
            "mean_path_radius": lipschitz.mean_path_certified_radius(
                self.certificate_r, c["encoder_mean"], c["decoder"]
            ),
        }
        if images is not None:
            radii = self.certified_radius(tf.convert_to_tensor(images, tf.float32))
            result["radii"] = [float(v) for v in radii.numpy()]
            result["mean_radius"] = float(tf.reduce_mean(radii))
        return result

    def export_details(self) -> dict:
        return {"certificate": self.certificate()}

    # -- objective --------------------------------------------------------------------

    def compute_terms(self, x, *, training: bool, step, stream: int):
        """The VAE's negative ELBO, plus the mean certified radius and ||sigma|| of the batch."""
        (sample_seed,) = self.step_seeds(step, stream, 1)
        mean, log_var = self.posterior(x, training=training)
        z = self.sample_posterior(mean, log_var, sample_seed)
        reconstruction = tf.reduce_mean(self.reconstruction_nll(x, self.decoder(z, training=training)))
        kl = tf.reduce_mean(vae_losses.gaussian_kl(mean, log_var))
        loss = reconstruction + kl
        std_norm = tf.norm(tf.exp(0.5 * log_var), axis=-1)
        radius = tf.reduce_mean(self.certified_radius(std_norm=std_norm))
        return loss, {
            "loss": loss,
            "reconstruction": reconstruction,
            "kl": kl,
            "certified_radius": radius,
            "std_norm": tf.reduce_mean(std_norm),
        }


def _positive(section, field):
    value = section[field]
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"config.lipschitz_vae.{field} must be a finite number > 0, got {value!r}.")
    return float(value)


def build(config, image_shape) -> LipschitzVAE:
    """The `lipschitz_vae` of a run config: FC Lipschitz nets of `config.model.hidden_units`
    for every dataset, constants and certificate settings of `config.lipschitz_vae`."""
    check_variant(config, "lipschitz_vae.build", "lipschitz_vae")
    section = config.lipschitz_vae
    constants = {name: _positive(section, f"{name}_lipschitz") for name in ("encoder_mean", "encoder_std", "decoder")}
    group_size = section.group_size
    if isinstance(group_size, bool) or not isinstance(group_size, Integral) or group_size < 1:
        raise ConfigError(f"config.lipschitz_vae.group_size must be a positive integer, got {group_size!r}.")
    hidden_units = tuple(int(u) for u in config.model.hidden_units)
    bad = [u for u in hidden_units if u % group_size]
    if bad:
        raise ConfigError(
            f"config.model.hidden_units {hidden_units} must be divisible by config.lipschitz_vae.group_size="
            f"{group_size} (GroupSort sorts groups of that size); {bad} are not."
        )
    iters = section.bjorck_iters
    if isinstance(iters, bool) or not isinstance(iters, Integral) or iters < 1:
        raise ConfigError(f"config.lipschitz_vae.bjorck_iters must be an integer >= 1, got {iters!r}.")
    inference_iters = section.get("bjorck_inference_iters", iters)
    if isinstance(inference_iters, bool) or not isinstance(inference_iters, Integral) or inference_iters < 1:
        raise ConfigError(
            f"config.lipschitz_vae.bjorck_inference_iters must be an integer >= 1, got {inference_iters!r}."
        )
    certificate_r = _positive(section, "certificate_r")
    certificate_p = section.certificate_p
    if isinstance(certificate_p, bool) or not isinstance(certificate_p, Real) or not 0.0 < certificate_p < 1.0:
        raise ConfigError(f"config.lipschitz_vae.certificate_p must be in (0, 1), got {certificate_p!r}.")
    std_norm_r = section.std_norm_r
    if isinstance(std_norm_r, bool) or not isinstance(std_norm_r, Real) or not math.isfinite(std_norm_r) or std_norm_r < 0:
        raise ConfigError(f"config.lipschitz_vae.std_norm_r must be >= 0 (0 = no clip), got {std_norm_r!r}.")
    # The certified decoder constant includes its output sigmoid (1/4).
    std_max_norm = (
        std_clip_radius(float(std_norm_r), 0.25 * constants["decoder"], float(certificate_p)) if std_norm_r > 0 else 0.0
    )
    if config.model.architecture != "fc":
        logger.info(
            "lipschitz_vae uses fully connected Lipschitz nets for every dataset; "
            "model.architecture=%r is ignored.", config.model.architecture
        )
    mean_network, std_network, decoder = build_lipschitz_networks(
        image_shape,
        int(config.model.latent_dim),
        hidden_units,
        encoder_mean_lipschitz=constants["encoder_mean"],
        encoder_std_lipschitz=constants["encoder_std"],
        decoder_lipschitz=constants["decoder"],
        group_size=int(group_size),
        bjorck_iters=int(iters),
        bjorck_inference_iters=int(inference_iters),
        std_max_norm=std_max_norm,
    )
    return LipschitzVAE(
        mean_network,
        std_network,
        decoder,
        certificate_r=certificate_r,
        certificate_p=float(certificate_p),
        network_lipschitz=constants,
        seed=config.train.seed,
        reconstruction=config.vae.reconstruction,
        name="lipschitz_vae",
    )
