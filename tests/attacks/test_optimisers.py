"""Tests for the attack optimisers (robust_dae_tf.attacks.pgd, .lbfgsb) and entry points:
optimality on linear models, the update rule, result invariants, PGD vs L-BFGS-B, and
error messages."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from robust_dae_tf import attacks
from robust_dae_tf.attacks import AttackConfig, pgd
from robust_dae_tf.errors import ConfigError, DataError
from tests.attacks.toy_models import P, SHAPE, LinearModel, MLPModel, NaNModel, scipy_projection


# ------------------------------------------------------------------ linear models


def test_max_damage_linear_reaches_top_singular_value():
    model = LinearModel()
    lam = 0.4  # x = 0.5: |d_i| <= ||d|| <= 0.4 keeps the box inactive
    x = np.full((3, *SHAPE), 0.5, np.float32)
    result = attacks.max_damage_attack(model, x, lam, AttackConfig(steps=60, restarts=1))
    optimum = lam * np.linalg.svd(model.V @ model.W, compute_uv=False)[0]
    assert np.all(result.loss >= 0.99 * optimum), (result.loss, optimum)
    assert np.all(result.loss <= optimum * (1 + 1e-4))


def _trust_region_optimum(W, r, lam):
    """min ||W d - r|| s.t. ||d|| <= lam, by bisection on the Lagrange multiplier."""
    d = np.linalg.lstsq(W, r, rcond=None)[0]
    if np.linalg.norm(d) <= lam:
        return np.linalg.norm(W @ d - r)
    A, b = W.T @ W, W.T @ r
    lo, hi = 0.0, 1.0
    while np.linalg.norm(np.linalg.solve(A + hi * np.eye(len(A)), b)) > lam:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.linalg.norm(np.linalg.solve(A + mid * np.eye(len(A)), b)) > lam else (lo, mid)
    d = np.linalg.solve(A + hi * np.eye(len(A)), b)
    return np.linalg.norm(W @ d - r)


def assert_latent_closed_form(attack_fn, rtol_above=1e-3):
    """`attack_fn(model, x, targets, lam)` -> AttackResult reaches the trust-region optimum
    of the linear latent attack (box inactive) within 0.1 %."""
    model = LinearModel(latent_dim=6)
    rng = np.random.default_rng(4)
    x = np.full((3, *SHAPE), 0.5, np.float32)
    targets = rng.random((3, *SHAPE)).astype(np.float32)
    lam = 0.2
    result = attack_fn(model, x, targets, lam)
    W = model.W.astype(np.float64)
    for i in range(3):
        r = W @ (targets[i].ravel() - x[i].ravel())
        optimum = _trust_region_optimum(W, r, lam)
        assert optimum > 0.2  # the budget binds
        assert optimum * (1 - 1e-4) - 1e-5 <= result.loss[i] <= optimum * (1 + rtol_above) + 1e-5, (result.loss[i],
                                                                                                    optimum)
    return result


def test_latent_linear_matches_closed_form():
    assert_latent_closed_form(lambda model, x, targets, lam: attacks.latent_attack(
        model, x, targets, lam, AttackConfig(steps=80, restarts=1)))


def assert_latent_active_box_optimum(attack_fn):
    """Convex case where the box binds (dark pixels cannot get darker): `attack_fn(model, x,
    targets, lam)` -> AttackResult reaches SLSQP's optimum within 0.1 %."""
    model = LinearModel(latent_dim=6, seed=1)
    W = model.W.astype(np.float64)
    x, targets = [], []
    for seed in (2, 3):
        rng = np.random.default_rng(seed)
        xi = rng.random(P)
        xi[:8] = 0.0
        x.append(xi.reshape(SHAPE))
        targets.append(rng.random(P).reshape(SHAPE))
    x, targets = np.float32(x), np.float32(targets)
    lam = 0.5
    result = attack_fn(model, x, targets, lam)
    for i in range(2):
        xi = x[i].ravel().astype(np.float64)
        r = W @ (targets[i].ravel() - xi)
        res = optimize.minimize(
            lambda d: np.sum((W @ d - r) ** 2), np.zeros(P), jac=lambda d: 2 * W.T @ (W @ d - r), method="SLSQP",
            bounds=list(zip(-xi, 1 - xi)),
            constraints=[{"type": "ineq", "fun": lambda d: lam ** 2 - d @ d, "jac": lambda d: -2 * d}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        optimum = np.sqrt(res.fun)
        # The box matters: the ball-only optimum is lower than the box-and-ball one.
        assert _trust_region_optimum(W, r, lam) < optimum - 1e-3
        assert optimum * (1 - 1e-3) - 1e-5 <= result.loss[i] <= optimum * (1 + 1e-3) + 1e-5, (result.loss[i], optimum)
        d = result.adversarial[i].ravel().astype(np.float64) - xi
        assert np.linalg.norm(d) <= lam * (1 + 1e-5) and np.all(result.adversarial[i] >= 0)
    return result


def test_latent_linear_with_active_box_matches_scipy():
    assert_latent_active_box_optimum(lambda model, x, targets, lam: attacks.latent_attack(
        model, x, targets, lam, AttackConfig(steps=80, restarts=1)))


# ------------------------------------------------------------------ update rule


def test_one_pgd_step_is_projected_feasible_direction():
    """One latent step from d = 0 equals P(-eta * u) with u the gradient restricted to the
    directions the box allows, normalised (numpy/scipy, written separately)."""
    model = LinearModel(seed=4)
    rng = np.random.default_rng(11)
    x = rng.random(P).astype(np.float32)
    x[:6] = 0.0  # on the lower bound: a negative step there is blocked
    x[6:10] = 1.0  # on the upper bound: a positive step there is blocked
    z_t = rng.normal(size=(1, 6)).astype(np.float32) * 3
    lam, frac = 0.8, 0.5
    run = pgd._pgd_function(model, attacks.LATENT, SHAPE, 6, jit_compile=False)
    d, _, _ = run(tf.constant(x.reshape(1, *SHAPE)), tf.constant(z_t), tf.zeros((1, *SHAPE)),
                  tf.constant(lam), tf.constant(1), tf.constant(1), tf.constant(frac))
    W = model.W.astype(np.float64)
    grad = 2 * W.T @ (W @ x - z_t[0])  # gradient of ||W(x + d) - z_t||^2 at d = 0
    step = -grad  # descent
    blocked = ((x <= 0) & (step < 0)) | ((x >= 1) & (step > 0))
    assert blocked.any() and not blocked.all()
    grad[blocked] = 0.0
    expected = scipy_projection(-frac * lam * grad / np.linalg.norm(grad), x.astype(np.float64), lam)
    np.testing.assert_allclose(d.numpy().reshape(-1), expected, atol=2e-5)
    # The blocked pixels did not move; the step used its whole length on the others.
    np.testing.assert_allclose(d.numpy().reshape(-1)[blocked], 0.0, atol=1e-7)


def test_exploration_schedule_and_plain_pgd(mlp, mlp_images):
    assert attacks.pgd_phases(AttackConfig(steps=200, restarts=2, exploration_starts=32)) == [
        (64, 25, 1.0), (2, 200, 0.25)]
    # Per-attack defaults for the fields left None; explicit values win.
    assert attacks.pgd_phases(AttackConfig(), "latent") == [(48, 50, 1.0), (2, 400, 0.25)]
    assert attacks.pgd_phases(AttackConfig(), "max_damage") == [(64, 25, 1.0), (2, 200, 0.25)]
    assert attacks.resolve(AttackConfig(steps=7), "latent").steps == 7
    assert attacks.exploration_schedule(AttackConfig(steps=30, restarts=3, exploration_starts=4)) == (12, 4)
    plain = AttackConfig(steps=30, restarts=2, exploration_starts=1)
    assert attacks.pgd_phases(plain) == [(2, 30, 1.0)] and attacks.exploration_schedule(plain) == (0, 0)
    result = attacks.max_damage_attack(mlp, mlp_images, 1.0, plain, record_curve=True)
    assert result.exploration_curve is None and result.loss_curve.shape == (30,)
    with pytest.raises(ConfigError, match="exploration_starts"):
        attacks.max_damage_attack(mlp, mlp_images, 1.0, AttackConfig(exploration_starts=0))


def test_latent_attack_first_start_points_at_the_target():
    """Start 0 is the projection of x_t - x (not random); the others stay random and
    the same as without a target direction."""
    rng = np.random.default_rng(5)
    x = rng.random((3, *SHAPE)).astype(np.float32)
    x[:, :2] = 0.0
    x_t = rng.random((3, *SHAPE)).astype(np.float32)
    lam = 0.7
    guided = attacks.StartStream(lam, 3, seed=1).next(x, x_t - x)
    plain = attacks.StartStream(lam, 3, seed=1).next(x)
    np.testing.assert_array_equal(guided[1:], plain[1:])
    for i in range(3):
        expected = scipy_projection((x_t[i] - x[i]).reshape(-1).astype(np.float64), x[i].reshape(-1), lam)
        np.testing.assert_allclose(guided[0, i].reshape(-1), expected, atol=2e-5)
    # A reachable target inside the budget is found exactly by the first start.
    model = LinearModel(seed=2)
    near = np.clip(x + 0.02, 0, 1).astype(np.float32)
    result = attacks.latent_attack(model, x, near, 1.0, AttackConfig(steps=3, restarts=1, exploration_starts=2))
    np.testing.assert_allclose(result.loss, 0.0, atol=1e-4)


class PyFunctionModel(MLPModel):
    """Encodes through tf.py_function, which XLA cannot compile (graph mode can)."""

    def encode(self, images):
        z = tf.py_function(lambda t: super(PyFunctionModel, self).encode(t), [images], tf.float32)
        return tf.ensure_shape(z, [None, 4])


def test_xla_and_fallback_give_the_graph_mode_result(mlp, mlp_images, caplog):
    cfg = dict(steps=20, restarts=2, exploration_starts=4)
    graph = attacks.max_damage_attack(mlp, mlp_images, 1.0, AttackConfig(**cfg, jit_compile=False), seed=3)
    xla = attacks.max_damage_attack(mlp, mlp_images, 1.0, AttackConfig(**cfg, jit_compile=True), seed=3)
    np.testing.assert_allclose(xla.loss, graph.loss, rtol=1e-3)
    fallback_model = PyFunctionModel()  # same seed, same weights as `mlp`
    with caplog.at_level("WARNING", logger="robust_dae_tf.attacks"):
        fallback = attacks.max_damage_attack(fallback_model, mlp_images, 1.0, AttackConfig(**cfg), seed=3)
    assert "without XLA" in caplog.text
    np.testing.assert_allclose(fallback.loss, graph.loss, rtol=1e-4)


# ------------------------------------------------------------------ invariants


def test_result_invariants(mlp, mlp_images):
    rng = np.random.default_rng(6)
    targets = rng.random(mlp_images.shape).astype(np.float32)
    lam = 1.5
    cfg = AttackConfig(steps=40, restarts=2, exploration_starts=8)
    for kind, result in (
        ("latent", attacks.latent_attack(mlp, mlp_images, targets, lam, cfg, record_curve=True)),
        ("max_damage", attacks.max_damage_attack(mlp, mlp_images, lam, cfg, record_curve=True)),
    ):
        adv = result.adversarial
        assert adv.dtype == np.float32 and adv.shape == mlp_images.shape
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        norms = np.linalg.norm((adv - mlp_images).reshape(len(adv), -1), axis=1)
        assert np.all(norms <= lam * (1 + 1e-5))
        # The reported loss is the objective at exactly the returned images.
        z_adv = mlp.encode(adv).numpy()
        if kind == "latent":
            expected = np.linalg.norm(z_adv - mlp.encode(targets).numpy(), axis=1)
        else:
            rec = mlp.decode(mlp.encode(mlp_images)).numpy()
            expected = np.linalg.norm((mlp.decode(z_adv).numpy() - rec).reshape(len(adv), -1), axis=1)
        np.testing.assert_allclose(result.loss, expected, rtol=1e-4, atol=1e-6)
        curve = result.loss_curve
        assert curve.shape == (40,)
        assert np.all(np.diff(curve) <= 1e-6) if kind == "latent" else np.all(np.diff(curve) >= -1e-6)
        np.testing.assert_allclose(curve[-1], result.loss.mean(), rtol=1e-5)
    assert attacks.max_damage_attack(mlp, mlp_images, lam, cfg).loss_curve is None


def test_more_restarts_never_worse_and_seeds_reproducible(mlp, mlp_images):
    lam = 2.0
    one = attacks.max_damage_attack(mlp, mlp_images, lam, AttackConfig(steps=30, restarts=1, exploration_starts=8), seed=7)
    three = attacks.max_damage_attack(mlp, mlp_images, lam, AttackConfig(steps=30, restarts=3, exploration_starts=8), seed=7)
    assert np.all(three.loss >= one.loss - 1e-3 * np.abs(one.loss)), (one.loss, three.loss)
    again = attacks.max_damage_attack(mlp, mlp_images, lam, AttackConfig(steps=30, restarts=1, exploration_starts=8), seed=7)
    np.testing.assert_array_equal(again.adversarial, one.adversarial)
    np.testing.assert_array_equal(again.loss, one.loss)
    other = attacks.max_damage_attack(mlp, mlp_images, lam, AttackConfig(steps=30, restarts=1, exploration_starts=8), seed=8)
    assert not np.array_equal(other.adversarial, one.adversarial)
    # Chunking does not change the result beyond float rounding.
    chunked = attacks.max_damage_attack(mlp, mlp_images, lam, AttackConfig(steps=30, restarts=1, chunk_size=2, exploration_starts=8), seed=7)
    np.testing.assert_allclose(chunked.loss, one.loss, rtol=1e-3)


def test_pgd_matches_or_beats_lbfgsb(mlp, mlp_images):
    rng = np.random.default_rng(9)
    x = mlp_images[:3]
    targets = rng.random(x.shape).astype(np.float32)
    pgd = AttackConfig(steps=60, restarts=2, exploration_starts=8)
    ref = AttackConfig(steps=60, restarts=2, method="lbfgsb")
    # Absolute slack for a reachable target (loss ~ 0): 1e-3 of the clean latent distance.
    slack = 1e-3 * np.linalg.norm(mlp.encode(x).numpy() - mlp.encode(targets).numpy(), axis=1).mean()
    for lam in (0.3, 1.0):
        ours = attacks.latent_attack(mlp, x, targets, lam, pgd).loss
        theirs = attacks.latent_attack(mlp, x, targets, lam, ref).loss
        assert ours.mean() <= theirs.mean() * 1.02 + slack, (lam, ours, theirs)
        ours = attacks.max_damage_attack(mlp, x, lam, pgd).loss
        lbfgsb = attacks.max_damage_attack(mlp, x, lam, ref, record_curve=True)
        assert ours.mean() >= lbfgsb.loss.mean() * 0.98, (lam, ours, lbfgsb.loss)
        assert lbfgsb.loss_curve.shape == (60,)
    # L-BFGS-B results obey the same constraints.
    adv = lbfgsb.adversarial
    assert np.all(np.linalg.norm((adv - x).reshape(3, -1), axis=1) <= 1.0 * (1 + 1e-5))
    assert adv.min() >= 0 and adv.max() <= 1


# ------------------------------------------------------------------ errors


def test_bad_inputs(mlp, mlp_images):
    with pytest.raises(ConfigError, match="budget"):
        attacks.max_damage_attack(mlp, mlp_images, 0.0)
    with pytest.raises(ConfigError, match="budget"):
        attacks.latent_attack(mlp, mlp_images, mlp_images, float("nan"))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        attacks.max_damage_attack(mlp, mlp_images * 255, 1.0)
    bad = mlp_images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        attacks.max_damage_attack(mlp, bad, 1.0)
    with pytest.raises(DataError, match="same shape"):
        attacks.latent_attack(mlp, mlp_images, mlp_images[:2], 1.0)
    with pytest.raises(DataError, match=r"\[N, H, W, C\]"):
        attacks.max_damage_attack(mlp, mlp_images[0], 1.0)
    with pytest.raises(ConfigError, match="method"):
        attacks.max_damage_attack(mlp, mlp_images, 1.0, AttackConfig(method="fgsm"))
    with pytest.raises(ConfigError, match="steps"):
        attacks.max_damage_attack(mlp, mlp_images, 1.0, AttackConfig(steps=0))
    with pytest.raises(DataError, match="NaN latents.* 1 of 6 images"):
        attacks.max_damage_attack(NaNModel(), mlp_images, 1.0, AttackConfig(steps=2, restarts=1))


# ------------------------------------------------------------------ memory-bounded chunks, XLA default


class TinyConvModel:
    """A two-block conv encoder / decoder on 8x8x3 images, with bin/train.py's metadata
    (`config.model.architecture = "conv"`)."""

    def __init__(self):
        from robust_dae_tf import networks

        tf.keras.utils.set_random_seed(3)
        self.encoder = networks.build_conv_encoder((8, 8, 3), 4, (4, 8))
        self.decoder = networks.build_conv_decoder((8, 8, 3), 4, (4, 8))
        self.metadata = {"config": {"model": {"architecture": "conv"}}}

    def encode(self, images):
        return self.encoder(images, training=False)

    def decode(self, latents):
        return self.decoder(latents, training=False)


def test_chunk_size_rule_and_xla_default():
    # min(1000, 2**30 // (300 * pixels * restarts)): the documented values.
    assert attacks.default_chunk_size((32, 32, 1), 2) == 1000
    assert attacks.default_chunk_size((32, 32, 3), 2) == 582
    assert attacks.default_chunk_size((64, 64, 3), 2) == 145
    assert attacks.default_chunk_size((64, 64, 3), 64) == 4
    assert attacks.default_chunk_size((4096, 4096, 3), 2) == 1
    # One call of the default conv attack at 64x64x3 (64 exploration starts per image): <= 1 GiB of rows.
    rows = max(1, attacks.default_chunk_size((64, 64, 3), 2) * 2 // 64) * 64
    assert rows * 64 * 64 * 3 * attacks.ROW_BYTES_PER_PIXEL <= attacks.ATTACK_MEMORY_BYTES
    config = AttackConfig()
    assert config.chunk_size is None and config.jit_compile is None
    conv = attacks.for_model(config, TinyConvModel(), (64, 64, 3))
    assert conv.chunk_size == 145 and conv.jit_compile is False
    fc = attacks.for_model(config, MLPModel(), (32, 32, 1))
    assert fc.chunk_size == 1000 and fc.jit_compile is True
    explicit = attacks.for_model(AttackConfig(chunk_size=7, jit_compile=True), TinyConvModel(), (64, 64, 3))
    assert explicit.chunk_size == 7 and explicit.jit_compile is True
    with pytest.raises(ConfigError, match="jit_compile"):
        AttackConfig(jit_compile="yes")


@pytest.mark.parametrize("kind", ["latent", "max_damage"])
def test_conv_attack_chunks_give_the_result_of_one_big_chunk(kind):
    model = TinyConvModel()
    rng = np.random.default_rng(5)
    x = rng.random((5, 8, 8, 3)).astype(np.float32)
    targets = rng.random((5, 8, 8, 3)).astype(np.float32)
    results = {}
    for chunk in (1, 2, 1000):
        config = AttackConfig(steps=6, restarts=2, exploration_starts=3, chunk_size=chunk)
        results[chunk] = attacks.run(kind, model, x, 0.5, config, targets=targets, seed=11)
    for chunk in (1, 2):
        np.testing.assert_allclose(results[chunk].adversarial, results[1000].adversarial, rtol=0, atol=1e-6)
        # The conv kernels' float32 accumulation order depends on the batch size (oneDNN picks
        # its blocking per shape and CPU), so a small loss may differ in its last bits (3.7e-8 at
        # 0.0032 on an AMD EPYC); a different start or step would move it far more than 1e-6.
        np.testing.assert_allclose(results[chunk].loss, results[1000].loss, rtol=1e-5, atol=1e-6)


def test_pgd_several_directed_exploration_starts_do_not_depend_on_chunking(mlp, mlp_images):
    """Directions [k, N, ...] replace the first k exploration starts and are sliced with the
    images: chunks of 2 images give the result of one chunk, and the starts are used."""
    from robust_dae_tf.attacks import starts

    objective = attacks.MAX_DAMAGE_OBJECTIVE
    directions = starts.towards_other_images(mlp_images, 3, seed=2)
    ref = objective.reference(mlp, mlp_images, None)

    def run(chunk, dirs):
        config = objective.resolve(AttackConfig(steps=16, restarts=1, exploration_starts=4, chunk_size=chunk,
                                                jit_compile=False))
        return pgd.run(mlp, objective, mlp_images, ref, 1.0, config, 0, False, directions=dirs)

    whole, chunked = run(1000, directions), run(2, directions)
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-5)
    np.testing.assert_allclose(chunked.adversarial, whole.adversarial, atol=1e-5)
    assert not np.allclose(run(1000, None).adversarial, whole.adversarial, atol=1e-4)


@pytest.mark.parametrize("objective", [attacks.MAX_DAMAGE_OBJECTIVE, attacks.LATENT_OBJECTIVE], ids=lambda o: o.name)
def test_pgd_towards_starts_are_the_towards_directions_after_the_objectives_own(mlp, mlp_images, objective):
    """AttackConfig(towards_starts=k) runs PGD from k starts towards other images of the batch
    (after the latent attack's target direction) at unchanged cost: the same result as
    pgd.run given those directions explicitly, and not the result without them."""
    from robust_dae_tf.attacks import starts

    targets = mlp_images[::-1].copy() if objective.needs_targets else None
    base = dict(steps=16, restarts=1, exploration_starts=4, jit_compile=False)
    seed = 3
    towards = attacks.run(objective, mlp, mlp_images, 1.0, AttackConfig(towards_starts=2, **base), targets=targets,
                          seed=seed)
    plain = attacks.run(objective, mlp, mlp_images, 1.0, AttackConfig(**base), targets=targets, seed=seed)
    ref = objective.reference(mlp, mlp_images, targets)
    directions = starts.directed_starts(objective.start_directions(mlp_images, targets), mlp_images, 2, seed)
    assert directions.shape[0] == 2 + objective.needs_targets
    explicit = pgd.run(mlp, objective, mlp_images, ref, 1.0,
                       attacks.for_model(objective.resolve(AttackConfig(**base)), mlp, mlp_images.shape[1:]),
                       seed, False, directions=directions)
    np.testing.assert_allclose(towards.loss, explicit.loss, rtol=1e-6)
    np.testing.assert_allclose(towards.adversarial, explicit.adversarial, atol=1e-6)
    assert not np.allclose(towards.adversarial, plain.adversarial, atol=1e-4)
    assert towards.info["gradient_evaluations_per_image"] == plain.info["gradient_evaluations_per_image"]


def test_pgd_towards_starts_bad_values():
    with pytest.raises(ConfigError, match="towards_starts must be an integer >= 0"):
        AttackConfig(towards_starts=-1)
    with pytest.raises(ConfigError, match="towards_starts must be an integer >= 0"):
        AttackConfig(towards_starts=1.5)
    with pytest.raises(ConfigError, match="method 'pgd' only"):
        AttackConfig(method="apgd", towards_starts=2)
    with pytest.raises(ConfigError, match="below the 8 starts"):
        AttackConfig(exploration_starts=4, restarts=2, towards_starts=8)
    with pytest.raises(ConfigError, match="below the 64 starts"):  # checked again once the defaults are filled in
        attacks.MAX_DAMAGE_OBJECTIVE.resolve(AttackConfig(towards_starts=64))
    assert attacks.MAX_DAMAGE_OBJECTIVE.resolve(AttackConfig(towards_starts=32)).towards_starts == 32


def test_too_many_towards_starts_for_one_attack_of_the_protocol_fails_when_built():
    """48 starts for the latent attack (24 x 2), 64 for maximum damage: 50 is refused for the
    latent attack when the protocol (or the evaluation's settings) is built, not mid-run."""
    from robust_dae_tf.evaluation import robustness
    from robust_dae_tf.evaluation.settings import EvaluationSettings, check_settings

    with pytest.raises(ConfigError, match="the latent attack: attack towards_starts must be below the 48 starts"):
        robustness.Protocol(attack=AttackConfig(towards_starts=50))
    with pytest.raises(ConfigError, match="the latent attack: .*below the 48 starts"):
        check_settings(EvaluationSettings(attack_towards_starts=50))
    protocol = robustness.Protocol(attack=AttackConfig(towards_starts=50), objectives=("max_damage",))
    assert protocol.attack.towards_starts == 50
    assert check_settings(EvaluationSettings(attack_towards_starts=32))[1].towards_starts == 32
