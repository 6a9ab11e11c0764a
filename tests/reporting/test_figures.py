"""Tests of robust_dae_tf.reporting.figures: attack curves, image grids, success levels, the per-image attack check."""

import os

import numpy as np
import pytest

from robust_dae_tf import reporting
from robust_dae_tf.errors import UserError
from tests.reporting.fakes import fake_robustness, rows, _png_size, fake_examples


def test_figures_are_written_with_the_expected_size(tmp_path):
    curves = reporting.plot_attack_curves(fake_robustness(0.0), str(tmp_path / "f" / "curves.png"), "title")
    w, h = reporting.CURVES_SIZE_IN
    assert _png_size(curves) == (int(w * reporting.CURVES_DPI), int(h * reporting.CURVES_DPI))
    grid = reporting.plot_image_grid(fake_examples(3), str(tmp_path / "grid.png"), "latent")
    assert _png_size(grid) == reporting.grid_figure_size(5, 3)
    grid4 = reporting.plot_image_grid(fake_examples(2, 64, 3, target=False), str(tmp_path / "grid4.png"))
    assert _png_size(grid4) == reporting.grid_figure_size(4, 2)
    mosaic = reporting.image_grid_array(fake_examples(3), pad=2)
    assert mosaic.shape == (5 * 34 + 2, 3 * 34 + 2, 3)
    np.testing.assert_allclose(mosaic[2:34, 2:34, 1], fake_examples(3)["x"][0, ..., 0])
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_success_levels_appear_in_the_report_and_the_curves(tmp_path, monkeypatch):
    robustness = fake_robustness(0.0)
    robustness["success_levels"] = {"latent": {"msssim_target_adv_rec": {"mean": 0.9612, "std": 0.01}},
                                    "max_damage": {"msssim_rec_adv_rec": {"mean": 0.0876, "std": 0.01}}}
    row = reporting.make_row("model A", robustness, None, None)
    drawn = []
    plt = reporting._pyplot()
    original = plt.Axes.axhline
    monkeypatch.setattr(plt.Axes, "axhline", lambda ax, y, **kw: drawn.append((y, kw["label"])) or original(ax, y, **kw))
    markdown = reporting.write_report(str(tmp_path), row, tensorboard=False)["markdown"]
    assert "MS-SSIM(x_t, x~_a) = 0.961" in markdown and "MS-SSIM(x~, x~_t) = 0.088" in markdown
    assert sorted(y for y, _ in drawn) == [0.0876, 0.9612]
    assert {label.split(":")[0] for _, label in drawn} == {"latent", "max damage"}
    # Reports of earlier versions (no levels) still render, without the sentence or the lines.
    drawn.clear()
    plain = reporting.write_report(str(tmp_path / "old"), rows()[1], tensorboard=False)["markdown"]
    assert "Success levels" not in plain and drawn == []


def _check_results():
    """Two cells of `attacks.check.check_attacks`' layout: latent (lower = stronger) and maximum damage."""
    return {"latent": {"5.0": {"pgd": {"loss": [3.0, 2.0, 1.0]}, "ensemble": {"loss": [2.5, 2.0, 1.5]}}},
            "max_damage": {"1.0": {"pgd": {"loss": [0.5, 0.7]}, "ensemble": {"loss": [0.6, 0.7]}},
                           "0.5": {"pgd": {"loss": [0.2, 0.3]}, "ensemble": {"loss": [0.1, 0.4]}}}}


def test_attack_check_figure_plots_each_images_losses_against_the_reference(tmp_path, monkeypatch):
    drawn = {}
    plt = reporting._pyplot()
    original = plt.Axes.scatter

    def scatter(ax, x, y, **kw):
        drawn.setdefault(ax.get_title() or len(drawn), []).append((list(x), list(y), kw["label"]))
        return original(ax, x, y, **kw)

    monkeypatch.setattr(plt.Axes, "scatter", scatter)
    titles = []
    original_title = plt.Axes.set_title
    monkeypatch.setattr(plt.Axes, "set_title", lambda ax, t, **kw: titles.append(t) or original_title(ax, t, **kw))
    path = reporting.plot_attack_check(_check_results(), ["ensemble", "pgd"], str(tmp_path / "f" / "per_image.png"))
    # Panels in the results' order of attacks, budgets ascending; x = pgd's loss, y = the ensemble's.
    assert [call for calls in drawn.values() for call in calls] == [
        ([3.0, 2.0, 1.0], [2.5, 2.0, 1.5], "ensemble"),
        ([0.2, 0.3], [0.1, 0.4], "ensemble"),
        ([0.5, 0.7], [0.6, 0.7], "ensemble")]
    assert ["below the diagonal" in titles[0], "above the diagonal" in titles[1], "λ = 0.5" in titles[1]] == [True] * 3
    size = reporting.CHECK_PANEL_IN * reporting.CHECK_DPI
    assert _png_size(path) == (3 * size, size)
    assert not [p for p in os.listdir(tmp_path / "f") if ".tmp-" in p]


def test_attack_check_figure_needs_its_reference_among_the_methods(tmp_path):
    with pytest.raises(UserError, match="compares with 'pgd', which is not among the methods ensemble, reference"):
        reporting.plot_attack_check(_check_results(), ["ensemble", "reference"], str(tmp_path / "x.png"))
    assert not os.path.exists(tmp_path / "x.png")
