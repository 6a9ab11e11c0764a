"""Tests of robust_dae_tf.reporting.figures: attack curves, image grids, success levels."""

import os

import numpy as np

from robust_dae_tf import reporting
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
