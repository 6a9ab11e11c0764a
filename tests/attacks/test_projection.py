"""Tests for robust_dae_tf.attacks.projection and .starts: the exact projection onto the
L2 ball ∩ pixel box (against scipy's constrained minimisation) and the random starts."""

import numpy as np

from robust_dae_tf import attacks
from tests.attacks.toy_models import SHAPE, random_cases, scipy_projection


def test_projection_matches_constrained_minimisation():
    rng = np.random.default_rng(0)
    for x, v, lam in random_cases(rng, 25):
        d = attacks.project_l2_box(v[None].astype(np.float32), -x[None].astype(np.float32),
                                   (1 - x)[None].astype(np.float32), lam).numpy()[0]
        np.testing.assert_allclose(d, scipy_projection(v, x, lam), atol=2e-5)


def test_projection_feasible_idempotent_and_fixed_on_feasible_points():
    rng = np.random.default_rng(1)
    x = rng.random((50, 64)).astype(np.float32)
    x[:, :20] = 0.0
    v = (rng.standard_cauchy((50, 64)) * rng.uniform(0.1, 5, (50, 1))).astype(np.float32)
    lam = rng.uniform(0.2, 4.0, 50).astype(np.float32)
    d = attacks.project_l2_box(v, -x, 1 - x, lam).numpy()
    assert np.all(np.linalg.norm(d, axis=1) <= lam * (1 + 1e-6))
    assert np.all(d >= -x) and np.all(d <= 1 - x)
    np.testing.assert_allclose(attacks.project_l2_box(d, -x, 1 - x, lam).numpy(), d, atol=1e-6)
    # A feasible point stays where it is.
    inside = d * 0.5
    np.testing.assert_allclose(attacks.project_l2_box(inside, -x, 1 - x, lam).numpy(), inside, atol=1e-7)
    # The projection is the closest feasible point: no feasible d' is closer to v.
    for _ in range(20):
        other = attacks.project_l2_box(d + rng.normal(size=d.shape).astype(np.float32) * 0.1, -x, 1 - x, lam).numpy()
        assert np.all(np.linalg.norm(other - v, axis=1) >= np.linalg.norm(d - v, axis=1) - 1e-4)


def test_random_starts_are_feasible_and_prefix_consistent():
    rng = np.random.default_rng(2)
    x = rng.random((5, *SHAPE)).astype(np.float32)
    s4 = attacks.random_starts(x, 0.7, 4, seed=3)
    s2 = attacks.random_starts(x[:3], 0.7, 2, seed=3)
    np.testing.assert_array_equal(s4[:2, :3], s2)  # fewer restarts / images = a prefix
    norms = np.linalg.norm(s4.reshape(4, 5, -1), axis=2)
    assert np.all(norms <= 0.7 * (1 + 1e-6)) and np.all(x + s4 >= 0) and np.all(x + s4 <= 1)
