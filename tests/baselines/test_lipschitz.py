"""Tests of robust_dae_tf.baselines.lipschitz against numpy SVD / sort and Monte Carlo."""

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from robust_dae_tf.baselines import lipschitz
from robust_dae_tf.baselines.lipschitz import BjorckDense, GroupSort
from robust_dae_tf.errors import ConfigError


def _singular_values(w):
    return np.linalg.svd(np.asarray(w), compute_uv=False)


# ---------------------------------------------------------------- Bjorck iteration


@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (10, 10)])
def test_bjorck_converges_to_the_polar_factor(shape):
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape)
    got = lipschitz.bjorck_orthonormalize(w, iters=60).numpy()
    polar, _ = scipy.linalg.polar(w)  # closest matrix with orthonormal rows / columns
    np.testing.assert_allclose(_singular_values(got), np.ones(min(shape)), atol=1e-8)
    np.testing.assert_allclose(got, polar, atol=1e-8)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_higher_orders_converge(order):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 8))
    got = lipschitz.bjorck_orthonormalize(w, iters=25, order=order).numpy()
    np.testing.assert_allclose(got.T @ got, np.eye(8), atol=1e-8)


@pytest.mark.parametrize("iters", [0, 1, 2, 5])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0])
def test_prescaled_bjorck_never_exceeds_spectral_norm_one(iters, scale):
    # The Lipschitz certificate must not depend on convergence (see docstring).
    rng = np.random.default_rng(2)
    for shape in [(20, 5), (5, 20), (9, 9)]:
        w = scale * rng.normal(size=shape)
        s = _singular_values(lipschitz.bjorck_orthonormalize(w, iters=iters).numpy())
        assert s.max() <= 1.0 + 1e-12, (shape, s.max())


def test_order_one_iteration_matches_the_formula():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 4))
    w0 = w / np.sqrt(np.abs(w).sum(0).max() * np.abs(w).sum(1).max())
    expected = w0
    for _ in range(3):
        expected = 1.3 * expected - 0.3 * expected @ expected.T @ expected
    got = lipschitz.bjorck_orthonormalize(w, iters=3, beta=0.3).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_bjorck_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    w = tf.Variable(rng.normal(size=(5, 3)))
    probe = tf.constant(rng.normal(size=(5, 3)))
    f = lambda v: tf.reduce_sum(lipschitz.bjorck_orthonormalize(v, iters=15) * probe)
    with tf.GradientTape() as tape:
        value = f(w)
    grad = tape.gradient(value, w).numpy()
    assert np.isfinite(grad).all()
    h = 1e-6
    for i, j in [(0, 0), (2, 1), (4, 2)]:
        e = np.zeros((5, 3))
        e[i, j] = h
        numeric = (f(w.numpy() + e) - f(w.numpy() - e)).numpy() / (2 * h)
        np.testing.assert_allclose(grad[i, j], numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "kwargs",
    [{"iters": -1}, {"order": 0}, {"order": 5}, {"beta": 0.0}, {"beta": 0.7}, {"order": 2, "beta": 0.3}],
)
def test_bjorck_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        lipschitz.bjorck_orthonormalize(tf.eye(3), **kwargs)


def test_bjorck_rejects_non_matrices():
    with pytest.raises(ConfigError):
        lipschitz.bjorck_orthonormalize(tf.ones([2, 2, 2]))


# ---------------------------------------------------------------- BjorckDense


@pytest.mark.parametrize("in_features,units", [(32, 16), (16, 32), (12, 12)])
def test_bjorck_dense_kernel_has_unit_spectral_norm(in_features, units):
    layer = BjorckDense(
        units,
        iters=30,
        kernel_initializer=keras.initializers.RandomNormal(seed=5),
        bias_initializer=keras.initializers.RandomNormal(seed=6),
        dtype="float64",
    )
    x = np.random.default_rng(7).normal(size=(4, in_features))
    y = layer(x).numpy()
    kernel = layer.orthonormal_kernel().numpy()
    s = _singular_values(kernel)
    assert s.max() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(s, np.ones(min(in_features, units)), atol=1e-6)
    np.testing.assert_allclose(y, x @ kernel + layer.bias.numpy(), rtol=1e-12)
    # The raw kernel is not orthonormal: the layer does the work.
    assert abs(_singular_values(layer.kernel.numpy()).max() - 1.0) > 0.1


def test_bjorck_dense_training_and_inference_iterations():
    layer = BjorckDense(
        8, iters=1, inference_iters=40, use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(seed=8), dtype="float64",
    )
    x = np.random.default_rng(9).normal(size=(3, 8))
    layer(x)
    w = layer.kernel.numpy()
    train_kernel = lipschitz.bjorck_orthonormalize(w, iters=1).numpy()
    infer_kernel = lipschitz.bjorck_orthonormalize(w, iters=40).numpy()
    np.testing.assert_allclose(layer(x, training=True).numpy(), x @ train_kernel, rtol=1e-12)
    np.testing.assert_allclose(layer(x, training=False).numpy(), x @ infer_kernel, rtol=1e-12)
    np.testing.assert_allclose(layer(x).numpy(), x @ infer_kernel, rtol=1e-12)
    assert _singular_values(train_kernel).min() < 0.9
    np.testing.assert_allclose(_singular_values(infer_kernel), np.ones(8), atol=1e-8)


def test_bjorck_dense_scale_and_batch_dims():
    layer = BjorckDense(6, lipschitz_scale=2.5, iters=40, dtype="float64")
    x = np.random.default_rng(10).normal(size=(2, 5, 6))
    y = layer(x).numpy()
    assert y.shape == (2, 5, 6)
    np.testing.assert_allclose(y, 2.5 * x @ layer.orthonormal_kernel().numpy() + layer.bias.numpy())
    assert layer.lipschitz_constant() == 2.5
    # Square orthonormal kernel: an exact isometry times the scale.
    d = y[0, 0] - y[1, 3]
    np.testing.assert_allclose(np.linalg.norm(d), 2.5 * np.linalg.norm(x[0, 0] - x[1, 3]), rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs", [{"units": 0}, {"units": 4, "lipschitz_scale": 0.0}, {"units": 4, "iters": -2}, {"units": 4, "inference_iters": -1}]
)
def test_bjorck_dense_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        BjorckDense(**kwargs)


def _stack(scales=(1.0, 1.0, 1.0), dtype="float32", iters=20, width=16, out=3, seed=0):
    init = lambda s: keras.initializers.RandomNormal(seed=seed + s)
    return keras.Sequential(
        [
            keras.Input((8,), dtype=dtype),
            BjorckDense(width, lipschitz_scale=scales[0], iters=iters, kernel_initializer=init(1), bias_initializer=init(2), dtype=dtype),
            GroupSort(2, dtype=dtype),
            BjorckDense(width, lipschitz_scale=scales[1], iters=iters, kernel_initializer=init(3), bias_initializer=init(4), dtype=dtype),
            GroupSort(4, dtype=dtype),
            BjorckDense(out, lipschitz_scale=scales[2], iters=iters, kernel_initializer=init(5), dtype=dtype),
        ]
    )


@pytest.mark.parametrize("scales", [(1.0, 1.0, 1.0), (2.0, 0.5, 1.5)])
def test_stack_satisfies_its_lipschitz_bound_on_random_pairs(scales):
    model = _stack(scales)
    bound = lipschitz.lipschitz_constant_bound(model)
    assert bound == pytest.approx(np.prod(scales))
    rng = np.random.default_rng(11)
    a = rng.normal(size=(4000, 8)).astype(np.float32)
    b = np.concatenate(
        [rng.normal(size=(2000, 8)), a[2000:] + 1e-2 * rng.normal(size=(2000, 8))]
    ).astype(np.float32)
    out_dist = np.linalg.norm(model(a).numpy() - model(b).numpy(), axis=1)
    in_dist = np.linalg.norm(a - b, axis=1)
    ratios = out_dist / in_dist
    assert ratios.max() <= bound * (1 + 1e-4), ratios.max()
    # Not vacuous: the network uses a good part of its Lipschitz budget.
    assert ratios.max() > 0.3 * bound


def test_mean_path_bound_holds_for_encoder_decoder_stacks():
    encoder = _stack((1.5, 1.0, 1.0), out=4, seed=20)
    decoder = keras.Sequential(
        [keras.Input((4,)), BjorckDense(16, lipschitz_scale=2.0), GroupSort(2), BjorckDense(8)]
    )
    l_enc = lipschitz.lipschitz_constant_bound(encoder)
    l_dec = lipschitz.lipschitz_constant_bound(decoder.layers)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    d = rng.normal(scale=0.1, size=(2000, 8)).astype(np.float32)
    change = np.linalg.norm(decoder(encoder(x + d)).numpy() - decoder(encoder(x)).numpy(), axis=1)
    bound = lipschitz.mean_path_reconstruction_bound(np.linalg.norm(d, axis=1), l_enc, l_dec).numpy()
    np.testing.assert_allclose(bound, 3.0 * np.linalg.norm(d, axis=1), rtol=1e-6)
    assert np.all(change <= bound * (1 + 1e-4))
    radius = lipschitz.mean_path_certified_radius(0.6, l_enc, l_dec)
    assert radius == pytest.approx(0.2)
    assert lipschitz.mean_path_certified_radius(0.6, 0.0, l_dec) == np.inf


def test_lipschitz_constant_bound_rejects_unknown_layers():
    with pytest.raises(ConfigError):
        lipschitz.lipschitz_constant_bound([BjorckDense(3), keras.layers.Dense(3)])
    assert lipschitz.lipschitz_constant_bound([keras.layers.Flatten(), GroupSort(2)]) == 1.0


# ---------------------------------------------------------------- GroupSort


@pytest.mark.parametrize("group_size", [1, 2, 3, 4, 12])
def test_groupsort_is_a_sort_within_groups(group_size):
    x = np.random.default_rng(13).normal(size=(5, 12)).astype(np.float32)
    expected = np.sort(x.reshape(5, 12 // group_size, group_size), axis=-1).reshape(5, 12)
    np.testing.assert_array_equal(GroupSort(group_size)(x).numpy(), expected)


def test_groupsort_on_image_features():
    x = np.random.default_rng(14).normal(size=(2, 3, 3, 8)).astype(np.float32)
    expected = np.sort(x.reshape(2, 3, 3, 2, 4), axis=-1).reshape(2, 3, 3, 8)
    np.testing.assert_array_equal(GroupSort(4)(x).numpy(), expected)


def test_groupsort_rejects_indivisible_widths():
    with pytest.raises(ConfigError):
        GroupSort(4)(tf.zeros([2, 10]))
    with pytest.raises(ConfigError):
        GroupSort(0)


def test_groupsort_preserves_gradient_norm():
    rng = np.random.default_rng(15)
    x = tf.constant(rng.normal(size=(6, 12)))
    v = rng.normal(size=(6, 12))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = GroupSort(3, dtype="float64")(x)
        total = tf.reduce_sum(y * v)
    grad = tape.gradient(total, x).numpy()
    np.testing.assert_allclose(np.linalg.norm(grad, axis=1), np.linalg.norm(v, axis=1), rtol=1e-12)
    # The vector-Jacobian product is a within-group permutation of v.
    np.testing.assert_allclose(
        np.sort(grad.reshape(6, 4, 3), -1), np.sort(v.reshape(6, 4, 3), -1), rtol=1e-12
    )


def test_square_stack_preserves_gradient_norm():
    # Square orthonormal kernels + GroupSort: the Jacobian is orthogonal almost everywhere.
    model = _stack(dtype="float64", iters=60, width=8, out=8)
    rng = np.random.default_rng(16)
    x = tf.constant(rng.normal(size=(20, 8)))
    u = rng.normal(size=(20, 8))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(model(x) * u)
    grad = tape.gradient(total, x).numpy()
    np.testing.assert_allclose(np.linalg.norm(grad, axis=1), np.linalg.norm(u, axis=1), rtol=1e-8)


# ---------------------------------------------------------------- serialization


def test_layers_round_trip_through_config_and_keras_files(tmp_path):
    model = _stack((2.0, 0.5, 1.5))
    layer = model.layers[0]
    clone = BjorckDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert GroupSort.from_config(GroupSort(4).get_config()).group_size == 4
    x = np.random.default_rng(17).normal(size=(5, 8)).astype(np.float32)
    path = tmp_path / "stack.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.layers[0], BjorckDense)
    assert restored.layers[0].lipschitz_scale == 2.0
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-6)


# ---------------------------------------------------------------- Barrett et al. certificate


def _largest_root(a, b, c, r, s, p):
    """Independent solution of (b^2 + c^2) R^2 + 4 c s R + 4 s^2 - (1 - p) r^2 / a^2 <= 0."""
    roots = np.roots([b**2 + c**2, 4 * c * s, 4 * s**2 - (1 - p) * r**2 / a**2])
    real = roots[np.abs(roots.imag) < 1e-12].real
    return max(0.0, real.max()) if real.size else 0.0


@pytest.mark.parametrize(
    "a,b,c,r,p",
    [(1.0, 1.0, 1.0, 1.0, 0.5), (2.0, 1.5, 0.3, 3.0, 0.5), (0.5, 3.0, 0.0, 1.0, 0.9), (1.0, 0.0, 2.0, 2.0, 0.2)],
)
def test_certified_radius_solves_the_quadratic_bound(a, b, c, r, p):
    s = np.array([0.0, 0.05, 0.2, 0.5, 1.0, 5.0])
    got = lipschitz.certified_reconstruction_radius(r, a, b, c, s, p=p).numpy()
    expected = [_largest_root(a, b, c, r, si, p) for si in s]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert got.shape == s.shape
    # Nothing is certified once the encoder noise alone exceeds the budget.
    assert got[-1] == 0.0


def test_certified_radius_holds_for_a_linear_vae_by_monte_carlo():
    # mu(x) = B x, sigma(x) = s0 + |C x|, g(z) = G z with known spectral norms.
    rng = np.random.default_rng(18)

    def with_norm(shape, norm):
        m = rng.normal(size=shape)
        return norm * m / np.linalg.norm(m, 2)

    b_mat, c_mat, g_mat = with_norm((3, 6), 1.5), with_norm((3, 6), 0.5), with_norm((5, 3), 2.0)
    s0 = np.array([0.05, 0.02, 0.04])
    mu = lambda x: b_mat @ x
    sigma = lambda x: s0 + np.abs(c_mat @ x)
    x0 = rng.normal(scale=0.05, size=6)
    s = np.linalg.norm(sigma(x0))
    p, r = 0.5, 2.0 * 2.0 * s * np.sqrt(2.0) * 1.5  # comfortably above the threshold
    radius = float(lipschitz.certified_reconstruction_radius(r, 2.0, 1.5, 0.5, s, p=p))
    assert radius > 0
    # Adversarial-ish directions: top right-singular vectors of B and C, plus random ones.
    directions = [np.linalg.svd(b_mat)[2][0], np.linalg.svd(c_mat)[2][0]]
    directions += [v / np.linalg.norm(v) for v in rng.normal(size=(8, 6))]
    for sign in (1.0, -1.0):
        for u in directions:
            x1 = x0 + sign * radius * u
            e0, e1 = rng.normal(size=(2, 20_000, 3))
            z0 = mu(x0) + sigma(x0) * e0
            z1 = mu(x1) + sigma(x1) * e1
            change = np.linalg.norm((z1 - z0) @ g_mat.T, axis=1)
            # The Markov step of the bound: E||Delta||^2 <= (1 - p) r^2 at the radius.
            assert np.mean(change**2) <= (1 - p) * r**2 * 1.02
            assert np.mean(change <= r) >= p


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 1.0, 1.0, 1.0),
        (1.0, 0.0, 1.0, 1.0),
        (1.0, 1.0, 0.0, 0.0),
        (1.0, 1.0, -1.0, 1.0),
    ],
)
def test_certified_radius_rejects_bad_arguments(args):
    with pytest.raises(ConfigError):
        lipschitz.certified_reconstruction_radius(*args, 0.1)


def test_certified_radius_rejects_bad_probability():
    for p in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError):
            lipschitz.certified_reconstruction_radius(1.0, 1.0, 1.0, 1.0, 0.1, p=p)


def test_stack_trains_with_fit():
    model = _stack((1.0, 1.0, 1.0), out=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=False)
    rng = np.random.default_rng(19)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = rng.normal(size=(64, 2)).astype(np.float32)
    before = model.layers[0].kernel.numpy().copy()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(before, model.layers[0].kernel.numpy())
    s = _singular_values(model.layers[0].orthonormal_kernel().numpy())
    assert s.max() <= 1.0 + 1e-5
