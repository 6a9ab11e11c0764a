"""Tests of robust_dae_tf.reporting.per_image: the per-image values file and its box plots."""

import os

import numpy as np
import pytest

from robust_dae_tf import attacks
from robust_dae_tf.reporting import per_image

MAX_METRIC = attacks.MAX_DAMAGE_OBJECTIVE.main_metric


def _values(trials=2, n=3):
    rng = np.random.default_rng(0)
    return {"max_damage": {b: {MAX_METRIC: rng.uniform(0, 1, trials * n), "attack_loss": rng.normal(size=trials * n)}
                           for b in ("1.0", "5.0")},
            "latent": {"3.0": {attacks.LATENT_OBJECTIVE.main_metric: rng.uniform(0, 1, trials * n)}}}


def test_save_load_round_trip_is_trial_major(tmp_path):
    values = _values(trials=2, n=3)
    path = str(tmp_path / "sub" / per_image.FILE)
    os.makedirs(os.path.dirname(path))
    per_image.save(path, values, trials=2)
    back = per_image.load(path)
    np.testing.assert_array_equal(back["trial"], [0, 0, 0, 1, 1, 1])
    for attack, budgets in values.items():
        for budget, metrics in budgets.items():
            for metric, array in metrics.items():
                assert back[attack][budget][metric].dtype == np.float64
                np.testing.assert_array_equal(back[attack][budget][metric], array)
    assert [f for f in os.listdir(os.path.dirname(path))] == [per_image.FILE]  # no temporary file left


def test_one_image_and_empty_values():
    flat = per_image.flatten({"latent": {"1.0": {"m": [0.5]}}}, trials=1)
    np.testing.assert_array_equal(flat["trial"], [0])
    assert per_image.flatten({}, trials=3) == {}


def test_distribution_figure_boxes_hold_the_values():
    import matplotlib
    matplotlib.use("Agg")
    values = _values(trials=1, n=5)["max_damage"]
    fig = per_image.distribution_figure("max_damage", values, "m")
    ax = fig.axes[0]
    means = ax.collections[0].get_offsets()[:, 1]  # the white dots: the table cells
    np.testing.assert_allclose(means, [values[b][MAX_METRIC].mean() for b in ("1.0", "5.0")])
    assert ax.get_ylabel() == MAX_METRIC
    medians = [line.get_ydata()[0] for line in ax.lines if line.get_color() in ("C1", "#ff7f0e")]
    np.testing.assert_allclose(sorted(medians), sorted(np.median(values[b][MAX_METRIC]) for b in ("1.0", "5.0")))


def test_figures_for_writes_one_png_per_attack(tmp_path):
    assert per_image.figures_for(None, str(tmp_path)) == {}
    assert per_image.figures_for(str(tmp_path / "no_report"), str(tmp_path)) == {}
    report = tmp_path / "robustness"
    report.mkdir()
    per_image.save(str(report / per_image.FILE), _values(trials=1), trials=1)
    paths = per_image.figures_for(str(report), str(tmp_path / "eval"), title="model")
    assert set(paths) == {"per_image_max_damage", "per_image_latent"}
    for path in paths.values():
        assert path.startswith(str(tmp_path / "eval" / "figures")) and os.path.getsize(path) > 1000


@pytest.mark.parametrize("trials", [1, 3])
def test_flatten_trial_column_matches_rows(trials):
    flat = per_image.flatten(_values(trials=trials, n=4), trials)
    assert flat["trial"].shape == (trials * 4,) and flat["trial"][-1] == trials - 1
