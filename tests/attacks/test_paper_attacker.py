"""The paper's attacker (method "paper") against an independent numpy/scipy implementation.

The reference below re-implements the documented procedure from the facts alone (the
start draw, fmin_l_bfgs_b settings, the rescaling inside the objective with the gradient
at the rescaled noise, the final rescaling) on `LinearModel`, whose losses and gradients
are analytic in numpy; it shares nothing with `attacks/paper.py` but the model weights.
"""

import numpy as np
import pytest
from scipy.optimize import fmin_l_bfgs_b

from robust_dae_tf import attacks
from robust_dae_tf.attacks import AttackConfig
from robust_dae_tf.attacks import paper as paper_attacker
from robust_dae_tf.errors import ConfigError, DataError
from tests.attacks.toy_models import P, SHAPE, LinearModel

PAPER = AttackConfig(method="paper")
SETTINGS = {"latent": {"m": 25, "factr": 10}, "max_damage": {"m": 100, "factr": 10, "pgtol": 1e-20}}


def reference_attack(model, name, x, x_t, budget, seed, index, chained=False):
    """numpy/scipy re-implementation of the paper's attacker for image `index`; returns (x_a, loss).

    chained=True differentiates through the rescaling instead (what the paper does NOT do),
    to show that the comparison can tell the two apart.
    """
    W, V = model.W.astype(np.float64), model.V.astype(np.float64)
    x = x.reshape(-1).astype(np.float64)
    rng = np.random.default_rng([seed, index])
    direction = rng.standard_normal(P)
    direction = direction / np.sqrt(np.sum(direction ** 2))
    u = rng.random()
    radius = rng.uniform(1e-8, budget)
    start = direction * u ** (1.0 / P) * radius

    def rescale(n):
        norm = np.sqrt(n @ n)
        return budget * n / norm if norm > budget else n

    # latent: r = W (x + n) - W x_t; max damage: r = V W (x + n) + b - (V W x + b) = V W n.
    A = W if name == "latent" else V @ W
    offset = W @ (x - x_t.reshape(-1)) if name == "latent" else np.zeros(P)
    sign = 1.0 if name == "latent" else -1.0

    def loss_and_grad(n):
        n_s = rescale(n)
        r = A @ n_s + offset
        loss = np.sqrt(r @ r)
        grad = A.T @ r / loss  # with respect to the rescaled noise
        norm = np.sqrt(n @ n)
        if chained and norm > budget:  # Jacobian of lambda n / ||n|| (symmetric)
            unit = n / norm
            grad = budget / norm * (grad - unit * (unit @ grad))
        return sign * loss, sign * grad

    noise, _, _ = fmin_l_bfgs_b(loss_and_grad, start, bounds=list(zip(-x, 1 - x)), **SETTINGS[name])
    noise = rescale(noise)
    return x + noise, abs(loss_and_grad(noise)[0])


@pytest.fixture(scope="module")
def linear():
    return LinearModel()


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(5)
    x = rng.random((3, *SHAPE)).astype(np.float32)
    x[:, 0] = 0.0  # pixels on the box boundary
    x[:, -1] = 1.0
    return x, rng.random((3, *SHAPE)).astype(np.float32)


def test_sample_d_ball_draw_order_and_ball():
    got = attacks.sample_d_ball(np.random.default_rng([3, 1]), 16, 0.5)
    rng = np.random.default_rng([3, 1])
    v = rng.standard_normal(16)
    u, r = rng.random(), rng.uniform(1e-8, 0.5)
    np.testing.assert_allclose(got, v / np.linalg.norm(v) * u ** (1 / 16) * r, rtol=1e-12)
    norms = [np.linalg.norm(attacks.sample_d_ball(np.random.default_rng(k), 16, 0.5)) for k in range(200)]
    assert max(norms) <= 0.5 and min(norms) > 0


@pytest.mark.parametrize("name", ["latent", "max_damage"])
@pytest.mark.parametrize("budget", [0.1, 10.0])  # binds / does not bind (||d|| <= 4 in a 16-pixel box)
def test_matches_independent_implementation(linear, batch, name, budget):
    x, x_t = batch
    result = attacks.run(name, linear, x, budget, PAPER, targets=x_t, seed=7)
    for i in range(x.shape[0]):
        x_a, loss = reference_attack(linear, name, x[i], x_t[i], budget, 7, i)
        np.testing.assert_allclose(result.adversarial[i].reshape(-1), x_a, atol=1e-4)
        np.testing.assert_allclose(result.loss[i], loss, atol=1e-4, rtol=1e-4)
        norm = np.linalg.norm(result.adversarial[i] - x[i])
        if budget == 0.1:
            assert norm == pytest.approx(budget, rel=1e-5)  # the budget binds
        else:
            assert norm < 0.5 * budget  # it does not
    # The result is the objective at exactly the returned images.
    reference = attacks.objective(name).reference(linear, x, x_t)
    np.testing.assert_allclose(result.loss, attacks.attack_loss(linear, name, result.adversarial, reference),
                               rtol=1e-5, atol=1e-6)


def test_gradient_is_not_chained_through_the_rescaling(linear, batch):
    """The comparison above can tell the paper's gradient from the chained one (lbfgsb.py's)."""
    x, x_t = batch
    result = attacks.run("latent", linear, x, 0.5, PAPER, targets=x_t, seed=7)
    paper = reference_attack(linear, "latent", x[0], x_t[0], 0.5, 7, 0)[0]
    chained = reference_attack(linear, "latent", x[0], x_t[0], 0.5, 7, 0, chained=True)[0]
    np.testing.assert_allclose(result.adversarial[0].reshape(-1), paper, atol=1e-4)
    assert np.abs(paper - chained).max() > 1e-3


@pytest.mark.parametrize("name", ["latent", "max_damage"])
def test_mlp_results_in_ball_and_box_and_seeded(mlp, mlp_images, name):
    x = mlp_images[:3]
    x_t = mlp_images[3:]
    for budget in (0.3, 2.0):
        result = attacks.run(name, mlp, x, budget, PAPER, targets=x_t, seed=1, record_curve=True)
        assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0
        norms = np.linalg.norm((result.adversarial - x).reshape(3, -1), axis=1)
        assert (norms <= budget * (1 + 1e-5)).all()
        assert np.isfinite(result.loss).all() and result.loss_curve.ndim == 1
    # Image i depends only on (seed, i): a batch of one gives the first image's result, up to
    # float32 rounding (a batch of one takes other matmul kernels, depending on the CPU: up to
    # 9e-7 apart on an AVX2-only Zen 3, bitwise equal on a Zen 4); another seed moves it far more.
    one = attacks.run(name, mlp, x[:1], budget, PAPER, targets=x_t[:1], seed=1)
    assert one.adversarial.shape == (1, *x.shape[1:])
    np.testing.assert_allclose(one.adversarial[0], result.adversarial[0], rtol=0, atol=1e-5)
    other = attacks.run(name, mlp, x[:1], budget, PAPER, targets=x_t[:1], seed=2)
    assert np.abs(other.adversarial[0] - one.adversarial[0]).max() > 1e-3


def test_settings_per_objective():
    assert attacks.paper.settings(attacks.LATENT_OBJECTIVE) == {"m": 25, "factr": 10.0, "pgtol": 1e-5}
    assert attacks.paper.settings(attacks.MAX_DAMAGE_OBJECTIVE) == {"m": 100, "factr": 10.0, "pgtol": 1e-20}


def test_bad_inputs(mlp, mlp_images):
    x = mlp_images[:2].copy()
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or infinite pixels in 1 of 2"):
        attacks.max_damage_attack(mlp, x, 1.0, PAPER)

    class Toy(attacks.MaximumDamageAttack):
        name = "toy_not_in_paper"
        paper_lbfgsb_memory = None

    with pytest.raises(ConfigError, match="'paper' has no settings for the attack 'toy_not_in_paper'"):
        attacks.run(Toy(), mlp, mlp_images[:1], 1.0, PAPER)
    with pytest.raises(ConfigError, match="choose one of pgd, lbfgsb, paper"):
        AttackConfig(method="fgsm")


@pytest.mark.parametrize("name", ["latent", "max_damage"])
def test_concurrent_rounds_reuse_rows_and_stay_exact(linear, monkeypatch, name):
    """More images than concurrent rows: rows are freed and refilled while other images
    still run; every image still gets its own run of the paper's algorithm (the
    independent numpy/scipy implementation), and the assignment of images to rows is
    deterministic (two runs are bitwise equal)."""
    rng = np.random.default_rng(11)
    x = rng.random((5, *SHAPE)).astype(np.float32)
    x_t = rng.random((5, *SHAPE)).astype(np.float32)
    monkeypatch.setattr(paper_attacker, "CONCURRENT_IMAGES", 2)
    first = attacks.run(name, linear, x, 0.3, PAPER, targets=x_t, seed=3, record_curve=True)
    again = attacks.run(name, linear, x, 0.3, PAPER, targets=x_t, seed=3, record_curve=True)
    np.testing.assert_array_equal(first.adversarial, again.adversarial)
    np.testing.assert_array_equal(first.loss_curve, again.loss_curve)
    for i in range(x.shape[0]):
        x_a, loss = reference_attack(linear, name, x[i], x_t[i], 0.3, 3, i)
        np.testing.assert_allclose(first.adversarial[i].reshape(-1), x_a, atol=1e-4)
        np.testing.assert_allclose(first.loss[i], loss, atol=1e-4, rtol=1e-4)


def test_an_error_in_one_image_stops_the_attack(mlp, mlp_images, monkeypatch):
    """An error inside one image's optimisation (a worker thread) ends the attack with that
    error: no hang, no thread left behind."""
    import threading

    monkeypatch.setattr(paper_attacker, "CONCURRENT_IMAGES", 2)
    real, calls = paper_attacker.onto_ball, []

    def failing(noise, budget):
        calls.append(1)
        if len(calls) == 7:
            raise DataError("boom")
        return real(noise, budget)

    monkeypatch.setattr(paper_attacker, "onto_ball", failing)
    before = threading.active_count()
    with pytest.raises(DataError, match="boom"):
        attacks.run("latent", mlp, mlp_images[:4], 1.0, PAPER, targets=mlp_images[1:5], seed=0)
    assert threading.active_count() == before
