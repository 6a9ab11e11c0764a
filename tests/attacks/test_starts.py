"""Tests for the attacks' start points (robust_dae_tf.attacks.starts): directed starts (one
direction or several) and the directions towards other images of the batch."""

import numpy as np
import pytest
from scipy.optimize import minimize

from robust_dae_tf.attacks.starts import StartStream, directed_starts, towards_other_images
from tests.attacks.toy_models import SHAPE


def _projection_by_scipy(v, x, lam):
    """argmin ||d - v|| s.t. ||d|| <= lam, -x <= d <= 1 - x (SLSQP, independent of projection.py)."""
    res = minimize(lambda d: 0.5 * np.sum((d - v) ** 2), np.zeros_like(v), jac=lambda d: d - v, method="SLSQP",
                   bounds=list(zip(-x, 1 - x)),
                   constraints=[{"type": "ineq", "fun": lambda d: lam ** 2 - d @ d, "jac": lambda d: -2 * d}],
                   options={"ftol": 1e-12, "maxiter": 500})
    return res.x


def test_towards_other_images_points_at_other_images_of_the_batch():
    rng = np.random.default_rng(0)
    x = rng.random((6, *SHAPE)).astype(np.float32)
    d = towards_other_images(x, 4, seed=5)
    assert d.shape == (4, 6, *SHAPE)
    for k in range(4):
        # Each start k is x_j - x_i for one other image j, the same shift for every image.
        flat = d[k].reshape(6, -1)
        matches = [[np.allclose(flat[i], (x[j] - x[i]).ravel()) for j in range(6)] for i in range(6)]
        partner = [int(np.flatnonzero(row)[0]) for row in matches]
        assert all(p != i for i, p in enumerate(partner)), partner
        assert len({(p - i) % 6 for i, p in enumerate(partner)}) == 1
    shifts = [(int(np.flatnonzero([np.allclose(d[k][0], x[j] - x[0]) for j in range(6)])[0])) % 6 for k in range(4)]
    assert len(set(shifts)) == 4  # without replacement while there are enough other images
    np.testing.assert_array_equal(d, towards_other_images(x, 4, seed=5))  # reproducible
    assert not np.array_equal(d, towards_other_images(x, 4, seed=6))


def test_towards_other_images_edge_cases():
    x = np.random.default_rng(1).random((3, *SHAPE)).astype(np.float32)
    assert towards_other_images(x[:1], 4, seed=0) is None  # a batch of one: no other image
    assert towards_other_images(x, 0, seed=0) is None
    many = towards_other_images(x, 5, seed=0)  # more starts than other images: shifts repeat
    assert many.shape == (5, 3, *SHAPE)
    assert not np.any(np.all(many.reshape(5, 3, -1) == 0, axis=2))  # never an image's own direction


@pytest.mark.parametrize("count", [1, 3])
def test_directed_starts_are_projections_of_their_directions(count):
    rng = np.random.default_rng(3)
    x = rng.random((2, *SHAPE)).astype(np.float32)
    x[0, :3] = 0.0  # pixels on the box boundary
    lam = 0.6
    directions = rng.standard_normal((count, 2, *SHAPE)).astype(np.float32)
    starts = StartStream(lam, 4, seed=9).next(x, directions if count > 1 else directions[0])
    random_only = StartStream(lam, 4, seed=9).next(x)
    np.testing.assert_array_equal(starts[count:], random_only[count:])  # the other starts stay random
    for k in range(count):
        for i in range(2):
            expected = _projection_by_scipy(directions[k, i].ravel().astype(np.float64), x[i].ravel(), lam)
            np.testing.assert_allclose(starts[k, i].ravel(), expected, atol=2e-4)


def test_more_directions_than_starts_is_refused():
    x = np.zeros((2, *SHAPE), np.float32)
    with pytest.raises(ValueError, match="3 start directions for 2 starts"):
        StartStream(0.5, 2, seed=0).next(x, np.ones((3, 2, *SHAPE), np.float32))


def test_directed_starts_put_the_objectives_own_direction_first_then_towards_other_images():
    rng = np.random.default_rng(4)
    x = rng.random((5, *SHAPE)).astype(np.float32)
    own = rng.standard_normal((5, *SHAPE)).astype(np.float32)
    both = directed_starts(own, x, 3, seed=7)
    assert both.shape == (4, 5, *SHAPE)
    np.testing.assert_array_equal(both[0], own)
    np.testing.assert_array_equal(both[1:], towards_other_images(x, 3, seed=7))
    np.testing.assert_array_equal(directed_starts(None, x, 3, seed=7), towards_other_images(x, 3, seed=7))
    assert directed_starts(own, x, 0, seed=7) is own
    assert directed_starts(None, x, 0, seed=7) is None
    one = own[:1]
    assert directed_starts(one, x[:1], 3, seed=7) is one  # a batch of one: no other image
    assert directed_starts(None, x[:1], 3, seed=7) is None
