"""Tests for robust_dae_tf.attacks.objectives: the paper's objectives against an independent
numpy computation, the direction helpers, the registry, and the names reports rely on."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import attacks
from robust_dae_tf.evaluation import robustness
from robust_dae_tf.errors import ConfigError, DataError
from tests.attacks.toy_models import SHAPE, LinearModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def linear_batch():
    rng = np.random.default_rng(0)
    x = rng.random((5, *SHAPE)).astype(np.float32)
    x_t = rng.random((5, *SHAPE)).astype(np.float32)
    x_adv = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    return LinearModel(seed=3), x, x_t, x_adv


def test_latent_objective_is_eq12_squared_computed_in_numpy(linear_batch):
    model, x, x_t, x_adv = linear_batch
    objective = attacks.LATENT_OBJECTIVE
    reference = objective.reference(model, x, x_t)
    W = model.W.astype(np.float64)
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64)  # noqa: E731
    np.testing.assert_allclose(reference, flat(x_t) @ W.T, rtol=1e-5, atol=1e-6)  # g(x_t)
    expected = np.sum((flat(x_adv) @ W.T - flat(x_t) @ W.T) ** 2, axis=1)
    np.testing.assert_allclose(objective.loss_sq(model, tf.constant(x_adv), reference).numpy(), expected, rtol=1e-4)
    np.testing.assert_array_equal(objective.start_directions(x, x_t), x_t - x)
    assert objective.compared_with(x, x_t, None) is x_t
    # attack_loss is the objective itself, not squared.
    np.testing.assert_allclose(attacks.attack_loss(model, "latent", x_adv, reference), np.sqrt(expected), rtol=1e-4)


def test_max_damage_objective_is_eq13_squared_computed_in_numpy(linear_batch):
    model, x, x_t, x_adv = linear_batch
    objective = attacks.MAX_DAMAGE_OBJECTIVE
    reference = objective.reference(model, x, x_t)
    W, V, b = (a.astype(np.float64) for a in (model.W, model.V, model.b))
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64)  # noqa: E731
    rec = flat(x) @ W.T @ V.T + b  # f(g(x))
    np.testing.assert_allclose(reference, rec, rtol=1e-5, atol=1e-5)
    expected = np.sum((flat(x_adv) @ W.T @ V.T + b - rec) ** 2, axis=1)
    np.testing.assert_allclose(objective.loss_sq(model, tf.constant(x_adv), reference).numpy(), expected, rtol=1e-4)
    assert objective.start_directions(x, x_t) is None
    recs = np.zeros_like(x)
    assert objective.compared_with(x, x_t, recs) is recs


def test_reference_names_nan_outputs(linear_batch):
    model, x, x_t, _ = linear_batch

    class NaNDecoder(LinearModel):
        def decode(self, latents):
            return super().decode(latents) * np.nan

    with pytest.raises(DataError, match=r"NaN latents \(of the target images\) for 5 of 5"):
        attacks.LATENT_OBJECTIVE.reference(model, x, np.full_like(x_t, np.nan))
    with pytest.raises(DataError, match="NaN reconstructions for 5 of 5"):
        attacks.MAX_DAMAGE_OBJECTIVE.reference(NaNDecoder(seed=3), x, x_t)


def test_minimise_and_maximise_follow_from_one_attribute():
    latent, damage = attacks.LATENT_OBJECTIVE, attacks.MAX_DAMAGE_OBJECTIVE
    assert (latent.maximize, damage.maximize) == (False, True)
    assert (latent.sign, damage.sign) == (-1.0, 1.0)  # PGD descent / ascent
    assert (latent.worst, damage.worst) == (np.inf, -np.inf)
    new, old = np.array([1.0, 3.0]), np.array([2.0, 2.0])
    np.testing.assert_array_equal(latent.better(new, old), [True, False])
    np.testing.assert_array_equal(damage.better(new, old), [False, True])
    values = np.array([[1.0, 5.0], [3.0, 2.0]])
    np.testing.assert_array_equal(latent.best_np(values, 0), [1.0, 2.0])
    np.testing.assert_array_equal(damage.best_np(values, 0), [3.0, 5.0])
    np.testing.assert_array_equal(latent.best_tf(tf.constant(values), 0).numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(damage.best_tf(tf.constant(values), 0).numpy(), [3.0, 5.0])
    loss = np.array([0.2, 0.9, 0.5])
    assert np.argsort(latent.ranking_key(loss))[0] == 0 and np.argsort(damage.ranking_key(loss))[0] == 1
    # bin/check_attacks.py's gap: how much weaker `pgd` is than another attacker.
    assert latent.shortfall(11.0, 10.0) == pytest.approx(0.1) and damage.shortfall(9.0, 10.0) == pytest.approx(0.1)
    assert latent.shortfall(9.0, 10.0) < 0 < damage.shortfall(9.0, 10.0)
    assert (latent.stronger, damage.stronger) == ("lower", "higher")
    assert (latent.arrow, damage.arrow) == ("↓", "↑")


def test_defaults_and_resolve():
    assert attacks.DEFAULTS == {"latent": (400, 24), "max_damage": (200, 32)}
    config = attacks.AttackConfig(restarts=3)
    latent = attacks.resolve(config, "latent")
    assert (latent.steps, latent.exploration_starts, latent.restarts) == (400, 24, 3)
    assert attacks.MAX_DAMAGE_OBJECTIVE.resolve(config).steps == 200
    assert attacks.resolve(attacks.AttackConfig(steps=7, exploration_starts=2), "max_damage").steps == 7


def test_report_names_and_labels_of_the_paper_attacks():
    """The report keys and the tables' headers (read by bin/compare.py and earlier
    evaluations) must not change."""
    latent, damage = attacks.LATENT_OBJECTIVE, attacks.MAX_DAMAGE_OBJECTIVE
    assert attacks.PAPER_OBJECTIVES == (latent, damage) and (latent.name, damage.name) == ("latent", "max_damage")
    assert latent.metrics == ("attack_loss", "msssim_target_adv_rec", "msssim_target_adv_rec_standard",
                              "l2_target_adv_rec", "msssim_input_adv", "l2_input_adv")
    assert damage.metrics == ("attack_loss", "msssim_rec_adv_rec", "msssim_rec_adv_rec_standard", "l2_rec_adv_rec",
                              "msssim_input_adv", "l2_input_adv")
    assert latent.table_columns + damage.table_columns == (
        ("msssim_target_adv_rec", "Latent: MS-SSIM(x_r, x~_a)", "↓"),
        ("msssim_input_adv", "Latent: MS-SSIM(x_r, x_a)", "↓"),
        ("msssim_rec_adv_rec", "Max damage: MS-SSIM(x~_r, x~_a)", "↑"),
        ("msssim_input_adv", "Max damage: MS-SSIM(x_r, x_a)", "↓"),
    )
    assert [label for _, label in latent.curve_lines + damage.curve_lines] == [
        "latent: MS-SSIM(x_t, x~_a)", "latent: MS-SSIM(x, x_a)", "max damage: MS-SSIM(x~, x~_a)",
        "max damage: MS-SSIM(x, x_a)"]
    assert (latent.needs_targets, damage.needs_targets) == (True, False)


def test_seeds_of_the_paper_attacks_are_kept():
    """robustness.attack_seed: SeedSequence([seed, 1_000_000 + 2 b + a]), a = 0 latent, 1 max damage,
    whatever other attacks the protocol runs."""
    protocol = robustness.Protocol(seed=3)
    for b in range(3):
        for offset, name in enumerate(("latent", "max_damage")):
            expected = int(np.random.SeedSequence([3, 1_000_000 + 2 * b + offset]).generate_state(1)[0])
            assert robustness.attack_seed(protocol, b, name) == expected
            assert robustness.attack_seed(protocol, b, attacks.objective(name)) == expected
    assert [robustness.attack_seed(protocol, b, n) for b in range(3) for n in ("latent", "max_damage")] == [
        1165364447, 2919076995, 2005360982, 1634028845, 2849010887, 3809631977]


def test_registry():
    assert attacks.objective("latent") is attacks.LATENT_OBJECTIVE
    assert attacks.objective(attacks.MAX_DAMAGE_OBJECTIVE) is attacks.MAX_DAMAGE_OBJECTIVE
    assert attacks.OBJECTIVES["max_damage"] is attacks.MAX_DAMAGE_OBJECTIVE
    with pytest.raises(ConfigError, match="unknown attack 'fgsm'; choose one of latent, max_damage"):
        attacks.objective("fgsm")
    with pytest.raises(ConfigError, match="'latent' is already registered"):
        attacks.register(type("OtherLatent", (attacks.LatentAttack,), {})())
    assert attacks.register(attacks.LATENT_OBJECTIVE) is attacks.LATENT_OBJECTIVE  # the same one: fine
    with pytest.raises(ConfigError, match="must be an attacks.Objective"):
        attacks.register("latent")
    with pytest.raises(ConfigError, match="no name"):
        attacks.register(attacks.Objective())
    with pytest.raises(ConfigError, match="unknown attack"):
        robustness.Protocol(objectives=("latent", "nope"))
    with pytest.raises(ConfigError, match="distinct names"):
        robustness.Protocol(objectives=("latent", attacks.LATENT_OBJECTIVE))


def test_reports_use_the_objectives_without_tensorflow():
    """reporting / paper_results / the objectives import no TensorFlow (bin/compare.py and
    the cheap flag checks of bin/evaluate.py stay fast); the optimisers load on demand."""
    code = ("import sys; from robust_dae_tf import attacks, reporting, paper_results; "
            "assert attacks.LATENT_OBJECTIVE.metrics and reporting.table1_columns(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "attacks.project_l2_box; assert 'tensorflow' in sys.modules")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
