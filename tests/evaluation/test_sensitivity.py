"""Tests of robust_dae_tf.evaluation.sensitivity: the local gain against numpy's SVD of a
linear autoencoder, invariants on a nonlinear one, a batch of one, NaN; the
summaries evaluation reports hold."""

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import attacks
from robust_dae_tf.errors import DataError
from robust_dae_tf.evaluation import sensitivity
from robust_dae_tf.evaluation.sensitivity import local_gain
from tests.attacks.toy_models import SHAPE, LinearModel, MLPModel, make_mlp_images


@pytest.mark.parametrize("kind", [attacks.MAX_DAMAGE, attacks.LATENT])
def test_linear_gain_is_the_top_singular_value(kind):
    model = LinearModel(latent_dim=6, seed=2)
    x = np.random.default_rng(0).uniform(0.2, 0.8, (4, *SHAPE)).astype(np.float32)
    jacobian = model.W if kind == attacks.LATENT else model.V @ model.W
    expected = np.linalg.svd(jacobian.astype(np.float64), compute_uv=False)[0]
    # The same at every image (a linear map); orthogonal iteration converges at (s2 / s1)^(2 steps).
    s = np.linalg.svd(jacobian.astype(np.float64), compute_uv=False)
    steps = int(np.ceil(np.log(1e-9) / (2 * np.log(s[1] / s[0])))) + 2
    np.testing.assert_allclose(local_gain(model, kind, x, steps=steps), expected, rtol=1e-4)


def test_nonlinear_gain_bounds_the_finite_difference_change_and_a_batch_of_one():
    mlp = MLPModel()
    x = make_mlp_images()
    gain = local_gain(mlp, attacks.MAX_DAMAGE, x, steps=30)
    assert gain.shape == (len(x),) and np.all(gain > 0)
    # No direction changes the reconstruction faster than the gain (to first order).
    rng = np.random.default_rng(5)
    eps = 1e-3
    for _ in range(5):
        v = rng.normal(size=x.shape).astype(np.float32)
        v /= np.linalg.norm(v.reshape(len(x), -1), axis=1)[:, None, None, None]
        change = (mlp.decode(mlp.encode(tf.constant(x + eps * v))) - mlp.decode(mlp.encode(tf.constant(x)))).numpy()
        assert np.all(np.linalg.norm(change.reshape(len(x), -1), axis=1) / eps <= gain * 1.01)
    np.testing.assert_allclose(local_gain(mlp, attacks.MAX_DAMAGE, x[:1], steps=30), gain[:1], rtol=1e-4)


class _NaNOutsideTheBox(MLPModel):
    """NaN codes for inputs with a pixel below 0 (finite on every image in [0, 1])."""

    def encode(self, images):
        z = super().encode(images)
        outside = tf.reduce_min(tf.reshape(images, [tf.shape(images)[0], -1]), axis=1) < 0.0
        return tf.where(outside[:, None], np.nan, z)


def test_an_image_where_the_model_fails_nearby_gets_nan_and_the_others_their_gain():
    x = np.random.default_rng(2).uniform(0.2, 0.8, (4, 8, 8, 1)).astype(np.float32)
    x[2, 0, 0, 0] = 0.0  # on the box: x + eps v leaves it, where this model gives NaN
    gain = local_gain(_NaNOutsideTheBox(), attacks.LATENT, x, steps=60)
    assert np.isnan(gain[2])
    keep = [0, 1, 3]  # converged (60 steps), so independent of each image's random start
    # Equal up to the O(eps) of reading M v at a finite step (the sign of a converged direction is free).
    np.testing.assert_allclose(gain[keep], local_gain(MLPModel(), attacks.LATENT, x[keep], steps=60), rtol=2e-3)


class _Constant(MLPModel):
    def encode(self, images):
        return tf.zeros([tf.shape(images)[0], 4]) + 0.0 * tf.stop_gradient(tf.reduce_sum(images))


def test_a_model_without_input_gradient_is_one_data_error():
    with pytest.raises(DataError, match="not differentiable with respect to its input"):
        local_gain(_Constant(), attacks.LATENT, make_mlp_images())


def test_local_gains_summaries_leave_out_images_where_the_model_is_not_finite(monkeypatch):
    gains = {"latent": np.array([1.0, np.nan, 3.0, 2.0]), "max_damage": np.full(4, np.nan)}
    monkeypatch.setattr(sensitivity, "local_gain", lambda m, objective, x, steps, seed: gains[objective.name])
    summaries, values = sensitivity.local_gains(MLPModel(), attacks.PAPER_OBJECTIVES, np.zeros((4, 32, 32, 1)), 0)
    assert summaries["latent"] == {"mean": 2.0, "median": 2.0, "std": pytest.approx(np.std([1.0, 3.0, 2.0])),
                                   "images": 4, "non_finite_images": 1, "gradient_evaluations_per_image": 8}
    assert summaries["max_damage"]["mean"] is None and summaries["max_damage"]["non_finite_images"] == 4
    np.testing.assert_array_equal(values["latent"], gains["latent"])  # the per-image values keep the NaN
