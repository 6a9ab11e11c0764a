"""Tests for robust_dae_tf.attacks.progress: what the optimisers report adds up to what they
spent (PGD, APGD, the ensemble; several chunks), one report per compiled call, listeners
nest, nothing listens by default, and the progress bars of `check` and `evaluate_robustness`."""

import numpy as np
import pytest

from robust_dae_tf import attacks
from robust_dae_tf.attacks import AttackConfig, budgets, check, progress
from robust_dae_tf.evaluation import robustness
from tests.attacks.test_ensemble import SHAPE16, mlp16  # noqa: F401 (a fixture)


def test_reports_reach_the_innermost_listener_only_and_listeners_are_restored():
    outer, inner = [], []
    progress.report(5)  # nobody listens: nothing happens
    with progress.listening(outer.append):
        progress.report(3)
        with progress.listening(inner.append):
            progress.report(7)
        progress.report(2.0)
    progress.report(11)
    assert outer == [3, 2] and inner == [7]
    assert all(isinstance(v, int) for v in outer + inner)


def test_a_failing_block_restores_the_previous_listener():
    seen = []
    with progress.listening(seen.append):
        with pytest.raises(RuntimeError):
            with progress.listening(lambda _: None):
                raise RuntimeError("boom")
        progress.report(4)
    assert seen == [4]


@pytest.mark.parametrize("config, calls", [
    # PGD, 3 exploration starts x ceil(16/8) steps, then 1 x 16 steps; at most 2 rows per call: the
    # exploration 1 image (its 3 starts) per call -> 5 calls, the refinement 2 images -> 3 calls.
    (AttackConfig(steps=16, restarts=1, exploration_starts=3, chunk_size=2), 8),
    # Plain PGD (one phase), the whole batch in one call.
    (AttackConfig(steps=10, restarts=2, exploration_starts=1), 1),
    (AttackConfig(method="apgd", gradient_evaluations=30, chunk_size=2), 3),
    (AttackConfig(method="ensemble", gradient_evaluations=120), None),
])
@pytest.mark.parametrize("attack", [attacks.LATENT, attacks.MAX_DAMAGE])
def test_the_reports_of_a_run_add_up_to_what_it_spent(config, calls, attack, mlp16):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (5, *SHAPE16)).astype(np.float32)  # 16 x 16: the ensemble's MS-SSIM member
    targets = rng.uniform(0.2, 0.8, (5, *SHAPE16)).astype(np.float32)
    reports = []
    with progress.listening(reports.append):
        result = attacks.run(attack, mlp16, x, 0.5, config, targets=targets, seed=1)
    spent = result.info["gradient_evaluations_per_image"]
    assert sum(reports) == pytest.approx(spent * x.shape[0])
    if calls is not None:
        assert len(reports) == calls
    expected = progress.expected_evaluations(attacks.objective(attack).resolve(config))
    if config.method == "ensemble":
        assert len(reports) > 1 and spent <= expected == 120  # the members' allocations round down
    else:
        assert expected == spent
    if config.method == "pgd":
        assert expected == budgets.pgd_cost(attacks.objective(attack).resolve(config))


def test_optimisers_without_reports_have_no_expected_count():
    assert progress.expected_evaluations(AttackConfig(method="lbfgsb", steps=5, restarts=1)) is None
    assert progress.expected_evaluations(AttackConfig(method="paper")) is None


def test_bar_listens_only_when_enabled_with_a_total(capsys):
    for total, enabled in ((None, True), (0, True), (10, False)):
        with progress.bar(total, "x", enabled=enabled):
            seen = []
            progress.report(3)  # no listener was set by the bar
            with progress.listening(seen.append):
                progress.report(1)
        assert seen == [1]
    with progress.bar(10, "latent λ=1"):
        progress.report(4)
        progress.report(6)
    assert "latent λ=1" in capsys.readouterr().err


def test_check_cells_and_evaluate_robustness_show_the_bar_within_a_run(capsys, mlp16):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (3, *SHAPE16)).astype(np.float32)
    config = AttackConfig(steps=8, restarts=1, exploration_starts=1)
    check.run_cell(mlp16, attacks.MAX_DAMAGE, x, None, 0.5, config, seed=0, show_progress=True)
    err = capsys.readouterr().err
    assert "max_damage λ=0.5: 100%" in err and "24.0/24.0" in err  # 3 images x 8 evaluations
    check.run_cell(mlp16, attacks.MAX_DAMAGE, x, None, 0.5, config, seed=0)
    assert "λ=0.5" not in capsys.readouterr().err
    labels = np.arange(3) % 2
    protocol = robustness.Protocol(num_images=2, trials=1, budgets=(0.5,), seed=0, attack=config)
    robustness.evaluate_robustness(mlp16, x, labels, protocol, progress=True)
    err = capsys.readouterr().err
    assert "latent λ=0.5: 100%" in err and "max_damage λ=0.5: 100%" in err and "16.0/16.0" in err
