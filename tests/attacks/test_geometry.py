"""Tests for the geometry starts (robust_dae_tf.attacks.geometry) and the ensemble member that
uses them: the directions against numpy's eigendecomposition of the pullback metric of a linear
autoencoder (both attacks), a batch of one and chunking, NaN rows, the gradient evaluations
reported and paid from the member's budget, and the linear optimum reached from them."""

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import attacks
from robust_dae_tf.attacks import AttackConfig, budgets, ensemble, geometry, progress
from robust_dae_tf.errors import ConfigError
from tests.attacks.toy_models import SHAPE, P, LinearModel, MLPModel, make_mlp_images

SINGULAR_VALUES = np.array([10.0, 7.0, 1.0, 0.5, 0.3, 0.1])


class KnownSpectrumModel(LinearModel):
    """g(x) = S R^T x, f(z) = U z + b: the pullback metric of g and of f o g is R S^2 R^T, so its
    eigenvectors are the columns of R and its eigenvalues S^2 (a gap of 49 / 1 after the second)."""

    def __init__(self, seed=0):
        super().__init__(latent_dim=len(SINGULAR_VALUES), seed=seed)
        rng = np.random.default_rng(seed + 10)
        self.R = np.linalg.qr(rng.normal(size=(P, len(SINGULAR_VALUES))))[0]
        U = np.linalg.qr(rng.normal(size=(P, len(SINGULAR_VALUES))))[0]
        self.W = (np.diag(SINGULAR_VALUES) @ self.R.T).astype(np.float32)
        self.V = U.astype(np.float32)


def _images(n=3):
    return np.full((n, *SHAPE), 0.5, np.float32) + np.random.default_rng(1).uniform(-0.1, 0.1, (n, *SHAPE)).astype(
        np.float32)


@pytest.mark.parametrize("kind", [attacks.MAX_DAMAGE, attacks.LATENT])
def test_directions_span_the_top_eigenvectors_of_the_pullback_metric(kind):
    model = KnownSpectrumModel()
    x = _images()
    ref = geometry.own_reference(model, kind, x)
    directions, ritz = geometry.top_directions(model, kind, x, ref, count=2)
    # Independent: the pullback metric from the model's matrices, eigendecomposed by numpy.
    jacobian = model.W.astype(np.float64) if kind == attacks.LATENT else model.V.astype(np.float64) @ model.W
    eigenvalues, eigenvectors = np.linalg.eigh(jacobian.T @ jacobian)
    top = eigenvectors[:, ::-1][:, :2]
    np.testing.assert_allclose(eigenvalues[::-1][:2], SINGULAR_VALUES[:2] ** 2, rtol=1e-4)
    for i in range(len(x)):
        v = directions[:, i].reshape(2, P).T.astype(np.float64)
        np.testing.assert_allclose(v.T @ v, np.eye(2), atol=1e-5)  # orthonormal
        cosines = np.linalg.svd(top.T @ v, compute_uv=False)  # cosines of the principal angles
        assert np.all(cosines > 1 - 1e-5), cosines
        assert abs(v[:, 0] @ top[:, 0]) > 1 - 1e-5  # column 0: the top eigenvector itself
        np.testing.assert_allclose(ritz[:, i], eigenvalues[::-1][:2], rtol=1e-3)


def test_batch_of_one_and_chunking_give_the_same_directions(mlp):
    x = make_mlp_images()
    ref = geometry.own_reference(mlp, attacks.MAX_DAMAGE, x)
    whole, _ = geometry.top_directions(mlp, attacks.MAX_DAMAGE, x, ref, count=2, seed=4)
    chunked, _ = geometry.top_directions(mlp, attacks.MAX_DAMAGE, x, ref, count=2, seed=4, chunk_size=4)
    one, _ = geometry.top_directions(mlp, attacks.MAX_DAMAGE, x[:1], ref[:1], count=2, seed=4)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    np.testing.assert_allclose(one[:, 0], whole[:, 0], atol=1e-5)
    norms = np.linalg.norm(whole.reshape(2, len(x), -1), axis=2)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


class BrightNaNModel(MLPModel):
    """NaN latents for images whose mean pixel is above 0.9 (whatever their batch position)."""

    def encode(self, images):
        z = super().encode(images)
        bright = tf.reduce_mean(tf.reshape(images, [tf.shape(images)[0], -1]), axis=1) > 0.9
        return tf.where(bright[:, None], np.nan, z)


def test_nan_rows_give_nan_directions_and_the_others_are_kept():
    x = make_mlp_images()
    x[2] = 0.95
    ref = attacks.MAX_DAMAGE_OBJECTIVE.reference(MLPModel(), x, None)  # the same weights without NaN
    directions, values = geometry.top_directions(BrightNaNModel(), attacks.MAX_DAMAGE, x, ref, count=2)
    assert np.isnan(directions[:, 2]).all() and np.isnan(values[:, 2]).all()
    keep = [i for i in range(len(x)) if i != 2]
    assert np.isfinite(directions[:, keep]).all() and np.isfinite(values[:, keep]).all()


def test_reports_count_x_steps_evaluations_per_image(mlp):
    x = make_mlp_images()
    ref = geometry.own_reference(mlp, attacks.MAX_DAMAGE, x)
    seen = []
    with progress.listening(seen.append):
        geometry.top_directions(mlp, attacks.MAX_DAMAGE, x, ref, count=2, steps=3, chunk_size=4)
    assert sum(seen) == len(x) * 2 * 3 and len(seen) == 2  # two chunks
    with pytest.raises(ValueError, match=">= 1"):
        geometry.top_directions(mlp, attacks.MAX_DAMAGE, x, ref, count=0)


def test_signed_starts_alternate_signs_along_the_eigenvectors():
    directions = np.random.default_rng(0).normal(size=(2, 3, *SHAPE)).astype(np.float32)
    got = geometry.signed_starts(directions, 0.7, 3)
    np.testing.assert_allclose(got, 0.7 * np.stack([directions[0], -directions[0], directions[1]]), rtol=1e-6)
    assert budgets.geometry_directions(3) == 2 and budgets.geometry_directions(4) == 2
    assert budgets.geometry_evaluations(2) == 2 * budgets.GEOMETRY_POWER_STEPS


def test_member_pays_its_power_iteration_from_its_budget(mlp):
    images = make_mlp_images()
    member, = ensemble.select(["apgd_geometry"])
    assert member.min_evaluations == 4 * budgets.APGD_MIN_EVALUATIONS + 2 * budgets.GEOMETRY_POWER_STEPS
    assert ensemble.minimum_evaluations((member,)) == member.min_evaluations
    for kind in (attacks.MAX_DAMAGE, attacks.LATENT):
        targets = np.roll(images, 1, axis=0) if kind == attacks.LATENT else None
        seen = []
        with progress.listening(seen.append):
            out = attacks.run(kind, mlp, images, 0.5, AttackConfig(
                method="ensemble", gradient_evaluations=100, ensemble_members=("apgd_geometry",)), targets=targets)
        # Latent: start 0 is the target-directed one, 3 geometry starts need 2 eigenvectors.
        power = 2 * budgets.GEOMETRY_POWER_STEPS
        spent = power + (100 - power) // 4 * 4
        assert out.info["gradient_evaluations_per_image"] == spent
        assert out.info["member_gradient_evaluations"] == {"apgd_geometry": spent}
        assert sum(seen) == len(images) * spent
    with pytest.raises(ConfigError, match="at least 36"):
        AttackConfig(method="ensemble", gradient_evaluations=35, ensemble_members=("apgd_geometry",))


def test_geometry_start_is_the_linear_maximum_damage_optimum():
    """With the box inactive the maximum-damage optimum of a linear autoencoder is lambda
    times its top singular value, reached at lambda times the top eigenvector: the geometry
    member's first start."""
    model = KnownSpectrumModel()
    x = _images()
    lam = 0.05  # x in [0.4, 0.6]: the box stays inactive
    out = attacks.run(attacks.MAX_DAMAGE, model, x, lam, AttackConfig(
        method="ensemble", gradient_evaluations=40, ensemble_members=("apgd_geometry",)))
    np.testing.assert_allclose(out.loss, lam * SINGULAR_VALUES[0], rtol=1e-4)
    assert out.info["member_wins"] == {"apgd_geometry": 3}
    tf.debugging.assert_less_equal(tf.constant(np.linalg.norm((out.adversarial - x).reshape(3, -1), axis=1)),
                                   tf.constant(lam * (1 + 1e-5)))
