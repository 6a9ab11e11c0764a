"""Tests of robust_dae_tf.metrics.msssim against an independent NumPy/SciPy reference."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.signal import correlate2d

from robust_dae_tf.errors import ConfigError, DataError
from robust_dae_tf.metrics import msssim
from robust_dae_tf.metrics.msssim import (
    ms_ssim_paper,
    ms_ssim_standard,
    paper_scale_values,
    paper_window_sizes,
    standard_window_sizes,
)

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


# --------------------------------------------------------------------------------------
# Independent reference: one image pair at a time, float64, HWC arrays.
# Transliterates pytorch-msssim's gaussian/create_window/ssim/msssim (F.conv2d is a
# cross-correlation, hence correlate2d; F.avg_pool2d(2) floors odd sizes).
# --------------------------------------------------------------------------------------


def _ref_gauss(size, centred):
    centre = (size - 1) / 2.0 if centred else size // 2
    g = np.array([np.exp(-((x - centre) ** 2) / (2 * 1.5**2)) for x in range(size)])
    return g / g.sum()


def _ref_pool(img):
    h, w = img.shape[0] // 2, img.shape[1] // 2
    return img[: 2 * h, : 2 * w].reshape(h, 2, w, 2, img.shape[2]).mean(axis=(1, 3))


def _ref_ssim_cs(img1, img2, window_size, centred, L):
    size = min(window_size, img1.shape[0], img1.shape[1])
    g = _ref_gauss(size, centred)
    win = np.outer(g, g)

    def filt(x):
        return np.stack(
            [correlate2d(x[:, :, c], win, mode="valid") for c in range(x.shape[2])], axis=-1
        )

    mu1, mu2 = filt(img1), filt(img2)
    s11 = filt(img1 * img1) - mu1**2
    s22 = filt(img2 * img2) - mu2**2
    s12 = filt(img1 * img2) - mu1 * mu2
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    v1 = 2 * s12 + C2
    v2 = s11 + s22 + C2
    cs = np.mean(v1 / v2)
    ssim_map = ((2 * mu1 * mu2 + C1) * v1) / ((mu1**2 + mu2**2 + C1) * v2)
    return np.mean(ssim_map), cs


def _paper_L(img1):
    max_val = 255 if img1.max() > 128 else 1
    min_val = -1 if img1.min() < -0.5 else 0
    return max_val - min_val


def ref_scales(img1, img2, convention, max_val=1.0):
    """Per-scale (ssim, cs) lists of one HWC pair."""
    img1 = img1.astype(np.float64)
    img2 = img2.astype(np.float64)
    ssims, css = [], []
    for _ in range(5):
        if convention == "paper":
            s, c = _ref_ssim_cs(img1, img2, 6, False, _paper_L(img1))
        else:
            s, c = _ref_ssim_cs(img1, img2, 11, True, max_val)
        ssims.append(s)
        css.append(c)
        img1, img2 = _ref_pool(img1), _ref_pool(img2)
    return np.array(ssims), np.array(css)


def ref_paper(img1, img2):
    ssims, css = ref_scales(img1, img2, "paper")
    mssim, mcs = np.maximum(ssims, 0), np.maximum(css, 0)
    pow1 = mcs**WEIGHTS
    pow2 = mssim**WEIGHTS
    return np.prod(pow1[:-1] * pow2[-1])


def ref_standard(img1, img2, max_val=1.0):
    ssims, css = ref_scales(img1, img2, "standard", max_val)
    vals = np.maximum(np.concatenate([css[:4], ssims[4:]]), 0)
    return np.prod(vals**WEIGHTS)


def _pairs(rng, n, h, w, c, noise=0.2):
    a = rng.uniform(size=(n, h, w, c)).astype(np.float32)
    b = np.clip(a + noise * rng.normal(size=a.shape), 0, 1).astype(np.float32)
    return a, b


# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 32, 1), (32, 32, 3), (64, 64, 3), (37, 45, 2)])
def test_matches_reference(shape):
    rng = np.random.default_rng(sum(shape))
    a, b = _pairs(rng, 3, *shape)
    # A smooth, strongly correlated pair too, so values are not all near the same level.
    smooth = np.cumsum(np.cumsum(rng.uniform(size=(1, *shape)), axis=1), axis=2)
    smooth = (smooth / smooth.max()).astype(np.float32)
    a = np.concatenate([a, smooth])
    b = np.concatenate([b, np.clip(smooth + 0.05 * rng.normal(size=smooth.shape), 0, 1)])
    b = b.astype(np.float32)
    paper = ms_ssim_paper(a, b).numpy()
    standard = ms_ssim_standard(a, b).numpy()
    assert paper.shape == standard.shape == (4,)
    assert paper.dtype == np.float32
    np.testing.assert_allclose(paper, [ref_paper(x, y) for x, y in zip(a, b)], rtol=1e-4)
    np.testing.assert_allclose(
        standard, [ref_standard(x, y) for x, y in zip(a, b)], rtol=1e-4
    )
    # The two conventions really are different functions.
    assert np.all(np.abs(paper - standard) > 1e-3)


def test_paper_dynamic_range_rule_is_per_pair_and_per_scale():
    rng = np.random.default_rng(1)
    a01, b01 = _pairs(rng, 1, 32, 32, 3)
    a255, b255 = a01 * 255.0, b01 * 255.0
    # [-1, 1] images: L = 2 at full resolution, but pooled minima rise above -0.5,
    # where the original code switches to L = 1.
    am1, bm1 = a01 * 2 - 1, b01 * 2 - 1
    a = np.concatenate([a01, a255, am1]).astype(np.float32)
    b = np.concatenate([b01, b255, bm1]).astype(np.float32)
    got = ms_ssim_paper(a, b).numpy()
    want = [ref_paper(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # Scale-invariance of the rule: [0, 1] and [0, 255] versions score the same.
    np.testing.assert_allclose(got[0], got[1], rtol=1e-4)
    # Batched result equals one pair at a time (the paper's evaluation loop).
    singles = [ms_ssim_paper(a[i : i + 1], b[i : i + 1]).numpy()[0] for i in range(3)]
    np.testing.assert_allclose(got, singles, rtol=1e-6)


def test_standard_max_val():
    rng = np.random.default_rng(2)
    a, b = _pairs(rng, 2, 32, 32, 1)
    got = ms_ssim_standard(a * 255, b * 255, max_val=255.0).numpy()
    np.testing.assert_allclose(got, ms_ssim_standard(a, b).numpy(), rtol=1e-4)
    np.testing.assert_allclose(
        got, [ref_standard(x, y, 255.0) for x, y in zip(a * 255, b * 255)], rtol=1e-4
    )
    with pytest.raises(ConfigError, match="max_val"):
        ms_ssim_standard(a, b, max_val=0.0)


def test_standard_matches_tf_image_where_tf_applies():
    # Single channel, side 176 = 11 * 16: TF keeps the 11x11 window at every scale and
    # never pads, so the two definitions coincide.
    rng = np.random.default_rng(3)
    a, b = _pairs(rng, 2, 176, 176, 1)
    np.testing.assert_allclose(
        ms_ssim_standard(a, b).numpy(), tf.image.ssim_multiscale(a, b, 1.0).numpy(), rtol=1e-4
    )


def test_window_sizes():
    assert paper_window_sizes(32, 32) == [6, 6, 6, 4, 2]
    assert paper_window_sizes(28, 28) == [6, 6, 6, 3, 1]
    assert paper_window_sizes(64, 64) == [6, 6, 6, 6, 4]
    assert standard_window_sizes(32, 32) == [11, 11, 8, 4, 2]


def test_identical_images_give_one():
    rng = np.random.default_rng(4)
    a = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(ms_ssim_paper(a, a).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(ms_ssim_standard(a, a).numpy(), 1.0, atol=1e-5)


def test_paper_constant_pair_by_hand():
    a = np.full((1, 32, 32, 1), 0.2, np.float32)
    b = np.full((1, 32, 32, 1), 0.6, np.float32)
    # Zero variances: cs = C2 / C2 = 1 at every scale; ssim = (2 mu1 mu2 + C1) /
    # (mu1^2 + mu2^2 + C1) at every scale, with L = 1. Bug form: ssim^(4 w5).
    s = (2 * 0.2 * 0.6 + 1e-4) / (0.2**2 + 0.6**2 + 1e-4)
    np.testing.assert_allclose(ms_ssim_paper(a, b).numpy(), [s ** (4 * 0.1333)], rtol=1e-3)
    np.testing.assert_allclose(ms_ssim_standard(a, b).numpy(), [s**0.1333], rtol=1e-3)


def test_known_bug_exponent():
    rng = np.random.default_rng(5)
    a, _ = _pairs(rng, 2, 32, 32, 3)
    b = np.clip(0.5 * a + 0.5 + 0.05 * rng.normal(size=a.shape), 0, 1).astype(np.float32)
    ssim, cs = (t.numpy().astype(np.float64) for t in paper_scale_values(a, b))
    assert ssim.shape == cs.shape == (2, 5)
    # Luminance differs, so ssim_5 != cs_5 and the two combinations differ.
    assert np.all(np.abs(ssim[:, 4] - cs[:, 4]) > 0.05)
    bug = np.prod(cs[:, :4] ** WEIGHTS[:4] * ssim[:, 4:5] ** WEIGHTS[4], axis=1)
    textbook = np.prod(cs[:, :4] ** WEIGHTS[:4], axis=1) * ssim[:, 4] ** WEIGHTS[4]
    assert np.all(np.abs(bug - textbook) > 1e-2)
    got = ms_ssim_paper(a, b).numpy()
    np.testing.assert_allclose(got, bug, rtol=1e-5)
    # And against the reference's own per-scale values.
    for i in range(2):
        rs, rc = ref_scales(a[i], b[i], "paper")
        np.testing.assert_allclose(ssim[i], rs, rtol=1e-4)
        np.testing.assert_allclose(cs[i], rc, rtol=1e-4)
        want = np.prod(rc[:4] ** WEIGHTS[:4] * rs[4] ** WEIGHTS[4])
        np.testing.assert_allclose(got[i], want, rtol=1e-4)


def test_relu_zeroing_gives_zero_not_nan_and_finite_gradients():
    rng = np.random.default_rng(6)
    a = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
    b = tf.Variable(1.0 - a)  # anti-correlated: cs < 0 at the first scale
    ssim, cs = paper_scale_values(a, b)
    assert np.all(cs.numpy()[:, 0] < 0)
    for fn in (ms_ssim_paper, ms_ssim_standard):
        with tf.GradientTape() as tape:
            out = fn(a, b)
        grad = tape.gradient(out, b)
        assert np.array_equal(out.numpy(), [0.0, 0.0]), out.numpy()
        assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("fn", [ms_ssim_paper, ms_ssim_standard])
def test_gradients_finite_and_correct_sign(fn):
    rng = np.random.default_rng(7)
    a, b = _pairs(rng, 2, 32, 32, 3)
    b_var = tf.Variable(b)
    for target in (b_var, tf.Variable(a)):  # noisy pair and identical pair
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(fn(a, target))
        grad = tape.gradient(out, target).numpy()
        assert np.all(np.isfinite(grad))
    # A small step along the gradient increases the score.
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(fn(a, b_var))
    grad = tape.gradient(out, b_var)
    stepped = tf.reduce_sum(fn(a, b_var + 1e-3 * grad / tf.norm(grad)))
    assert stepped.numpy() > out.numpy()


def test_batch_of_one_and_tf_function():
    rng = np.random.default_rng(8)
    a, b = _pairs(rng, 1, 32, 32, 1)
    out = ms_ssim_paper(a, b)
    assert out.shape == (1,)
    np.testing.assert_allclose(out.numpy(), [ref_paper(a[0], b[0])], rtol=1e-4)
    spec = tf.TensorSpec([None, 32, 32, 1], tf.float32)
    traced = tf.function(ms_ssim_paper, input_signature=[spec, spec])
    np.testing.assert_allclose(traced(a, b).numpy(), out.numpy(), rtol=1e-6)


def test_nan_input_propagates_to_that_pair_only():
    # Documented behaviour: NaN is not masked; the affected pair's score is NaN.
    rng = np.random.default_rng(9)
    a, b = _pairs(rng, 2, 32, 32, 1)
    b[0, 5, 5, 0] = np.nan
    for fn in (ms_ssim_paper, ms_ssim_standard):
        out = fn(a, b).numpy()
        assert np.isnan(out[0])
        assert np.isfinite(out[1])


def test_minimum_size():
    rng = np.random.default_rng(10)
    a, b = _pairs(rng, 1, 16, 16, 1)
    np.testing.assert_allclose(ms_ssim_paper(a, b).numpy(), [ref_paper(a[0], b[0])], rtol=1e-4)
    a, b = _pairs(rng, 1, 28, 28, 1)  # MNIST size is valid for the paper code
    np.testing.assert_allclose(ms_ssim_paper(a, b).numpy(), [ref_paper(a[0], b[0])], rtol=1e-4)
    small = np.zeros((1, 15, 32, 1), np.float32)
    for fn in (ms_ssim_paper, ms_ssim_standard):
        with pytest.raises(DataError, match=r"at least 16x16.*got 15x32"):
            fn(small, small)
    assert msssim.MIN_IMAGE_SIZE == 16


def test_bad_shapes():
    a = np.zeros((2, 32, 32, 1), np.float32)
    with pytest.raises(DataError, match="same shape"):
        ms_ssim_paper(a, np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(DataError, match=r"\[N, H, W, C\]"):
        ms_ssim_standard(a[0], a[0])
