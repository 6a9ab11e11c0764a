"""Adding an attack is one objective: a new attack defined here, as ONE `attacks.Objective`
subclass, runs through PGD and L-BFGS-B, through the robustness protocol, and appears in
the report, the tables, the curves and the success-level sentence under its own metric
names, without any change to the package."""

import csv
import io

import numpy as np
import pytest
import tensorflow as tf
from matplotlib import image as mpimg
from scipy import optimize

from robust_dae_tf import attacks, reporting
from robust_dae_tf.evaluation import robustness
from robust_dae_tf.attacks import AttackConfig
from robust_dae_tf.errors import DataError
from tests.attacks.toy_models import SHAPE, LinearModel
from tests.helpers import digits_arrays
from tests.evaluation.test_robustness import TinyAutoencoder


class TargetedReconstructionAttack(attacks.Objective):
    """min ||f(g(x + d)) - x_t||_2: make the reconstruction of x_a look like the target image."""

    name = "toy_reconstruction"
    equation = "toy"
    maximize = False
    needs_targets = True
    default_steps, default_exploration_starts = 40, 4
    model_outputs = "reconstructions"
    pair = "target_toy_rec"
    title, short_label = "Toy", "toy"
    grid_title = "toy reconstruction attack"
    loss_title = "toy loss"
    loss_label = "||f(g(x_a)) - x_t||_2"
    table_label, curve_label = "MS-SSIM(x_t, x~_a) [toy]", "MS-SSIM(x_t, x~_a) [toy]"
    legend = "toy attack: x_r = target image x_t"
    success_level_label = "x~_a = x~_t"
    success_level_text = "a toy attack that made x~_a = x~_t would reach {value}"

    def reference(self, model, images, targets):
        return targets.reshape(len(targets), -1)

    def loss_sq(self, model, x_adv, reference):
        return attacks.squared_distance(model.decode(model.encode(x_adv)), reference)

    def compared_with(self, images, targets, reconstructions):
        return targets


TOY = TargetedReconstructionAttack()


def _numpy_loss(model, x_adv, x_t):
    """||V W x_a + b - x_t||_2 per image, in float64 numpy (the linear model's f(g(.)))."""
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64)  # noqa: E731
    rec = flat(x_adv) @ model.W.T.astype(np.float64) @ model.V.T.astype(np.float64) + model.b
    return np.linalg.norm(rec - flat(x_t), axis=1)


def _slsqp_optimum(model, x, x_t, lam):
    """min ||A (x + d) + b - x_t|| over the ball ∩ box, A = V W (convex), by SLSQP."""
    A = (model.V.astype(np.float64) @ model.W.astype(np.float64))
    xi, ti = x.ravel().astype(np.float64), x_t.ravel().astype(np.float64)
    r = ti - model.b - A @ xi
    res = optimize.minimize(
        lambda d: np.sum((A @ d - r) ** 2), np.zeros_like(xi), jac=lambda d: 2 * A.T @ (A @ d - r), method="SLSQP",
        bounds=list(zip(-xi, 1 - xi)),
        constraints=[{"type": "ineq", "fun": lambda d: lam ** 2 - d @ d, "jac": lambda d: -2 * d}],
        options={"ftol": 1e-15, "maxiter": 1000})
    return np.sqrt(res.fun)


def test_toy_objective_loss_matches_numpy():
    model = LinearModel(seed=5)
    rng = np.random.default_rng(1)
    x, x_t = (rng.random((4, *SHAPE)).astype(np.float32) for _ in range(2))
    reference = TOY.reference(model, x, x_t)
    np.testing.assert_allclose(np.sqrt(TOY.loss_sq(model, tf.constant(x), reference).numpy()),
                               _numpy_loss(model, x, x_t), rtol=1e-4)


@pytest.mark.parametrize("method", ["pgd", "lbfgsb"])
def test_toy_attack_runs_through_both_optimisers(method):
    model = LinearModel(seed=5)
    rng = np.random.default_rng(2)
    x = rng.random((3, *SHAPE)).astype(np.float32)
    x[:, :1] = 0.0  # a box-active row
    x_t = rng.random((3, *SHAPE)).astype(np.float32)
    lam = 0.5
    config = AttackConfig(steps=60, restarts=2, method=method)
    result = attacks.run(TOY, model, x, lam, config, targets=x_t, seed=0, record_curve=True)
    adv = result.adversarial
    assert np.all(np.linalg.norm((adv - x).reshape(3, -1), axis=1) <= lam * (1 + 1e-5))
    assert adv.min() >= 0 and adv.max() <= 1
    # The loss is the toy objective at exactly the returned images, and it was minimised.
    np.testing.assert_allclose(result.loss, _numpy_loss(model, adv, x_t), rtol=1e-4)
    assert np.all(result.loss < _numpy_loss(model, x, x_t))
    assert result.loss_curve.shape == (60,) and np.all(np.diff(result.loss_curve) <= 1e-6)
    # Convex on a linear model: PGD reaches the constrained optimum (SLSQP); L-BFGS-B with
    # the reference's rescaling comes close.
    optimum = np.array([_slsqp_optimum(model, x[i], x_t[i], lam) for i in range(3)])
    assert np.all(result.loss >= optimum * (1 - 1e-3) - 1e-5)
    tolerance = 1e-3 if method == "pgd" else 5e-2
    assert np.all(result.loss <= optimum * (1 + tolerance) + 1e-5), (result.loss, optimum)
    with pytest.raises(DataError, match="targets must be"):
        attacks.run(TOY, model, x, lam, config)  # it needs targets


@pytest.fixture(scope="module")
def protocol_report():
    _, _, x, y = digits_arrays()
    model = TinyAutoencoder()
    protocol = robustness.Protocol(num_images=4, trials=1, budgets=(1.0, 2.0), seed=1,
                                   attack=AttackConfig(steps=6, restarts=1, exploration_starts=2, jit_compile=False),
                                   objectives=("max_damage", TOY))
    return model, protocol, robustness.evaluate_robustness(model, x, y, protocol, progress=False)


def test_toy_attack_runs_through_the_protocol(protocol_report):
    model, protocol, report = protocol_report
    assert set(report) == {"protocol", "max_damage", TOY.name, "attack_runs", "success_levels", "examples", "timing"}
    assert set(report["attack_runs"]) == {"max_damage", TOY.name}
    assert set(report["protocol"]["attack_by_kind"]) == {"max_damage", TOY.name}
    assert report["protocol"]["attack_by_kind"][TOY.name]["steps"] == 6
    for key in ("1.0", "2.0"):
        assert tuple(report[TOY.name][key]) == TOY.metrics == (
            "attack_loss", "msssim_target_toy_rec", "msssim_target_toy_rec_standard", "l2_target_toy_rec",
            "msssim_input_adv", "l2_input_adv")
    # One trial: the report's numbers are the metrics of the returned examples.
    ex = report["examples"][TOY.name]
    assert ex["budget"] == 2.0 and "target" in ex
    rec_adv = model.decode(model.encode(ex["adversarial"])).numpy()
    l2 = np.linalg.norm((rec_adv - ex["target"]).reshape(4, -1), axis=1).mean()
    entry = report[TOY.name]["2.0"]
    assert entry["attack_loss"]["mean"] == pytest.approx(l2, rel=1e-4)  # the toy loss is this L2
    assert entry["l2_target_toy_rec"]["mean"] == pytest.approx(l2, rel=1e-5)
    assert np.linalg.norm((ex["adversarial"] - ex["x"]).reshape(4, -1), axis=1).max() <= 2.0 * (1 + 1e-5)
    assert set(report["success_levels"][TOY.name]) == {"msssim_target_toy_rec"}
    # Its seed stream is its own; the paper attacks keep theirs.
    paper = robustness.Protocol(seed=1)
    assert robustness.attack_seed(protocol, 0, "max_damage") == robustness.attack_seed(paper, 0, "max_damage")
    assert len({robustness.attack_seed(protocol, b, o) for b in range(2) for o in protocol.objectives}) == 4


def test_toy_attack_appears_in_tables_and_figures(protocol_report, tmp_path, monkeypatch):
    _, _, report = protocol_report
    robustness_part = {k: v for k, v in report.items() if k != "examples"}
    row = reporting.make_row("toy model", robustness_part)
    # Unregistered, the tables keep the paper's layout (its columns are unknown to them).
    assert "Toy" not in reporting.table1_markdown([row])
    monkeypatch.setitem(attacks.OBJECTIVES, TOY.name, TOY)  # attacks.register(TOY), undone after the test
    [parsed] = reporting.parse_markdown_table(reporting.table1_markdown([row], digits=4))
    stat = report[TOY.name]["1.0"]["msssim_target_toy_rec"]
    assert report["protocol"]["trials"] == 1  # one trial: the cells are the means alone
    assert parsed["Toy: MS-SSIM(x_t, x~_a) [toy] ↓ λ=1"] == f"{stat['mean']:.4f}"
    assert parsed["Latent: MS-SSIM(x_r, x~_a) ↓ λ=1"] == "—"  # not run
    max_damage = report["max_damage"]["2.0"]["msssim_rec_adv_rec"]["mean"]
    assert parsed["Max damage: MS-SSIM(x~_r, x~_a) ↑ λ=2"] == f"{max_damage:.4f}"
    [table] = list(csv.DictReader(io.StringIO(reporting.table1_csv([row]))))
    for metric in TOY.metrics:
        assert float(table[f"{TOY.name}.{metric}.lambda=2.mean"]) == report[TOY.name]["2.0"][metric]["mean"]
    sentence = reporting.success_levels_markdown(robustness_part)
    assert "a toy attack that made x~_a = x~_t would reach" in sentence and "unrelated images" in sentence
    curves = reporting.plot_attack_curves(robustness_part, str(tmp_path / "curves.png"))
    height, width = mpimg.imread(curves).shape[:2]
    w, h = reporting.CURVES_SIZE_IN
    assert (width, height) == (int(w * 4 / 3 * reporting.CURVES_DPI), int(h * reporting.CURVES_DPI))  # 4 panels
    out = reporting.write_report(str(tmp_path / "eval"), row, report["examples"], tensorboard=False)
    assert f"grid_{TOY.name}" in out["markdown"] and "toy attack: x_r = target image x_t" in out["markdown"]
