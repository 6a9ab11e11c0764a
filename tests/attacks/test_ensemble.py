"""Tests for the attack ensemble (robust_dae_tf.attacks.ensemble): the per-image worst case
over members (by the attack loss, and the recorded worst by the reported MS-SSIM) against
the members' own results, the budget split, ties, NaN fallback, config errors, and the
report's `attack_runs`."""

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import attacks
from robust_dae_tf.evaluation import robustness
from robust_dae_tf.attacks import AttackConfig, AttackResult, ensemble, starts
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.metrics.msssim import ms_ssim_paper

SHAPE16 = (16, 16, 1)  # the smallest size MS-SSIM (5 scales) takes
# The worst-case / report tests run the members in plain graph mode: XLA-compiling every member
# cost ~75 % of their time and does not change what they check (the selection over the members'
# own results); the ensemble under XLA (the fc default) still runs in
# test_small_images_and_other_objectives_run_without_msssim, APGD under XLA in test_apgd.py, and
# XLA against graph mode is compared in test_optimisers.py.
NO_XLA = False


class MLP16:
    """A tiny random nonlinear autoencoder on 16x16x1 images."""

    def __init__(self, seed=0):
        tf.keras.utils.set_random_seed(seed)
        self.encoder = tf.keras.Sequential([tf.keras.Input(SHAPE16), tf.keras.layers.Flatten(),
                                            tf.keras.layers.Dense(12, activation="tanh"), tf.keras.layers.Dense(4)])
        self.decoder = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(12, activation="tanh"),
                                            tf.keras.layers.Dense(256, activation="sigmoid"),
                                            tf.keras.layers.Reshape(SHAPE16)])

    def encode(self, images):
        return self.encoder(images, training=False)

    def decode(self, latents):
        return self.decoder(latents, training=False)


@pytest.fixture(scope="module")
def mlp16():
    return MLP16()


@pytest.fixture(scope="module")
def images16():
    rng = np.random.default_rng(5)
    x = rng.random((5, *SHAPE16)).astype(np.float32)
    x[:, :, :3] = 0.0  # pixels on the box boundary
    x[:, :, -2:] = 1.0
    return x


def _msssim_of(model, reference_images, adversarial):
    """Reported MS-SSIM, computed here from the model and ms_ssim_paper directly."""
    rec = model.decode(model.encode(tf.constant(adversarial))).numpy()
    return ms_ssim_paper(tf.constant(reference_images), tf.constant(rec)).numpy().astype(np.float64)


@pytest.mark.parametrize("kind,lam", [(attacks.MAX_DAMAGE, 1.0), (attacks.LATENT, 0.3)])
def test_worst_case_over_members(kind, lam, mlp16, images16, monkeypatch):
    objective = attacks.objective(kind)
    targets = np.roll(images16, 1, axis=0)
    results = []
    real = ensemble.run_member

    def recording(member, *args, **kwargs):
        results.append((member, real(member, *args, **kwargs)))
        return results[-1][1]

    monkeypatch.setattr(ensemble, "run_member", recording)
    total = 96  # the latent attack: 24 + 24 + 48; maximum damage: APGD 4 starts x 6 + 4 x 12 + 2 x 12
    out = attacks.run(objective, mlp16, images16, lam,
                      AttackConfig(method="ensemble", gradient_evaluations=total, jit_compile=NO_XLA),
                      targets=targets, seed=3)
    assert [m.name for m, _ in results] == list(ensemble.default_members(objective.name))
    ref = objective.reference(mlp16, images16, targets)
    member_loss = np.stack([attacks.attack_loss(mlp16, objective, r.adversarial, ref) for _, r in results])
    # The returned loss is the attack loss at exactly the returned images, and the best over members.
    np.testing.assert_allclose(out.loss, attacks.attack_loss(mlp16, objective, out.adversarial, ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.loss, objective.best_np(member_loss, 0), rtol=1e-5, atol=1e-6)
    assert np.all(~objective.better(member_loss, out.loss[None] * (1 + 1e-5 * objective.sign)))
    wins = out.info["member_wins"]
    assert sum(wins.values()) == len(images16)
    # Members that converge to the same point (the two "towards" members can share a start)
    # tie within float noise: the loss the ensemble ranked (the member's own, from its loop)
    # and the one recomputed here may order them differently. So each member's wins lie
    # between the images it alone is best on and the images it is best on within 1e-5.
    key = objective.ranking_key(member_loss)
    best_key = key.min(axis=0)
    near = key <= best_key + 1e-5 * np.abs(best_key) + 1e-6
    for i, (m, _) in enumerate(results):
        alone = near[i] & (near.sum(axis=0) == 1)
        assert alone.sum() <= wins[m.name] <= near[i].sum(), (m.name, wins, near.sum(axis=1))
    # Budget: what the members spent, summed; never more than the total.
    spent = [r.info["gradient_evaluations_per_image"] for _, r in results]
    assert out.info["gradient_evaluations_per_image"] == sum(spent) <= total
    assert spent == list(ensemble.allocate(total, ensemble.select(None, objective.name)).values())
    # The other rule: per image the strongest reported MS-SSIM over members.
    clean = mlp16.decode(mlp16.encode(tf.constant(images16))).numpy()
    compared = objective.compared_with(images16, targets, clean)
    msssim = np.stack([_msssim_of(mlp16, compared, r.adversarial) for _, r in results])
    strongest = msssim.min(0) if objective.maximize else msssim.max(0)
    np.testing.assert_allclose(out.info["worst_by_msssim"]["mean"], strongest.mean(), rtol=1e-5)
    assert out.info["worst_by_msssim"]["metric"] == objective.main_metric
    np.testing.assert_allclose(out.info["msssim_of_returned"], _msssim_of(mlp16, compared, out.adversarial).mean(),
                               rtol=1e-5)
    assert out.info["nan_fallback"] == {name: 0 for name in ensemble.default_members(objective.name)}
    # Inside the ball and the box.
    d = (out.adversarial - images16).reshape(len(images16), -1).astype(np.float64)
    assert np.all(np.linalg.norm(d, axis=1) <= lam * (1 + 1e-5))
    assert out.adversarial.min() >= 0 and out.adversarial.max() <= 1


class _Fixed:
    """A member that returns given perturbations and losses (as own losses)."""

    optimiser, surrogate = "apgd", None

    def __init__(self, name, delta, nan_rows=(), share=1.0):
        self.name, self.delta, self.nan_rows, self.share = name, delta, tuple(nan_rows), share

    def run(self, model, objective, images, targets, reference, budget, evaluations, config, seed):
        adversarial = np.clip(images + self.delta, 0, 1).astype(np.float32)
        loss = attacks.attack_loss(model, objective, adversarial, reference).astype(np.float32)
        loss[list(self.nan_rows)] = np.nan
        return AttackResult(adversarial, loss, info={"gradient_evaluations_per_image": evaluations})


def _ensemble(model, images, members, kind=attacks.MAX_DAMAGE, total=80):
    objective = attacks.objective(kind)
    targets = np.roll(images, 1, axis=0)
    config = attacks.for_model(objective.resolve(AttackConfig(method="ensemble", gradient_evaluations=total,
                                                              jit_compile=NO_XLA)),
                               model, images.shape[1:])
    ref = objective.reference(model, images, targets)
    return ensemble.run(model, objective, images, targets, ref, 0.5, config, 0, members=members)


def test_ties_go_to_the_earlier_member_and_a_batch_of_one(mlp16, images16):
    delta = np.random.default_rng(0).normal(size=images16.shape).astype(np.float32) * 0.01
    out = _ensemble(mlp16, images16, [_Fixed("a", delta), _Fixed("b", delta.copy())])
    assert out.info["member_wins"] == {"a": len(images16), "b": 0}
    one = _ensemble(mlp16, images16[:1], [_Fixed("a", delta[:1] * 0), _Fixed("b", delta[:1])])
    assert one.loss.shape == (1,) and sum(one.info["member_wins"].values()) == 1
    assert one.info["member_wins"]["b"] == 1  # the perturbed image beats the clean one (loss 0)
    assert one.info["gradient_evaluations_per_image"] == 80


def test_nan_member_images_fall_back_to_the_others(mlp16, images16):
    rng = np.random.default_rng(1)
    strong = rng.normal(size=images16.shape).astype(np.float32) * 0.05
    weak = strong * 0.1
    out = _ensemble(mlp16, images16, [_Fixed("strong", strong, nan_rows=(1, 3)), _Fixed("weak", weak)])
    assert np.isfinite(out.loss).all() and out.adversarial.shape == images16.shape
    assert out.info["nan_fallback"] == {"strong": 2, "weak": 0}
    assert out.info["member_wins"] == {"strong": 3, "weak": 2}
    np.testing.assert_allclose(out.adversarial[1], np.clip(images16[1] + weak[1], 0, 1))
    # Every member failed on image 2: its loss is NaN (the runner turns that into a DataError).
    both = _ensemble(mlp16, images16, [_Fixed("x", strong, nan_rows=(2,)), _Fixed("y", weak, nan_rows=(2,))])
    assert np.isnan(both.loss[2]) and np.isfinite(np.delete(both.loss, 2)).all()
    assert sum(both.info["member_wins"].values()) == len(images16) - 1


def test_config_errors_at_build_time():
    members = ensemble.select(None, "max_damage")
    minimum = ensemble.minimum_evaluations(members)
    assert minimum == 80  # APGD with 4 starts of >= 5 evaluations at a quarter of the budget
    assert ensemble.minimum_evaluations(ensemble.select(None, "latent")) == 80
    # Independent: every member needs its minimum at its share of the total.
    norm = sum(m.share for m in members)
    assert all(np.floor(minimum * m.share / norm + 1e-9) >= m.min_evaluations for m in members)
    AttackConfig(method="ensemble", gradient_evaluations=minimum)
    with pytest.raises(ConfigError, match=f"at least {minimum} gradient evaluations"):
        AttackConfig(method="ensemble", gradient_evaluations=minimum - 1)
    with pytest.raises(ConfigError, match="unknown: fab"):
        AttackConfig(method="ensemble", ensemble_members=("apgd", "fab"))
    with pytest.raises(ConfigError, match="distinct"):
        AttackConfig(method="ensemble", ensemble_members=("apgd", "apgd"))
    with pytest.raises(ConfigError, match="method 'ensemble' only"):
        AttackConfig(method="pgd", ensemble_members=("apgd",))
    assert AttackConfig(method="ensemble", ensemble_members=["pgd"]).ensemble_members == ("pgd",)
    with pytest.raises(ConfigError, match="at least 16"):
        AttackConfig(method="ensemble", ensemble_members=("pgd",), gradient_evaluations=15)


@pytest.mark.parametrize("total", [80, 97, 500, 800, 1234])
@pytest.mark.parametrize("names,attack", [(None, "latent"), (None, "max_damage"), (None, None),
                                          (ensemble.MEMBER_NAMES, None)])
def test_allocation(total, names, attack):
    members = ensemble.select(names, attack)
    split = ensemble.allocate(total, members)
    norm = sum(m.share for m in members)
    assert sum(split.values()) <= total
    for m in members:
        share = total * m.share / norm
        if m.optimiser == "pgd":
            assert split[m.name] % 16 == 0 and share - 16 < split[m.name] <= share
        else:
            assert share - 1 < split[m.name] <= share
    assert ensemble.default_evaluations(attacks.MAX_DAMAGE_OBJECTIVE) == 500
    assert ensemble.default_evaluations(attacks.LATENT_OBJECTIVE) == 800


def test_report_records_cost_and_member_wins(mlp16, images16, tmp_path):
    labels = np.arange(len(images16)) % 2
    for method, config in (("pgd", AttackConfig(steps=8, restarts=1, exploration_starts=2)),
                           ("ensemble", AttackConfig(method="ensemble", gradient_evaluations=96, jit_compile=NO_XLA))):
        protocol = robustness.Protocol(num_images=3, trials=1, budgets=(0.5,), attack=config)
        report = robustness.evaluate_robustness(mlp16, images16, labels, protocol, progress=False,
                                                run_cache_dir=str(tmp_path / method))
        for name in ("latent", "max_damage"):
            run_log = report["attack_runs"][name]["0.5"]
            if method == "pgd":
                assert run_log == {"gradient_evaluations_per_image": 2 * 1 + 1 * 8,  # 2 starts x 1 + 8
                                   "precision": "float32"}
            else:
                assert run_log["gradient_evaluations_per_image"] <= 96
                assert sum(run_log["member_wins"].values()) == 3
        # Resumed from the run cache: the same log.
        again = robustness.evaluate_robustness(mlp16, images16, labels, protocol, progress=False,
                                               run_cache_dir=str(tmp_path / method))
        assert again["timing"]["resumed_runs"] == 2
        assert again["attack_runs"] == report["attack_runs"]


def test_small_images_and_other_objectives_run_without_msssim(mlp, mlp_images):
    """8x8 images (below MS-SSIM's 16x16) and a registered toy objective: the generic members
    ("apgd", "pgd") run, the MS-SSIM entries are None, nothing crashes."""
    from tests.attacks.test_new_attack import TOY  # a targeted-reconstruction objective

    targets = np.roll(mlp_images, 1, axis=0)
    out = attacks.run(TOY, mlp, mlp_images, 1.0, AttackConfig(method="ensemble", gradient_evaluations=80),
                      targets=targets)
    assert set(out.info["member_wins"]) == {"apgd", "pgd"} and sum(out.info["member_wins"].values()) == 6
    assert out.info["worst_by_msssim"] is None and out.info["msssim_of_returned"] is None
    assert np.isfinite(out.loss).all()


def test_default_members_per_attack_and_their_starts():
    """Maximum damage: APGD from random starts and from starts towards other images of the
    batch; the latent attack keeps its target-directed start 0 in every APGD member."""
    assert ensemble.default_members("max_damage") == ("apgd", "apgd_towards", "apgd_towards_long")
    assert ensemble.default_members("latent") == ("apgd", "apgd_msssim", "pgd")
    assert ensemble.default_members("toy") == ensemble.GENERIC_MEMBERS
    rng = np.random.default_rng(4)
    images = rng.random((5, 16, 16, 1)).astype(np.float32)
    targets = rng.random((5, 16, 16, 1)).astype(np.float32)
    towards, = ensemble.select(["apgd_towards"])
    random_member, = ensemble.select(["apgd"])
    # Maximum damage: the 4 starts are the directions towards other images, nothing else.
    got = ensemble.start_directions(towards, attacks.MAX_DAMAGE_OBJECTIVE, images, None, seed=8)
    np.testing.assert_array_equal(got, starts.towards_other_images(images, 4, 8))
    assert ensemble.start_directions(random_member, attacks.MAX_DAMAGE_OBJECTIVE, images, None, 8) is None
    assert ensemble.restarts_for(random_member, attacks.MAX_DAMAGE_OBJECTIVE) == 4
    # Latent: start 0 towards the target, then 3 towards other images; the random member: one start.
    got = ensemble.start_directions(towards, attacks.LATENT_OBJECTIVE, images, targets, seed=8)
    np.testing.assert_array_equal(got[0], targets - images)
    np.testing.assert_array_equal(got[1:], starts.towards_other_images(images, 3, 8))
    assert ensemble.restarts_for(towards, attacks.LATENT_OBJECTIVE) == 4
    assert ensemble.restarts_for(random_member, attacks.LATENT_OBJECTIVE) == 1
    # A batch of one has no other image: random starts (and the latent attack's target start).
    assert ensemble.start_directions(towards, attacks.MAX_DAMAGE_OBJECTIVE, images[:1], None, 8) is None
    np.testing.assert_array_equal(
        ensemble.start_directions(towards, attacks.LATENT_OBJECTIVE, images[:1], targets[:1], 8), targets[:1] - images[:1])
