"""Tests for APGD (robust_dae_tf.attacks.apgd): the checkpoint schedule against an exact
formula, optima of linear problems (ball only and with the box active), the step-size
rule against the loss trajectory it saw, invariants, a batch of one, NaN."""

from fractions import Fraction
import math

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import attacks
from robust_dae_tf.attacks import AttackConfig, apgd, starts
from robust_dae_tf.attacks.objectives import Objective
from robust_dae_tf.errors import ConfigError, DataError
from tests.attacks.test_optimisers import assert_latent_active_box_optimum, assert_latent_closed_form
from tests.attacks.toy_models import SHAPE, LinearModel, NaNModel


def _exact_checkpoints(n):
    """w_j = ceil(p_j n) with the p_j in exact rational arithmetic (independent of apgd's floats)."""
    p = [Fraction(0), Fraction(22, 100)]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100))
        if nxt > 1:
            break
        p.append(nxt)
    out = []
    for value in p:
        w = math.ceil(value * n)
        if not out or w > out[-1]:
            out.append(w)
    return out


@pytest.mark.parametrize("n", [5, 7, 10, 33, 50, 100, 125, 160, 200, 320, 500, 1000])
def test_checkpoints_match_exact_formula(n):
    assert apgd.checkpoints(n) == _exact_checkpoints(n)


def test_checkpoint_fractions_are_the_papers():
    np.testing.assert_allclose(apgd.checkpoint_fractions(), [0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99])
    assert apgd.checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


def _apgd(model, objective, x, lam, evaluations, targets=None, seed=0, restarts=1, directions=None):
    objective = attacks.objective(objective)
    ref = objective.reference(model, x, targets)
    return apgd.run(model, objective, x, ref, lam, evaluations, seed, 1000, False, directions=directions,
                    restarts=restarts)


def test_max_damage_linear_reaches_top_singular_value():
    model = LinearModel()
    lam = 0.4  # x = 0.5: the box stays inactive
    x = np.full((3, *SHAPE), 0.5, np.float32)
    result = _apgd(model, attacks.MAX_DAMAGE, x, lam, 60)
    optimum = lam * np.linalg.svd(model.V @ model.W, compute_uv=False)[0]
    assert np.all(result.loss >= 0.999 * optimum), (result.loss, optimum)
    assert np.all(result.loss <= optimum * (1 + 1e-4))
    assert result.info == {"gradient_evaluations_per_image": 60}


def test_latent_linear_matches_closed_form_through_the_method():
    result = assert_latent_closed_form(lambda model, x, targets, lam: attacks.latent_attack(
        model, x, targets, lam, AttackConfig(method="apgd", gradient_evaluations=100)))
    assert result.info["gradient_evaluations_per_image"] == 100


def test_latent_linear_with_active_box_matches_scipy():
    assert_latent_active_box_optimum(lambda model, x, targets, lam: _apgd(model, attacks.LATENT, x, lam, 100, targets))


def _traced(model, objective, x, lam, steps, targets=None, seed=0):
    objective = attacks.objective(objective)
    ref = objective.reference(model, x, targets)
    d0 = attacks.StartStream(lam, 1, seed).next(x)[0]
    is_cp, interval = apgd._schedule(steps)
    fn = apgd._apgd_function(model, objective, x.shape[1:], ref.shape[1], False, trace=True)
    _, best, losses, etas = fn(tf.constant(x), tf.constant(ref), tf.constant(d0), tf.constant(lam, tf.float32),
                               tf.constant(is_cp), tf.constant(interval))
    return best.numpy(), losses.numpy().astype(np.float64), etas.numpy().astype(np.float64)


def _expected_etas(losses, lam, n, maximize):
    """The step sizes the paper's rule gives for a loss trajectory (numpy, written from the
    rule in docs/attacks.md / the module docstring): [n] for one row."""
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)
    ws = [w for w in _exact_checkpoints(n) if w <= n - 1]
    eta, etas = 2.0 * lam, []
    best, prev = losses[0], losses[0]
    best_at_cp, reduced_last, count, last_w = losses[0], False, 0, 0
    for k in range(n):
        value = losses[k]
        if k > 0 and better(value, prev):
            count += 1
        if better(value, best):
            best = value
        current = value
        if k in ws and k > 0:
            reduce = count < 0.75 * (k - last_w) or (not reduced_last and not better(best, best_at_cp))
            if reduce:
                eta /= 2
                current = best
            reduced_last, best_at_cp, count, last_w = reduce, best, 0, k
        prev = current
        etas.append(eta)
    return np.array(etas)


@pytest.mark.parametrize("kind,lam", [(attacks.MAX_DAMAGE, 2.0), (attacks.LATENT, 0.3)])
def test_step_size_follows_the_rule_on_the_trajectory(kind, lam, mlp_images):
    """The step size of every row and iteration equals what the rule gives for the losses
    the optimiser saw; on this problem it halves at some checkpoints and not at others."""
    from tests.attacks.toy_models import MLPModel

    model = MLPModel(seed=2)
    x = mlp_images
    targets = np.roll(x, 1, axis=0)
    n = 60
    _, losses, etas = _traced(model, kind, x, lam, n, targets)
    maximize = attacks.objective(kind).maximize
    halvings = 0
    for row in range(x.shape[0]):
        expected = _expected_etas(losses[:, row], lam, n, maximize)
        np.testing.assert_allclose(etas[:, row], expected, rtol=1e-6)
        halvings += int(round(math.log2(2 * lam / expected[-1])))
    checkpoints = len([w for w in _exact_checkpoints(n) if 0 < w <= n - 1])
    assert 0 < halvings < checkpoints * x.shape[0]  # both branches were taken


class _Flat(Objective):
    """A loss that does not depend on d: no step ever improves it."""

    name = "test_flat"
    maximize = True

    def reference(self, model, images, targets):
        return np.zeros((images.shape[0], 1), np.float32)

    def loss_sq(self, model, x_adv, reference):
        return 0.0 * tf.reduce_sum(tf.reshape(x_adv, [tf.shape(x_adv)[0], -1]), axis=1) + 1.0


def test_step_size_halves_at_every_checkpoint_when_progress_stalls():
    x = np.full((2, *SHAPE), 0.5, np.float32)
    n = 100
    _, losses, etas = _traced(LinearModel(), _Flat(), x, 1.0, n)
    ws = [w for w in _exact_checkpoints(n) if 0 < w <= n - 1]
    expected = np.array([2.0 / 2 ** sum(w <= k for w in ws) for k in range(n)])
    np.testing.assert_allclose(etas, np.stack([expected] * 2, 1))
    np.testing.assert_allclose(losses, 1.0)


def test_batch_of_one_equals_its_row_of_a_batch(mlp, mlp_images):
    targets = np.roll(mlp_images, 1, axis=0)
    many = _apgd(mlp, attacks.LATENT, mlp_images, 1.5, 40, targets)
    one = _apgd(mlp, attacks.LATENT, mlp_images[:1], 1.5, 40, targets[:1])
    assert one.loss.shape == (1,) and one.adversarial.shape == (1, *mlp_images.shape[1:])
    # The same start and steps; only float32 rounding differs (a batch of one takes other matmul
    # kernels, and which depends on the CPU: 1.6e-6 apart on an AVX2-only Zen 3). The loss is a
    # distance of latents of scale ~1 near success (~0.01): its rounding is absolute, ~1e-6.
    np.testing.assert_allclose(one.loss[0], many.loss[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one.adversarial[0], many.adversarial[0], atol=1e-5)


@pytest.mark.parametrize("kind", [attacks.MAX_DAMAGE, attacks.LATENT])
def test_result_invariants_and_restarts(kind, mlp, mlp_images):
    objective = attacks.objective(kind)
    targets = np.roll(mlp_images, 1, axis=0)
    lam = 1.0 if objective.maximize else 0.3  # latent: a budget that keeps the target out of reach
    one = _apgd(mlp, kind, mlp_images, lam, 40, targets, restarts=1)
    four = _apgd(mlp, kind, mlp_images, lam, 160, targets, restarts=4)  # start 0 is the same as one's
    assert four.info["gradient_evaluations_per_image"] == 160
    for result in (one, four):
        d = (result.adversarial - mlp_images).reshape(len(mlp_images), -1).astype(np.float64)
        assert np.all(np.linalg.norm(d, axis=1) <= lam * (1 + 1e-5))
        assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
        # The loss is the objective at exactly the returned images.
        ref = objective.reference(mlp, mlp_images, targets)
        np.testing.assert_allclose(result.loss, attacks.attack_loss(mlp, objective, result.adversarial, ref),
                                   rtol=1e-5, atol=1e-6)
    assert np.all(~objective.better(one.loss, four.loss * (1 + 1e-6 * objective.sign) + 1e-6 * objective.sign))


def test_several_directed_starts_do_not_depend_on_chunking(mlp, mlp_images):
    """Directions [k, N, ...] (starts 0 .. k-1) are sliced with the images: chunks of 2 images
    give the result of one chunk; and the directed starts are used (the result differs from
    random starts alone)."""
    objective = attacks.MAX_DAMAGE_OBJECTIVE
    directions = starts.towards_other_images(mlp_images, 2, seed=1)
    ref = objective.reference(mlp, mlp_images, None)
    whole = apgd.run(mlp, objective, mlp_images, ref, 1.0, 60, 0, 1000, False, directions=directions, restarts=3)
    chunked = apgd.run(mlp, objective, mlp_images, ref, 1.0, 60, 0, 2, False, directions=directions, restarts=3)
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-5)
    np.testing.assert_allclose(chunked.adversarial, whole.adversarial, atol=1e-5)
    randomly = apgd.run(mlp, objective, mlp_images, ref, 1.0, 60, 0, 1000, False, restarts=3)
    assert not np.allclose(randomly.adversarial, whole.adversarial, atol=1e-4)


def test_nan_rows_give_nan_loss_and_the_runner_refuses(mlp_images):
    model = NaNModel()
    obj = attacks.LATENT_OBJECTIVE
    targets = np.roll(mlp_images, 1, axis=0)
    ref = np.asarray(model.encode(tf.constant(targets)), np.float32)  # row 1 of the reference is NaN
    result = apgd.run(model, obj, mlp_images, ref, 1.0, 20, 0, 1000, False)
    assert np.isnan(result.loss[1]) and np.isfinite(np.delete(result.loss, 1)).all()
    with pytest.raises(DataError, match="NaN"):
        attacks.latent_attack(model, mlp_images, targets, 1.0, AttackConfig(method="apgd", gradient_evaluations=20))
    bad = mlp_images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        attacks.max_damage_attack(LinearModel(), bad, 1.0, AttackConfig(method="apgd", gradient_evaluations=20))


def test_config_checks():
    with pytest.raises(ConfigError, match="at least 5"):
        AttackConfig(method="apgd", gradient_evaluations=4)
    with pytest.raises(ConfigError, match="gradient_evaluations"):
        AttackConfig(method="apgd", gradient_evaluations=0)
    assert attacks.resolve(AttackConfig(method="apgd"), attacks.MAX_DAMAGE).gradient_evaluations == 500
    assert attacks.resolve(AttackConfig(method="apgd"), attacks.LATENT).gradient_evaluations == 800
    assert attacks.resolve(AttackConfig(), attacks.LATENT).gradient_evaluations is None  # pgd: not used
