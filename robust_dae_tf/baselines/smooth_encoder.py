"""Smooth encoders (SE): Cemgil, Ghaisas, Dvijotham & Kohli, "Adversarially Robust
Representations with Smooth Encoders", ICLR 2020.

A VAE whose encoder is made smooth by a data-dependent regulariser. For every training
image x a perturbed input x' is SELECTED inside an input-space ball around x so that
its posterior moves as far as possible from that of x, and the distance between the two
posteriors is then penalised (their Algorithm 1: x_b = Select(x_a; L, eps); compute
(mu_a, Sigma_a), (mu_b, Sigma_b); E = data fidelity + prior fidelity + W_D2,gamma):

    x'(x)     = argmax_{x' in B(x) ∩ [0, 1]^P}  W(q(z | x), q(z | x'))            (selection)
    objective = mean_n [ -log p(x_n | z_n) + beta * KL(q(z | x_n) || N(0, I))
                         + weight * W(q(z | x_n), q(z | x'_n)) ]                   (training)

with z_n ~ q(z | x_n) (one reparameterised sample, as in the VAE base class). The
selected x' is data: `tf.stop_gradient` cuts every path through the selection loop, so
the training gradient is that of the objective with x' held fixed; the distance term
itself is differentiated through BOTH posteriors (through the encoder at x and at x'),
as in their Algorithm 1 where W depends on the encoder parameters eta via both.

Threat model of the selection (`threat_model`, the ball B(x)): "linf" (default), the
L-inf ball of radius eps = `epsilon` (the threat model of our FGSM training), or "l2", the
L2 ball of radius eps = `l2_radius`, the threat model of the paper's evaluation attacks
(an L2 budget lambda), so SE is trained against the norm it is attacked in. `l2_radius`
defaults to 1.0, the smallest evaluation budget lambda of the paper (`paper_results.BUDGETS`; our
choice: the budget at which robustness is first measured; not tuned), and is independent of
`epsilon`, which per-dataset configs set for L-inf (8/255 for colour).

Selection (PGD, Madry et al. 2018). `pgd_steps` = K steps of projected gradient ASCENT
on delta = x' - x with step alpha = relative_step_size * eps / K (Madry et al.'s rule of
thumb alpha = 2.5 eps / K, for both threat models), from a random start:

* "linf": delta_0 ~ U[-eps, eps]^P; delta <- clip(delta + alpha sign(grad), -eps, eps)
  then clip(., -x, 1 - x) (the intersection of the two boxes is a box, so the sequential
  clip is the exact projection).
* "l2": delta_0 uniform in the L2 ball (Gaussian direction, radius eps u^(1/P));
  delta <- P(delta + alpha grad / ||grad||_2) (normalised gradient step), P the exact
  Euclidean projection onto the L2 ball ∩ pixel box (`attacks.projection.project_l2_box`,
  the one the evaluation attacks use), so ||x' - x||_2 <= eps and x' in [0, 1]^P.

Both starts are clipped to the pixel box, which keeps them in the ball (the box contains
0, so clipping only shrinks coordinates). The target q(z | x) is fixed (stop-gradient).
The distance is evaluated at every iterate (the random start included) and the BEST
iterate of each image is returned, so the selected x' is never worse than the random
start (cost: K + 1 encoder forward passes and K backward passes per image). The encoder
runs in inference mode (`training=False`) during selection, so BatchNorm (conv nets)
uses, and does not update, its moving statistics. With random_start=False the search
starts at x, where the distance is minimal (zero gradient for "gaussian_w2"), so PGD
does not move: keep the random start for the default distance.

Distances W between the diagonal Gaussian posteriors (`distance`, each `[N]`, summed
over latent dimensions, in squared latent units):

* "gaussian_w2" (default): the closed-form squared 2-Wasserstein distance
  ||m1 - m2||^2 + ||s1 - s2||^2 (`wasserstein.gaussian_w2_squared`).
* "entropic": the closed-form debiased entropy-regularised OT ("Sinkhorn divergence",
  Genevay et al. 2018, Feydy et al. 2019) between the two Gaussians,
  S_e(p, q) = OT_e(p, q) - OT_e(p, p) / 2 - OT_e(q, q) / 2 with
  OT_e(p, q) = min_{pi in Pi(p, q)} E_pi ||z - z'||^2 + e KL(pi || p x q), e = `entropy_epsilon`.
  For diagonal Gaussians the problem separates per dimension and the optimal coupling
  is Gaussian with correlation r* = 4 s / (e + sqrt(e^2 + 16 s^2)), s = s1 s2, so
  OT_e = (m1 - m2)^2 + s1^2 + s2^2 - h(s1 s2) with
  h(s) = 2 r* s + (e / 2) log(e r* / (2 s))   (using 1 - r*^2 = e r* / (2 s));
  S_e = sum_d (m1 - m2)^2 - h(s1 s2) + h(s1^2) / 2 + h(s2^2) / 2.
  S_e = 0 for equal posteriors and S_e -> W2^2 as e -> 0 (r* -> 1, h(s) -> 2 s).
* "sinkhorn": the sample-based Sinkhorn distance (Cuturi 2013; `wasserstein.
  sinkhorn_distance`, the transport cost <P_e, C> of the entropic plan, NOT debiased)
  between `sinkhorn_samples` samples of each posterior drawn with COMMON random numbers
  (z_i = m1 + s1 u_i, z'_i = m2 + s2 u_i, the same u_i, fixed during one selection and
  its penalty). With common random numbers the identity pairing is the optimal plan
  between the two clouds (a diagonal positive scaling plus a shift is the gradient of
  a convex function), so as e -> 0 the value tends to mean_i ||m1 - m2 + (s1 - s2) u_i||^2,
  an unbiased Monte-Carlo estimate of W2^2. Slow (one Sinkhorn problem per image and
  PGD step); kept for ablations.

Relation to SE's formulation. SE derive their regulariser from a coupled prior over the
representations of the observed x_a and the selected fictive x_b; optimising the
coupling of q(z_a | x_a) and q(z_b | x_b) gives an entropy-regularised Wasserstein
divergence W_D2,gamma between the two posteriors, computed in closed form from
(mu_a, Sigma_a, mu_b, Sigma_b, gamma) (their appendix B.2), whose entropic term vanishes
as the coupling strength gamma -> 0, leaving the 2-Wasserstein distance. We use W2^2
itself by default (no extra hyper-parameter, zero exactly when x' = x, so eps = 0 gives
the VAE exactly), and offer the debiased entropic closed form ("entropic", e playing
the role of their gamma; we could not check the exact scaling of their appendix) and a
sample-based estimate ("sinkhorn"). Their prior-fidelity term 1/2(||mu_a||^2 +
||mu_b||^2 + tr(Sigma_a + Sigma_b)) is replaced by the VAE's KL(q(z | x) || N(0, I))
on the clean image (the log-det part of the KL plays the role of their coupling
entropy), and their Gaussian data fidelity by the Bernoulli likelihood shared by all VAE
baselines here (`vae_losses.DEFAULT_RECONSTRUCTION`), so that SE differs from the VAE
baseline only by the smoothness term.

Conventions: images `[N, H, W, C]` float32 in [0, 1]; the ball radius eps is in pixel
units ([0, 1] scale) of the threat model's norm over all pixels of one image; all reported
terms are batch means (nats per image for the ELBO terms, squared latent units for
`smoothness`, pixel units of the ball's norm for `perturbation_norm`). In training the
posteriors of x and x' come from ONE call of the posterior network on [x; x'], so with
BatchNorm both are normalised with the same batch statistics (which then include the
selected inputs); with fc nets this is identical to two separate calls.

Randomness: the reparameterisation sample uses the VAE's own seed (`step_seeds(step,
stream, 1)`), the selection (random start, sinkhorn noise) the streams
`stream + SELECTION_STREAM_OFFSET`, drawn for the global batch (`global_random`), so
one and several replicas select the same x' per example. `test_step` selects too
(inference mode, fixed seed), like the paper's adversarial models.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import tensorflow as tf

from robust_dae_tf import adversarial
from robust_dae_tf.attacks import projection
from robust_dae_tf.baselines import vae_losses, wasserstein
from robust_dae_tf.baselines.vae import VariationalAutoencoder, build_on_gaussian_networks, check_variant
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.models.sections import smooth_encoder_sections as config_sections  # noqa: F401

THREAT_MODELS = ("linf", "l2")
DISTANCES = ("gaussian_w2", "entropic", "sinkhorn")
#: The selection's random streams are the training / evaluation streams plus this offset.
SELECTION_STREAM_OFFSET = 2
_TINY = 1e-12


# ----------------------------------------------------------------------------- distances


def _entropic_h(log_s, epsilon: float):
    """h(s) = 2 r* s + (e / 2) log(e r* / (2 s)) of the module docstring, from log s."""
    s = tf.exp(log_s)
    rho = 4.0 * s / (epsilon + tf.sqrt(epsilon * epsilon + 16.0 * tf.square(s)))
    return 2.0 * rho * s + 0.5 * epsilon * (math.log(epsilon / 2.0) + tf.math.log(rho) - log_s)


def entropic_gaussian_divergence(mean1, log_var1, mean2, log_var2, epsilon: float) -> tf.Tensor:
    """Debiased entropic OT (Sinkhorn divergence) between diagonal Gaussians, `[N, D]` -> `[N]`.

    S_e = OT_e(p, q) - (OT_e(p, p) + OT_e(q, q)) / 2, OT_e with squared Euclidean cost
    and regulariser e KL(pi || p x q); see the module docstring for the closed form.
    Zero for equal arguments; tends to `wasserstein.gaussian_w2_squared` as e -> 0.
    """
    if not isinstance(epsilon, Real) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ConfigError(f"se.entropy_epsilon must be a finite number > 0, got {epsilon!r}.")
    mean1 = tf.convert_to_tensor(mean1)
    dtype = mean1.dtype
    mean2 = tf.convert_to_tensor(mean2, dtype=dtype)
    log_var1 = tf.convert_to_tensor(log_var1, dtype=dtype)
    log_var2 = tf.convert_to_tensor(log_var2, dtype=dtype)
    eps = float(epsilon)
    per_dim = (
        tf.square(mean1 - mean2)
        - _entropic_h(0.5 * (log_var1 + log_var2), eps)
        + 0.5 * _entropic_h(log_var1, eps)
        + 0.5 * _entropic_h(log_var2, eps)
    )
    return tf.reduce_sum(per_dim, axis=-1)


def sinkhorn_posterior_distance(mean1, log_var1, mean2, log_var2, noise, epsilon: float, num_iters: int) -> tf.Tensor:
    """Sinkhorn distance between sample clouds of two diagonal Gaussians, per example.

    `mean*`, `log_var*`: `[N, D]`; `noise`: `[N, K, D]` standard normal draws shared by
    both clouds (common random numbers): z_nk = m1_n + s1_n u_nk, z'_nk = m2_n + s2_n u_nk.
    Returns `[N]`, `wasserstein.sinkhorn_distance(z_n, z'_n, epsilon, num_iters)` per n.
    """
    mean1 = tf.convert_to_tensor(mean1)
    dtype = mean1.dtype
    noise = tf.convert_to_tensor(noise, dtype=dtype)
    std1 = tf.exp(0.5 * tf.convert_to_tensor(log_var1, dtype=dtype))
    std2 = tf.exp(0.5 * tf.convert_to_tensor(log_var2, dtype=dtype))
    cloud1 = mean1[:, None, :] + std1[:, None, :] * noise
    cloud2 = tf.convert_to_tensor(mean2, dtype=dtype)[:, None, :] + std2[:, None, :] * noise
    return _batched_sinkhorn(cloud1, cloud2, float(epsilon), int(num_iters))


@tf.function(reduce_retracing=True)
def _batched_sinkhorn(cloud1, cloud2, epsilon: float, num_iters: int):
    """`wasserstein.sinkhorn_distance` of each pair of clouds `[N, K, D]` -> `[N]`.

    A tf.function so that eager callers (the TensorBoard preview, tests) do not retrace
    `tf.vectorized_map` at every call; epsilon and num_iters are Python numbers (part of
    the trace key).
    """
    return tf.vectorized_map(
        lambda pair: wasserstein.sinkhorn_distance(pair[0], pair[1], epsilon, num_iters), (cloud1, cloud2)
    )


# ----------------------------------------------------------------------------- model


def _check_number(name: str, value, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < minimum:
        raise ConfigError(f"se.{name} must be a finite number >= {minimum:g}, got {value!r}.")
    return float(value)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"se.{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class SmoothEncoder(VariationalAutoencoder):
    """VAE + smoothness regulariser on PGD-selected inputs (Cemgil et al. 2020).

    Args:
      posterior_network, decoder: as `VariationalAutoencoder`.
      beta: KL weight (SE: 1).
      weight: weight of the smoothness term W(q(z|x), q(z|x')).
      threat_model: "linf" or "l2", the norm of the selection ball.
      epsilon: L-inf radius in pixel units (threat_model "linf"; 0 disables the selection: x' = x).
      l2_radius: L2 radius > 0 over all pixels of an image (threat_model "l2").
      pgd_steps: PGD ascent steps K (0 = random start only).
      relative_step_size: step alpha = relative_step_size * radius / K (radius of the threat model).
      random_start: start PGD at a uniform random point of the ball (else at x).
      distance: "gaussian_w2", "entropic" or "sinkhorn" (module docstring).
      entropy_epsilon: entropic regularisation e ("entropic", "sinkhorn").
      sinkhorn_samples, sinkhorn_iters: cloud size and Sinkhorn sweeps ("sinkhorn").
      seed, reconstruction, log_var_bounds: as `VariationalAutoencoder`.
    """

    metric_names = ("loss", "reconstruction", "kl", "smoothness", "perturbation_norm")
    is_adversarial = True

    def __init__(
        self,
        posterior_network,
        decoder,
        *,
        beta: float = 1.0,
        weight: float = 1.0,
        threat_model: str = "linf",
        epsilon: float = 0.3,
        l2_radius: float = 1.0,
        pgd_steps: int = 5,
        relative_step_size: float = 2.5,
        random_start: bool = True,
        distance: str = "gaussian_w2",
        entropy_epsilon: float = 0.1,
        sinkhorn_samples: int = 16,
        sinkhorn_iters: int = 50,
        seed: int = 0,
        reconstruction: str = vae_losses.DEFAULT_RECONSTRUCTION,
        log_var_bounds=(-12.0, 8.0),
        **kwargs,
    ):
        beta = _check_number("beta", beta)
        super().__init__(
            posterior_network,
            decoder,
            beta=beta,
            seed=seed,
            reconstruction=reconstruction,
            log_var_bounds=log_var_bounds,
            **kwargs,
        )
        if threat_model not in THREAT_MODELS:
            raise ConfigError(f"se.threat_model must be one of {', '.join(THREAT_MODELS)}, got {threat_model!r}.")
        if distance not in DISTANCES:
            raise ConfigError(f"se.distance must be one of {', '.join(DISTANCES)}, got {distance!r}.")
        if not isinstance(random_start, bool):
            raise ConfigError(f"se.random_start must be True or False, got {random_start!r}.")
        self.weight = _check_number("weight", weight)
        self.threat_model = threat_model
        self.epsilon = _check_number("epsilon", epsilon)
        self.l2_radius = _check_number("l2_radius", l2_radius)
        if not self.l2_radius > 0:
            raise ConfigError(f"se.l2_radius must be a finite number > 0, got {l2_radius!r}.")
        #: The radius of the selection ball in the threat model's norm.
        self.radius = self.epsilon if threat_model == "linf" else self.l2_radius
        self.pgd_steps = _check_int("pgd_steps", pgd_steps, 0)
        self.relative_step_size = _check_number("relative_step_size", relative_step_size)
        self.step_size = self.relative_step_size * self.radius / max(self.pgd_steps, 1)
        self.random_start = random_start
        self.distance = distance
        self.entropy_epsilon = _check_number("entropy_epsilon", entropy_epsilon)
        if distance != "gaussian_w2" and not self.entropy_epsilon > 0:
            raise ConfigError(f"se.entropy_epsilon must be > 0 for se.distance={distance!r}, got {entropy_epsilon!r}.")
        self.sinkhorn_samples = _check_int("sinkhorn_samples", sinkhorn_samples, 1)
        self.sinkhorn_iters = _check_int("sinkhorn_iters", sinkhorn_iters, 1)
        self.loss_weights = {"beta": self.beta, "smoothness": self.weight}

    # -- distance -----------------------------------------------------------------------

    def posterior_distance(self, mean1, log_var1, mean2, log_var2, noise=None) -> tf.Tensor:
        """W(q1, q2) `[N]` of the configured `distance`; `noise` `[N, K, D]` for "sinkhorn"."""
        if self.distance == "gaussian_w2":
            return wasserstein.gaussian_w2_squared(mean1, log_var1, mean2, log_var2)
        if self.distance == "entropic":
            return entropic_gaussian_divergence(mean1, log_var1, mean2, log_var2, self.entropy_epsilon)
        return sinkhorn_posterior_distance(
            mean1, log_var1, mean2, log_var2, noise, self.entropy_epsilon, self.sinkhorn_iters
        )

    def _cloud_noise(self, x, seed):
        """Common random numbers `[N, K, D]` of the "sinkhorn" distance (None otherwise)."""
        if self.distance != "sinkhorn":
            return None
        shape = tf.stack([tf.shape(x)[0], self.sinkhorn_samples, self.latent_dim])
        return self.global_random(tf.random.stateless_normal, shape, seed)

    # -- selection (PGD) ------------------------------------------------------------------

    def selection_seed(self, step, stream: int):
        """The seed (shape [2]) from which `compute_terms` selects at this step and stream."""
        return self.step_seeds(step, stream + SELECTION_STREAM_OFFSET, 1)[0]

    def _start(self, x, seed):
        """delta_0: uniform in the ball (random start) clipped to the pixel box, or 0."""
        if not self.random_start or self.radius == 0:
            return tf.zeros_like(x)
        if self.threat_model == "linf":
            uniform = self.global_random(
                lambda shape, s: tf.random.stateless_uniform(shape, s, -1.0, 1.0), tf.shape(x), seed
            )
            return adversarial.random_start(x, self.epsilon, uniform)
        direction_seed, radius_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        direction = self.global_random(tf.random.stateless_normal, tf.shape(x), direction_seed)
        radius_u = self.global_random(tf.random.stateless_uniform, tf.shape(x)[:1], radius_seed)
        flat = tf.reshape(direction, [tf.shape(x)[0], -1])
        pixels = tf.cast(tf.shape(flat)[1], x.dtype)
        radius = self.radius * tf.pow(radius_u, 1.0 / pixels)
        flat = flat * (radius / tf.maximum(tf.norm(flat, axis=1), _TINY))[:, None]
        return tf.clip_by_value(tf.reshape(flat, tf.shape(x)), -x, 1.0 - x)

    def _ascent_step(self, x, delta, grad):
        """One projected ascent step (module docstring)."""
        if self.threat_model == "linf":
            delta = tf.clip_by_value(delta + self.step_size * tf.sign(grad), -self.epsilon, self.epsilon)
            return tf.clip_by_value(delta, -x, 1.0 - x)
        n = tf.shape(x)[0]
        flat_x = tf.reshape(x, [n, -1])
        flat_grad = tf.reshape(grad, [n, -1])
        unit = flat_grad / tf.maximum(tf.norm(flat_grad, axis=1, keepdims=True), _TINY)
        moved = tf.reshape(delta, [n, -1]) + self.step_size * unit
        projected = projection.project_l2_box(moved, -flat_x, 1.0 - flat_x, self.radius)
        return tf.reshape(projected, tf.shape(x))

    def select(self, x, seed) -> tf.Tensor:
        """x' = the PGD selection of the module docstring, `[N, H, W, C]` in [0, 1], no gradient.

        `seed` (shape [2]) drives the random start and the "sinkhorn" noise. The encoder
        runs in inference mode.
        """
        x = tf.stop_gradient(tf.convert_to_tensor(x, tf.float32))
        start_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        noise = self._cloud_noise(x, noise_seed)
        target_mean, target_log_var = self.posterior(x, training=False)
        target_mean, target_log_var = tf.stop_gradient(target_mean), tf.stop_gradient(target_log_var)

        def distance_at(delta):
            mean, log_var = self.posterior(x + delta, training=False)
            return self.posterior_distance(target_mean, target_log_var, mean, log_var, noise)

        def keep_best(delta, value, best_delta, best_value):
            better = value > best_value
            mask = tf.reshape(better, tf.concat([tf.shape(better), tf.ones([tf.rank(x) - 1], tf.int32)], 0))
            return tf.where(mask, delta, best_delta), tf.where(better, value, best_value)

        delta = self._start(x, start_seed)
        best_delta = delta
        best_value = tf.fill(tf.shape(x)[:1], tf.constant(-math.inf, x.dtype))
        if self.pgd_steps > 0 and self.radius > 0:

            def body(k, delta, best_delta, best_value):
                with tf.GradientTape() as tape:
                    tape.watch(delta)
                    value = distance_at(delta)
                    total = tf.reduce_sum(value)  # per-example gradients: rows are independent
                grad = tape.gradient(total, delta)
                best_delta, best_value = keep_best(delta, value, best_delta, best_value)
                return k + 1, self._ascent_step(x, delta, grad), best_delta, best_value

            _, delta, best_delta, best_value = tf.while_loop(
                lambda k, *_: k < self.pgd_steps,
                body,
                (tf.constant(0), delta, best_delta, best_value),
            )
            best_delta, best_value = keep_best(delta, distance_at(delta), best_delta, best_value)
        return tf.stop_gradient(tf.clip_by_value(x + best_delta, 0.0, 1.0))

    def adversarial_examples(self, x, z=None, seed=(0, 0), training=False):
        """The selected x' for images `x` (TensorBoard preview interface).

        `z` (the posterior mean of x) is accepted for the logger's interface and unused:
        the selection needs the full posterior q(z | x), which it recomputes. Selection
        always runs the encoder in inference mode, whatever `training` says.
        """
        del z, training
        return self.select(x, tf.convert_to_tensor(seed))

    # -- objective ------------------------------------------------------------------------

    def perturbation_norms(self, x, x_selected) -> tf.Tensor:
        """||x' - x|| in the threat model's norm over all pixels of each image, `[N]`."""
        flat = tf.reshape(x_selected - x, [tf.shape(x)[0], -1])
        if self.threat_model == "linf":
            return tf.reduce_max(tf.abs(flat), axis=1)
        return tf.norm(flat, axis=1)

    def terms_given_selection(self, x, x_selected, *, training: bool, sample_seed, noise=None):
        """(objective, values) for given selected inputs (which are treated as data)."""
        n = tf.shape(x)[0]
        mean_all, log_var_all = self.posterior(tf.concat([x, x_selected], axis=0), training=training)
        mean, log_var = mean_all[:n], log_var_all[:n]
        z = self.sample_posterior(mean, log_var, sample_seed)
        reconstruction = tf.reduce_mean(self.reconstruction_nll(x, self.decoder(z, training=training)))
        kl = tf.reduce_mean(vae_losses.gaussian_kl(mean, log_var))
        smoothness = tf.reduce_mean(self.posterior_distance(mean, log_var, mean_all[n:], log_var_all[n:], noise))
        loss = reconstruction + self.beta * kl + self.weight * smoothness
        values = {
            "loss": loss,
            "reconstruction": reconstruction,
            "kl": kl,
            "smoothness": smoothness,
            "perturbation_norm": tf.reduce_mean(self.perturbation_norms(x, x_selected)),
        }
        return loss, values

    def compute_terms(self, x, *, training: bool, step, stream: int):
        """Selects x' (PGD, no gradient), then the VAE objective plus weight * W."""
        (sample_seed,) = self.step_seeds(step, stream, 1)
        selection_seed = self.selection_seed(step, stream)
        x_selected = self.select(x, selection_seed)
        noise = None
        if self.distance == "sinkhorn":  # the same common random numbers as the selection
            noise_seed = tf.random.experimental.stateless_split(selection_seed, 2)[1]
            noise = self._cloud_noise(x, noise_seed)
        return self.terms_given_selection(x, x_selected, training=training, sample_seed=sample_seed, noise=noise)


def build(config, image_shape) -> SmoothEncoder:
    """The `se` baseline of a run config (hyper-parameters in `config.se`)."""
    check_variant(config, "smooth_encoder.build", "se")
    return build_on_gaussian_networks(SmoothEncoder, config, image_shape, **config.se)
