"""Tests of robust_dae_tf.baselines.wasserstein against scipy and an independent numpy Sinkhorn."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.optimize
import scipy.stats
import tensorflow as tf

from robust_dae_tf.baselines import wasserstein
from robust_dae_tf.errors import ConfigError


# ---------------------------------------------------------------- closed-form Gaussian W2


def _general_gaussian_w2_squared(m1, s1, m2, s2):
    """||m1 - m2||^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2) for full covariances."""
    root2 = scipy.linalg.sqrtm(s2)
    cross = scipy.linalg.sqrtm(root2 @ s1 @ root2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(cross)))


def test_gaussian_w2_matches_the_general_formula_under_rotation():
    # Rotating both Gaussians by the same orthogonal Q keeps W2 but makes the
    # covariances full, so the general (matrix square root) formula is exercised.
    rng = np.random.default_rng(0)
    n, d = 6, 4
    mean1, mean2 = rng.normal(size=(2, n, d))
    log_var1, log_var2 = rng.normal(size=(2, n, d))
    got = wasserstein.gaussian_w2_squared(mean1, log_var1, mean2, log_var2).numpy()
    assert got.shape == (n,)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    for i in range(n):
        s1 = q @ np.diag(np.exp(log_var1[i])) @ q.T
        s2 = q @ np.diag(np.exp(log_var2[i])) @ q.T
        expected = _general_gaussian_w2_squared(q @ mean1[i], s1, q @ mean2[i], s2)
        np.testing.assert_allclose(got[i], expected, rtol=1e-8)


def test_gaussian_w2_1d_matches_quantile_coupling():
    # In 1-D, W2^2 = int_0^1 (F1^-1(u) - F2^-1(u))^2 du (monotone coupling).
    m1, lv1, m2, lv2 = 0.3, np.log(0.5), -1.1, np.log(2.0)
    q1 = scipy.stats.norm(m1, np.exp(0.5 * lv1))
    q2 = scipy.stats.norm(m2, np.exp(0.5 * lv2))
    expected, _ = scipy.integrate.quad(lambda u: (q1.ppf(u) - q2.ppf(u)) ** 2, 0, 1, limit=200)
    got = wasserstein.gaussian_w2_squared([[m1]], [[lv1]], [[m2]], [[lv2]]).numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_gaussian_w2_is_symmetric_zero_on_equal_inputs_and_differentiable():
    rng = np.random.default_rng(1)
    m1, lv1, m2, lv2 = [tf.Variable(v) for v in rng.normal(size=(4, 3, 5))]
    with tf.GradientTape() as tape:
        forward = wasserstein.gaussian_w2_squared(m1, lv1, m2, lv2)
        total = tf.reduce_sum(forward)
    grads = tape.gradient(total, [m1, lv1, m2, lv2])
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    np.testing.assert_allclose(grads[0].numpy(), 2 * (m1.numpy() - m2.numpy()))
    backward = wasserstein.gaussian_w2_squared(m2, lv2, m1, lv1)
    np.testing.assert_allclose(forward.numpy(), backward.numpy(), rtol=1e-12)
    np.testing.assert_allclose(wasserstein.gaussian_w2_squared(m1, lv1, m1, lv1).numpy(), 0.0)


# ---------------------------------------------------------------- Sinkhorn


def _exact_ot(x, y, p=2):
    """Exact OT between equal-size uniform clouds = optimal assignment (Birkhoff)."""
    cost = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1) ** p
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    return cost[rows, cols].mean()


def _numpy_sinkhorn(x, y, epsilon, iters=20_000, tol=1e-13):
    """Classic (non-log) Sinkhorn-Knopp scaling, run to convergence; returns <P, C>."""
    cost = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    kernel = np.exp(-cost / epsilon)
    u, v = np.ones_like(a), np.ones_like(b)
    for _ in range(iters):
        u = a / (kernel @ v)
        v_new = b / (kernel.T @ u)
        if np.max(np.abs(v_new - v)) < tol * np.max(v):
            v = v_new
            break
        v = v_new
    plan = u[:, None] * kernel * v[None, :]
    return float(np.sum(plan * cost))


@pytest.mark.parametrize("p", [1, 2])
def test_sinkhorn_approaches_exact_ot_as_epsilon_shrinks(p):
    rng = np.random.default_rng(2)
    n = 7
    x, y = rng.normal(size=(2, n, 2))
    exact = _exact_ot(x, y, p)
    for epsilon in (0.05, 0.01):
        got = float(wasserstein.sinkhorn_distance(x, y, epsilon=epsilon, num_iters=3000, p=p))
        # Entropic bound: OT <= <P_eps, C> <= OT + eps log(n) at convergence.
        assert exact - 1e-6 <= got <= exact + epsilon * np.log(n) + 1e-6, (epsilon, got, exact)
    assert abs(got - exact) < 0.02 * exact + 1e-3


def test_sinkhorn_matches_independent_numpy_sinkhorn_for_moderate_epsilon():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3))
    y = rng.normal(loc=0.5, size=(6, 3))
    for epsilon in (0.5, 2.0):
        got = float(wasserstein.sinkhorn_distance(x, y, epsilon=epsilon, num_iters=500))
        np.testing.assert_allclose(got, _numpy_sinkhorn(x, y, epsilon), rtol=1e-8)


def test_sinkhorn_is_symmetric_and_near_zero_on_identical_clouds():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 2))
    y = rng.normal(size=(8, 2)) + 1.0
    # Symmetric at convergence (the transposed problem has the transposed plan).
    xy = float(wasserstein.sinkhorn_distance(x, y, 0.5, 2000))
    yx = float(wasserstein.sinkhorn_distance(y, x, 0.5, 2000))
    np.testing.assert_allclose(xy, yx, rtol=1e-9)
    # Identical clouds: the plan concentrates on the diagonal as eps -> 0.
    assert float(wasserstein.sinkhorn_distance(x, x, 1e-3, 500)) < 1e-6


def test_sinkhorn_in_float32_with_tiny_epsilon_is_stable():
    # With eps = 1e-3 most entries of the classic kernel exp(-C / eps) underflow to 0
    # even in float64, so Sinkhorn-Knopp would divide by zero; the log-domain
    # iteration stays finite and reaches the exact OT cost within eps log(n).
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(2, 6, 2)).astype(np.float32)
    cost = np.sum((x[:, None, :] - y[None, :, :]).astype(np.float64) ** 2, axis=-1)
    assert np.mean(np.exp(-cost / 1e-3) == 0.0) > 0.5
    got = wasserstein.sinkhorn_distance(x, y, 1e-3, 3000)
    assert got.dtype == tf.float32 and np.isfinite(got.numpy())
    exact = _exact_ot(x.astype(np.float64), y.astype(np.float64))
    assert abs(float(got) - exact) < 1e-3 * np.log(6) + 1e-4 * exact, (float(got), exact)


def test_sinkhorn_gradients_are_finite_and_match_finite_differences():
    rng = np.random.default_rng(6)
    x = tf.Variable(rng.normal(size=(5, 2)))
    y = tf.Variable(rng.normal(size=(4, 2)))
    f = lambda a, b: wasserstein.sinkhorn_distance(a, b, 0.5, 200)
    with tf.GradientTape() as tape:
        value = f(x, y)
    gx, gy = tape.gradient(value, [x, y])
    assert np.isfinite(gx.numpy()).all() and np.isfinite(gy.numpy()).all()
    h = 1e-6
    for i, j in [(0, 0), (3, 1)]:
        e = np.zeros((5, 2))
        e[i, j] = h
        numeric = (f(x.numpy() + e, y.numpy()) - f(x.numpy() - e, y.numpy())).numpy() / (2 * h)
        np.testing.assert_allclose(gx.numpy()[i, j], numeric, rtol=1e-5, atol=1e-8)
    # p = 1 on coincident points: the safe norm keeps gradients finite.
    with tf.GradientTape() as tape:
        value = wasserstein.sinkhorn_distance(x, x, 0.1, 50, p=1)
    assert np.isfinite(tape.gradient(value, x).numpy()).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epsilon": 0.0, "num_iters": 10},
        {"epsilon": -1.0, "num_iters": 10},
        {"epsilon": 0.1, "num_iters": 0},
        {"epsilon": 0.1, "num_iters": 10, "p": 0.5},
    ],
)
def test_sinkhorn_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        wasserstein.sinkhorn_distance(tf.zeros([3, 2]), tf.zeros([3, 2]), **kwargs)


def test_sinkhorn_rejects_bad_shapes():
    with pytest.raises(ConfigError):
        wasserstein.sinkhorn_distance(tf.zeros([3]), tf.zeros([3]), 0.1, 10)
    with pytest.raises(ConfigError):
        wasserstein.sinkhorn_distance(tf.zeros([3, 2]), tf.zeros([3, 4]), 0.1, 10)
