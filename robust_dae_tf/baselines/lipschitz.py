"""Lipschitz-constrained layers and the certified margin of Lipschitz VAEs.

Barrett, Camuto, Willetts & Rainforth, "Certifiably Robust Variational Autoencoders"
(arXiv:2102.07559, AISTATS 2022) build the encoder mean, the encoder standard deviation
and the decoder from the 1-Lipschitz layers of Anil, Lucas & Grosse, "Sorting out
Lipschitz function approximation" (ICML 2019):

* `bjorck_orthonormalize`: the Bjorck & Bowie (1971) iteration that Anil et al. use
  for their norm-constrained linear layers; it maps a matrix to its closest
  orthonormal matrix (the polar factor U V^T of its SVD), is differentiable and runs
  in every forward pass.
* `BjorckDense`: a dense layer whose kernel is orthonormalised in the forward pass,
  so its spectral norm is 1; an optional fixed `lipschitz_scale` c multiplies the
  output, making the layer c-Lipschitz (a network-level constant such as Barrett et
  al.'s per-network Lipschitz constant is obtained by spreading it over the layers).
* `GroupSort`: Anil et al.'s activation, sorts contiguous groups of units; group size 2
  is MaxMin. It is 1-Lipschitz and gradient-norm preserving (its Jacobian is a
  permutation matrix almost everywhere).

Norms are Euclidean (l2) throughout: Lipschitz constants are w.r.t. ||.||_2 on
inputs and outputs. Kernels use the Keras layout `[in_features, units]`; outputs are
`x @ W` (row vectors).

Certificates (`certified_reconstruction_radius`, `mean_path_*`) are pure functions of
the Lipschitz constants; `lipschitz_constant_bound` multiplies per-layer constants of
a stack (the composition bound Lip(f o g) <= Lip(f) Lip(g)).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import keras
import tensorflow as tf

from robust_dae_tf.errors import ConfigError

# Coefficients of the Taylor series of (1 - q)^(-1/2): binom(2i, i) / 4^i.
_BJORCK_COEFFS = (1.0, 0.5, 0.375, 0.3125, 0.2734375)
MAX_BJORCK_ORDER = len(_BJORCK_COEFFS) - 1


def _check_bjorck_args(iters, beta, order):
    if isinstance(iters, bool) or not isinstance(iters, Integral) or iters < 0:
        raise ConfigError(f"Bjorck iters must be a non-negative integer, got {iters!r}.")
    if isinstance(order, bool) or not isinstance(order, Integral) or not 1 <= order <= MAX_BJORCK_ORDER:
        raise ConfigError(
            f"Bjorck order must be an integer in 1..{MAX_BJORCK_ORDER}, got {order!r}."
        )
    if not isinstance(beta, Real) or not 0.0 < beta <= 0.5:
        raise ConfigError(f"Bjorck beta must be in (0, 0.5], got {beta!r}.")
    if order > 1 and beta != 0.5:
        raise ConfigError(
            f"beta only applies to order 1; orders > 1 use the Taylor coefficients "
            f"(beta = 0.5), got beta={beta} with order={order}."
        )


def bjorck_prescale(w) -> tf.Tensor:
    """w / sqrt(||w||_1 ||w||_inf): a differentiable rescaling with spectral norm <= 1.

    ||w||_2^2 <= ||w||_1 ||w||_inf (max absolute column sum times max absolute row
    sum; Holder's inequality), so after the division every singular value is <= 1,
    inside the convergence region (0, sqrt(3)) of the order-1 iteration. Anil et al.
    only require the spectral norm to be small enough; this bound is our (provably
    safe) choice. An all-zero matrix is returned unchanged.
    """
    w = tf.convert_to_tensor(w)
    norm_1 = tf.reduce_max(tf.reduce_sum(tf.abs(w), axis=0))
    norm_inf = tf.reduce_max(tf.reduce_sum(tf.abs(w), axis=1))
    scale = tf.sqrt(norm_1 * norm_inf)
    return w / tf.maximum(scale, tf.constant(1e-30, w.dtype))


def bjorck_orthonormalize(w, iters: int = 20, beta: float = 0.5, order: int = 1, prescale: bool = True) -> tf.Tensor:
    """Bjorck orthonormalisation of a matrix (Bjorck & Bowie 1971, as used by Anil et al. 2019).

    Order 1 (the default): w <- (1 + beta) w - beta w w^T w, i.e.
    w <- w (I + beta Q) with Q = I - w^T w. Order p in 2..4 truncates the series of
    (w^T w)^(-1/2) = sum_i binom(2i, i) / 4^i Q^i after p terms (Bjorck & Bowie 1971),
    which requires beta = 0.5. Every step keeps the singular vectors and maps each
    singular value s to s * poly(1 - s^2); starting from s in (0, 1] the result never
    exceeds 1 and converges to 1, so the output tends to the polar factor U V^T.

    Args:
      w: a rank-2 matrix `[m, n]` (rectangular allowed): converges to orthonormal
        columns (w^T w = I) if m >= n, orthonormal rows (w w^T = I) if m < n.
      iters: number of iterations (a tf.while_loop; gradients flow through all of them).
      beta: order-1 step size in (0, 0.5]; 0.5 is the quadratically convergent
        Newton-Schulz step.
      order: 1..4.
      prescale: divide by sqrt(||w||_1 ||w||_inf) first (see `bjorck_prescale`), so the
        spectral norm starts <= 1. Without it the iteration diverges for s >= sqrt(3).

    Consequence used by the Lipschitz certificates: with prescale, the spectral norm
    of the result is <= 1 after ANY number of iterations (up to float round-off); more
    iterations only push the smaller singular values up towards 1, which matters for
    gradient-norm preservation, not for the Lipschitz bound.
    """
    _check_bjorck_args(iters, beta, order)
    w = tf.convert_to_tensor(w)
    if w.shape.rank != 2 or None in w.shape.as_list():
        raise ConfigError(
            f"bjorck_orthonormalize needs a rank-2 matrix of known shape, got {w.shape}."
        )
    if prescale:
        w = bjorck_prescale(w)
    coeffs = (1.0, float(beta)) + _BJORCK_COEFFS[2 : order + 1]
    rows, cols = w.shape
    # p(w^T w) on the right equals p(w w^T) on the left; use the smaller Gram matrix.
    left = rows is not None and cols is not None and rows < cols
    eye = tf.eye(rows if left else cols, dtype=w.dtype)

    def step(w):
        gram = tf.matmul(w, w, transpose_b=True) if left else tf.matmul(w, w, transpose_a=True)
        q = eye - gram
        # Horner: c0 I + Q (c1 I + Q (c2 I + ...)).
        poly = coeffs[-1] * eye
        for c in reversed(coeffs[:-1]):
            poly = c * eye + tf.matmul(q, poly)
        return tf.matmul(poly, w) if left else tf.matmul(w, poly)

    if iters == 0:
        return w
    # A graph loop (not Python unrolling) keeps traced graphs small: the unrolled
    # forward + backward graph of several 20-step layers takes seconds to build.
    # `maximum_iterations` makes the loop's gradient XLA-compilable (jit_compile=True).
    _, w = tf.while_loop(
        lambda i, w: i < iters, lambda i, w: (i + 1, step(w)), (tf.constant(0), w), maximum_iterations=iters
    )
    return w


@keras.saving.register_keras_serializable(package="robust_dae_tf")
class BjorckDense(keras.layers.Layer):
    """Dense layer y = c * x @ bjorck(W) + b with an orthonormalised kernel.

    The trainable kernel W `[in, units]` is unconstrained; every forward pass maps it
    to the (approximately) orthonormal bjorck_orthonormalize(W) (Anil et al. 2019,
    "BjorckLinear"; the Lipschitz VAE of Barrett et al. 2021 builds its encoder and
    decoder networks from such layers). Rectangular kernels are allowed: in >= units gives orthonormal columns,
    in < units orthonormal rows; the spectral norm is 1 in both cases, so the layer is
    |c|-Lipschitz in l2 (the bias does not change the Lipschitz constant).

    Args:
      units: output width.
      iters: Bjorck iterations in training (`training=True`), 20 as in Anil et al.
      inference_iters: iterations when `training` is False / None (defaults to
        `iters`); use more at evaluation to orthonormalise more accurately (Anil et al.
        run the iteration to convergence before certifying).
      beta, order: see `bjorck_orthonormalize`.
      lipschitz_scale: c, a fixed (non-trainable) output multiplier; the layer's
        Lipschitz constant is |c|.
      use_bias, kernel_initializer, bias_initializer: as in keras.layers.Dense. The
        default orthogonal initialiser starts at a fixed point of the iteration.
    """

    def __init__(
        self,
        units: int,
        iters: int = 20,
        inference_iters: int | None = None,
        beta: float = 0.5,
        order: int = 1,
        lipschitz_scale: float = 1.0,
        use_bias: bool = True,
        kernel_initializer="orthogonal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, Integral) or units < 1:
            raise ConfigError(f"BjorckDense units must be a positive integer, got {units!r}.")
        _check_bjorck_args(iters, beta, order)
        if inference_iters is not None:
            _check_bjorck_args(inference_iters, beta, order)
        if not isinstance(lipschitz_scale, Real) or not math.isfinite(lipschitz_scale) or lipschitz_scale <= 0:
            raise ConfigError(
                f"BjorckDense lipschitz_scale must be a finite number > 0, got {lipschitz_scale!r}."
            )
        self.units = int(units)
        self.iters = int(iters)
        self.inference_iters = None if inference_iters is None else int(inference_iters)
        self.beta = float(beta)
        self.order = int(order)
        self.lipschitz_scale = float(lipschitz_scale)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        in_features = input_shape[-1]
        if in_features is None:
            raise ConfigError("BjorckDense needs a known last input dimension.")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(int(in_features), self.units),
            initializer=self.kernel_initializer,
            trainable=True,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer, trainable=True
            )
        else:
            self.bias = None

    def orthonormal_kernel(self, training: bool = False) -> tf.Tensor:
        """The orthonormalised kernel `[in, units]` used by the forward pass."""
        iters = self.iters if training else (
            self.iters if self.inference_iters is None else self.inference_iters
        )
        kernel = tf.cast(tf.convert_to_tensor(self.kernel), self.compute_dtype)
        return bjorck_orthonormalize(kernel, iters=iters, beta=self.beta, order=self.order)

    def call(self, inputs, training=None):
        kernel = self.orthonormal_kernel(training=bool(training))
        outputs = self.lipschitz_scale * tf.matmul(
            tf.reshape(inputs, [-1, tf.shape(inputs)[-1]]), kernel
        )
        outputs = tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [self.units]], axis=0))
        if self.bias is not None:
            outputs = outputs + tf.cast(tf.convert_to_tensor(self.bias), self.compute_dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def lipschitz_constant(self) -> float:
        """Upper bound on the l2 Lipschitz constant: |lipschitz_scale|."""
        return abs(self.lipschitz_scale)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "iters": self.iters,
                "inference_iters": self.inference_iters,
                "beta": self.beta,
                "order": self.order,
                "lipschitz_scale": self.lipschitz_scale,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="robust_dae_tf")
class GroupSort(keras.layers.Layer):
    """GroupSort activation (Anil et al. 2019) over the last axis.

    The C channels are split into C / group_size contiguous groups
    [0..g-1], [g..2g-1], ...; each group is sorted in ascending order and written back
    in place. group_size=2 is MaxMin (each pair becomes (min, max)); group_size=C is
    FullSort. The output is a permutation of the input, so the map is 1-Lipschitz in
    l2 and its Jacobian is a permutation matrix almost everywhere, which preserves
    gradient norms.
    """

    def __init__(self, group_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(group_size, bool) or not isinstance(group_size, Integral) or group_size < 1:
            raise ConfigError(f"GroupSort group_size must be a positive integer, got {group_size!r}.")
        self.group_size = int(group_size)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.group_size:
            raise ConfigError(
                f"GroupSort needs a last dimension divisible by group_size={self.group_size}, "
                f"got {channels}."
            )

    def call(self, inputs):
        channels = inputs.shape[-1]
        if channels is None or channels % self.group_size:
            raise ConfigError(
                f"GroupSort needs a last dimension divisible by group_size={self.group_size}, "
                f"got {channels}."
            )
        shape = tf.shape(inputs)
        grouped = tf.reshape(
            inputs, tf.concat([shape[:-1], [channels // self.group_size, self.group_size]], axis=0)
        )
        return tf.reshape(tf.sort(grouped, axis=-1), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def lipschitz_constant(self) -> float:
        """GroupSort is 1-Lipschitz (a data-dependent permutation)."""
        return 1.0

    def get_config(self):
        config = super().get_config()
        config.update({"group_size": self.group_size})
        return config


# Layers that only rearrange entries (l2 isometries) and therefore have constant 1.
_ISOMETRY_LAYERS = (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Identity, keras.layers.InputLayer)


def lipschitz_constant_bound(layers) -> float:
    """Upper bound on the l2 Lipschitz constant of a sequential stack of layers.

    Lip(f_L o ... o f_1) <= prod_l Lip(f_l). For a stack of BjorckDense layers with
    scales c_l and GroupSort activations this is prod_l |c_l| (GroupSort contributes
    1; Flatten / Reshape / Identity are isometries). `layers` is an iterable of layers
    or a keras.Sequential / functional model whose `.layers` run in order; any other
    layer type raises ConfigError because its constant is not known.
    """
    if isinstance(layers, keras.Model):
        layers = layers.layers
    bound = 1.0
    for layer in layers:
        if isinstance(layer, _ISOMETRY_LAYERS):
            continue
        if isinstance(layer, keras.Model):
            bound *= lipschitz_constant_bound(layer)
            continue
        constant = getattr(layer, "lipschitz_constant", None)
        if not callable(constant):
            raise ConfigError(
                f"Cannot bound the Lipschitz constant of layer {layer.name!r} "
                f"({type(layer).__name__}); use BjorckDense / GroupSort layers."
            )
        bound *= float(constant())
    return bound


def _check_positive(name, value):
    if not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}.")


def _check_non_negative(name, value):
    if not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}.")


def mean_path_reconstruction_bound(perturbation_norm, encoder_lipschitz: float, decoder_lipschitz: float) -> tf.Tensor:
    """||g(mu(x + d)) - g(mu(x))||_2 <= L_dec * L_enc * ||d||_2 (deterministic mean path).

    The simplest valid bound: composition of Lipschitz maps, for the reconstruction
    decoded from the encoder MEAN (no sampling). Element-wise in `perturbation_norm`.
    """
    _check_non_negative("encoder_lipschitz", encoder_lipschitz)
    _check_non_negative("decoder_lipschitz", decoder_lipschitz)
    d = tf.convert_to_tensor(perturbation_norm)
    if not d.dtype.is_floating:
        d = tf.cast(d, tf.float32)
    return tf.constant(float(encoder_lipschitz) * float(decoder_lipschitz), d.dtype) * d


def mean_path_certified_radius(r: float, encoder_lipschitz: float, decoder_lipschitz: float) -> float:
    """Largest ||d||_2 for which the mean-path reconstruction moves by at most r:
    r / (L_enc L_dec) (inverse of `mean_path_reconstruction_bound`; inf if L = 0)."""
    _check_positive("r", r)
    _check_non_negative("encoder_lipschitz", encoder_lipschitz)
    _check_non_negative("decoder_lipschitz", decoder_lipschitz)
    product = encoder_lipschitz * decoder_lipschitz
    return math.inf if product == 0 else r / product


def certified_reconstruction_radius(
    r: float,
    decoder_lipschitz: float,
    encoder_mean_lipschitz: float,
    encoder_std_lipschitz: float,
    encoder_std_norm,
    p: float = 0.5,
) -> tf.Tensor:
    """Certified input radius of a Lipschitz VAE (Barrett et al. 2021, first margin bound).

    Setting (Barrett et al.): the encoder q(z|x) = N(mu(x), diag sigma(x)^2)
    has an M_mu-Lipschitz mean and an M_sigma-Lipschitz standard deviation, the decoder
    mean g is M_g-Lipschitz, z ~ q(z|x) and z' ~ q(z|x + d) are sampled independently
    and Delta = g(z') - g(z). The VAE is "r-robust with probability p" at x + d when
    P(||Delta||_2 <= r) >= p. The bound certifies every d with ||d||_2 <= R where R is
    the largest root of

        (M_mu^2 + M_sigma^2) R^2 + 4 M_sigma s R + 4 s^2 - (1 - p) r^2 / M_g^2 = 0,
        s = ||sigma(x)||_2,

    i.e. R = (-2 M_sigma s + sqrt((M_mu^2 + M_sigma^2)(1 - p) r^2 / M_g^2
                                  - 4 M_mu^2 s^2)) / (M_mu^2 + M_sigma^2),
    and R = 0 (nothing certified) when 4 s^2 >= (1 - p) r^2 / M_g^2.

    Derivation (so that the formula can be checked independently): with
    z = mu + sigma * e, z' = mu' + sigma' * e', E||z' - z||^2 = ||mu' - mu||^2 +
    E||sigma' e' - sigma e||^2 <= (M_mu ||d||)^2 + (||sigma|| + ||sigma'||)^2 <=
    M_mu^2 ||d||^2 + (2 s + M_sigma ||d||)^2 (Minkowski in L2, then
    ||sigma'|| <= s + M_sigma ||d||); Markov's inequality on ||Delta||^2 <=
    M_g^2 ||z' - z||^2 gives P(||Delta|| > r) <= M_g^2 E||z' - z||^2 / r^2, which is
    <= 1 - p exactly under the quadratic inequality above. This is the inequality the
    authors' code solves (`solve_bound_inequality`, with p = 1/2); the p = 1/2 default
    matches their definition of r-robustness.

    Args:
      r: allowed reconstruction change (l2, output units), > 0.
      decoder_lipschitz: M_g > 0.
      encoder_mean_lipschitz, encoder_std_lipschitz: M_mu, M_sigma >= 0, not both 0.
      encoder_std_norm: s = ||sigma(x)||_2, scalar or tensor (e.g. `[N]`, one per input).
      p: required probability in (0, 1).
    Returns: R with the shape and dtype of `encoder_std_norm` (float), >= 0.
    """
    _check_positive("r", r)
    _check_positive("decoder_lipschitz", decoder_lipschitz)
    _check_non_negative("encoder_mean_lipschitz", encoder_mean_lipschitz)
    _check_non_negative("encoder_std_lipschitz", encoder_std_lipschitz)
    if encoder_mean_lipschitz == 0 and encoder_std_lipschitz == 0:
        raise ConfigError(
            "encoder_mean_lipschitz and encoder_std_lipschitz cannot both be 0 (a constant "
            "encoder is certified for every radius)."
        )
    if not isinstance(p, Real) or not 0.0 < p < 1.0:
        raise ConfigError(f"p must be a probability in (0, 1), got {p!r}.")
    s = tf.convert_to_tensor(encoder_std_norm)
    if not s.dtype.is_floating:
        s = tf.cast(s, tf.float32)
    b2 = tf.constant(float(encoder_mean_lipschitz) ** 2, s.dtype)
    c = tf.constant(float(encoder_std_lipschitz), s.dtype)
    a_quad = b2 + c * c
    budget = tf.constant((1.0 - p) * float(r) ** 2 / float(decoder_lipschitz) ** 2, s.dtype)
    discriminant = tf.maximum(a_quad * budget - 4.0 * b2 * s * s, 0.0)
    radius = (-2.0 * c * s + tf.sqrt(discriminant)) / a_quad
    return tf.where(4.0 * s * s < budget, tf.maximum(radius, 0.0), tf.zeros_like(radius))
