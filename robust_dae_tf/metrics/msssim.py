"""Multi-scale SSIM (MS-SSIM) in two clearly separated conventions.

Both functions take two float image batches of shape ``[N, H, W, C]`` (NHWC, any
channel count) and compare them pair by pair (``img1[i]`` with ``img2[i]``), returning
a float32 tensor of shape ``[N]``. They are plain TensorFlow ops: batched,
differentiable (gradients stay finite, also where a scale is clipped to zero) and
usable inside ``tf.function`` as long as H, W and C are static. Average the ``[N]``
output yourself to get a data-set score.

Pixel range: float images in ``[0, 1]``. ``ms_ssim_standard`` takes the dynamic range
as ``max_val`` (default 1.0); ``ms_ssim_paper`` infers it from ``img1`` exactly like the
paper's code, which gives L = 1 for images in [0, 1] (L = 255 for [0, 255] images,
L = 2 for [-1, 1] images whose minimum is below -0.5).

Which function to use:

* ``ms_ssim_paper`` reproduces the MS-SSIM numbers in the paper's tables. The paper
  evaluated with a widely copied PyTorch ``msssim(img1, img2, window_size=6,
  normalize='relu')`` (pytorch-msssim by jorge-pessoa), called on one image pair at a
  time and averaged over pairs; ``ms_ssim_paper`` is that computation vectorised over
  the batch. It includes the code's known bug: the scales are combined as
  ``prod((mcs ** w)[:-1] * (mssim ** w)[-1])``, i.e.
  ``prod_{i=1..4} (cs_i^{w_i} * ssim_5^{w_5})``, so the coarsest-scale SSIM enters
  with exponent ``4 * w_5`` instead of ``w_5``. It also uses a 6x6 window (shrunk to
  the image size at coarse scales) whose Gaussian is centred at ``size // 2``, i.e.
  off-centre by half a pixel for even sizes.
* ``ms_ssim_standard`` is the textbook MS-SSIM (Wang, Simoncelli & Bovik 2003):
  ``prod_{j=1..4} cs_j^{w_j} * ssim_5^{w_5}`` with an 11x11 centred Gaussian window.
  Use it to compare with other work; do not compare its values with the paper's.

Shared details: 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); 2x2
average pooling between scales with odd sizes floored (last row / column dropped);
Gaussian sigma 1.5; VALID (unpadded) depthwise convolution; C1 = (0.01 L)^2,
C2 = (0.03 L)^2; per-scale ``ssim`` and ``cs`` are means over H, W and C of the pair;
negative per-scale values are clipped to 0 (ReLU) before the weighted powers, and
``0 ** w`` is 0. The smallest valid image is 16x16 (the 5th scale then is 1x1).

NaN in an image pair makes that pair's output NaN (it is not masked); other pairs in
the batch are unaffected.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from robust_dae_tf.errors import ConfigError, DataError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
NUM_SCALES = len(MS_SSIM_WEIGHTS)
GAUSSIAN_SIGMA = 1.5
PAPER_WINDOW_SIZE = 6
STANDARD_WINDOW_SIZE = 11
# Each of the 4 poolings halves (floors) the size; the 5th scale needs >= 1 pixel.
MIN_IMAGE_SIZE = 2 ** (NUM_SCALES - 1)


def _scale_sizes(height: int, width: int) -> list[tuple[int, int]]:
    sizes = []
    for _ in range(NUM_SCALES):
        sizes.append((height, width))
        height, width = height // 2, width // 2
    return sizes


def paper_window_sizes(height: int, width: int) -> list[int]:
    """Window side per scale in the paper convention: ``min(6, h_s, w_s)``.

    ``paper_window_sizes(32, 32) == [6, 6, 6, 4, 2]``.
    """
    return [min(PAPER_WINDOW_SIZE, h, w) for h, w in _scale_sizes(height, width)]


def standard_window_sizes(height: int, width: int) -> list[int]:
    """Window side per scale in the standard convention: ``min(11, h_s, w_s)``.

    ``standard_window_sizes(32, 32) == [11, 11, 8, 4, 2]``.
    """
    return [min(STANDARD_WINDOW_SIZE, h, w) for h, w in _scale_sizes(height, width)]


def _gaussian_1d(size: int, centred: bool) -> np.ndarray:
    """Normalised 1-D Gaussian (sigma 1.5) of ``size`` taps, float64.

    ``centred=False`` is the paper code's kernel, centred at ``size // 2``;
    ``centred=True`` is MATLAB ``fspecial`` / ``tf.image``, centred at ``(size-1)/2``.
    The two agree for odd sizes.
    """
    centre = (size - 1) / 2.0 if centred else float(size // 2)
    x = np.arange(size, dtype=np.float64)
    g = np.exp(-((x - centre) ** 2) / (2.0 * GAUSSIAN_SIGMA**2))
    return g / g.sum()


def _depthwise_kernel(size: int, channels: int, centred: bool) -> tf.Tensor:
    g = _gaussian_1d(size, centred)
    window = np.outer(g, g).astype(np.float32)
    kernel = np.tile(window[:, :, None, None], (1, 1, channels, 1))
    return tf.constant(kernel)


def _validate(img1, img2, convention: str) -> tuple[tf.Tensor, tf.Tensor, int, int, int]:
    """Converts both batches to float32 and checks shapes; returns (img1, img2, H, W, C)."""
    tensors = []
    for name, img in (("img1", img1), ("img2", img2)):
        try:
            t = tf.convert_to_tensor(img)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"MS-SSIM ({convention}): {name} must be a numeric image batch "
                f"[N, H, W, C]; could not convert it to a tensor ({exc})."
            ) from exc
        if not (t.dtype.is_floating or t.dtype.is_integer):
            raise DataError(
                f"MS-SSIM ({convention}): {name} must hold real numbers (float images "
                f"in [0, 1]); got dtype {t.dtype.name}."
            )
        if t.shape.rank != 4:
            raise DataError(
                f"MS-SSIM ({convention}): {name} must be a batch of shape "
                f"[N, H, W, C] (NHWC); got shape {t.shape}. Add a batch axis for a "
                f"single image and a channel axis for grey images."
            )
        tensors.append(tf.cast(t, tf.float32))
    a, b = tensors
    if not a.shape.is_compatible_with(b.shape):
        raise DataError(
            f"MS-SSIM ({convention}): img1 and img2 must have the same shape "
            f"[N, H, W, C]; got {a.shape} and {b.shape}."
        )
    shape = a.shape.merge_with(b.shape)
    height, width, channels = shape[1], shape[2], shape[3]
    if height is None or width is None or channels is None:
        raise DataError(
            f"MS-SSIM ({convention}): height, width and channels must be static; got "
            f"shape {shape}. Give the tf.function an input_signature with fixed H, W, C."
        )
    if channels < 1:
        raise DataError(f"MS-SSIM ({convention}): images have no channels (shape {shape}).")
    if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
        raise DataError(
            f"MS-SSIM ({convention}) needs images of at least "
            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels ({NUM_SCALES} scales of 2x2 "
            f"average pooling); got {height}x{width}. Resize or pad the images."
        )
    return a, b, height, width, channels


def _ssim_and_cs(img1, img2, kernel, c1, c2) -> tuple[tf.Tensor, tf.Tensor]:
    """SSIM and contrast-structure term of one scale, each ``[N]``.

    ``c1`` and ``c2`` are ``[N]`` (one value per pair). Means are over H, W, C of
    the VALID convolution output.
    """
    channels = img1.shape[-1]
    stacked = tf.concat([img1, img2, img1 * img1, img2 * img2, img1 * img2], axis=-1)
    filtered = tf.nn.depthwise_conv2d(
        stacked, tf.tile(kernel, [1, 1, 5, 1]), strides=[1, 1, 1, 1], padding="VALID"
    )
    mu1, mu2, e11, e22, e12 = tf.split(filtered, [channels] * 5, axis=-1)
    c1 = tf.reshape(c1, [-1, 1, 1, 1])
    c2 = tf.reshape(c2, [-1, 1, 1, 1])
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = e11 - mu1_sq
    sigma2_sq = e22 - mu2_sq
    sigma12 = e12 - mu1_mu2
    v1 = 2.0 * sigma12 + c2
    v2 = sigma1_sq + sigma2_sq + c2
    cs_map = v1 / v2
    ssim_map = ((2.0 * mu1_mu2 + c1) * v1) / ((mu1_sq + mu2_sq + c1) * v2)
    axes = [1, 2, 3]
    return tf.reduce_mean(ssim_map, axis=axes), tf.reduce_mean(cs_map, axis=axes)


def _paper_dynamic_range(img1: tf.Tensor) -> tf.Tensor:
    """The paper code's L, per pair: (255 if max > 128 else 1) - (-1 if min < -0.5 else 0)."""
    max_val = tf.where(tf.reduce_max(img1, axis=[1, 2, 3]) > 128.0, 255.0, 1.0)
    min_val = tf.where(tf.reduce_min(img1, axis=[1, 2, 3]) < -0.5, -1.0, 0.0)
    return max_val - min_val


def _scale_values(img1, img2, window_sizes, centred, dynamic_range_fn):
    """Raw (un-clipped) per-scale ssim and cs, each ``[N, 5]``."""
    channels = img1.shape[-1]
    ssims, css = [], []
    for scale, size in enumerate(window_sizes):
        if scale > 0:
            img1 = tf.nn.avg_pool2d(img1, ksize=2, strides=2, padding="VALID")
            img2 = tf.nn.avg_pool2d(img2, ksize=2, strides=2, padding="VALID")
        dyn_range = dynamic_range_fn(img1)
        c1 = (0.01 * dyn_range) ** 2
        c2 = (0.03 * dyn_range) ** 2
        kernel = _depthwise_kernel(size, channels, centred)
        ssim, cs = _ssim_and_cs(img1, img2, kernel, c1, c2)
        ssims.append(ssim)
        css.append(cs)
    return tf.stack(ssims, axis=1), tf.stack(css, axis=1)


def _safe_pow(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """``x ** w`` for x >= 0 with ``0 ** w = 0`` and finite gradients everywhere."""
    positive = x > 0.0
    safe_x = tf.where(positive, tf.maximum(x, np.finfo(np.float32).tiny), 1.0)
    return tf.where(positive, tf.exp(w * tf.math.log(safe_x)), 0.0)


def _propagate_nan(result: tf.Tensor, ssim: tf.Tensor, cs: tf.Tensor) -> tf.Tensor:
    nan = tf.reduce_any(tf.math.is_nan(ssim) | tf.math.is_nan(cs), axis=1)
    return tf.where(nan, tf.constant(float("nan"), tf.float32), result)


def paper_scale_values(img1, img2) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-scale ``(ssim, cs)`` of the paper convention, each ``[N, 5]``, before ReLU.

    Scale 0 is the full resolution. ``ms_ssim_paper`` combines these values.
    """
    img1, img2, height, width, _ = _validate(img1, img2, "paper convention")
    return _scale_values(
        img1, img2, paper_window_sizes(height, width), False, _paper_dynamic_range
    )


def ms_ssim_paper(img1, img2) -> tf.Tensor:
    """MS-SSIM as computed for the paper's tables, per image pair; returns ``[N]``.

    Equals pytorch-msssim's ``msssim(img1[i:i+1], img2[i:i+1], window_size=6,
    normalize='relu')`` for every i (NCHW there, NHWC here):

    * 5 scales, 2x2 average pooling (floor) between scales;
    * Gaussian window (sigma 1.5) of side ``min(6, h, w)`` at each scale
      (6, 6, 6, 4, 2 for 32x32 inputs, see ``paper_window_sizes``), 1-D taps
      ``exp(-(x - size//2)^2 / 4.5)`` normalised to sum 1, VALID depthwise conv;
    * dynamic range L from ``img1`` of the pair, re-evaluated at every scale on the
      pooled ``img1`` as the original does: ``(255 if max > 128 else 1) -
      (-1 if min < -0.5 else 0)`` (L = 1 for images in [0, 1]);
    * ReLU on each scale's ssim and cs, then the original's (buggy) combination
      ``prod_{i=1..4} (cs_i^{w_i} * ssim_5^{w_5})`` -- ssim_5 gets exponent 4*w_5.

    Images must be at least 16x16 (``DataError`` otherwise); 28x28 MNIST is valid
    (window sizes 6, 6, 6, 3, 1), but it gives different numbers from MNIST resized
    to 32x32, so use the resolution the model was evaluated at.
    """
    ssim, cs = paper_scale_values(img1, img2)
    weights = tf.constant(MS_SSIM_WEIGHTS, tf.float32)
    pow1 = _safe_pow(tf.nn.relu(cs), weights)
    pow2 = _safe_pow(tf.nn.relu(ssim), weights)
    result = tf.reduce_prod(pow1[:, :-1] * pow2[:, -1:], axis=1)
    return _propagate_nan(result, ssim, cs)


def standard_scale_values(img1, img2, max_val: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-scale ``(ssim, cs)`` of the standard convention, each ``[N, 5]``, before ReLU."""
    try:
        valid = math.isfinite(float(max_val)) and float(max_val) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(
            f"MS-SSIM (standard): max_val is the dynamic range of the images and must be "
            f"a positive number (1.0 for images in [0, 1], 255 for [0, 255]); got {max_val!r}."
        )
    img1, img2, height, width, _ = _validate(img1, img2, "standard")

    def fixed_range(img):
        return tf.fill(tf.shape(img)[:1], tf.constant(float(max_val), tf.float32))

    return _scale_values(img1, img2, standard_window_sizes(height, width), True, fixed_range)


def ms_ssim_standard(img1, img2, max_val: float = 1.0) -> tf.Tensor:
    """Standard MS-SSIM (Wang, Simoncelli & Bovik 2003), per image pair; returns ``[N]``.

    ``MS-SSIM = prod_{j=1..4} cs_j^{w_j} * ssim_5^{w_5}`` with the 5 standard weights,
    C1 = (0.01 max_val)^2, C2 = (0.03 max_val)^2, an 11x11 centred Gaussian window
    (sigma 1.5), VALID conv and 2x2 average pooling. ``ssim_j`` and ``cs_j`` are means
    over H, W and C of each image pair; negative values are clipped to 0.

    Differences from ``tf.image.ssim_multiscale`` (which it matches exactly for
    single-channel images whose side is 16 * k >= 176):

    * The window is shrunk to ``min(11, h_s, w_s)`` at each scale (11, 11, 8, 4, 2
      for 32x32, see ``standard_window_sizes``). TF keeps 11 at every scale and so
      needs images of at least ~161 pixels per side (16 x filter size); at 32x32 the
      only way to use it is a tiny filter at all scales, which is not MS-SSIM as
      defined. That is why this is implemented here instead of calling TF.
    * Odd sizes are floored when pooling (last row / column dropped); TF pads them
      symmetrically to an even size.
    * Channels are averaged inside each scale's ssim / cs (as in the paper
      convention), so the result is one product per pair; TF computes a full
      MS-SSIM per channel and averages the channel products.
    * Like TF (and unlike the 2003 formula, which is undefined there), negative
      per-scale values are clipped to 0 before the powers.
    """
    ssim, cs = standard_scale_values(img1, img2, max_val)
    weights = tf.constant(MS_SSIM_WEIGHTS, tf.float32)
    powers = _safe_pow(tf.nn.relu(tf.concat([cs[:, :-1], ssim[:, -1:]], axis=1)), weights)
    result = tf.reduce_prod(powers, axis=1)
    return _propagate_nan(result, ssim, cs)
